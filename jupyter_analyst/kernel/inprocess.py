"""This very IPython shell as the agent's kernel: the ``%analyst`` magic outside a server.

The magic runs inside its own cell, so the agent's output would otherwise land under it:
stdout, stderr, displays, the last expression and tracebacks (which ipykernel would
publish straight to the front end) are captured as iopub-like messages and folded by
the family's ``OutputAccumulator``; ``classify`` turns the outcome into a ``CellResult``.
A cell over ``timeout`` is interrupted with ``SIGALRM`` (main thread, POSIX); an
interrupt of the kernel itself (the user's stop) stops the run.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

from ..agent.types import CellResult
from ..errors import KernelError
from .channel import OutputListener
from .facts import SETUP_CODE, TEARDOWN_CODE
from .outputs import Ending, OutputAccumulator, classify


class _Stream:
    """A file whose writes become ``stream`` messages."""

    def __init__(self, sink: list[dict[str, Any]], name: str) -> None:
        self.sink, self.name = sink, name

    def write(self, text: str) -> int:
        if text:
            self.sink.append({"msg_type": "stream", "content": {"name": self.name, "text": text}})
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class _Displays(list):  # type: ignore[type-arg]
    """What IPython's capturing publisher and display hook append to, as iopub-like messages."""

    def __init__(self, sink: list[dict[str, Any]]) -> None:
        super().__init__()
        self.sink = sink

    def append(self, item: Any) -> None:
        content = {
            "data": item.get("data") or {},
            "metadata": item.get("metadata") or {},
            "transient": item.get("transient") or {},
        }
        self.sink.append({"msg_type": "display_data", "content": content})


class _CellTimeout(Exception):
    pass


class InProcessExecutor:
    """Runs the agent's cells in an IPython shell's namespace; implements ``Executor``."""

    def __init__(self, shell: Any, timeout: float = 120.0, max_output_bytes: int = 1_000_000) -> None:
        self.shell = shell
        self.timeout = timeout
        self.max_output_bytes = max_output_bytes
        self.max_single_output_bytes = 10 * max_output_bytes
        self.on_output: OutputListener | None = None
        self._stop = threading.Event()
        self._prepared = False

    # -- the family's interface --------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """End the run after the current cell (a running cell can only be interrupted by
        the kernel's own interrupt, which also lands here)."""
        self._stop.set()

    def prepare(self, *, background: bool = False) -> None:
        if not self._prepared:
            self.run_silent(SETUP_CODE)
            self._prepared = True

    def release(self) -> None:
        if self._prepared:
            self._prepared = False
            try:
                self.run_silent(TEARDOWN_CODE)
            except KernelError:
                pass

    def run_silent(self, code: str, timeout: float | None = None) -> str:
        """Run IPython-syntax helper code without history; return what it printed."""
        sink: list[dict[str, Any]] = []
        result, _, _ = self._run(code, sink, silent=True)
        error = result.error_in_exec or result.error_before_exec
        if error is not None:
            name = type(error).__name__
            raise KernelError(f"silent code failed: {name}: {error}", ename=name, evalue=str(error))
        return "".join(m["content"]["text"] for m in sink if m["msg_type"] == "stream")

    def execute(self, code: str, cell_id: str = "") -> CellResult:
        """Run one agent cell; return a ``CellResult`` like a kernel's."""
        if self._stop.is_set():
            return CellResult(
                status="error", error_name="KeyboardInterrupt", error_value="the run was stopped"
            )
        sink: list[dict[str, Any]] = []
        started = time.monotonic()
        result, error, timed_out = self._run(code, sink)
        acc = OutputAccumulator(self.max_output_bytes, self.max_single_output_bytes)
        for msg in sink:
            acc.handle({"msg_type": msg["msg_type"], "header": {"msg_type": msg["msg_type"]}, **msg})
        exc = result.error_in_exec or result.error_before_exec
        reply: dict[str, Any] = {"status": "ok"}
        if exc is not None:
            ename = "CellTimeoutError" if timed_out else type(exc).__name__
            content = {"ename": ename, "evalue": str(exc), "traceback": list(error[2]) if error else []}
            acc.handle({"msg_type": "error", "header": {"msg_type": "error"}, "content": content})
            reply = {"status": "error", **content}
            if isinstance(exc, KeyboardInterrupt):
                self._stop.set()  # the user interrupted the kernel: that stops the run
        if self.on_output is not None:
            self.on_output(cell_id, acc.snapshot())
        ending = Ending(idle=True, reply=reply, timed_out=timed_out)
        return classify(
            acc,
            ending,
            duration=time.monotonic() - started,
            timeout=self.timeout,
            flood_limit=float(self.max_output_bytes),
        )

    # -- capture -----------------------------------------------------------------------
    def _run(self, code: str, sink: list[dict[str, Any]], silent: bool = False) -> tuple[Any, Any, bool]:
        from IPython.core.displayhook import CapturingDisplayHook
        from IPython.core.displaypub import CapturingDisplayPublisher

        shell = self.shell
        errors: list[tuple[Any, Any, list[str]]] = []
        saved_trap_hook = shell.display_trap.hook
        saved = (
            sys.stdout,
            sys.stderr,
            shell.display_pub,
            sys.displayhook,
            shell.__dict__.get("_showtraceback"),
        )
        publisher = CapturingDisplayPublisher()
        publisher.outputs = _Displays(sink)
        alarm = (
            not silent
            and self.timeout > 0
            and hasattr(signal, "SIGALRM")
            and threading.current_thread() is threading.main_thread()
        )
        previous_handler: Any = None
        previous_timer = (0.0, 0.0)
        started = time.monotonic()

        def on_alarm(signum: int, frame: Any) -> None:
            raise _CellTimeout(f"cell exceeded {self.timeout:g}s and was interrupted")

        try:
            sys.stdout, sys.stderr = _Stream(sink, "stdout"), _Stream(sink, "stderr")  # type: ignore[assignment]
            shell.display_pub = publisher
            sys.displayhook = hook = CapturingDisplayHook(shell=shell, outputs=_Displays(sink))
            shell.display_trap.hook = hook  # run_cell's trap installs this hook when not nested
            shell._showtraceback = lambda etype, evalue, stb: errors.append((etype, evalue, stb))
            if alarm:
                previous_handler = signal.signal(signal.SIGALRM, on_alarm)
                previous_timer = signal.setitimer(signal.ITIMER_REAL, self.timeout)
            result = shell.run_cell(code, store_history=False, silent=silent)
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous_handler)
                if previous_timer[0] > 0:  # someone else's alarm (pytest-timeout, say) goes on
                    left = previous_timer[0] - (time.monotonic() - started)
                    signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), previous_timer[1])
            sys.stdout, sys.stderr, shell.display_pub, sys.displayhook = saved[:4]
            shell.display_trap.hook = saved_trap_hook
            if saved[4] is None:
                shell.__dict__.pop("_showtraceback", None)
            else:
                shell._showtraceback = saved[4]
        error = result.error_in_exec or result.error_before_exec
        return result, errors[0] if errors else None, isinstance(error, _CellTimeout)
