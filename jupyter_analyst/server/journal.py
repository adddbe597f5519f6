"""Run journals: what a run did, on disk step by step, so a server crash loses no trace of it.

One JSON-lines file per run in the journal folder (by default ``<jupyter data dir>/
jupyter_analyst/runs``): a ``start`` record (what the run was asked), every event frame
as the websocket sent it (status frames excepted: the end record carries the last), and
an ``end`` record with the final status. The notebook itself is flushed to disk as steps
complete (``live.LiveDocument.flush``), so after a crash the journal says which cells the
run had written and where it stopped. A server that starts finds journals without an end
record: those runs were interrupted; it lists them as such and puts a note in their
notebooks. Appends are small and unbuffered, so a killed process loses at most the line
being written, which the reader skips.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEEP = 50
"""Journals kept; the oldest beyond this are removed when a server starts."""


class RunJournal:
    """Appends one run's records; safe to use after the file vanished (it is then dropped)."""

    def __init__(self, folder: Path, run_id: str) -> None:
        self.path = folder / f"{run_id}.jsonl"
        folder.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8", buffering=1)  # line-buffered appends

    def write(self, record: dict[str, Any]) -> None:
        if self._fh.closed:
            return
        try:
            self._fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            self._fh.flush()
        except OSError:
            pass  # a full disk must not end the run; the notebook is what matters

    def start(self, status: dict[str, Any], kernel_id: str, file_id: str) -> None:
        """``file_id`` finds the notebook again after a rename (jupyter-server-fileid)."""
        self.write({"type": "start", "status": status, "kernel_id": kernel_id, "file_id": file_id})

    def end(self, status: dict[str, Any], **extra: Any) -> None:
        self.write({"type": "end", "status": status, **extra})
        self.close()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


@dataclass
class JournalRecord:
    """A journal as read back: the start, the frames, and the end if the run got there."""

    path: Path
    start: dict[str, Any]
    frames: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return str(self.start["status"]["run_id"])

    @property
    def last_step(self) -> int:
        steps = [int(f.get("step") or 0) for f in self.frames if "step" in f]
        return max(steps, default=0)

    @property
    def cells(self) -> list[str]:
        """Document ids of the cells the run announced, in order."""
        return [str(f["cell_id"]) for f in self.frames if f.get("type") == "cell_added"]


def read_journal(path: Path) -> JournalRecord | None:
    """One journal; None when it has no readable start (a torn first line, a stray file)."""
    record: JournalRecord | None = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue  # the line a killed process was writing
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "start" and record is None and isinstance(item.get("status"), dict):
            record = JournalRecord(path, item)
        elif record is None:
            continue
        elif kind == "end":
            record.end = item
        elif kind != "start":
            record.frames.append(item)
    return record


def read_journals(folder: Path, keep: int = KEEP) -> list[JournalRecord]:
    """The journals in ``folder``, oldest first; those beyond the newest ``keep`` are removed."""
    if not folder.is_dir():
        return []
    paths = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    for old in paths[: max(0, len(paths) - keep)]:
        try:
            os.remove(old)
        except OSError:
            pass
    records = [read_journal(p) for p in paths[max(0, len(paths) - keep) :]]
    return [r for r in records if r is not None]
