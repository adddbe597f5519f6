"""Which tasks a command runs: one loader for ``eval`` and ``collect`` over both suites."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from .dabench import load_dabench
from .suite import builtin_tasks
from .tasks import EvalTask, TaskKind, select_tasks

SPLITS = {"train": "pool", "eval": "builtin"}
"""``--split``: the training pool's questions, or the built-in suite held out for evaluation."""


def load_tasks(
    suite: str,
    data_dir: Path | None = None,
    patterns: list[str] | None = None,
    kind: TaskKind | None = None,
    limit: int | None = None,
    *,
    pool_datasets: int = 10,
    pool_seed: int = 0,
    cache: Path | None = None,
) -> list[EvalTask]:
    """The tasks a command's suite and filter flags select (``eval`` and ``collect``).

    ``patterns`` are task ids or dataset keys, globs allowed, commas also separating.
    ``pool``: questions over ``pool_datasets`` tables of the training pool (seeded by
    ``pool_seed``, written as CSV into ``cache``), none of them a suite dataset.
    Raises ``InputError`` when the suite can't be read or nothing matches.
    """
    suite = SPLITS.get(suite, suite)
    if suite == "pool":
        from ..training.questions import pool_tasks

        if pool_datasets < 1:
            raise InputError("--pool-datasets must be at least 1")
        tasks = pool_tasks(pool_datasets, pool_seed, cache)
    elif suite == "dabench":
        if not data_dir:
            raise InputError("--suite dabench needs --data-dir (the folder with da-dev-questions.jsonl)")
        tasks = load_dabench(data_dir)
    else:
        tasks = builtin_tasks(materialise=False)
    wanted = [p.strip() for v in patterns or [] for p in v.split(",") if p.strip()] or None
    chosen = select_tasks(tasks, wanted, kind, limit)
    if not chosen:
        raise InputError("no task matches the filters (see --list)")
    return chosen


def tasks_from_args(args: argparse.Namespace) -> list[EvalTask]:
    """The tasks the flags of ``eval.options.add_suite_options`` select, for ``eval`` and
    ``collect`` alike; ``--split`` sets ``args.suite`` (later steps read the suite)."""
    if args.split:
        args.suite = SPLITS[args.split]
    return load_tasks(
        args.suite,
        args.data_dir,
        args.tasks,
        args.kind,
        args.limit,
        pool_datasets=args.pool_datasets,
        pool_seed=args.pool_seed,
        cache=args.data_cache,
    )
