"""A run's cells in its notebook, after the run: a follow-up's context, discard and restore.

Every agent cell carries its run's id (``metadata.jupyter_analyst.run_id``), so a run's
cells are found in the shared document wherever the user moved them. A follow-up reads
them to tell the model what the earlier run did (``agent.followup``) and goes on after
the last one. Discarding takes them out of the document in one change and keeps them,
each with the cell it followed, so that one undo puts them back where they were.
JupyterLab's own undo can't do it: its undo manager tracks only the browser's own edits,
and these are the server's. The variables the run made can be deleted from the kernel
too; they can't be brought back by an undo (re-running the restored cells does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..agent.followup import EarlierRun, cell_lines
from ..notebook.writer import META_KEY
from .live import LiveDocument


@dataclass
class Removed:
    """One discarded cell and where it was."""

    cell: dict[str, Any]
    after: str | None
    """The id of the cell just above it when it was discarded (None: it was the first)."""
    index: int
    """Its position then, for when that neighbour is gone too."""


@dataclass
class Discard:
    """What discarding a run took out, kept for one undo."""

    cells: list[Removed] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)
    """Names deleted from the kernel."""


def run_of(cell: dict[str, Any]) -> str | None:
    meta = (cell.get("metadata") or {}).get(META_KEY) or {}
    run_id = meta.get("run_id")
    return str(run_id) if run_id else None


async def notebook_cells(document: LiveDocument) -> list[dict[str, Any]]:
    """The document's cells as plain dicts (``jupyter_ydoc``'s own conversion)."""
    ynb = await document.document()
    return [ynb.get_cell(i) for i in range(len(ynb.ycells))]


async def earlier_run(
    document: LiveDocument,
    run_id: str,
    *,
    question: str | None,
    answer: str | None,
    outcome: str,
    created: list[str],
    variable: str,
) -> tuple[EarlierRun, str | None]:
    """The follow-up's view of run ``run_id``, and the id of its last cell still in the
    notebook (None: the user deleted them all), after which the follow-up goes."""
    cells = [c for c in await notebook_cells(document) if run_of(c) == run_id]
    earlier = EarlierRun(
        question=question,
        answer=answer,
        outcome=outcome,
        steps=cell_lines(cells),
        created=list(created),
        variable=variable,
    )
    last = str(cells[-1]["id"]) if cells and cells[-1].get("id") else None
    return earlier, last


async def discard_cells(document: LiveDocument, run_id: str) -> list[Removed]:
    """Take every cell of run ``run_id`` out of the document, in one transaction."""
    ynb = await document.document()
    cells = [ynb.get_cell(i) for i in range(len(ynb.ycells))]
    removed = [
        Removed(cell, str(cells[i - 1].get("id")) if i > 0 else None, i)
        for i, cell in enumerate(cells)
        if run_of(cell) == run_id
    ]
    if removed:
        with ynb.ydoc.transaction():
            for item in reversed(removed):
                del ynb.ycells[item.index]
    return removed


async def restore_cells(document: LiveDocument, removed: list[Removed]) -> int:
    """Put discarded cells back where they were: after the cell they followed, or at their
    old position when that cell is gone too. Returns how many went back."""
    ynb = await document.document()
    with ynb.ydoc.transaction():
        for item in removed:
            ids = [c.get("id") for c in ynb.ycells]
            cell = dict(item.cell)
            if cell.get("id") in ids:  # the user made a cell with that id meanwhile
                cell.pop("id", None)
            if item.after is None:
                at = 0
            elif item.after in ids:
                at = ids.index(item.after) + 1
            else:
                at = min(item.index, len(ids))
            ynb.ycells.insert(at, ynb.create_ycell(cell))
    return len(removed)


def delete_names_code(names: list[str]) -> str:
    """Kernel code that deletes the run's variables (never a module: an import is cheap and
    the user's later cells may use it) and prints the names it deleted as JSON."""
    return (
        "def __jupyter_analyst_forget(names):\n"
        "    import json, types\n"
        "    g = globals()\n"
        "    gone = [n for n in names if n in g and not isinstance(g[n], types.ModuleType)]\n"
        "    for n in gone:\n"
        "        del g[n]\n"
        "    print(json.dumps(gone))\n"
        f"__jupyter_analyst_forget({json.dumps(list(names))})\n"
        "del __jupyter_analyst_forget\n"
    )


def deleted_names(out: str) -> list[str]:
    line = next((x for x in reversed(out.splitlines()) if x.startswith("[")), "[]")
    return [str(n) for n in json.loads(line)]
