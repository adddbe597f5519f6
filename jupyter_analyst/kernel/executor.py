"""Run model-written code in a real Jupyter kernel and record what a notebook would show.

The agent's cells are untrusted in the mundane sense: they loop forever, print 50 MB,
call ``os._exit``. ``KernelExecutor`` turns each of those into a ``CellResult`` the loop
can show the model (timeout, truncated, dead) instead of a hang, and keeps the kernel
usable where it can (interrupt, then restart as a last resort).
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import nbformat
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from jupyter_analyst.agent.observe import strip_ansi
from jupyter_analyst.agent.types import CellResult
from jupyter_analyst.errors import AnalystError
from jupyter_analyst.kernel.facts import FACTS_MIMES, SETUP_CODE

__all__ = ["KernelError", "KernelExecutor"]

_POLL = 0.1
"""Seconds to block on iopub per wait; bounds how late we notice deadlines and deaths."""
_REPLY_GRACE = 1.0
"""After the shell reply, how long iopub may stay quiet before we stop waiting for idle
(a PUB socket may drop messages under load, including the idle status)."""
_SILENT_STDOUT_CAP = 16_000_000


class KernelError(AnalystError, RuntimeError):
    """A problem in *our* use of the kernel (failed start, failing setup or silent code).

    Errors in the model's code never raise: they come back as a ``CellResult``.
    """

    def __init__(
        self, message: str, ename: str = "", evalue: str = "", traceback: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback or []


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 form fits in ``limit`` bytes."""
    if limit <= 0:
        return ""
    cut = text[:limit]
    while _utf8_len(cut) > limit:
        cut = cut[: max(0, len(cut) - (_utf8_len(cut) - limit + 3) // 4 - 1)]
    return cut


def _bundle_sizes(data: dict[str, Any]) -> tuple[int, int]:
    """(text bytes, total bytes) of a mime bundle; images count only towards the total."""
    text = total = 0
    for mime, value in data.items():
        size = _utf8_len(value) if isinstance(value, str) else _utf8_len(repr(value))
        total += size
        if not mime.startswith("image/"):
            text += size
    return text, total


class _Outputs:
    """Builds a cell's nbformat outputs from iopub messages, as a notebook front end would.

    Consecutive stream chunks of one name are merged, ``clear_output`` (including
    ``wait=True``) is honoured, text is capped at ``cap`` bytes and the private facts
    mime types are moved out into ``facts``.
    """

    def __init__(self, cap: int, single_cap: int) -> None:
        self.cap = cap
        self.single_cap = single_cap
        self.outputs: list[dict[str, Any]] = []
        self.facts: list[dict[str, Any]] = []
        self.used = 0
        self.omitted = 0
        self.dropped_large = 0
        self.clear_pending = False
        self.execution_count: int | None = None
        self.error: dict[str, Any] | None = None
        self._chunks: list[str] | None = None  # pending text of outputs[-1] when it is a stream
        self._displays: dict[str, list[int]] = {}

    # -- helpers -------------------------------------------------------------------------
    def _flush_stream(self) -> None:
        if self._chunks is not None:
            self.outputs[-1]["text"] = "".join(self._chunks)
            self._chunks = None

    def _clear(self) -> None:
        self.outputs.clear()
        self.facts.clear()  # facts describe what is visible, as the notebook shows it
        self._chunks = None
        self._displays.clear()
        self.used = 0
        self.omitted = 0
        self.dropped_large = 0
        self.clear_pending = False

    def _take_text(self, text: str) -> str:
        """Charge ``text`` against the cap; return the part that may be stored."""
        size = _utf8_len(text)
        room = self.cap - self.used
        if size <= room:
            self.used += size
            return text
        kept = _cut_utf8(text, room)
        kept_size = _utf8_len(kept)
        self.used += kept_size
        self.omitted += size - kept_size
        return kept

    def _extract_facts(self, data: dict[str, Any]) -> None:
        for mime, kind in FACTS_MIMES.items():
            value = data.pop(mime, None)
            fact = {"type": kind, **value} if isinstance(value, dict) else None
            if fact is not None and fact not in self.facts:  # `fig` as last line shows twice
                self.facts.append(fact)

    def _append(self, output: dict[str, Any]) -> None:
        self._flush_stream()
        self.outputs.append(output)

    # -- message handling ----------------------------------------------------------------
    def handle(self, msg: dict[str, Any]) -> None:
        """Fold one iopub message (already filtered to our request) into the outputs."""
        msg_type = msg["msg_type"]
        content = msg["content"]
        if msg_type == "execute_input":
            self.execution_count = content.get("execution_count")
            return
        if msg_type == "clear_output":
            if content.get("wait"):
                self.clear_pending = True
            else:
                self._clear()
            return
        if msg_type == "update_display_data":
            self._update_display(content)
            return
        if msg_type not in ("stream", "display_data", "execute_result", "error"):
            return
        if self.clear_pending:
            self._clear()
        if msg_type == "execute_result":
            self.execution_count = content.get("execution_count", self.execution_count)
        if msg_type == "stream":
            self._stream(content.get("name", "stdout"), content.get("text", ""))
            return
        output = nbformat.v4.output_from_msg(msg)
        if msg_type == "error":
            self.error = content
            self._append(output)
            return
        data = output.get("data", {})
        self._extract_facts(data)
        metadata = output.get("metadata", {})
        for mime in FACTS_MIMES:
            metadata.pop(mime, None)
        if not data:
            return
        text_size, total = _bundle_sizes(data)
        if total > self.single_cap:
            self.dropped_large += 1
            self.omitted += text_size
            return
        if text_size > self.cap - self.used:
            self.omitted += text_size
            self.used = self.cap  # later smaller text must not slip in out of order
            return
        self.used += text_size
        display_id = content.get("transient", {}).get("display_id")
        if display_id:
            self._displays.setdefault(display_id, []).append(len(self.outputs))
        self._append(output)

    def _stream(self, name: str, text: str) -> None:
        kept = self._take_text(text)
        if not kept:
            return
        last = self.outputs[-1] if self.outputs else None
        if last is not None and last.get("output_type") == "stream" and last.get("name") == name:
            if self._chunks is None:
                self._chunks = [last["text"]]
            self._chunks.append(kept)
            return
        self._append(nbformat.v4.new_output("stream", name=name, text=""))
        self._chunks = [kept]

    def _update_display(self, content: dict[str, Any]) -> None:
        display_id = content.get("transient", {}).get("display_id")
        data = dict(content.get("data", {}))
        self._extract_facts(data)
        self._flush_stream()
        for index in self._displays.get(display_id or "", []):
            if index < len(self.outputs):
                self.outputs[index]["data"] = nbformat.from_dict(data)
                self.outputs[index]["metadata"] = nbformat.from_dict(content.get("metadata", {}))

    def finish(self) -> tuple[list[dict[str, Any]], bool]:
        """Final outputs (with a truncation note when text was dropped) and ``truncated``."""
        self._flush_stream()
        notes = []
        if self.omitted:
            notes.append(f"[... output truncated: {self.omitted} bytes omitted ...]")
        if self.dropped_large:
            notes.append(f"[... {self.dropped_large} output(s) over {self.single_cap} bytes omitted ...]")
        if notes:
            note = "\n" + "\n".join(notes) + "\n"
            last = self.outputs[-1] if self.outputs else None
            if last is not None and last.get("output_type") == "stream" and last.get("name") == "stdout":
                last["text"] += note
            else:
                self.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=note.lstrip("\n")))
        return self.outputs, bool(notes)


class _Wait:
    """What happened while waiting for one request to finish."""

    def __init__(self) -> None:
        self.reply: dict[str, Any] | None = None
        self.idle = False
        self.timed_out = False
        self.flooded = False
        self.restarted = False
        self.died = False


class KernelExecutor:
    """Executes code cells in a local ipykernel; implements the agent's ``Executor``.

    Not re-entrant: calls are serialised with a lock, as one kernel runs one cell at a time.
    """

    def __init__(
        self,
        cwd: str | Path | None = None,
        timeout: float = 120.0,
        max_output_bytes: int = 1_000_000,
        startup_timeout: float = 60.0,
        kernel_name: str = "python3",
        env: dict[str, str] | None = None,
        *,
        interrupt_grace: float = 10.0,
        max_single_output_bytes: int = 10_000_000,
        flood_factor: float = 10.0,
    ) -> None:
        """``interrupt_grace``: seconds an interrupted cell gets to stop before the kernel
        is restarted. ``max_single_output_bytes``: larger single outputs (huge images) are
        dropped. ``flood_factor``: interrupt a cell once it produced this many times
        ``max_output_bytes`` of dropped text, since draining a runaway print loop can take
        far longer than the useful part of the cell."""
        self.cwd = Path(cwd) if cwd is not None else None
        self.timeout = timeout
        self.max_output_bytes = max_output_bytes
        self.startup_timeout = startup_timeout
        self.kernel_name = kernel_name
        self.env = dict(env) if env else {}
        self.interrupt_grace = interrupt_grace
        self.max_single_output_bytes = max_single_output_bytes
        self.flood_factor = flood_factor
        self._km: KernelManager | None = None
        self._kc: BlockingKernelClient | None = None
        self._ipc_dir: str | None = None
        self._kernel_log: BinaryIO | None = None
        self._dead = False
        self._lock = threading.RLock()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the kernel and a client, wait until it answers, run the silent setup."""
        with self._lock:
            if self._km is not None:
                return
            # IPC sockets in a private directory: no TCP port races and no
            # "running over TCP without encryption" warning from ipykernel 7.
            self._ipc_dir = tempfile.mkdtemp(prefix="ja-kernel-")
            km = KernelManager(
                kernel_name=self.kernel_name, transport="ipc", ip=os.path.join(self._ipc_dir, "k")
            )
            km.shutdown_wait_time = 2.0
            env = {**os.environ, **self.env}
            # The kernel's own stdout/stderr (start-up notices, tracebacks of an interrupt
            # during shutdown) must not mix into our caller's terminal.
            log = self._kernel_log = open(os.path.join(self._ipc_dir, "kernel.log"), "ab")  # noqa: SIM115
            try:
                km.start_kernel(
                    cwd=str(self.cwd) if self.cwd else None,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            except Exception as exc:
                log.close()
                self._kernel_log = None
                shutil.rmtree(self._ipc_dir, ignore_errors=True)
                raise KernelError(f"could not start kernel {self.kernel_name!r}: {exc}") from exc
            self._km = km
            self._dead = False
            try:
                self._connect()
                self.run_silent(SETUP_CODE, timeout=self.startup_timeout)
            except KernelError:
                self.shutdown()
                raise
            except Exception as exc:
                self.shutdown()
                raise KernelError(f"kernel {self.kernel_name!r} did not become ready: {exc}") from exc

    def _connect(self) -> None:
        assert self._km is not None
        kc = self._km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=self.startup_timeout)
        except RuntimeError as exc:
            kc.stop_channels()
            raise KernelError(f"kernel did not become ready: {exc}") from exc
        self._kc = kc

    def restart(self) -> None:
        """Restart the kernel process (all state is lost) and run the setup again."""
        with self._lock:
            if self._km is None:
                self.start()
                return
            if self._kc is not None:
                self._kc.stop_channels()
                self._kc = None
            try:
                self._km.restart_kernel(now=True)
            except Exception as exc:
                self._dead = True
                raise KernelError(f"could not restart kernel: {exc}") from exc
            self._dead = False
            self._connect()
            self.run_silent(SETUP_CODE, timeout=self.startup_timeout)

    def shutdown(self) -> None:
        """Stop the kernel and the client; safe to call twice, never waits long."""
        with self._lock:
            kc, km = self._kc, self._km
            self._kc = self._km = None
            if kc is not None:
                try:
                    kc.stop_channels()
                except Exception:
                    pass
            if km is not None:
                try:
                    km.shutdown_kernel(now=self._dead or not km.is_alive())
                except Exception:
                    try:
                        km.shutdown_kernel(now=True)
                    except Exception:
                        pass
            if self._kernel_log is not None:
                self._kernel_log.close()
                self._kernel_log = None
            if self._ipc_dir:
                shutil.rmtree(self._ipc_dir, ignore_errors=True)
                self._ipc_dir = None

    @property
    def alive(self) -> bool:
        """True when the kernel is started and its process is running."""
        return self._km is not None and not self._dead and self._km.is_alive()

    def __enter__(self) -> KernelExecutor:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    # -- waiting ---------------------------------------------------------------------------
    def _interrupt(self) -> None:
        assert self._km is not None
        try:
            self._km.interrupt_kernel()
        except Exception:
            pass  # the grace period then ends in a restart

    def _wait(
        self,
        msg_id: str,
        handle: Callable[[dict[str, Any]], None],
        timeout: float | None,
        flooded: Callable[[], bool] = lambda: False,
    ) -> _Wait:
        """Drain iopub for ``msg_id`` until idle, enforcing the deadline and noticing deaths."""
        assert self._km is not None and self._kc is not None
        km, kc = self._km, self._kc
        state = _Wait()
        start = time.monotonic()
        interrupted_at: float | None = None
        reply_at: float | None = None
        last_alive = start
        while True:
            now = time.monotonic()
            if interrupted_at is None:
                if timeout is not None and now - start >= timeout:
                    state.timed_out = True
                elif flooded():
                    state.flooded = True
                if state.timed_out or state.flooded:
                    self._interrupt()
                    interrupted_at = now
            elif now - interrupted_at >= self.interrupt_grace:
                self._restart_after_hang()
                state.restarted = True
                return state
            if now - last_alive >= 0.5:
                last_alive = now
                if not km.is_alive():
                    state.died = True
                    return state
            try:
                msg = kc.get_iopub_msg(timeout=_POLL)
            except queue.Empty:
                if state.reply is None:
                    state.reply = self._poll_reply(msg_id, 0)
                    reply_at = now if state.reply is not None else None
                elif reply_at is not None and now - reply_at >= _REPLY_GRACE:
                    return state
                if not km.is_alive():
                    state.died = True
                    return state
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"].get("execution_state") == "idle":
                    state.idle = True
                    break
                continue
            handle(msg)
        if state.reply is None:
            deadline = time.monotonic() + 5.0
            while state.reply is None and time.monotonic() < deadline:
                state.reply = self._poll_reply(msg_id, _POLL)
                if state.reply is None and not km.is_alive():
                    state.died = True
                    break
        return state

    def _poll_reply(self, msg_id: str, timeout: float) -> dict[str, Any] | None:
        """The shell reply to ``msg_id`` if one is ready within ``timeout`` (others dropped)."""
        assert self._kc is not None
        while True:
            try:
                msg = self._kc.get_shell_msg(timeout=timeout)
            except queue.Empty:
                return None
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                content: dict[str, Any] = msg["content"]
                return content

    def _restart_after_hang(self) -> None:
        try:
            self.restart()
        except Exception:
            self._dead = True

    def _exit_code(self) -> str:
        process = getattr(getattr(self._km, "provisioner", None), "process", None)
        code = getattr(process, "returncode", None)
        return f" (exit code {code})" if code is not None else ""

    # -- public execution --------------------------------------------------------------------
    def execute(self, code: str) -> CellResult:
        """Run one cell as a notebook would and return its outputs and outcome."""
        with self._lock:
            if self._km is None and not self._dead:
                self.start()
            if self._dead or self._km is None or self._kc is None:
                return CellResult(
                    status="dead",
                    error_name="DeadKernelError",
                    error_value="the kernel is dead (it died in an earlier cell); restart it to continue",
                )
            acc = _Outputs(self.max_output_bytes, self.max_single_output_bytes)
            flood_limit = self.flood_factor * self.max_output_bytes
            started = time.monotonic()
            msg_id = self._kc.execute(
                code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False
            )
            state = self._wait(msg_id, acc.handle, self.timeout, lambda: acc.omitted > flood_limit)
            duration = time.monotonic() - started
            outputs, truncated = acc.finish()
            reply = state.reply or {}
            count = reply.get("execution_count", acc.execution_count)
            result = CellResult(
                status="ok",
                outputs=outputs,
                execution_count=count,
                duration=duration,
                truncated=truncated,
                facts=acc.facts,
            )
            error = acc.error or (reply if reply.get("status") == "error" else None)
            if error:
                result.error_name = str(error.get("ename", ""))
                result.error_value = str(error.get("evalue", ""))
                result.traceback = [strip_ansi(line) for line in error.get("traceback", [])]
            if state.died:
                self._dead = True
                result.status = "dead"
                result.error_name = "DeadKernelError"
                result.error_value = (
                    f"the kernel died while running this cell{self._exit_code()}; all variables are lost"
                )
            elif state.timed_out:
                result.status = "timeout"
                result.error_name = "CellTimeoutError"
                result.error_value = f"cell exceeded {self.timeout:g}s and was interrupted"
                if state.restarted:
                    result.error_value = (
                        f"cell exceeded {self.timeout:g}s and did not stop when interrupted, so the kernel "
                        "was restarted; all variables are lost"
                    )
                    if self._dead:
                        result.status = "dead"
            elif state.flooded and (state.restarted or reply.get("status") != "ok"):
                result.status = "error"
                result.error_name = "OutputLimitError"
                result.error_value = (
                    f"cell printed more than {int(flood_limit):,} bytes of output and was interrupted"
                    + (
                        "; the kernel had to be restarted and all variables are lost"
                        if state.restarted
                        else ""
                    )
                    + "; print summaries (df.head(), describe()) instead"
                )
            elif error or reply.get("status") == "error":
                result.status = "error"
            elif not state.idle and state.reply is None:
                # Idle never came and no reply either, yet the kernel lives: treat as lost.
                result.status = "error"
                result.error_name = "KernelProtocolError"
                result.error_value = "no reply from the kernel for this cell"
            return result

    def run_silent(self, code: str, timeout: float | None = None) -> str:
        """Run helper code invisibly (no history, no execution count); return its stdout.

        Raises ``KernelError`` (with ``ename``/``evalue``) when the code fails, times out
        or kills the kernel: silent code is ours, so its failures are our bugs.
        """
        with self._lock:
            if self._km is None and not self._dead:
                self.start()
            if self._dead or self._km is None or self._kc is None:
                raise KernelError("the kernel is dead", ename="DeadKernelError")
            chunks: list[str] = []
            size = [0]
            errors: list[dict[str, Any]] = []

            def handle(msg: dict[str, Any]) -> None:
                if msg["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
                    text = msg["content"].get("text", "")
                    if size[0] < _SILENT_STDOUT_CAP:
                        chunks.append(text)
                        size[0] += len(text)
                elif msg["msg_type"] == "error":
                    errors.append(msg["content"])

            limit = self.timeout if timeout is None else timeout
            msg_id = self._kc.execute(
                code, silent=True, store_history=False, allow_stdin=False, stop_on_error=False
            )
            state = self._wait(msg_id, handle, limit)
            if state.died:
                self._dead = True
                raise KernelError(
                    f"the kernel died running silent code{self._exit_code()}", ename="DeadKernelError"
                )
            if state.timed_out:
                extra = " (kernel restarted)" if state.restarted else ""
                raise KernelError(f"silent code exceeded {limit:g}s{extra}", ename="CellTimeoutError")
            reply = state.reply or {}
            error = errors[0] if errors else (reply if reply.get("status") == "error" else None)
            if error:
                ename, evalue = str(error.get("ename", "")), str(error.get("evalue", ""))
                tb = [strip_ansi(line) for line in error.get("traceback", [])]
                raise KernelError(
                    f"silent code failed: {ename}: {evalue}", ename=ename, evalue=evalue, traceback=tb
                )
            return "".join(chunks)
