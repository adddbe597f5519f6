"""A kernel of our own for headless runs: started beside the notebook, restarted when a
cell hangs past its interrupt, shut down at the end.

Execution itself (deadlines, interrupts, output caps, dead-kernel detection, results) is
the family's ``KernelChannel``; this class adds only the kernel's lifecycle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from jupyter_client.manager import KernelManager

from ..errors import KernelError
from .channel import KernelChannel
from .outputs import Ending

__all__ = ["KernelExecutor", "is_secret_name", "kernel_environment"]

SECRET_NAMES = frozenset(
    {
        "JUPYTER_ANALYST_WORKER_SECRET",  # the embedded model worker's bearer secret (models.host)
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "MYSQL_PWD",
        "PGPASSWORD",
        "PGPASSFILE",
    }
)
"""Withheld by name, whatever the patterns below say."""

SECRET_WORDS = frozenset(
    {"SECRET", "SECRETS", "TOKEN", "TOKENS", "PASSWORD", "PASSWD", "PASSPHRASE", "APIKEY", "CREDENTIALS"}
)
"""A name with one of these among its ``_``-separated words is withheld: ``HF_TOKEN``,
``JUPYTER_TOKEN``, ``DB_PASSWORD``, ``CLIENT_SECRET``; not ``TOKENIZERS_PARALLELISM``."""

SECRET_SUFFIXES = ("_API_KEY", "_ACCESS_KEY", "_SECRET_KEY", "_PRIVATE_KEY", "_AUTH_KEY", "_PWD")
"""Keys that are credentials (``OPENAI_API_KEY``); other ``*_KEY`` names are kept, since
plenty of harmless settings end that way."""


def is_secret_name(name: str) -> bool:
    """True for an environment variable that looks like a credential (case-insensitive):
    listed in ``SECRET_NAMES``, with a word from ``SECRET_WORDS``, ending in one of
    ``SECRET_SUFFIXES``, containing ``PASSWORD``, or being ``API_KEY`` itself."""
    upper = name.upper()
    return (
        upper in SECRET_NAMES
        or upper == "API_KEY"
        or "PASSWORD" in upper
        or upper.endswith(SECRET_SUFFIXES)
        or not SECRET_WORDS.isdisjoint(upper.split("_"))
    )


def kernel_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the analysis kernel starts with: ours without credentials, then
    ``extra`` as given (the escape hatch: what a caller passes on purpose is kept).

    The kernel runs code a model wrote and its outputs land in a notebook that gets
    shared: an API key it could print would end up there.
    """
    env = {k: v for k, v in os.environ.items() if not is_secret_name(k)}
    env.update(extra or {})
    return env


class KernelExecutor(KernelChannel):
    """Executes code cells in a local ipykernel it starts; implements the agent's ``Executor``."""

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
        """See ``KernelChannel`` for the limits. The kernel gets this process's environment
        without credentials (``kernel_environment``), plus ``env`` as given."""
        super().__init__(
            timeout=timeout,
            max_output_bytes=max_output_bytes,
            max_single_output_bytes=max_single_output_bytes,
            interrupt_grace=interrupt_grace,
            flood_factor=flood_factor,
            startup_timeout=startup_timeout,
        )
        self.cwd = Path(cwd) if cwd is not None else None
        self.kernel_name = kernel_name
        self.env = dict(env) if env else {}
        self._km: KernelManager | None = None
        self._ipc_dir: str | None = None
        self._kernel_log: BinaryIO | None = None

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
            env = kernel_environment(self.env)
            # The kernel's own stdout/stderr (start-up notices, tracebacks of an interrupt
            # during shutdown) must not mix into our caller's terminal.
            log = self._kernel_log = open(os.path.join(self._ipc_dir, "kernel.log"), "ab")  # noqa: SIM115
            # Held from here on, so that any failure, and a Ctrl-C or SIGTERM in the middle
            # of the start, shuts down whatever started and removes the private directory.
            self._km = km
            self._dead = False
            try:
                km.start_kernel(
                    cwd=str(self.cwd) if self.cwd else None,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            except BaseException as exc:
                self.shutdown()
                if isinstance(exc, Exception):
                    raise KernelError(f"could not start kernel {self.kernel_name!r}: {exc}") from exc
                raise
            try:
                self._connect()
                self.prepare()
            except BaseException as exc:
                self.shutdown()
                if isinstance(exc, Exception) and not isinstance(exc, KernelError):
                    raise KernelError(f"kernel {self.kernel_name!r} did not become ready: {exc}") from exc
                raise

    def _ensure_started(self) -> None:
        if self._km is None and not self._dead:
            self.start()

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
            self._prepared = False
            self._connect()
            self.prepare()

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
                # now=True: the kernel is the run's own and its notebook is saved by now; a
                # graceful shutdown_request cost 0.42 s of every run (0.11 s this way)
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

    def release(self) -> None:
        """Nothing to undo: the kernel is ours and is shut down after the run."""

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

    # -- KernelChannel hooks ---------------------------------------------------------------
    def _is_alive(self) -> bool:
        return self._km is not None and self._km.is_alive()

    def _interrupt(self) -> None:
        assert self._km is not None
        try:
            self._km.interrupt_kernel()
        except Exception:
            pass  # the grace period then ends in a restart

    def _recover(self, ending: Ending) -> None:
        """Our own kernel: restart it (state lost) rather than wait on a hung cell."""
        try:
            self.restart()
            ending.restarted = True
        except Exception:
            self._dead = True
            ending.lost = True

    def _exit_detail(self) -> str:
        process = getattr(getattr(self._km, "provisioner", None), "process", None)
        code = getattr(process, "returncode", None)
        return f" (exit code {code})" if code is not None else ""
