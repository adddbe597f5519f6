"""Write a run into an ``.ipynb`` file, kept saved while the run goes.

Every save is an atomic replace (write a sibling temp file, fsync, ``os.replace``), so a
crash or Ctrl-C mid-run leaves the previous valid notebook, never half a file. Agent cells
carry ``metadata.jupyter_analyst`` (run id, step, role) and the ``jupyter-analyst`` tag so
later tools (the live extension, the exporter) can tell them from the user's cells.

The cost of a save must not grow with the run (300 steps with a plot each are ~13 MB).
So each cell is validated and serialised once, when it is written or gets its outputs;
a save joins those texts into the very bytes ``nbformat.writes`` would produce. Saves
happen on a background thread at most every ``save_interval`` seconds, and at once when
the run finishes (``RunFinished``) or the writer is closed (a failure, a stop, Ctrl-C):
a crash loses at most the last second, which the run's events still hold.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import stat
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4.nbjson import BytesEncoder
from nbformat.v4.rwbase import split_lines

from ..agent.types import CellAdded, CellExecuted, CellResult, CellRole, CellsRemoved, Event, RunFinished
from .meta import META_KEY, RAISES_TAG, TAG, agent_metadata, is_agent_cell

__all__ = [
    "META_KEY",
    "RAISES_TAG",
    "TAG",
    "NotebookWriter",
    "agent_metadata",
    "atomic_write",
    "is_agent_cell",
]


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
    """Validate and write ``nb`` so readers only ever see a whole, valid file."""
    nbformat.validate(nb)
    # nbformat.write() would convert (deep-copy) and validate again: 5x slower per step.
    write_text(nbformat.v4.writes(nb), path)


_JSON: dict[str, Any] = {
    "cls": BytesEncoder,
    "indent": 1,
    "sort_keys": True,
    "separators": (",", ": "),
    "ensure_ascii": False,
}
"""``nbformat.v4.writes``'s own JSON settings: a file we write reads like one it writes."""


@functools.cache
def _cell_check(cell_type: str) -> Any:
    """nbformat 4.5's schema of one kind of cell, compiled by fastjsonschema (nbformat's own
    dependency): 0.03 ms a cell, where jsonschema takes 0.8 ms."""
    import fastjsonschema

    path = Path(nbformat.__file__).parent / "v4" / "nbformat.v4.5.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    return fastjsonschema.compile(
        {"definitions": schema["definitions"], **schema["definitions"][f"{cell_type}_cell"]}
    )


def validate_cell(cell: NotebookNode) -> None:
    """Raise ``nbformat.ValidationError`` unless ``cell`` is a valid nbformat 4.5 cell."""
    import fastjsonschema

    try:
        _cell_check(cell.cell_type)(cell)
    except fastjsonschema.JsonSchemaException as exc:
        raise nbformat.ValidationError(f"invalid {cell.cell_type} cell {cell.get('id')}: {exc}") from None


def cell_text(cell: NotebookNode) -> str:
    """One cell as it stands in a notebook file written by ``nbformat.v4.writes``: its
    multi-line strings split into lines, ``trusted`` dropped, indented two levels."""
    holder = nbformat.from_dict({"cells": [copy.deepcopy(cell)], "metadata": {}})
    split_lines(holder)
    holder.cells[0].get("metadata", {}).pop("trusted", None)
    return textwrap.indent(json.dumps(holder.cells[0], **_JSON), "  ")


def notebook_text(nb: NotebookNode, texts: list[str]) -> str:
    """The file of ``nb`` whose cells are already serialised (``cell_text``, in order)."""
    head = {key: value for key, value in nb.items() if key != "cells"}
    head["cells"] = []
    for key in ("orig_nbformat", "orig_nbformat_minor", "signature"):  # nbformat's transient keys
        head.get("metadata", {}).pop(key, None)
    text = json.dumps(head, **_JSON)
    if not texts:
        return text
    return text.replace('"cells": []', '"cells": [\n' + ",\n".join(texts) + "\n ]", 1)


def write_text(text: str, path: Path) -> None:
    """Replace ``path`` with ``text`` atomically (a sibling temp file, fsync, rename).

    The file gets the mode a plain ``open()`` would give it (see ``_mode_for``), not the
    temp file's private 0o600: a notebook is the user's to share like any other file.
    """
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
    """Builds the notebook of one run from the loop's events and keeps it saved on disk
    (see the module docstring). Use it as a context manager, or ``close()`` it: that
    writes what the last second added."""

    def __init__(
        self,
        path: str | Path,
        run_id: str,
        metadata: dict[str, Any] | None = None,
        notebook: NotebookNode | None = None,
        save_interval: float = 1.0,
    ) -> None:
        """``notebook``: an earlier run's notebook to append to (a follow-up); its metadata
        lists the runs it holds under ``follow_ups``. ``save_interval``: seconds between
        background saves (0: save in the caller's thread after every change)."""
        self.path = Path(path)
        self.run_id = run_id
        self.save_interval = save_interval
        self._cells: dict[str, NotebookNode] = {}
        self._texts: dict[int, str] = {}
        """Serialised cells by ``id()`` of their node: each is validated and dumped once."""
        self._lock = threading.Lock()
        """Guards ``nb`` and ``_texts`` between the run's thread and the saver."""
        self._save_lock = threading.Lock()
        self._dirty = False
        self._last_save = 0.0
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._saver: threading.Thread | None = None
        self._failed = False
        """A background save failed (disk full, folder gone): ``close`` saves again and raises."""
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

    def __enter__(self) -> NotebookWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- building -------------------------------------------------------------------
    def _serialise(self, cell: NotebookNode) -> None:
        """Validate ``cell`` alone and keep its text (callers hold ``_lock``)."""
        validate_cell(cell)
        self._texts[id(cell)] = cell_text(cell)

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
        with self._lock:
            self._serialise(cell)
            self.nb.cells.append(cell)
            self._cells[cell_id] = cell
        return cell

    def set_result(self, cell_id: str, result: CellResult) -> None:
        cell = self._cells[cell_id]
        with self._lock:
            cell.outputs = [nbformat.from_dict(o) for o in result.outputs]
            cell.execution_count = result.execution_count
            cell.metadata[META_KEY]["status"] = result.status
            if result.status in ("error", "timeout") and RAISES_TAG not in cell.metadata["tags"]:
                cell.metadata["tags"].append(RAISES_TAG)
            cell.metadata[META_KEY]["seconds"] = round(result.duration, 3)
            self._serialise(cell)

    def remove_cells(self, cell_ids: list[str]) -> list[str]:
        """Drop the run's cells ``cell_ids`` (superseded failed attempts); return those removed."""
        with self._lock:
            gone = [i for i in cell_ids if i in self._cells]
            drop = {id(self._cells.pop(i)) for i in gone}
            self.nb.cells = [c for c in self.nb.cells if id(c) not in drop]
            for key in drop:
                self._texts.pop(key, None)
        return gone

    def update_metadata(self, **values: Any) -> None:
        """The run's own record: the notebook's, or its entry in ``follow_ups``."""
        with self._lock:
            meta = self.nb.metadata[META_KEY]
            mine = next((f for f in meta.get("follow_ups", []) if f.get("run_id") == self.run_id), meta)
            mine.update(values)

    def handle(self, event: Event) -> None:
        """Consume one loop event; the file follows within ``save_interval`` (at once at the end)."""
        if isinstance(event, CellAdded):
            self.add_cell(
                event.cell_type, event.source, event.role, event.step, event.cell_id, event.unverified
            )
            if event.cell_type == "markdown":
                self._changed()  # code cells are saved with their outputs
        elif isinstance(event, CellExecuted):
            self.set_result(event.cell_id, event.result)
            self._changed()
        elif isinstance(event, CellsRemoved):
            if self.remove_cells(event.cell_ids):
                self._changed()
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
            self._dirty = True
            self.close()  # the run's end is on disk before anyone is told it ended

    def show_outputs(self, cell_id: str, outputs: list[dict[str, Any]]) -> None:
        """A file is written per step, with the finished outputs; partial ones are skipped."""

    # -- saving ---------------------------------------------------------------------
    def text(self) -> str:
        """The notebook file as it stands now (the same bytes as ``nbformat.v4.writes``)."""
        with self._lock:
            texts = []
            for cell in self.nb.cells:
                if id(cell) not in self._texts:  # a cell of the notebook we started from
                    self._serialise(cell)
                texts.append(self._texts[id(cell)])
            head = nbformat.from_dict({**{k: v for k, v in self.nb.items() if k != "cells"}, "cells": []})
            nbformat.validate(head)  # the metadata and format keys; the cells were validated alone
            self._dirty = False
            return notebook_text(self.nb, texts)

    def save(self) -> Path:
        """Write the file now, in this thread."""
        with self._save_lock:
            write_text(self.text(), self.path)
            self._last_save = time.monotonic()
        return self.path

    def _changed(self) -> None:
        self._dirty = True
        if self.save_interval <= 0 or self._stopped.is_set():
            self.save()
            return
        if self._saver is None:
            self._saver = threading.Thread(target=self._save_loop, name="notebook-saver", daemon=True)
            self._saver.start()
        self._wake.set()

    def _save_loop(self) -> None:
        """The background saver: at most one save per ``save_interval``."""
        while not self._stopped.is_set():  # checked after each save: close() may have come
            self._wake.wait()
            self._wake.clear()  # before the pause: a change during it or the save wakes us again
            pause = self._last_save + self.save_interval - time.monotonic()
            if self._stopped.wait(max(0.0, pause)):
                return  # close() writes the rest
            if self._dirty:
                try:
                    self.save()
                except Exception:  # noqa: BLE001 - close() saves again, and raises if it still fails
                    self._failed = True

    def close(self) -> None:
        """Stop the saver and write what it had not written yet (raises if that fails)."""
        self._stopped.set()
        self._wake.set()
        saver, self._saver = self._saver, None
        if saver is not None and saver is not threading.current_thread():
            saver.join()
        if self._dirty or self._failed:  # a refusal wrote nothing: no file either
            self._failed = False
            self.save()
