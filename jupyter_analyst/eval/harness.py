"""Run a suite: N workers, one kernel each, one JSONL record per task, resumable.

Each task is a whole ``run_analysis`` (its own kernel) followed by the judge (another
fresh kernel for the re-run), so workers are threads: the heavy work is in the kernel and
model processes, and threads can share one started policy (an embedded model is started
once and reached over its base URL). Records are appended as tasks finish, so an
interrupted evaluation resumes where it stopped: tasks with a record are skipped (and
counted, with their passes, in the progress line). With ``--ray`` the same records come
back from a cluster's worker nodes instead (``eval.fanout``) and are written the same way.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ..agent import Budget
from ..agent.prompts import split_task
from ..agent.types import Event, Message, Policy
from ..agent.wire import event_to_dict
from ..jsonl import read_records
from .datasets import materialize
from .judge import judge_run
from .tasks import EvalTask

RESULTS = "results.jsonl"
RUN_INFO = "run.json"
PolicyFactory = Callable[[EvalTask], Policy]
RunMany = Callable[[list[EvalTask]], Generator[tuple[EvalTask, dict[str, Any]], None, None]]
"""Runs tasks elsewhere (``eval.fanout``) and yields ``(task, record)`` as each finishes."""


@dataclass
class EvalConfig:
    """How to run a suite; ``output`` holds records, notebooks, data copies and the report."""

    output: Path
    budget: Budget = field(default_factory=lambda: Budget(max_steps=30))
    cell_timeout: float = 60.0
    workers: int = 1
    rerun: bool = True
    resume: bool = True
    data_cache: Path | None = None
    suite: str = "builtin"
    policy_label: str = ""
    keep_failed_cells: bool = False
    """Keep failed cells a later fix superseded in the notebooks (``agent.tidy``)."""
    prechecks: bool = True
    """Pre-execution checks in the loop (``agent.precheck``)."""
    grounding_gate: bool = True
    """The grounding gate on ``final_answer`` (``agent.loop``)."""
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Questions of the suite left out before the run (``{"id", "file", "why"}``), kept in
    run.json so the report names them."""
    cluster: dict[str, Any] | None = None
    """Where the tasks ran when not in this process (``eval.fanout``: the Ray cluster's
    address, nodes and CPUs), kept in run.json's session."""


def load_records(output: Path) -> dict[str, dict[str, Any]]:
    """The last record per task id in ``output/results.jsonl`` (a torn last line is ignored)."""
    path = Path(output) / RESULTS
    records: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return records
    for rec in read_records(path):
        if rec.get("task_id"):
            records[rec["task_id"]] = rec
    return records


def finished_ids(output: Path) -> set[str]:
    """Tasks whose record is complete (a harness error is retried on resume)."""
    return {k for k, r in load_records(output).items() if "verdict" in r and not r.get("harness_error")}


class _Bar:
    """A dependency-free progress line on stderr: one updating line on a TTY, else one line per task."""

    def __init__(self, total: int, done: int, stream: TextIO | None, label: str, passed: int = 0) -> None:
        self.total, self.done, self.passed, self.stream, self.label = total, done, passed, stream, label
        self.start = time.monotonic()
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._show(f"resumed {done} finished task(s), {passed} passed" if done else "")

    def _show(self, last: str) -> None:
        if self.stream is None:
            return
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        elapsed = time.monotonic() - self.start
        line = (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"passed {self.passed}  {elapsed:5.0f}s  {last}"
        )
        if self.tty:
            print("\r" + line[:150].ljust(150), end="", file=self.stream, flush=True)
        elif last:
            print(line, file=self.stream, flush=True)

    def update(self, task_id: str, record: dict[str, Any]) -> None:
        with self._lock:
            self.done += 1
            verdict = record.get("verdict") or {}
            self.passed += int(bool(verdict.get("passed")))
            status = "error" if record.get("harness_error") else ("pass" if verdict.get("passed") else "fail")
            self._show(f"{task_id}: {status} ({record.get('wall_seconds', 0):.0f}s)")

    def close(self) -> None:
        if self.stream is not None and self.tty:
            print(file=self.stream, flush=True)


def task_facts(messages: list[Message]) -> str | None:
    """The data facts block of a run's task message (what the model was told about the frame)."""
    first = next((m for m in messages if m.get("role") == "user"), None)
    content = first.get("content") if first else None
    return split_task(content)[1] if isinstance(content, str) else None


def notebook_of(task: EvalTask) -> str:
    """Where a task's notebook goes, relative to the output folder."""
    return f"notebooks/{task.id}.ipynb"


def place_data(task: EvalTask, config: EvalConfig) -> Path:
    """The data file a task's notebook loads: built-in data is copied into the output folder."""
    if task.scoring != "builtin":
        if task.data_path is None:
            raise ValueError(f"task {task.id} has no data file")
        return task.data_path
    source = task.data_path or materialize(task.dataset, config.data_cache)
    target = config.output / "data" / source.name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    return target


def run_task(
    task: EvalTask, policy: Policy, config: EvalConfig, stop: threading.Event | None = None
) -> dict[str, Any]:
    """Run and judge one task; errors in our own code become a ``harness_error`` record.

    ``stop`` (set on Ctrl-C) ends the run at its next step; such a record is marked
    interrupted so a resumed evaluation runs the task again.
    """
    from ..runner import RunConfig, run_analysis

    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    notebook = config.output / notebook_of(task)
    events: list[Event] = []
    record: dict[str, Any] = {
        "task_id": task.id,
        "task": task.summary(),
        "prompt": task.prompt,
        "policy": config.policy_label or policy.name,
        "notebook": str(notebook.relative_to(config.output)),
        "started": started,
        "version": __version__,
        "budget": {
            "max_steps": config.budget.max_steps,
            "max_tokens": config.budget.max_tokens,
            "max_seconds": config.budget.max_seconds,
        },
    }
    try:
        data = place_data(task, config)
        record["data"] = os.path.relpath(data, config.output)
        expected = task.expected(data)
        record["expected"] = expected
        notebook.unlink(missing_ok=True)

        run_config = RunConfig(
            data=data,
            output=notebook,
            question=task.prompt,
            budget=config.budget,
            cell_timeout=config.cell_timeout,
            keep_failed_cells=config.keep_failed_cells,
            prechecks=config.prechecks,
            grounding_gate=config.grounding_gate,
        )
        outcome = run_analysis(
            run_config,
            policy,
            on_event=events.append,
            should_stop=stop.is_set if stop else None,
            label=config.policy_label or None,
        )
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
        facts = task_facts(outcome.messages)
        record["data_facts"] = facts
        verdict = judge_run(
            task,
            events,
            notebook,
            expected,
            rerun=config.rerun,
            cell_timeout=config.cell_timeout,
            facts=facts,
        )
        record["verdict"] = verdict.to_dict()
    except KeyboardInterrupt:
        record["harness_error"] = "interrupted (Ctrl-C): the task runs again on resume"
    except Exception as exc:  # noqa: BLE001 - one broken task must not end the evaluation
        record["harness_error"] = f"{type(exc).__name__}: {exc}"
    record["events"] = [event_to_dict(e) for e in events]
    record["wall_seconds"] = round(time.monotonic() - t0, 3)
    return record


def _write_info(config: EvalConfig, tasks: list[EvalTask], todo: int) -> None:
    path = config.output / RUN_INFO
    info: dict[str, Any] = {}
    if path.exists():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            info = {}
    info.setdefault("sessions", []).append(
        {
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "policy": config.policy_label,
            "tasks": len(tasks),
            "to_run": todo,
            "workers": config.workers,
            "suite": config.suite,
            "version": __version__,
            "cpus": config.cluster["cpus"] if config.cluster else os.cpu_count(),  # where tasks ran
            "budget": {
                "max_steps": config.budget.max_steps,
                "max_tokens": config.budget.max_tokens,
                "max_seconds": config.budget.max_seconds,
            },
            "cell_timeout": config.cell_timeout,
            "rerun": config.rerun,
            "levers": {
                "prechecks": config.prechecks,
                "grounding_gate": config.grounding_gate,
                "keep_failed_cells": config.keep_failed_cells,
            },
            **({"ray": config.cluster} if config.cluster else {}),
        }
    )
    info.update({"policy": config.policy_label, "suite": config.suite, "skipped": config.skipped})
    path.write_text(json.dumps(info, indent=2), encoding="utf-8")


def _finish_info(config: EvalConfig, wall: float) -> None:
    path = config.output / RUN_INFO
    info = json.loads(path.read_text(encoding="utf-8"))
    info["sessions"][-1]["wall_seconds"] = wall
    path.write_text(json.dumps(info, indent=2), encoding="utf-8")


def run_suite(
    tasks: Iterable[EvalTask],
    policy_for: PolicyFactory | None,
    config: EvalConfig,
    progress: TextIO | None = sys.stderr,
    run_many: RunMany | None = None,
) -> dict[str, Any]:
    """Run every task not yet finished in ``config.output``; return a summary of this session.

    Tasks run in ``config.workers`` threads here, each with the policy ``policy_for`` gives,
    or, given ``run_many`` (a cluster), wherever it runs them; either way each record is
    appended as its task finishes. The summary holds ``records`` (all selected tasks,
    earlier sessions included), ``ran`` / ``skipped`` counts and this session's ``wall_seconds``.
    """
    tasks = list(tasks)
    config.output.mkdir(parents=True, exist_ok=True)
    (config.output / "notebooks").mkdir(exist_ok=True)
    done = finished_ids(config.output) if config.resume else set()
    if not config.resume:
        (config.output / RESULTS).unlink(missing_ok=True)
    todo = [t for t in tasks if t.id not in done]
    _write_info(config, tasks, len(todo))
    earlier = load_records(config.output) if done else {}
    resumed_passed = sum(
        1 for t in tasks if t.id in done and (earlier[t.id].get("verdict") or {}).get("passed")
    )
    bar = _Bar(len(tasks), len(tasks) - len(todo), progress, "eval", resumed_passed)
    lock = threading.Lock()
    start = time.monotonic()
    results_path = config.output / RESULTS

    stop = threading.Event()

    def write(task: EvalTask, record: dict[str, Any]) -> None:
        with lock, results_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            fh.flush()
        bar.update(task.id, record)

    def one(task: EvalTask) -> dict[str, Any]:
        if stop.is_set():
            raise KeyboardInterrupt
        assert policy_for is not None
        record = run_task(task, policy_for(task), config, stop)
        write(task, record)
        return record

    try:
        if run_many is not None:  # closing it (Ctrl-C too) cancels what still runs there
            with closing(run_many(todo)) as done_elsewhere:
                for task, record in done_elsewhere:
                    write(task, record)
        else:
            with ThreadPoolExecutor(max_workers=max(1, config.workers), thread_name_prefix="eval") as pool:
                pending: set[Future[dict[str, Any]]] = {pool.submit(one, t) for t in todo}
                try:
                    while pending:
                        finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                        for f in finished:
                            f.result()
                except BaseException:
                    stop.set()  # running tasks end at their next step; queued ones never start
                    for f in pending:
                        f.cancel()
                    raise
    finally:
        bar.close()
        _finish_info(config, round(time.monotonic() - start, 3))
    wall = round(time.monotonic() - start, 3)
    records = load_records(config.output)
    chosen = [records[t.id] for t in tasks if t.id in records]
    return {
        "records": chosen,
        "ran": len(todo),
        "skipped": len(tasks) - len(todo),
        "resumed_passed": resumed_passed,
        "wall_seconds": wall,
    }
