"""Find a notebook's own kernel (the one the Jupyter server manages) and reach it.

The run and the DataFrame listing must not disturb the user's session: helper code runs
with ``silent=True, store_history=False`` (no execution count, no history, no
``execute_input`` broadcast) and wraps its work in a function that deletes itself, so
the user's namespace gains no names. Only the agent's own cells run non-silently. The
executor itself is the family's ``kernel.ManagedKernelExecutor``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from ..kernel import ManagedKernelExecutor

LIST_FRAMES_CODE = r"""
def __jupyter_analyst_list_frames():
    import json, sys
    from IPython import get_ipython
    pd = sys.modules.get("pandas")  # never import pandas on the user's behalf
    found = []
    if pd is not None:
        for name, value in list(get_ipython().user_ns.items()):
            if name.startswith("_") or not isinstance(value, pd.DataFrame):
                continue
            try:
                memory = int(value.memory_usage(index=True, deep=False).sum())
            except Exception:
                memory = 0
            found.append({"name": name, "shape": [int(value.shape[0]), int(value.shape[1])],
                          "columns": [str(c) for c in list(value.columns[:50])], "memory_bytes": memory})
    print(json.dumps(found))

try:
    __jupyter_analyst_list_frames()
finally:
    del __jupyter_analyst_list_frames
"""
"""Prints one JSON list of DataFrameInfo dicts; leaves the namespace as it found it."""


def normalize_path(path: str) -> str:
    """API paths compare without leading/trailing slashes."""
    return path.strip("/")


async def session_kernel_id(serverapp: Any, path: str) -> str | None:
    """The id of the kernel of ``path``'s session, or None when no session runs one."""
    want = normalize_path(path)
    sessions = await serverapp.session_manager.list_sessions()
    for session in sessions:
        kernel = session.get("kernel") or {}
        if normalize_path(session.get("path") or "") == want and kernel.get("id"):
            if kernel["id"] in serverapp.kernel_manager:
                return str(kernel["id"])
    return None


async def kernel_notebook_path(serverapp: Any, kernel_id: str) -> str | None:
    """The notebook whose session runs ``kernel_id`` now, or None.

    jupyter_server updates a session's path when JupyterLab renames or moves the notebook,
    while the kernel's ``JPY_SESSION_NAME`` keeps the name it started with, so the magic
    names its kernel and the server, not the kernel, says which notebook that is. A kernel
    shared by a console and a notebook belongs to the notebook.
    """
    sessions = await serverapp.session_manager.list_sessions()
    paths = [
        normalize_path(s.get("path") or "")
        for s in sessions
        if (s.get("kernel") or {}).get("id") == kernel_id
    ]
    notebooks = sorted(p for p in paths if p.endswith(".ipynb"))
    return notebooks[0] if len(notebooks) == 1 else None


def managed_executor(
    serverapp: Any,
    kernel_id: str,
    loop: asyncio.AbstractEventLoop,
    *,
    timeout: float = 120.0,
    startup_timeout: float = 60.0,
    interrupt_grace: float = 10.0,
    max_output_bytes: int = 1_000_000,
) -> ManagedKernelExecutor:
    """An executor on the kernel ``kernel_id`` of this server, for use off the server loop.

    Its client connects with the kernel's own connection info (a fresh session id, so the
    kernel's replies come back to it and the browser's connection is unaffected); the
    liveness check and the interrupt go through the server's kernel manager on ``loop``.
    """
    kernels = serverapp.kernel_manager
    km = kernels.get_kernel(kernel_id)

    async def alive() -> bool:
        return bool(await km.is_alive())

    async def interrupt() -> None:
        try:
            await kernels.interrupt_kernel(kernel_id)
        except Exception:
            pass  # a dead kernel: the liveness check reports it

    def is_alive() -> bool:
        try:
            return asyncio.run_coroutine_threadsafe(alive(), loop).result(timeout=10)
        except concurrent.futures.TimeoutError:
            return True  # a busy server loop is not a dead kernel
        except Exception:
            return False

    def request_interrupt() -> None:
        asyncio.run_coroutine_threadsafe(interrupt(), loop)  # never wait: the loop may be the caller's

    return ManagedKernelExecutor(
        km.get_connection_info(),
        is_alive=is_alive,
        interrupt=request_interrupt,
        timeout=timeout,
        startup_timeout=startup_timeout,
        interrupt_grace=interrupt_grace,
        max_output_bytes=max_output_bytes,
    )


def kernel_busy(kernel_manager: Any, kernel_id: str) -> bool:
    """True when the server saw the kernel busy (e.g. running the cell that asked for a run)."""
    try:
        state = getattr(kernel_manager.get_kernel(kernel_id), "execution_state", "idle")
    except KeyError:
        return False
    return state == "busy"
