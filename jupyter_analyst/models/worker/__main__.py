"""``python -m jupyter_analyst.models.worker``: run the worker process (see ``process.main``)."""

import sys

from .process import main

sys.exit(main())
