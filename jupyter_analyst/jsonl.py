"""Reading the append-only JSONL files that runs, evaluation and collection write."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of ``path``, one a line.

    Blank lines, non-objects and a torn last line are skipped: these files are appended to
    while a run may be killed mid-write, and resuming must survive that.
    """
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec
