"""``jupyter analyst collect``: run a teacher over a suite and keep its trajectories.

    jupyter analyst collect -o traj.jsonl [--suite builtin|dabench|pool | --split train|eval]
                            [--pool-datasets N --pool-seed S] [--tasks GLOB ...] [--samples N]
                            [--keep passed|finished|any] [--teacher-errors RATE] [--context-tokens N]
                            [--baseline | --base-url URL --model M | --profile P ...]
                            [--ray ADDRESS [--workers N]]

``--split train`` (``--suite pool``) runs over the training pool (``training.pool``), whose
tables are disjoint from the built-in suite's, which stays the held-out evaluation;
``--teacher-errors`` wraps the policy in ``models.teacher.TeacherPolicy`` (error->fix episodes).

Each task is a whole headless run (``runner.run_analysis``) judged by the evaluation judge
(``eval.judge.judge_run``); the conversation the teacher saw and produced is written with
its verdict when it passes the filters. ``OUTPUT.state.jsonl`` lists every (task, sample)
attempted, kept or not, so a resumed collection skips them; notebooks and data copies go to
``OUTPUT.work/``. Runs go one at a time, or with ``--ray ADDRESS`` over a Ray cluster's
worker nodes (``eval.fanout``); either way the lines are written here as runs finish.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Generator
from contextlib import ExitStack, closing
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..eval.options import add_cluster_options, add_suite_options
from ..jsonl import read_records
from ..levers import add_lever_options, lever_settings
from .trajectory import KEEP_CHOICES

if TYPE_CHECKING:
    from ..eval.fanout import Cluster


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ..models.select import add_model_options

    p = sub.add_parser(
        "collect",
        help="run a teacher (model server, profile or baseline) over the suite and save judged trajectories",
        description="Run each suite task headless, judge it, and append the trajectories that pass the "
        "filters to a JSONL file for `jupyter analyst train`. Resumable.",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="trajectory JSONL file (appended to)")
    add_suite_options(p)
    p.add_argument("--samples", type=int, default=1, help="runs per task (use a temperature > 0 for variety)")
    p.add_argument(
        "--keep",
        choices=KEEP_CHOICES,
        default="passed",
        help="passed: the judge passed the run (default); finished: ended with final_answer; any",
    )
    p.add_argument("--max-chars", type=int, default=200_000, help="drop trajectories longer than this")
    p.add_argument("--max-steps", type=int, default=30, help="model turns per task (default 30)")
    p.add_argument("--max-time", type=float, help="seconds per task")
    p.add_argument("--cell-timeout", type=float, default=60.0, help="seconds per cell")
    p.add_argument(
        "--context-tokens",
        type=int,
        metavar="N",
        help="size observations and the history trim for a student with an N-token window (e.g. 8192 "
        "for a `jupyter analyst scratch` model), so its trajectories fit its context whole; "
        "default: the teacher's own",
    )
    p.add_argument(
        "--no-rerun",
        action="store_true",
        help="skip the judge's re-run (faster; then no run counts as passed: use --keep finished)",
    )
    p.add_argument("--data-cache", type=Path, help="where suite datasets are written as CSV")
    p.add_argument(
        "--baseline", action="store_true", help="use the rule-based baseline analyst as the teacher"
    )
    p.add_argument(
        "--teacher-errors",
        type=float,
        default=0.0,
        metavar="RATE",
        help="error->fix episodes: this fraction of code steps is first sent with a plausible mistake "
        "the kernel reports (missing import, text column averaged, wrong-case column), then fixed",
    )
    p.add_argument(
        "--teacher-seed", type=int, default=0, help="seed of which steps go wrong (plus the sample)"
    )
    p.add_argument("--replay", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_cluster_options(
        p, "with --ray: runs in flight (default: the cluster's CPUs); without it runs go one at a time"
    )
    add_model_options(p)
    add_lever_options(p)


def _done(state: Path) -> set[tuple[str, int]]:
    done: set[tuple[str, int]] = set()
    if state.exists():
        for rec in read_records(state):
            try:
                done.add((rec["task_id"], int(rec["sample"])))
            except (ValueError, KeyError, TypeError):
                continue
    return done


def _data_file(task: Any, work: Path, cache: Path | None) -> Path:
    import shutil

    from ..eval.datasets import materialize

    if task.scoring != "builtin":
        return Path(task.data_path)
    source = task.data_path or materialize(task.dataset, cache)
    target = work / "data" / Path(source).name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return target


def _notebook_name(task: Any, sample: int) -> str:
    return f"notebooks/{task.id}-{sample}.ipynb"


def collect_one(
    task: Any, sample: int, policy: Any, args: argparse.Namespace, work: Path, label: str
) -> tuple[dict[str, Any] | None, str]:
    """Run and judge one task; return (trajectory record, status) — record None on a harness error."""
    from ..agent import Budget
    from ..agent.tools import TOOLS
    from ..agent.types import Event
    from ..eval.harness import task_facts
    from ..eval.judge import judge_run
    from ..runner import RunConfig, run_analysis
    from .trajectory import record_run

    data = _data_file(task, work, args.data_cache)
    notebook = work / _notebook_name(task, sample)
    notebook.unlink(missing_ok=True)
    events: list[Event] = []
    config = RunConfig(
        data=data,
        output=notebook,
        question=task.prompt,
        budget=Budget(args.max_steps, None, args.max_time),
        cell_timeout=args.cell_timeout,
        context_tokens=args.context_tokens,
        **lever_settings(args),
    )
    outcome = run_analysis(config, policy, on_event=events.append, label=label)
    verdict = judge_run(
        task,
        events,
        notebook,
        task.expected(data),
        rerun=not args.no_rerun,
        cell_timeout=args.cell_timeout,
        facts=task_facts(outcome.messages),  # judged as eval judges: the data facts are evidence
    )
    dialect = getattr(policy, "dialect", None) or "notebook"
    record = record_run(
        outcome,
        TOOLS if dialect == "notebook" else [],  # another dialect's prompt holds its tools
        verdict,
        {
            **({"dialect": dialect} if dialect != "notebook" else {}),
            "source": "collect",
            "task_id": task.id,
            "dataset": task.dataset,
            "kind": task.kind,
            "question": task.prompt,
            "policy": label,
            "sample": sample,
            "suite": args.suite,
        },
    )
    return record, "pass" if verdict.passed else "fail"


def _attempt(
    task: Any, policy: Any, work: Path, *, sample: int, args: argparse.Namespace, label: str
) -> tuple[dict[str, Any] | None, str, str]:
    """One (task, sample), with the teacher's mistakes when asked: (record, status, input
    error or ""). Here or on a Ray worker (``eval.fanout`` calls it with the first three)."""
    from ..errors import InputError

    if args.teacher_errors:
        from ..models.teacher import TeacherPolicy

        policy = TeacherPolicy(policy, args.teacher_errors, args.teacher_seed + sample)
    try:
        record, status = collect_one(task, sample, policy, args, work, label)
    except InputError as exc:  # a dataset that can't load: note it, go on
        return None, "error", f"input error: {exc}"
    return record, status, ""


def _bar(stream: TextIO | None, done: int, total: int, kept: int, started: float, last: str) -> None:
    if stream is None:
        return
    width = 24
    filled = int(width * done / total) if total else width
    line = (
        f"collect [{'#' * filled}{'.' * (width - filled)}] {done}/{total} kept {kept}  "
        f"{time.monotonic() - started:5.0f}s  {last}"
    )
    if getattr(stream, "isatty", lambda: False)():
        print("\r" + line[:150].ljust(150), end="", file=stream, flush=True)
    else:
        print(line, file=stream, flush=True)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..models.select import build_policy, choice_from_args
    from .trajectory import TrajectoryFilter, TrajectoryWriter

    if args.samples < 1:
        raise InputError("--samples must be at least 1")
    if not 0.0 <= args.teacher_errors <= 1.0:
        raise InputError("--teacher-errors must be a fraction between 0 and 1")
    if args.workers is not None and (args.workers < 1 or (args.workers > 1 and not args.ray)):
        raise InputError("--workers must be at least 1, and above 1 only with --ray")
    from ..agent import Budget
    from ..runner import check_limits

    check_limits(Budget(args.max_steps, None, args.max_time), args.cell_timeout)
    if args.context_tokens is not None and args.context_tokens < 1024:
        raise InputError("--context-tokens must be at least 1024")
    from ..eval.catalog import tasks_from_args

    tasks = tasks_from_args(args)
    output: Path = args.output
    state = output.with_name(output.name + ".state.jsonl")
    work = output.with_name(output.name + ".work")
    (work / "notebooks").mkdir(parents=True, exist_ok=True)
    done = _done(state)
    todo = [(t, s) for t in tasks for s in range(args.samples) if (t.id, s) not in done]
    writer = TrajectoryWriter(output, TrajectoryFilter(keep=args.keep, max_chars=args.max_chars))
    err = sys.stderr
    stream = None if args.quiet else err
    total = len(tasks) * args.samples
    started = time.monotonic()
    choice = choice_from_args(args)
    with ExitStack() as stack:
        if args.ray:  # the teacher starts on the workers, not here
            from ..eval.fanout import connect

            cluster = stack.enter_context(connect(args.ray, choice, args.workers))
            base, where = cluster.label, f", {cluster.workers} in flight on {cluster.describe()}"
            runs = _on_cluster(cluster, todo, args, work, base)
        else:
            handle = stack.enter_context(build_policy(choice))
            base, where = handle.label, ""
            runs = _here(handle.policy, todo, args, work, base)
        print(
            f"jupyter-analyst collect: {len(todo)} of {total} runs to do with {base}{where} -> {output}",
            file=err,
        )
        kept = finished = 0
        lost: list[str] = []
        with closing(runs):
            for task, sample, (record, status, error), seconds in runs:
                finished += 1
                if error.startswith(LOST):  # no state line: a resumed collection runs it again
                    lost.append(f"{task.id}: {error}")
                    _bar(stream, total - len(todo) + finished, total, kept, started, f"{task.id}: {error}")
                    continue
                why = error or (writer.write(record) if record is not None else "harness error")
                meta = (record or {}).get("meta") or {}
                kept += int(not why)
                with state.open("a", encoding="utf-8") as fh:
                    fh.write(
                        json.dumps(
                            {
                                "task_id": task.id,
                                "sample": sample,
                                "status": status,
                                "kept": not why,
                                "why": why,
                                "seconds": round(seconds, 1),
                                **{k: meta[k] for k in ("steps", "errors", "errors_fixed") if k in meta},
                            }
                        )
                        + "\n"
                    )
                _bar(
                    stream,
                    total - len(todo) + finished,
                    total,
                    kept,
                    started,
                    f"{task.id}: {status}{'' if not why else ' (' + why + ')'}",
                )
    if stream is not None and getattr(stream, "isatty", lambda: False)():
        print(file=stream)
    print(
        f"kept {writer.written} new trajectories ({len(writer.keys)} in {output}); "
        f"skipped: {dict(writer.rejected) or 'none'}",
        file=err,
    )
    if lost:
        print(f"{len(lost)} run(s) {LOST}, to run again on resume; first: {lost[0]}", file=err)
    if todo and state.exists():
        print(collection_summary(state, time.monotonic() - started, len(todo)), file=err)
    return 0


Run = tuple[Any, int, tuple[dict[str, Any] | None, str, str], float]
"""(task, sample, what ``_attempt`` returned, seconds), in the order the runs finish."""
LOST = "lost on the Ray cluster"


def _label(base: str, args: argparse.Namespace) -> str:
    return base + (f" + teacher errors {args.teacher_errors:g}" if args.teacher_errors else "")


def _here(
    policy: Any, todo: list[tuple[Any, int]], args: argparse.Namespace, work: Path, base: str
) -> Generator[Run, None, None]:
    """The runs one after another in this process (a kernel of their own each)."""
    for task, sample in todo:
        t0 = time.monotonic()
        outcome = _attempt(task, policy, work, sample=sample, args=args, label=_label(base, args))
        yield task, sample, outcome, time.monotonic() - t0


def _on_cluster(
    cluster: Cluster, todo: list[tuple[Any, int]], args: argparse.Namespace, work: Path, base: str
) -> Generator[Run, None, None]:
    """The runs on a Ray cluster's workers; a run the cluster lost (or a bug outside the run)
    comes back as a ``LOST`` error, which writes no state line."""
    from ..eval.fanout import Job

    shipped = argparse.Namespace(**{**vars(args), "data_cache": None})  # no driver paths there

    def job(task: Any, sample: int) -> Job:
        try:
            data: Path | None = _data_file(task, work, args.data_cache)  # the driver's copy
        except Exception:  # noqa: BLE001 - the worker meets it too, and notes it
            data = None
        fn = partial(_attempt, sample=sample, args=shipped, label=_label(base, args))
        return Job((task, sample), fn, task, data, work, _notebook_name(task, sample))

    finished = cluster.imap(job(t, s) for t, s in todo)
    with closing(finished):
        for done in finished:
            task, sample = done.job.key
            outcome = done.value if not done.error else (None, "error", f"{LOST}: {done.error}")
            yield task, sample, outcome, done.seconds


def collection_stats(state: Path) -> dict[str, float]:
    """What a collection yielded, from its state file: runs, share kept, mean steps, errors
    and errors fixed per run, seconds per run."""
    recs = [r for r in read_records(state) if isinstance(r, dict)]
    n = len(recs) or 1

    def mean(key: str) -> float:
        return sum(float(r.get(key) or 0) for r in recs) / n

    return {
        "runs": len(recs),
        "kept_share": sum(1 for r in recs if r.get("kept")) / n,
        "mean_steps": mean("steps"),
        "errors_per_run": mean("errors"),
        "errors_fixed_per_run": mean("errors_fixed"),
        "seconds_per_run": mean("seconds"),
    }


def collection_summary(state: Path, wall: float, runs: int) -> str:
    s = collection_stats(state)
    return (
        f"{runs / max(wall, 1e-9) * 60:.1f} runs/min this time; "
        f"over {s['runs']} runs: kept {s['kept_share']:.0%}, "
        f"mean steps {s['mean_steps']:.1f}, errors {s['errors_per_run']:.2f} and fixed "
        f"{s['errors_fixed_per_run']:.2f} per run"
    )
