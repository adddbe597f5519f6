"""One client on one Jupyter kernel: the agent's cells and our silent helper code.

The agent's cells are untrusted in the mundane sense: they loop forever, print 50 MB,
call ``os._exit``. ``KernelChannel`` waits for each request with a deadline, interrupts
a cell that overruns or floods, notices a dying kernel within half a second, and turns
all of it into a ``CellResult`` through the family's one classifier. Two kinds of kernel
share it: one we start ourselves (``KernelExecutor``, which may restart it) and the
notebook's own kernel on a Jupyter server (``ManagedKernelExecutor``, which never
restarts the user's kernel). Subclasses say only how to check, interrupt and recover.

Helper code (setup, facts, teardown) runs with ``silent=True, store_history=False`` and
is never interrupted: it may be queued behind the user's own cell, which is not ours to
stop. Stop (``stop()``, any thread) interrupts only an agent cell that is executing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..agent.types import CellResult
from ..errors import KernelError
from .facts import SETUP_CODE, TEARDOWN_CODE
from .outputs import Ending, OutputAccumulator, classify

OutputListener = Callable[[str, list[dict[str, Any]]], None]
"""Called with (cell id, outputs so far) as an agent cell's outputs arrive (live views)."""

POLL = 0.1
"""Seconds to block on iopub per wait; bounds how late we notice deadlines, stops and deaths."""
REPLY_GRACE = 1.0
"""After the shell reply, how long iopub may stay quiet before we stop waiting for idle
(a PUB socket may drop messages under load, including the idle status)."""
SILENT_STDOUT_CAP = 16_000_000


class KernelChannel:
    """Executes code on a kernel through a blocking client; implements the agent's ``Executor``.

    Not re-entrant: calls are serialised with a lock, as one kernel runs one cell at a time.
    """

    def __init__(
        self,
        *,
        timeout: float = 120.0,
        max_output_bytes: int = 1_000_000,
        max_single_output_bytes: int = 10_000_000,
        interrupt_grace: float = 10.0,
        stop_grace: float = 1.5,
        flood_factor: float = 10.0,
        startup_timeout: float = 60.0,
    ) -> None:
        """``interrupt_grace``: seconds an interrupted cell gets to stop before we recover
        (restart or leave it); ``stop_grace``: the same when the run is being stopped.
        ``max_single_output_bytes``: larger single outputs (huge images) are dropped.
        ``flood_factor``: interrupt a cell once it produced this many times
        ``max_output_bytes`` of dropped text, since draining a runaway print loop can take
        far longer than the useful part of the cell. ``startup_timeout`` bounds the setup."""
        self.timeout = timeout
        self.max_output_bytes = max_output_bytes
        self.max_single_output_bytes = max_single_output_bytes
        self.interrupt_grace = interrupt_grace
        self.stop_grace = stop_grace
        self.flood_factor = flood_factor
        self.startup_timeout = startup_timeout
        self.on_output: OutputListener | None = None
        self._kc: Any = None
        self._dead = False
        self._prepared = False
        self._pending: str | None = None
        self._stop = threading.Event()
        self._lock = threading.RLock()

    # -- what a kind of kernel must say ------------------------------------------------
    def _ensure_started(self) -> None:
        """Make ``_kc`` usable (start the kernel or connect); KernelError when it can't."""

    def _is_alive(self) -> bool:
        raise NotImplementedError

    def _interrupt(self) -> None:
        raise NotImplementedError

    def _recover(self, ending: Ending) -> None:
        """A cell ignored the interrupt: set ``restarted``/``lost`` or ``abandoned``."""
        ending.abandoned = True

    def _exit_detail(self) -> str:
        return ""

    def _dead_message(self) -> str:
        return "the kernel is dead (it died in an earlier cell); restart it to continue"

    # -- public ------------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        """True once ``stop()`` was called: the run this executor serves is ending."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Stop the run (thread-safe): an executing agent cell is interrupted within
        ``POLL`` seconds, waits are abandoned, and no new cell starts."""
        self._stop.set()

    def prepare(self, *, background: bool = False) -> None:
        """Run the silent setup (inline figures, facts formatters) once.

        ``background`` sends it and returns: importing matplotlib takes seconds, which
        a caller can spend waiting on the model; the next request waits for it first.
        """
        with self._lock:
            if self._prepared or self._stop.is_set():
                return  # a stopped run leaves the kernel as it found it
            self._ensure_started()
            self._prepared = True
            if background:
                self._pending = self._send_silent(SETUP_CODE)
            else:
                self._silent(SETUP_CODE, self.startup_timeout)

    def release(self) -> None:
        """Remove what ``prepare`` installed, best effort: the kernel outlives the run."""
        with self._lock:
            if not self._prepared or self._dead or self._kc is None:
                return
            self._prepared = False
            try:
                self._finish_pending()
                self._silent(TEARDOWN_CODE, 5.0, honour_stop=False)
            except KernelError:
                pass  # a busy or dead kernel keeps the formatters; the request still runs later

    def execute(self, code: str, cell_id: str = "") -> CellResult:
        """Run one agent cell as a notebook would and return its outputs and outcome."""
        with self._lock:
            if self._stop.is_set():
                return CellResult(
                    status="error", error_name="KeyboardInterrupt", error_value="the run was stopped"
                )
            if not self._dead:
                self._ensure_started()
                self._finish_pending()
            if self._dead or self._kc is None or not self._is_alive():
                self._dead = True
                return CellResult(
                    status="dead", error_name="DeadKernelError", error_value=self._dead_message()
                )
            acc = OutputAccumulator(self.max_output_bytes, self.max_single_output_bytes)
            listener = self.on_output
            flood_limit = self.flood_factor * self.max_output_bytes

            def handle(msg: dict[str, Any]) -> None:
                acc.handle(msg)
                if listener is not None and msg["msg_type"] != "execute_input":
                    listener(cell_id, acc.snapshot())

            started = time.monotonic()
            msg_id = self._kc.execute(
                code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False
            )
            ending = self._wait(
                msg_id, handle, self.timeout, agent=True, flooded=lambda: acc.omitted > flood_limit
            )
            return classify(
                acc,
                ending,
                duration=time.monotonic() - started,
                timeout=self.timeout,
                flood_limit=flood_limit,
            )

    def run_silent(self, code: str, timeout: float | None = None) -> str:
        """Run helper code invisibly (no history, no execution count); return its stdout.

        Raises ``KernelError`` (with ``ename``/``evalue``) when the code fails, times out,
        is stopped or kills the kernel: silent code is ours, so its failures are our bugs
        or the kernel's state, never something to show the model.
        """
        with self._lock:
            if not self._dead:
                self._ensure_started()
                self._finish_pending()
            return self._silent(code, self.timeout if timeout is None else timeout)

    # -- internals ---------------------------------------------------------------------
    def _send_silent(self, code: str) -> str:
        if self._dead or self._kc is None:
            raise KernelError(self._dead_message(), ename="DeadKernelError")
        msg_id: str = self._kc.execute(
            code, silent=True, store_history=False, allow_stdin=False, stop_on_error=False
        )
        return msg_id

    def _finish_pending(self) -> None:
        """Wait for the background setup; its failure is ours and raises."""
        if self._pending is not None:
            msg_id, self._pending = self._pending, None
            self._collect_silent(msg_id, self.startup_timeout, honour_stop=True, what="the kernel setup")

    def _silent(self, code: str, timeout: float, honour_stop: bool = True) -> str:
        return self._collect_silent(self._send_silent(code), timeout, honour_stop, "silent code")

    def _collect_silent(self, msg_id: str, limit: float, honour_stop: bool, what: str) -> str:
        chunks: list[str] = []
        size = 0
        errors: list[dict[str, Any]] = []

        def handle(msg: dict[str, Any]) -> None:
            nonlocal size
            if msg["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
                text = msg["content"].get("text", "")
                if size < SILENT_STDOUT_CAP:
                    chunks.append(text)
                    size += len(text)
            elif msg["msg_type"] == "error":
                errors.append(msg["content"])

        ending = self._wait(msg_id, handle, limit, agent=False, honour_stop=honour_stop)
        if ending.died:
            raise KernelError(f"the kernel died running {what}{ending.exit_detail}", ename="DeadKernelError")
        if ending.stopped:
            raise KernelError("the run was stopped", ename="Stopped")
        if ending.timed_out:
            raise KernelError(
                f"the kernel did not finish {what} within {limit:g}s (is it busy?)", ename="CellTimeoutError"
            )
        reply = ending.reply or {}
        error = errors[0] if errors else (reply if reply.get("status") == "error" else None)
        if error:
            ename, evalue = str(error.get("ename", "")), str(error.get("evalue", ""))
            raise KernelError(
                f"{what} failed: {ename}: {evalue}",
                ename=ename,
                evalue=evalue,
                traceback=[str(line) for line in error.get("traceback", [])],
            )
        return "".join(chunks)

    def _wait(
        self,
        msg_id: str,
        handle: Callable[[dict[str, Any]], None],
        timeout: float | None,
        *,
        agent: bool,
        flooded: Callable[[], bool] = lambda: False,
        honour_stop: bool = True,
    ) -> Ending:
        """Drain iopub for ``msg_id`` until idle, enforcing the deadline, stops and deaths.

        Only an agent cell is ever interrupted; a helper request that overruns or is
        stopped is simply no longer waited for.
        """
        kc = self._kc
        ending = Ending()
        start = last_alive = time.monotonic()
        interrupted_at: float | None = None
        grace = self.interrupt_grace
        reply_at: float | None = None
        while True:
            now = time.monotonic()
            if interrupted_at is None:
                if timeout is not None and now - start >= timeout:
                    ending.timed_out = True
                elif agent and flooded():
                    ending.flooded = True
                elif honour_stop and self._stop.is_set():
                    ending.stopped = True
                if ending.timed_out or ending.flooded or ending.stopped:
                    if not agent:
                        return ending
                    self._interrupt()
                    interrupted_at = now
                    grace = self.stop_grace if ending.stopped else self.interrupt_grace
            elif now - interrupted_at >= grace:
                if not ending.stopped:
                    self._recover(ending)  # a stopping run never waits on a restart
                return ending
            if now - last_alive >= 0.5:
                last_alive = now
                if not self._is_alive():
                    return self._died(ending)
            try:
                msg = kc.get_iopub_msg(timeout=POLL)
            except queue.Empty:
                if ending.reply is None:
                    ending.reply = self._poll_reply(msg_id, 0)
                    reply_at = now if ending.reply is not None else None
                elif reply_at is not None and now - reply_at >= REPLY_GRACE:
                    return ending
                continue
            except Exception:  # channels closed under us: don't spin
                if not self._is_alive():
                    return self._died(ending)
                time.sleep(POLL)
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"].get("execution_state") == "idle":
                    ending.idle = True
                    break
                continue
            handle(msg)
        deadline = time.monotonic() + 5.0
        while ending.reply is None and time.monotonic() < deadline:
            ending.reply = self._poll_reply(msg_id, POLL)
            if ending.reply is None and not self._is_alive():
                return self._died(ending)
        return ending

    def _died(self, ending: Ending) -> Ending:
        self._dead = True
        ending.died = True
        ending.exit_detail = self._exit_detail()
        return ending

    def _poll_reply(self, msg_id: str, timeout: float) -> dict[str, Any] | None:
        """The shell reply to ``msg_id`` if one is ready within ``timeout`` (others dropped)."""
        while True:
            try:
                msg = self._kc.get_shell_msg(timeout=timeout)
            except queue.Empty:
                return None
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                content: dict[str, Any] = msg["content"]
                return content
