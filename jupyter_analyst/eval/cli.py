"""``jupyter analyst eval``: run a judged suite, write its report, or compare two result sets.

    jupyter analyst eval [--suite builtin|dabench --data-dir DIR] [--tasks GLOB ...] [--kind open|closed]
                         [--limit N] [--workers N] [--ray ADDRESS] [-o DIR] [model flags as for `run`]
    jupyter analyst eval report DIR            # re-write DIR/report.md from its records
    jupyter analyst eval compare DIR_A DIR_B   # side by side (also: --compare DIR_A DIR_B)

This module is imported whenever the CLI builds its parser, so it imports only argparse at
module level; everything heavy loads inside :func:`run`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..levers import add_lever_options, lever_settings
from .options import add_cluster_options, add_suite_options

if TYPE_CHECKING:
    from .fanout import Cluster


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``eval`` with the same model flags as ``run``."""
    from ..models.select import add_model_options

    p = sub.add_parser(
        "eval",
        help="evaluate the analyst on a judged suite of real datasets (or compare two evaluations)",
        description="Run each task headless, judge it (completion, re-run, figures, answers, grounding) "
        "and write results.jsonl, notebooks/ and report.md into the output folder. "
        "`eval report DIR` re-writes a report; `eval compare DIR_A DIR_B` compares two folders.",
    )
    p.add_argument(
        "action",
        nargs="*",
        metavar="report DIR | compare DIR_A DIR_B",
        help="optional: re-write a report, or compare two result folders",
    )
    add_suite_options(p)
    p.add_argument("--list", action="store_true", help="list the selected tasks and exit")
    p.add_argument("-o", "--output", type=Path, help="result folder (default ./eval-<suite>-<policy>)")
    add_cluster_options(
        p, "tasks run in parallel, each with its own kernel (default 1; with --ray: the cluster's CPUs)"
    )
    p.add_argument("--no-resume", action="store_true", help="start over instead of skipping finished tasks")
    p.add_argument(
        "--no-rerun", action="store_true", help="skip the re-run check (faster; 'reproducible' unknown)"
    )
    p.add_argument("--max-steps", type=int, default=30, help="model turns per task (default 30)")
    p.add_argument("--max-tokens", type=int, help="tokens per task")
    p.add_argument("--max-time", type=float, help="seconds per task")
    p.add_argument("--cell-timeout", type=float, default=60.0, help="seconds per cell (default 60)")
    p.add_argument(
        "--data-cache",
        type=Path,
        help="where suite datasets are written as CSV (default ~/.cache/jupyter-analyst/datasets)",
    )
    p.add_argument(
        "--compare", nargs=2, type=Path, metavar=("DIR_A", "DIR_B"), help="compare two result folders"
    )
    p.add_argument("--baseline", action="store_true", help="use the rule-based baseline analyst (no model)")
    p.add_argument("--replay", type=Path, help="replay a saved script or trajectory instead of a model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_lever_options(p)
    add_model_options(p)


def _slug(args: argparse.Namespace) -> str:
    if args.baseline:
        name = "baseline"
    elif args.replay:
        name = f"replay-{args.replay.stem}"
    elif args.model:
        name = Path(str(args.model).rstrip("/")).name + (
            f"+{Path(str(args.adapter).rstrip('/')).name}" if args.adapter else ""
        )
    elif args.profile:
        name = args.profile
    elif args.base_url:
        name = "remote"
    else:
        name = "default"
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-") or "policy"


def _print_summary(s: dict[str, Any], output: Path, out: Any) -> None:
    from .report import LABELS, pct

    print(f"{s['policy']}: {s['tasks']} tasks, wall time {s['wall_seconds']:.0f} s", file=out)
    for metric, rate in s["rates"].items():
        print(f"  {LABELS[metric]:<28} {pct(rate)}", file=out)
    if "dabench" in s:
        d, every = s["dabench"], s["dabench"]["all_questions"]
        print(
            f"  DABench by question {d['accuracy_by_question']:.2%} over {d['answered']} answered "
            f"(as DABench counts); {every['accuracy_by_question']:.2%} with {d['unanswered']} "
            "unanswered as failures",
            file=out,
        )
    if s.get("skipped"):
        print(
            f"  skipped, table missing: {len(s['skipped'])} ({', '.join(k['id'] for k in s['skipped'])})",
            file=out,
        )
    print(f"report: {output / 'report.md'}", file=out)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``jupyter analyst eval``; returns the process exit code."""
    from ..errors import InputError
    from .report import compare, write_report

    out = sys.stderr
    action = list(args.action or [])
    if args.compare or (action and action[0] == "compare"):
        dirs = [Path(d) for d in (args.compare or action[1:])]
        if len(dirs) != 2:
            raise InputError("compare needs two result folders: eval compare DIR_A DIR_B")
        for d in dirs:
            if not (d / "results.jsonl").exists():
                raise InputError(f"{d} holds no results.jsonl")
        target = args.output or dirs[1] / "compare"
        result = compare(dirs[0], dirs[1], target)
        print(f"compared {result['common_tasks']} common tasks -> {target / 'compare.md'}", file=out)
        return 0
    if action and action[0] == "report":
        if len(action) != 2 or not (Path(action[1]) / "results.jsonl").exists():
            raise InputError("usage: eval report DIR (a folder with results.jsonl)")
        summary = write_report(Path(action[1]))
        _print_summary(summary, Path(action[1]), out)
        return 0
    if action:
        raise InputError(f"unknown eval action {action[0]!r}; use 'report DIR' or 'compare DIR_A DIR_B'")

    from .catalog import tasks_from_args

    tasks = tasks_from_args(args)
    skipped: list[dict[str, str]] = []
    if args.suite == "dabench":  # never silently: name every question left out for a missing table
        from .dabench import read_dabench

        dataset = read_dabench(args.data_dir)
        skipped = dataset.missing_table
        if skipped:
            print(dataset.skipped_line(), file=out)
    if args.list:
        for t in tasks:
            print(f"{t.id:<34} {t.kind:<6} {t.dataset:<20} {t.question.splitlines()[0][:70]}")
        print(f"{len(tasks)} tasks over {len({t.dataset for t in tasks})} datasets", file=out)
        return 0
    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be at least 1")

    from contextlib import ExitStack

    from ..agent import Budget
    from ..models.select import build_policy, choice_from_args
    from ..runner import check_limits
    from .harness import EvalConfig, run_suite

    budget = Budget(args.max_steps, args.max_tokens, args.max_time)
    check_limits(budget, args.cell_timeout)  # one line now, not a harness error per task

    output = args.output or Path(f"eval-{args.suite}-{_slug(args)}")
    choice = choice_from_args(args)
    cluster: Cluster | None = None
    with ExitStack() as stack:
        if args.ray:  # the analyst starts on the workers, not here
            from .fanout import connect

            cluster = stack.enter_context(connect(args.ray, choice, args.workers))
            label, note, workers = cluster.label, cluster.note, cluster.workers
            where = f" on {cluster.describe()}"
        else:
            handle = stack.enter_context(build_policy(choice))
            label, note, workers, where = handle.label, handle.note, args.workers or 1, ""
        print(
            f"jupyter-analyst eval: {len(tasks)} tasks with {label}, {workers} worker(s){where} -> {output}",
            file=out,
        )
        if note:
            print(f"  ({note})", file=out)
        config = EvalConfig(
            output=output,
            budget=budget,
            cell_timeout=args.cell_timeout,
            workers=workers,
            rerun=not args.no_rerun,
            resume=not args.no_resume,
            data_cache=args.data_cache,
            suite=args.suite,
            policy_label=label,
            **lever_settings(args),
            skipped=skipped,
            cluster=cluster.info if cluster else None,
        )
        progress = None if args.quiet else out
        if cluster is not None:
            result = run_suite(tasks, None, config, progress, run_many=cluster.eval_runner(config))
        else:
            policy = handle.policy
            result = run_suite(tasks, lambda task: policy, config, progress=progress)
    if result["skipped"]:
        print(
            f"  resumed: {result['skipped']} finished task(s) skipped, "
            f"{result['resumed_passed']} of them passed",
            file=out,
        )
    summary = write_report(output, [t.id for t in tasks])
    _print_summary(summary, output, out)
    return 0
