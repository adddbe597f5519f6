"""The notebook's own kernel, which a Jupyter server manages: the agent's hands in a live run.

The run talks to it through its own blocking client (a fresh session id, so the kernel's
replies come back to us and the browser's connection is untouched), from the run's
worker thread. Whatever must happen on the server (is the kernel alive, interrupt it)
is passed in as plain callables, so this module knows nothing of jupyter_server. The
user's kernel is never restarted: a cell that ignores its interrupt is left running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import KernelConnectionInfo

from ..errors import KernelError
from .channel import KernelChannel


class ManagedKernelExecutor(KernelChannel):
    """Executes the agent's cells in a kernel someone else started and owns."""

    def __init__(
        self,
        connection_info: dict[str, Any],
        *,
        is_alive: Callable[[], bool],
        interrupt: Callable[[], None],
        timeout: float = 120.0,
        max_output_bytes: int = 1_000_000,
        interrupt_grace: float = 10.0,
        startup_timeout: float = 60.0,
    ) -> None:
        """``connection_info``: the kernel's ports, transport and key (the manager's
        ``get_connection_info()``); ``is_alive``/``interrupt``: ask its manager."""
        super().__init__(
            timeout=timeout,
            max_output_bytes=max_output_bytes,
            interrupt_grace=interrupt_grace,
            startup_timeout=startup_timeout,
        )
        self.connection_info = connection_info
        self._alive = is_alive
        self._interrupt_kernel = interrupt
        self._lost = threading.Event()

    def open(self, timeout: float | None = None) -> ManagedKernelExecutor:
        """Connect and wait until the kernel answers and iopub delivers (no lost first outputs).

        Raises ``KernelError(ename="NoReply")`` when it does not answer in time (a kernel
        busy with the user's cell answers only when that cell ends).
        """
        with self._lock:
            if self._kc is not None:
                return self
            kc = BlockingKernelClient()
            kc.load_connection_info(cast(KernelConnectionInfo, self.connection_info))  # own Session id
            kc.start_channels()
            limit = self.startup_timeout if timeout is None else timeout
            deadline = time.monotonic() + limit
            while True:  # in slices: a stop while the user's cell keeps the kernel busy ends the wait
                try:
                    kc.wait_for_ready(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                    break
                except Exception as exc:
                    if self._stop.is_set() or time.monotonic() >= deadline:
                        kc.stop_channels()
                        if self._stop.is_set():
                            raise KernelError("the run was stopped", ename="Stopped") from None
                        raise KernelError(
                            f"the notebook's kernel did not answer within {limit:g}s: {exc}", ename="NoReply"
                        ) from None
            self._kc = kc
            return self

    def close(self) -> None:
        """Close our client (the kernel keeps running)."""
        with self._lock:
            kc, self._kc = self._kc, None
        if kc is not None:
            try:
                kc.stop_channels()
            except Exception:
                pass

    def mark_lost(self) -> None:
        """The server restarted or lost the kernel: every variable is gone, the run can't go on."""
        self._lost.set()

    # -- KernelChannel hooks ---------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._kc is None:
            self.open()

    def _is_alive(self) -> bool:
        if self._lost.is_set():
            return False
        try:
            return bool(self._alive())
        except Exception:
            return False

    def _interrupt(self) -> None:
        try:
            self._interrupt_kernel()
        except Exception:
            pass  # a dead kernel: noticed by the liveness check

    def _dead_message(self) -> str:
        return "the notebook's kernel is dead or was restarted; all variables are lost"
