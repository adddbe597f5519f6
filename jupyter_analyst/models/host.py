"""Start, watch and stop the embedded model worker from the caller's process.

The caller (the Jupyter server extension, the CLI) must survive whatever happens to the
model: the worker runs as a child process, its stderr goes to a log file (a full pipe
could otherwise block it), and every failure reaches the caller as ``BackendError``.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..agent.types import AssistantTurn, Message, ToolSpec
from ..errors import BackendError
from .openai_client import OpenAIChatPolicy

SECRET_ENV = "JUPYTER_ANALYST_WORKER_SECRET"
WATCH_STDIN_ENV = "JUPYTER_ANALYST_WORKER_WATCH_STDIN"
STOP_GRACE_S = 5.0


def _terminate(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; safe to call on a dead process."""
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
        except OSError:
            pass
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


class EmbeddedModel:
    """A local model served by a worker process over an OpenAI-compatible API.

    ``quantization="auto"`` lets the worker choose (4-bit NF4 on CUDA, none on CPU) so this
    process never imports torch.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        adapter: str | os.PathLike[str] | None = None,
        quantization: str = "auto",
        device: str = "auto",
        max_new_tokens: int = 2048,
        enable_thinking: bool = False,
        startup_timeout: float = 900.0,
        env: Mapping[str, str] | None = None,
        dtype: str = "auto",
        extra_args: list[str] | None = None,
        keep_log: bool = False,
        constrained: bool | None = None,
        cache: str = "dynamic",
        compile: bool = False,
        max_context: int | None = None,
    ) -> None:
        if quantization not in ("auto", "4bit", "8bit", "none"):
            raise ValueError(f"quantization must be auto, 4bit, 8bit or none, not {quantization!r}")
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
        self.model = str(model)
        self.adapter = str(adapter) if adapter is not None else None
        self.quantization = quantization
        self.device = device
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        self.enable_thinking = enable_thinking
        self.startup_timeout = startup_timeout
        self.env = dict(env or {})
        self.extra_args = list(extra_args or [])
        self.keep_log = keep_log
        self.constrained = constrained
        """Grammar-constrained tool calls: True/False, or None for "where the library is installed"."""
        if cache not in ("dynamic", "static"):
            raise ValueError(f"cache must be dynamic or static, not {cache!r}")
        self.cache = cache
        self.compile = compile
        self.max_context = max_context
        self.kernels: dict[str, Any] = {}
        """The worker's ``fastpath.kernel_report``: which linear-attention kernels it runs on."""
        self.api_key = ""
        self.port: int | None = None
        self.model_name = ""
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.Lock()
        self.startup_seconds = 0.0

    # -- lifecycle --------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The worker's command line (no secret on it: that travels in the environment)."""
        cmd = [
            sys.executable,
            "-m",
            "jupyter_analyst.models.worker",
            "--model",
            self.model,
            "--quantization",
            self.quantization,
            "--device",
            self.device,
            "--dtype",
            self.dtype,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--max-new-tokens",
            str(self.max_new_tokens),
            "--enable-thinking" if self.enable_thinking else "--no-thinking",
            "--constrained",
            {None: "auto", True: "on", False: "off"}[self.constrained],
        ]
        if self.adapter:
            cmd += ["--adapter", self.adapter]
        if self.cache != "dynamic":
            cmd += ["--cache", self.cache]
        if self.compile:
            cmd.append("--compile")
        if self.max_context:
            cmd += ["--max-context", str(self.max_context)]
        return cmd + self.extra_args

    def start(self) -> EmbeddedModel:
        """Spawn the worker and wait for its ready line; raise ``BackendError`` if it fails."""
        with self._lock:
            if self.running:
                return self
            self.api_key = secrets.token_urlsafe(32)
            env = {**os.environ, **self.env, SECRET_ENV: self.api_key, WATCH_STDIN_ENV: "1"}
            env.setdefault("PYTHONUNBUFFERED", "1")
            fd, log_name = tempfile.mkstemp(prefix="jupyter-analyst-worker-", suffix=".log")
            self.log_path = Path(log_name)
            with os.fdopen(fd, "wb") as log_file:
                try:
                    proc = subprocess.Popen(
                        self.command(),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log_file,
                        env=env,
                        close_fds=True,
                    )
                except OSError as exc:
                    raise BackendError(f"cannot start the model worker: {exc}") from None
            self._proc = proc
            self._finalizer = weakref.finalize(self, _terminate, proc)
        # Wait without the lock, so stop() from another thread can cancel a long load.
        started = time.monotonic()
        lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(
            target=self._pump_stdout, args=(proc, lines), daemon=True, name="worker-stdout"
        ).start()
        try:
            ready = self._wait_ready(proc, lines)
        except BaseException:
            with self._lock:
                if self._proc is proc:
                    self._shutdown()
            _terminate(proc)
            raise
        with self._lock:
            if self._proc is not proc:
                raise BackendError("the model worker was stopped while it was loading")
            self.port = int(ready["port"])
            self.model_name = str(ready.get("model") or Path(self.model).name)
            kernels = ready.get("kernels")
            self.kernels = kernels if isinstance(kernels, dict) else {}
            self.startup_seconds = time.monotonic() - started
        return self

    def _pump_stdout(self, proc: subprocess.Popen[bytes], lines: queue.Queue[bytes | None]) -> None:
        """Read the worker's stdout forever so it can never block on a full pipe."""
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                lines.put(line)
        except (OSError, ValueError):
            pass
        lines.put(None)

    def _wait_ready(self, proc: subprocess.Popen[bytes], lines: queue.Queue[bytes | None]) -> dict[str, Any]:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BackendError(
                    f"the model worker did not become ready within {self.startup_timeout:g} s "
                    f"(loading {self.model}); log: {self.log_path}"
                )
            if self._proc is not proc:
                raise BackendError("the model worker was stopped while it was loading")
            try:
                line = lines.get(timeout=min(left, 0.25))
            except queue.Empty:
                if proc.poll() is not None and lines.empty():
                    raise self._died(proc, "while loading") from None
                continue
            if line is None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                raise self._died(proc, "while loading")
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("ready") and isinstance(msg.get("port"), int):
                return msg

    def _died(self, proc: subprocess.Popen[bytes] | None, when: str) -> BackendError:
        code = proc.poll() if proc is not None else None
        how = (
            f"exit code {code}"
            if code is not None and code >= 0
            else f"killed by signal {-code}"
            if code
            else "no exit code"
        )
        return BackendError(f"the model worker for {self.model} stopped {when} ({how}): {self.log_tail()}")

    def log_tail(self, lines: int = 3) -> str:
        """The worker's own error line if it wrote one, else its last few log lines, as one line."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        errors = [line for line in text if line.startswith("[worker] error:")]
        if errors:
            return errors[-1].removeprefix("[worker] error:").strip()
        tail = [line.strip() for line in text if line.strip()][-lines:]
        return " | ".join(tail) or f"(empty log {self.log_path})"

    def stop(self) -> None:
        """Terminate the worker (SIGKILL after a grace period). Idempotent.

        The log of a healthy worker is deleted unless ``keep_log``; a dead worker's is kept.
        """
        with self._lock:
            healthy = self.running
            self._shutdown()
            if healthy and not self.keep_log and self.log_path is not None:
                self.log_path.unlink(missing_ok=True)

    def _shutdown(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _terminate once, then detaches
            self._finalizer = None
        self._proc = None
        self.port = None

    def __enter__(self) -> EmbeddedModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            finalizer = self.__dict__.get("_finalizer")
            if finalizer is not None:
                finalizer()
        except Exception:  # noqa: BLE001 - never raise from __del__
            pass

    # -- use --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise BackendError("the embedded model is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    def check(self) -> None:
        """Raise ``BackendError`` (with the worker's last words) if the worker has died."""
        if self._proc is None:
            raise BackendError("the embedded model is not started")
        if self._proc.poll() is not None:
            raise self._died(self._proc, "unexpectedly")

    def policy(self, **kwargs: Any) -> OpenAIChatPolicy:
        """A client for this worker; kwargs go to ``OpenAIChatPolicy`` (temperature, stream…)."""
        self.check()
        kwargs.setdefault("model", self.model_name)
        kwargs.setdefault("max_tokens", self.max_new_tokens)
        return _WorkerPolicy(self, self.base_url, api_key=self.api_key, **kwargs)

    def __repr__(self) -> str:
        state = f"running on port {self.port}" if self.running else "stopped"
        return f"EmbeddedModel({self.model!r}, adapter={self.adapter!r}, {state})"


class _WorkerPolicy(OpenAIChatPolicy):
    """The client, plus: when the worker has died, say so (with its last log line)."""

    def __init__(self, host: EmbeddedModel, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = host

    def __call__(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        try:
            return super().__call__(messages, tools)
        except BackendError as err:
            proc = self.host._proc
            if proc is None:
                raise
            try:
                proc.wait(timeout=1.0)  # a killed worker may take a moment to be reaped
            except subprocess.TimeoutExpired:
                raise err from None  # the worker is alive: the client's message stands
            raise self.host._died(proc, "during generation") from None
