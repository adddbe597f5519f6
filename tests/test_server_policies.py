"""The policy pool: one start per choice, shared by runs, closed when idle or at shutdown."""

from __future__ import annotations

import threading
import time

from jupyter_analyst.models.scripted import ScriptedPolicy
from jupyter_analyst.models.select import PolicyChoice, PolicyHandle
from jupyter_analyst.server.policies import PolicyPool


class Factory:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.closed: list[str] = []

    def __call__(self, choice: PolicyChoice) -> PolicyHandle:
        time.sleep(0.05)  # a slow start: concurrent acquirers must share it
        name = str(choice.profile)
        self.started.append(name)
        return PolicyHandle(ScriptedPolicy([], name=name), name, closers=[lambda: self.closed.append(name)])


def test_pool_starts_once_shares_and_reaps_idle() -> None:
    factory = Factory()
    pool = PolicyPool(factory, idle_timeout=10)
    a = PolicyChoice(profile="a")
    handles: list[PolicyHandle] = []
    threads = [threading.Thread(target=lambda: handles.append(pool.acquire(a))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert factory.started == ["a"] and len({id(h) for h in handles}) == 1
    assert pool.reap(time.monotonic() + 100) == 0  # in use: never reaped
    for _ in range(3):
        pool.release(a)
    assert pool.reap(time.monotonic() + 5) == 0  # idle, but not for long enough
    assert pool.reap(time.monotonic() + 11) == 1 and factory.closed == ["a"]
    pool.acquire(a)  # the next run starts it again
    assert factory.started == ["a", "a"]
    pool.acquire(PolicyChoice(profile="b"))
    pool.close_all()  # server shutdown closes everything, in use or not
    assert sorted(factory.closed) == ["a", "a", "b"]
