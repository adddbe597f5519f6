"""``python -m jupyter_analyst`` is the same as ``jupyter analyst``."""

from .cli import main

raise SystemExit(main())
