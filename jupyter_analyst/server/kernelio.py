"""Talk to a notebook's own kernel (the one the Jupyter server manages) from the server.

The run and the DataFrame listing must not disturb the user's session: helper code runs
with ``silent=True, store_history=False`` (no execution count, no history, no
``execute_input`` broadcast) and wraps its work in a function that deletes itself, so
the user's namespace gains no names. Only the agent's own cells run non-silently.
"""

from __future__ import annotations

import asyncio
import queue
import time
from typing import Any

from ..kernel.executor import KernelError

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

TEARDOWN_CODE = r"""
def __jupyter_analyst_teardown():
    from IPython import get_ipython
    formatters = get_ipython().display_formatter.formatters
    for mime in ("application/vnd.jupyter-analyst.figure+json", "application/vnd.jupyter-analyst.frame+json"):
        formatters.pop(mime, None)

try:
    __jupyter_analyst_teardown()
finally:
    del __jupyter_analyst_teardown
"""
"""Removes the facts formatters ``SETUP_CODE`` installed, so the user's own later cells
don't save the private facts mime types into their notebook."""


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


def own_session(session: Any) -> Any:
    """A session with the kernel's key but a fresh id.

    ``km.client()`` reuses the manager's session, and the session id is the ZMQ identity of
    the client's shell socket: two such clients open at once (a run and a DataFrame
    listing, say) share one identity, and the kernel's replies go to whichever connected
    last. A fresh id per client keeps every reply with its sender.
    """
    from jupyter_client.session import Session

    return Session(key=session.key, signature_scheme=session.signature_scheme, username=session.username)


class KernelLink:
    """An async client on a server-managed kernel, opened for one job and closed after.

    A separate client (its own session id) sees replies to its own requests only, so the
    browser's connection to the same kernel is unaffected.
    """

    def __init__(self, kernel_manager: Any, kernel_id: str) -> None:
        self.kernel_manager = kernel_manager
        self.kernel_id = kernel_id
        self.km: Any = kernel_manager.get_kernel(kernel_id)
        self.kc: Any = None

    async def open(self, timeout: float = 30.0) -> KernelLink:
        """Start the channels and wait until iopub delivers (no lost first outputs)."""
        kc = self.km.client(session=own_session(self.km.session))
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=timeout)
        except Exception as exc:
            kc.stop_channels()
            raise KernelError(f"the notebook's kernel did not answer: {exc}", ename="NoReply") from exc
        self.kc = kc
        return self

    def close(self) -> None:
        if self.kc is not None:
            try:
                self.kc.stop_channels()
            except Exception:
                pass
            self.kc = None

    async def alive(self) -> bool:
        try:
            return bool(await self.km.is_alive())
        except Exception:
            return False

    async def interrupt(self) -> None:
        """Interrupt through the kernel manager (a signal or an interrupt request)."""
        try:
            await self.kernel_manager.interrupt_kernel(self.kernel_id)
        except Exception:
            pass

    async def reply(self, msg_id: str, timeout: float) -> dict[str, Any] | None:
        """The shell reply to ``msg_id`` within ``timeout`` seconds (other replies dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                msg = await self.kc.get_shell_msg(timeout=left)
            except (asyncio.TimeoutError, TimeoutError, Exception):
                return None
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                content: dict[str, Any] = msg["content"]
                return content

    async def run_silent(self, code: str, timeout: float = 30.0) -> str:
        """Run helper code invisibly and return its stdout.

        Raises ``KernelError`` when it fails, times out or the kernel dies: helper code
        is ours, so its failures are reported, never shown to the model.
        """
        assert self.kc is not None, "open() first"
        msg_id = self.kc.execute(
            code, silent=True, store_history=False, allow_stdin=False, stop_on_error=False
        )
        chunks: list[str] = []
        error: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() >= deadline:
                raise KernelError(
                    f"the kernel did not finish helper code within {timeout:g}s (is it busy?)",
                    ename="CellTimeoutError",
                )
            try:
                msg = await self.kc.get_iopub_msg(timeout=0.2)
            except Exception as exc:
                if not await self.alive():
                    raise KernelError("the kernel died", ename="DeadKernelError") from None
                if not isinstance(exc, queue.Empty):
                    await asyncio.sleep(0.2)  # closed channels: don't spin
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content.get("name") == "stdout":
                chunks.append(content.get("text", ""))
            elif kind == "error":
                error = content
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        if error is None:
            reply = await self.reply(msg_id, 2.0) or {}
            error = reply if reply.get("status") == "error" else None
        if error:
            ename, evalue = str(error.get("ename", "")), str(error.get("evalue", ""))
            raise KernelError(f"helper code failed: {ename}: {evalue}", ename=ename, evalue=evalue)
        return "".join(chunks)


def kernel_busy(kernel_manager: Any, kernel_id: str) -> bool:
    """True when the server saw the kernel busy (e.g. running the cell that asked for a run)."""
    try:
        state = getattr(kernel_manager.get_kernel(kernel_id), "execution_state", "idle")
    except KeyError:
        return False
    return state == "busy"
