"""Fan ``eval`` and ``collect`` out over a Ray cluster (``--ray ADDRESS``).

A task is a whole headless run plus the judge's re-run, each in kernels of its own, so one
task is the unit placed on a worker node. The driver (this process) keeps everything that
makes a run resumable and reportable: results.jsonl or the state file, the progress line,
run.json. It ships out only what a task needs: the task, the picklable ``PolicyChoice``
and the data file's bytes (through the object store, so worker nodes need no shared
filesystem). A worker runs the very same ``run_task`` / ``collect_one`` in a node-local
temporary folder laid out like the driver's, so the notebook it sends back loads its data
by the same relative path, and the driver writes it where a local run would have.

Ray is imported here only, and only for ``--ray``: it is an optional extra.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from .. import __version__
from ..agent.types import Policy
from ..errors import AnalystError, InputError
from ..models.select import PolicyChoice, PolicyHandle, build_policy
from .harness import EvalConfig, RunMany, notebook_of, place_data, run_task
from .tasks import EvalTask

INSTALL_HINT = "pip install 'jupyter-analyst[ray]'"
CANCEL_GRACE_S = 15.0
"""How long Ctrl-C waits for cancelled tasks to stop cleanly (Ray ends a leaving driver's
workers abruptly: their kernels and folders would be left behind)."""
WorkerFn = Callable[[EvalTask, Policy, Path], Any]
"""Runs on a worker: (the task with its node-local data, the policy, the root folder) -> result."""


@dataclass
class Job:
    """One task for the cluster, as the driver sees it."""

    key: Any
    """Handed back unchanged with the result (a task, or a (task, sample) pair)."""
    fn: WorkerFn
    """Module-level (or a ``functools.partial`` of one), so it pickles by reference."""
    task: EvalTask
    data: Path | None
    """The driver's data file the notebook loads; None: the worker finds it itself."""
    root: Path
    """The driver's folder that ``notebook`` and the data path are relative to."""
    notebook: str


@dataclass
class Finished:
    """A job back from the cluster: ``value`` is what ``fn`` returned, or ``error`` says why not."""

    job: Job
    value: Any
    error: str
    seconds: float


# --- on a worker node ----------------------------------------------------------------------

_handles: dict[str, PolicyHandle] = {}
_worker_lock = threading.Lock()


def _worker_policy(choice: PolicyChoice, replay: bytes | None) -> PolicyHandle:
    """``choice``'s policy, built once per worker process: an embedded model loads once
    per process, not once per task (a server or the baseline is cheap either way). A replay
    script comes as bytes (the driver's path may not exist here) and is read once, from a
    file of the same name that is removed at once."""
    with _worker_lock:
        digest = hashlib.sha256(replay).hexdigest() if replay is not None else ""
        key = repr(replace(choice, replay=None)) + digest
        if key not in _handles:
            if replay is None or choice.replay is None:
                _handles[key] = build_policy(choice)
            else:
                with tempfile.TemporaryDirectory(prefix="ja-replay-") as folder:
                    script = Path(folder) / Path(choice.replay).name
                    script.write_bytes(replay)
                    _handles[key] = build_policy(replace(choice, replay=script))
            atexit.register(_handles[key].close)
        return _handles[key]


def _lay_out(tmp: Path, rel: str | None, data: bytes | None) -> tuple[Path, Path | None]:
    """A root folder in ``tmp`` with the data file at ``rel`` from it, as on the driver.

    ``rel`` may climb out of the driver's folder (``../tables/x.csv``, a DABench table):
    the root is nested as deep as it climbs, so the same relative path stays inside ``tmp``.
    """
    parts = Path(rel).parts if rel else ()
    ups = next((i for i, p in enumerate(parts) if p != ".."), len(parts))
    root = tmp.joinpath("root", *["up"] * ups)
    root.mkdir(parents=True)
    if rel is None or data is None:
        return root, None
    target = Path(os.path.normpath(root / rel))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return root, target


def _on_worker(
    fn: WorkerFn,
    task: EvalTask,
    data: bytes | None,
    rel: str | None,
    notebook: str,
    choice: PolicyChoice,
    replay: bytes | None,
) -> tuple[Any, bytes | None, float]:
    """The Ray task: run ``fn`` in a fresh node-local folder; return its result, the
    notebook's bytes and the seconds it took. The folder is removed afterwards."""
    t0 = time.monotonic()
    policy = _worker_policy(choice, replay).policy
    tmp = Path(tempfile.mkdtemp(prefix="ja-ray-")).resolve()
    try:
        root, local = _lay_out(tmp, rel, data)
        value = fn(task if local is None else replace(task, data_path=local), policy, root)
        path = root / notebook
        return value, (path.read_bytes() if path.exists() else None), time.monotonic() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _probe(choice: PolicyChoice, replay: bytes | None) -> tuple[str, str]:
    """Start the analyst on one worker before any task: its label, and one clear error early
    (a server the nodes can't reach, the package missing there) instead of one per task."""
    handle = _worker_policy(choice, replay)
    return handle.label, handle.note


def _eval_on_worker(task: EvalTask, policy: Policy, root: Path, config: EvalConfig) -> dict[str, Any]:
    """``eval``'s job: the local ``run_task``, with the node-local folder as the output."""
    return run_task(task, policy, replace(config, output=root))


# --- on the driver -------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # a RayTaskError carries the worker's exception
    err = cause if isinstance(cause, BaseException) else exc
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}".strip(": ")


def _redact(address: str) -> str:
    """``host:port`` of an address, without a scheme or credentials (for run.json)."""
    return address.split("://", 1)[-1].rsplit("@", 1)[-1].split("/", 1)[0]


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes: ``ray.init`` retries an absent head for a long time."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray wants the head's host:port (or 'auto'), not {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise InputError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); "
            "start one with `ray start --head` on this machine or join one"
        ) from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray needs Ray on this machine and every node: {INSTALL_HINT}") from None
    return ray


class Cluster:
    """A connected Ray cluster that runs tasks with one policy choice (see :func:`connect`)."""

    def __init__(
        self, ray: Any, address: str, choice: PolicyChoice, workers: int | None, cpus: float
    ) -> None:
        self._ray = ray
        replay = None
        if choice.replay is not None:
            try:
                replay = Path(choice.replay).read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read replay file {choice.replay}: {exc.strerror or exc}") from None
        if choice.base_url and not choice.api_key and os.environ.get("OPENAI_API_KEY"):
            choice = replace(choice, api_key=os.environ["OPENAI_API_KEY"])  # nodes may not have it set
        self._choice = choice
        self._replay = None if replay is None else ray.put(replay)
        self._remote = ray.remote(num_cpus=cpus, max_retries=1)(_on_worker)
        self._shipped: dict[Path, Any] = {}  # data file -> its object: each file travels once
        total = int(ray.cluster_resources().get("CPU", 0))
        self.workers = workers or max(1, int(total // cpus))
        self.info: dict[str, Any] = {
            "address": _redact(address),
            "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
            "cpus": total,
            "task_cpus": cpus,
        }
        probe = ray.remote(num_cpus=cpus)(_probe).remote(self._choice, self._replay)
        self.label, self.note = self._wait(probe)

    def describe(self) -> str:
        i = self.info
        return f"Ray {i['address']} ({i['nodes']} node(s), {i['cpus']} CPUs)"

    def _wait(self, ref: Any) -> Any:
        try:
            while not self._ray.wait([ref], timeout=0.5)[0]:  # short waits: Ctrl-C is heard
                pass
        except BaseException:
            self._ray.cancel(ref)
            raise
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, AnalystError):
                raise cause from None
            raise InputError(
                f"the cluster's workers could not start the analyst ({_one_line(exc)}); "
                f"is jupyter-analyst installed on every node ({INSTALL_HINT})?"
            ) from None

    def _submit(self, job: Job) -> Any:
        rel = data = None
        if job.data is not None:
            try:
                rel = os.path.relpath(job.data.resolve(), job.root.resolve())
                if job.data not in self._shipped:
                    self._shipped[job.data] = self._ray.put(job.data.read_bytes())
                data = self._shipped[job.data]
            except (OSError, ValueError):  # unreadable, or another drive: the worker tries itself
                rel = data = None
        return self._remote.remote(job.fn, job.task, data, rel, job.notebook, self._choice, self._replay)

    def _finish(self, ref: Any, job: Job, started: float) -> Finished:
        try:
            value, notebook, seconds = self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:  # a bug outside fn, a lost worker or node
            return Finished(job, None, _one_line(exc), time.monotonic() - started)
        target = job.root / job.notebook
        if notebook is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(notebook)
            os.replace(tmp, target)
        return Finished(job, value, "", seconds)

    def imap(self, jobs: Iterable[Job]) -> Generator[Finished, None, None]:
        """Run ``jobs`` with at most ``workers`` in flight; yield each as it finishes.

        ``jobs`` is consumed lazily (a job's data is placed as a slot frees). Closing the
        generator (Ctrl-C) cancels the tasks still running: they stop on the worker and
        leave nothing behind, so a resumed run does them again."""
        ray, pending = self._ray, iter(jobs)
        running: dict[Any, tuple[Job, float]] = {}
        try:
            while True:
                while len(running) < self.workers and (job := next(pending, None)) is not None:
                    running[self._submit(job)] = (job, time.monotonic())
                if not running:
                    return
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                for ref in ready:
                    yield self._finish(ref, *running.pop(ref))
        finally:
            for ref in running:
                ray.cancel(ref)
            if running:  # let them stop their kernels and clear their folders before we leave
                ray.wait(list(running), num_returns=len(running), timeout=CANCEL_GRACE_S)

    def eval_runner(self, config: EvalConfig) -> RunMany:
        """``run_suite``'s ``run_many``: records from the cluster, paths the driver's own."""
        shipped = replace(config, data_cache=None)  # a worker without the data uses its own cache

        def job(task: EvalTask) -> Job:
            try:
                data: Path | None = place_data(task, config)  # the driver's copy, as a local run
            except Exception:  # noqa: BLE001 - the worker's run_task meets it and records why
                data = None
            fn = partial(_eval_on_worker, config=shipped)
            return Job(task, fn, task, data, config.output, notebook_of(task))

        def run_many(tasks: list[EvalTask]) -> Generator[tuple[EvalTask, dict[str, Any]], None, None]:
            with_jobs = self.imap(job(t) for t in tasks)
            try:
                for done in with_jobs:
                    task = done.job.task
                    record = done.value if not done.error else _lost(task, config, done.error, done.seconds)
                    if done.job.data is not None and "data" in record:
                        record["data"] = os.path.relpath(done.job.data, config.output)
                    yield task, record
            finally:
                with_jobs.close()

        return run_many


def _lost(task: EvalTask, config: EvalConfig, error: str, seconds: float) -> dict[str, Any]:
    """The record of a task the cluster could not run (retried on resume, as any harness error)."""
    return {
        "task_id": task.id,
        "task": task.summary(),
        "prompt": task.prompt,
        "policy": config.policy_label,
        "notebook": notebook_of(task),
        "version": __version__,
        "harness_error": f"on the Ray cluster: {error}",
        "events": [],
        "wall_seconds": round(seconds, 3),
    }


@contextmanager
def connect(
    address: str, choice: PolicyChoice, workers: int | None = None, cpus: float = 1.0
) -> Iterator[Cluster]:
    """Join the cluster at ``address`` from this process (a node of the cluster), start the
    analyst on one worker, and leave the cluster at the end. ``workers``: tasks in flight
    (default: the cluster's CPUs / ``cpus``); ``cpus``: CPUs Ray reserves per task."""
    ray = _import_ray()
    _check_reachable(address)
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - version mismatch, not a head, no raylet here...
        raise InputError(f"cannot join the Ray cluster at {address}: {_one_line(exc)}") from None
    try:
        yield Cluster(ray, address, choice, workers, cpus)
    finally:
        ray.shutdown()
