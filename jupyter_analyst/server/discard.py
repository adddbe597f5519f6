"""Discard a run (its cells out of the notebook, its variables out of the kernel) and undo it.

The refusals keep the user's work whole: an active run can't be discarded, nor one while
another run writes into the same notebook, nor one a later run follows up (that run's
cells use its variables). Deleting variables is skipped, with a note saying why, when the
kernel is busy or gone: the cells still go, since restoring them is always possible.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import KernelError
from .kernelio import kernel_busy, managed_executor, session_kernel_id
from .live import LiveDocument
from .runcells import Discard, delete_names_code, deleted_names, discard_cells, restore_cells
from .runs import ApiError, Run, RunManager, current_path
from .schema import DiscardReply


def _document(manager: RunManager, run: Run) -> LiveDocument:
    """The run's live document, or one opened now (a run an earlier server recorded)."""
    if run.document is not None:
        return run.document
    ydoc_ext = manager.serverapp.web_app.settings.get("jupyter_server_ydoc")
    if ydoc_ext is None:
        raise ApiError(503, "discarding needs jupyter-collaboration (the jupyter_server_ydoc extension)")
    try:
        return LiveDocument(ydoc_ext, run.path, run.run_id)
    except Exception as exc:
        raise ApiError(404, f"cannot open {run.path}: {exc}") from None


async def discard_run(manager: RunManager, run: Run, variables: bool, timeout: float) -> DiscardReply:
    """Take run's cells out of its notebook and, when asked, its variables out of the kernel."""
    if run.active:
        raise ApiError(409, f"run {run.run_id} is still {run.state}: stop it first")
    if run.discard is not None:
        raise ApiError(409, f"run {run.run_id} was already discarded")
    path = current_path(run)
    if manager.active_on(path) is not None:
        raise ApiError(409, f"a run is in progress in {path}: discard this one when it has ended")
    later = manager.follow_up_of(run.run_id)
    if later is not None:
        raise ApiError(
            409, f"run {later.run_id} follows up this run and uses its variables: discard it first"
        )
    document = _document(manager, run)
    removed = await discard_cells(document, run.run_id)
    names = [n for n in run.created if n != run.variable]
    deleted: list[str] = []
    note = ""
    if variables and names:
        deleted, note = await _forget(manager, path, names, timeout)
    elif names:
        note = "its variables were kept, as asked"
    run.discard = Discard(removed, deleted)
    await document.flush()
    return DiscardReply(run_id=run.run_id, cells=len(removed), variables=deleted, note=note)


async def _forget(manager: RunManager, path: str, names: list[str], timeout: float) -> tuple[list[str], str]:
    """Delete ``names`` from the notebook's kernel; (deleted, why some were not)."""
    serverapp: Any = manager.serverapp
    kernel_id = await session_kernel_id(serverapp, path)
    if kernel_id is None:
        return [], "the notebook has no running kernel, so no variables were deleted"
    if manager.active_on_kernel(kernel_id) is not None:
        return [], "another run uses this kernel, so its variables were kept"
    if kernel_busy(serverapp.kernel_manager, kernel_id):
        return [], "the kernel was busy running a cell, so its variables were kept"
    loop = asyncio.get_running_loop()
    executor = managed_executor(serverapp, kernel_id, loop, timeout=timeout, startup_timeout=timeout)

    def forget() -> str:  # off the loop: the executor blocks
        try:
            executor.open(timeout)
            return executor.run_silent(delete_names_code(names), timeout)
        finally:
            executor.close()

    try:
        deleted = deleted_names(await loop.run_in_executor(None, forget))
    except (KernelError, ValueError) as exc:
        return [], f"its variables were kept: the kernel did not answer ({exc})"
    return deleted, ""


async def restore_run(manager: RunManager, run: Run) -> DiscardReply:
    """Undo the discard: the cells go back where they were (the variables don't come back)."""
    if run.discard is None:
        raise ApiError(409, f"run {run.run_id} has no discarded cells to restore")
    document = _document(manager, run)
    count = await restore_cells(document, run.discard.cells)
    deleted = run.discard.variables
    run.discard = None
    await document.flush()
    note = (
        f"its variables were deleted ({', '.join(deleted)}): run its cells again to make them"
        if deleted
        else ""
    )
    return DiscardReply(run_id=run.run_id, cells=count, note=note)
