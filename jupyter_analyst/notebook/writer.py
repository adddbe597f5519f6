"""Write a run into an ``.ipynb`` file, saved after every step.

Every save is an atomic replace (write a sibling temp file, fsync, ``os.replace``), so a
crash or Ctrl-C mid-run leaves the previous valid notebook, never half a file. Agent cells
carry ``metadata.jupyter_analyst`` (run id, step, role) and the ``jupyter-analyst`` tag so
later tools (the live extension, the exporter) can tell them from the user's cells.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from ..agent.types import CellAdded, CellExecuted, CellResult, CellRole, CellsRemoved, Event, RunFinished

TAG = "jupyter-analyst"
META_KEY = "jupyter_analyst"
RAISES_TAG = "raises-exception"
"""Jupyter's tag for a cell expected to fail. nbclient, nbconvert and JupyterLab's Run All go
past such a cell, so a notebook whose errors the agent then fixed still re-runs top to
bottom, with the failed attempt kept visible."""


def agent_metadata(
    run_id: str, step: int, role: CellRole, unverified: list[str] | None = None
) -> dict[str, Any]:
    """Cell metadata that marks a cell as written by the agent (and, on conclusions, the
    numbers no output supported, so a reader of the file sees them too)."""
    meta: dict[str, Any] = {"run_id": run_id, "step": step, "role": role}
    if unverified:
        meta["unverified"] = list(unverified)
    return {META_KEY: meta, "tags": [TAG]}


def is_agent_cell(cell: dict[str, Any]) -> bool:
    return META_KEY in cell.get("metadata", {})


def _proc_umask() -> int | None:
    """This process's umask as Linux (4.7+) shows it, without changing it; None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_by_setting() -> int:
    """``os.umask`` reads the mask only by setting it, process-wide, so another thread
    could create a file with the wrong mask in between: done once, at import, and only
    where /proc cannot tell."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_IMPORT_UMASK = None if _proc_umask() is not None else _umask_by_setting()


def current_umask() -> int:
    """This process's umask: read live where the system shows it, else the one at import."""
    live = _proc_umask()
    if live is not None:
        return live
    return _IMPORT_UMASK if _IMPORT_UMASK is not None else 0o022


def _mode_for(path: Path) -> int:
    """What ``open(path, "w")`` would leave: an existing file keeps its permissions, a new
    one gets 0o666 less the umask."""
    try:
        st = path.stat()
    except OSError:
        return 0o666 & ~current_umask()
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o666 & ~current_umask()


def atomic_write(nb: NotebookNode, path: Path) -> None:
    """Validate and write ``nb`` so readers only ever see a whole, valid file.

    The file gets the mode a plain ``open()`` would give it (see ``_mode_for``), not the
    temp file's private 0o600: a notebook is the user's to share like any other file.
    """
    nbformat.validate(nb)
    # nbformat.write() would convert (deep-copy) and validate again: 5x slower per step.
    text = nbformat.v4.writes(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if hasattr(os, "fchmod"):  # POSIX; Windows has no modes to speak of
                os.fchmod(fh.fileno(), _mode_for(path))
            fh.write(text)
            if not text.endswith("\n"):
                fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class NotebookWriter:
    """Builds the notebook of one run from the loop's events and keeps it saved on disk."""

    def __init__(
        self,
        path: str | Path,
        run_id: str,
        metadata: dict[str, Any] | None = None,
        notebook: NotebookNode | None = None,
    ) -> None:
        """``notebook``: an earlier run's notebook to append to (a follow-up); its metadata
        lists the runs it holds under ``follow_ups``."""
        self.path = Path(path)
        self.run_id = run_id
        self._cells: dict[str, NotebookNode] = {}
        if notebook is not None:
            self.nb = notebook
            meta = self.nb.metadata.setdefault(META_KEY, {})
            meta["follow_ups"] = [*meta.get("follow_ups", []), {"run_id": run_id, **(metadata or {})}]
            return
        self.nb = nbformat.v4.new_notebook()
        self.nb.metadata.update(
            {
                "kernelspec": {
                    "name": "python3",
                    "display_name": "Python 3 (ipykernel)",
                    "language": "python",
                },
                "language_info": {"name": "python"},
                META_KEY: {"run_id": run_id, **(metadata or {})},
            }
        )

    # -- building -------------------------------------------------------------------
    def add_cell(
        self,
        cell_type: str,
        source: str,
        role: CellRole,
        step: int,
        cell_id: str,
        unverified: list[str] | None = None,
    ) -> NotebookNode:
        meta = agent_metadata(self.run_id, step, role, unverified)
        if cell_type == "code":
            cell = nbformat.v4.new_code_cell(source, metadata=meta, id=cell_id)
        else:
            cell = nbformat.v4.new_markdown_cell(source, metadata=meta, id=cell_id)
        self.nb.cells.append(cell)
        self._cells[cell_id] = cell
        return cell

    def set_result(self, cell_id: str, result: CellResult) -> None:
        cell = self._cells[cell_id]
        cell.outputs = [nbformat.from_dict(o) for o in result.outputs]
        cell.execution_count = result.execution_count
        cell.metadata[META_KEY]["status"] = result.status
        if result.status in ("error", "timeout") and RAISES_TAG not in cell.metadata["tags"]:
            cell.metadata["tags"].append(RAISES_TAG)
        cell.metadata[META_KEY]["seconds"] = round(result.duration, 3)

    def remove_cells(self, cell_ids: list[str]) -> list[str]:
        """Drop the run's cells ``cell_ids`` (superseded failed attempts); return those removed."""
        gone = [i for i in cell_ids if i in self._cells]
        drop = {id(self._cells.pop(i)) for i in gone}
        self.nb.cells = [c for c in self.nb.cells if id(c) not in drop]
        return gone

    def update_metadata(self, **values: Any) -> None:
        """The run's own record: the notebook's, or its entry in ``follow_ups``."""
        meta = self.nb.metadata[META_KEY]
        mine = next((f for f in meta.get("follow_ups", []) if f.get("run_id") == self.run_id), meta)
        mine.update(values)

    def handle(self, event: Event) -> None:
        """Consume one loop event; saves whenever the notebook changed."""
        if isinstance(event, CellAdded):
            self.add_cell(
                event.cell_type, event.source, event.role, event.step, event.cell_id, event.unverified
            )
            if event.cell_type == "markdown":
                self.save()  # code cells are saved once, with their outputs
        elif isinstance(event, CellExecuted):
            self.set_result(event.cell_id, event.result)
            self.save()
        elif isinstance(event, CellsRemoved):
            if self.remove_cells(event.cell_ids):
                self.save()
        elif isinstance(event, RunFinished):
            self.update_metadata(
                stop_reason=event.reason.value,
                steps=event.steps,
                tokens=event.tokens,
                seconds=event.seconds,
                errors=event.errors,
                errors_fixed=event.errors_fixed,
                created=list(event.created),
                prechecks=event.prechecks,
                grounding_returns=event.grounding_returns,
                malformed_calls=event.malformed_calls,
                cells_removed=event.cells_removed,
            )
            self.save()

    def show_outputs(self, cell_id: str, outputs: list[dict[str, Any]]) -> None:
        """A file is written per step, with the finished outputs; partial ones are skipped."""

    def save(self) -> Path:
        atomic_write(self.nb, self.path)
        return self.path
