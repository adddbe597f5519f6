"""Start a policy (model worker, remote client, baseline) once and share it between runs.

Loading a 9B model takes minutes and gigabytes, so the first run that needs a policy
starts it and later runs reuse it. A policy nobody used for ``idle_timeout`` seconds is
closed (the worker process ends and frees its memory); the server's shutdown closes all.
``acquire`` blocks (it may load a model) and is called from a run's worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..models.select import PolicyChoice, PolicyHandle

PolicyFactory = Callable[[PolicyChoice], PolicyHandle]


def choice_key(choice: PolicyChoice) -> str:
    """Runs share a policy exactly when they asked for the same thing."""
    return repr(
        (
            choice.profile,
            choice.model,
            choice.adapter,
            choice.base_url,
            choice.replay,
            choice.quantization,
            choice.device,
            choice.temperature,
            choice.max_new_tokens,
        )
    )


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    handle: PolicyHandle | None = None
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)


class PolicyPool:
    """Policies by choice, with a user count and an idle clock each."""

    def __init__(self, factory: PolicyFactory, idle_timeout: float) -> None:
        self.factory = factory
        self.idle_timeout = idle_timeout
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self, choice: PolicyChoice) -> PolicyHandle:
        """The started policy for ``choice`` (starting it if needed); pair with ``release``."""
        key = choice_key(choice)
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            entry = self._entries.setdefault(key, _Entry())
            entry.users += 1
        try:
            with entry.lock:  # one start per choice, even when two runs ask at once
                if entry.handle is None:
                    entry.handle = self.factory(choice)
                return entry.handle
        except BaseException:
            with self._lock:
                entry.users -= 1
            raise

    def release(self, choice: PolicyChoice) -> None:
        with self._lock:
            entry = self._entries.get(choice_key(choice))
            if entry is not None:
                entry.users = max(0, entry.users - 1)
                entry.last_used = time.monotonic()

    def reap(self, now: float | None = None) -> int:
        """Close policies idle for longer than ``idle_timeout``; return how many closed."""
        now = time.monotonic() if now is None else now
        idle: list[PolicyHandle] = []
        with self._lock:
            for key, entry in list(self._entries.items()):
                if (
                    entry.users == 0
                    and entry.handle is not None
                    and now - entry.last_used >= self.idle_timeout
                ):
                    idle.append(entry.handle)
                    del self._entries[key]
        for handle in idle:
            _close(handle)
        return len(idle)

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            handles = [e.handle for e in self._entries.values() if e.handle is not None]
            self._entries.clear()
        for handle in handles:
            _close(handle)

    @property
    def started(self) -> list[str]:
        """Labels of the policies currently started (for logs and tests)."""
        with self._lock:
            return [e.handle.label for e in self._entries.values() if e.handle is not None]


def _close(handle: PolicyHandle) -> None:
    try:
        handle.close()
    except Exception:
        pass  # a worker that already died has nothing left to free
