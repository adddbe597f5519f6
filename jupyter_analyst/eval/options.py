"""The task-selection and fan-out flags ``eval`` and ``collect`` share, spelt once.

Only argparse is imported: the CLI builds its parsers before any heavy import.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_suite_options(parser: argparse.ArgumentParser) -> None:
    """Which suite, split, pool tables, DABench folder and task filters to run."""
    parser.add_argument(
        "--suite",
        choices=["builtin", "dabench", "pool"],
        default="builtin",
        help="task suite (default builtin; pool: questions over training-pool tables)",
    )
    parser.add_argument(
        "--split",
        choices=["train", "eval"],
        help="train: the training pool's questions (--suite pool); eval: the held-out built-in suite",
    )
    parser.add_argument(
        "--pool-datasets", type=int, default=10, help="pool tables for --suite pool (default 10)"
    )
    parser.add_argument("--pool-seed", type=int, default=0, help="seed picking the pool tables and questions")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="DABench folder with da-dev-questions.jsonl, da-dev-labels.jsonl "
        "and da-dev-tables/ (for --suite dabench)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        metavar="GLOB",
        help="task ids or dataset keys, globs allowed (e.g. 'churn-*' penguins); commas also separate",
    )
    parser.add_argument(
        "--kind", choices=["open", "closed"], help="only open analyses or only closed-form questions"
    )
    parser.add_argument("--limit", type=int, help="at most N tasks (after the filters)")


def add_cluster_options(parser: argparse.ArgumentParser, workers_help: str) -> None:
    """``--workers`` (what runs at once) and ``--ray`` (where: a Ray cluster, see ``eval.fanout``)."""
    parser.add_argument("--workers", type=int, metavar="N", help=workers_help)
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="fan the tasks out over the Ray cluster whose head is at ADDRESS (host:port, or 'auto'); "
        "run from a node of the cluster; each task gets its own kernel on a worker node, its data "
        "travels with it and its notebook comes back here (needs jupyter-analyst[ray] on every node)",
    )
