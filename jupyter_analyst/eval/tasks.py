"""What one evaluation task is, independent of where it comes from (built-in or DABench).

A task names its data file, its question and, when it has one, its closed-form answer:
either a reference function computed from the very file the analyst loads (built-in: the
answer is never typed in by hand, so it can't drift from the data), or the labels a public
benchmark ships (DABench).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from .answers import AnswerSpec, format_instructions, json_value

TaskKind = Literal["open", "closed"]
Scoring = Literal["builtin", "dabench"]
Reference = Callable[[Any], dict[str, Any]]  # DataFrame -> {answer name: value}


@dataclass(frozen=True)
class EvalTask:
    """One question about one dataset.

    ``dataset`` is a key of ``datasets.DATASETS`` (built-in) or a file name (DABench).
    ``data_path`` is set once the data file exists (built-in files are materialised lazily).
    """

    id: str
    dataset: str
    question: str
    kind: TaskKind = "open"
    answers: tuple[AnswerSpec, ...] = ()
    reference: Reference | None = None
    labels: dict[str, str] | None = None
    scoring: Scoring = "builtin"
    data_path: Path | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    level: str = ""

    @property
    def prompt(self) -> str:
        """The question exactly as the analyst receives it."""
        if self.kind == "closed" and self.scoring == "builtin" and self.answers:
            return f"{self.question}\n\n{format_instructions(self.answers)}"
        return self.question

    def expected(self, data: Path | None = None) -> dict[str, Any]:
        """``{name: value}`` the judge compares with: labels, or the reference run on the data."""
        if self.labels is not None:
            return dict(self.labels)
        if self.reference is None:
            return {}
        path = data or self.data_path
        if path is None:
            raise ValueError(f"task {self.id}: no data file to compute the reference from")
        df = pd.read_csv(path)
        values = self.reference(df)
        names = {a.name for a in self.answers}
        if set(values) != names:
            raise ValueError(f"task {self.id}: reference returned {sorted(values)}, expected {sorted(names)}")
        return {k: json_value(v) for k, v in values.items()}

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset": self.dataset,
            "kind": self.kind,
            "scoring": self.scoring,
            "question": self.question,
            "tags": list(self.tags),
            "level": self.level,
        }


def select_tasks(
    tasks: Iterable[EvalTask],
    patterns: list[str] | None = None,
    kind: TaskKind | None = None,
    limit: int | None = None,
) -> list[EvalTask]:
    """Filter by id globs (``churn*``, ``dabench-12``; a dataset key matches too), kind and count."""
    chosen = []
    for task in tasks:
        if kind and task.kind != kind:
            continue
        if patterns and not any(
            fnmatch.fnmatchcase(task.id, p) or fnmatch.fnmatchcase(task.dataset, p) for p in patterns
        ):
            continue
        chosen.append(task)
    return chosen[:limit] if limit is not None else chosen
