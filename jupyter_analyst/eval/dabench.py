"""InfiAgent-DABench's closed-form format, read from a folder the user downloaded.

Layout (as in the InfiAgent repository's ``examples/DA-Agent/data``):
``da-dev-questions.jsonl`` (id, question, concepts, constraints, format, file_name, level),
``da-dev-labels.jsonl`` (id, common_answers: [[name, value], ...]) and ``da-dev-tables/``.
Answers are read and scored with the benchmark's own rule (``answers.extract_dabench_answers``
and ``answers.score_dabench``): one line per ``@name[value]``, nothing trimmed, every
sub-answer the same string or numbers within 1e-6. DABench leaves a question without a
response out of its rates; :func:`dabench_scores` reports those rates and, beside them, the
same rates with such questions counted as failures. A question whose table is missing is
never run, and :func:`read_dabench` names it. No benchmark data ships with this project.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .tasks import EvalTask

QUESTIONS = "da-dev-questions.jsonl"
LABELS = "da-dev-labels.jsonl"
TABLES = "da-dev-tables"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise InputError(f"{path.name} line {n} is not JSON: {exc}") from None
    return rows


def find_root(data_dir: Path) -> Path:
    """The folder holding the three DABench entries (``data_dir`` or its ``data/``)."""
    for root in (data_dir, data_dir / "data", data_dir / "examples" / "DA-Agent" / "data"):
        if (root / QUESTIONS).exists():
            return root
    raise InputError(f"{data_dir} does not hold DABench's {QUESTIONS} (with {LABELS} and {TABLES}/)")


def dabench_prompt(q: dict[str, Any]) -> str:
    """The question as DABench poses it: question, constraints and the answer format."""
    parts = [str(q.get("question", "")).strip()]
    if q.get("constraints"):
        parts.append(f"Constraints: {str(q['constraints']).strip()}")
    if q.get("format"):
        parts.append(f"Answer format: {str(q['format']).strip()}")
    parts.append(
        "Compute the answer in the notebook, then include every value in your final_answer "
        "in exactly the @name[value] format above."
    )
    return "\n\n".join(parts)


@dataclass
class DabenchSet:
    """The runnable tasks of a DABench folder and the labelled questions left out."""

    tasks: list[EvalTask]
    missing_table: list[dict[str, str]] = field(default_factory=list)
    """``{"id": "dabench-<id>", "file": file_name, "why": "table missing"}`` per question."""

    def skipped_line(self) -> str:
        """One line naming every question skipped for a missing table ('' when none)."""
        if not self.missing_table:
            return ""
        names = ", ".join(f"{m['id']} ({m['file']})" for m in self.missing_table)
        return f"{len(self.missing_table)} DABench question(s) skipped, their table is missing: {names}"


def load_dabench(data_dir: Path) -> list[EvalTask]:
    """One closed-form task per question that has a label and an existing table."""
    return read_dabench(data_dir).tasks


def read_dabench(data_dir: Path) -> DabenchSet:
    """The tasks of :func:`load_dabench`, with the labelled questions whose table is missing."""
    root = find_root(Path(data_dir).expanduser())
    labels_path = root / LABELS
    if not labels_path.exists():
        raise InputError(f"{root} has no {LABELS}")
    labels = {str(r["id"]): r for r in _read_jsonl(labels_path) if "id" in r}
    tasks: list[EvalTask] = []
    missing: list[dict[str, str]] = []
    for q in _read_jsonl(root / QUESTIONS):
        qid = str(q.get("id"))
        label = labels.get(qid)
        if label is None:
            continue
        table = root / TABLES / str(q.get("file_name", ""))
        if not table.is_file():
            missing.append({"id": f"dabench-{qid}", "file": str(q.get("file_name")), "why": "table missing"})
            continue
        answers = {str(name): str(value) for name, value in label.get("common_answers", [])}
        tasks.append(
            EvalTask(
                id=f"dabench-{qid}",
                dataset=str(q["file_name"]),
                question=dabench_prompt(q),
                kind="closed",
                labels=answers,
                scoring="dabench",
                data_path=table,
                tags=tuple(q.get("concepts") or ()),
                level=str(q.get("level", "")),
            )
        )
    if not tasks:
        files = sorted({m["file"] for m in missing})
        hint = f" (missing tables: {', '.join(files[:5])})" if files else ""
        raise InputError(f"no DABench question in {root} has both a label and a table{hint}")
    return DabenchSet(tasks, missing)


def _accuracies(per_q: list[list[bool]]) -> dict[str, float]:
    """DABench's three rates (their rounding: 4 places; 0 when there is no question)."""
    subs = [ok for q in per_q for ok in q]
    n = len(per_q)
    return {
        "accuracy_by_question": round(sum(all(q) for q in per_q) / n, 4) if n else 0.0,
        "accuracy_proportional": round(sum(sum(q) / len(q) for q in per_q if q) / n, 4) if n else 0.0,
        "accuracy_by_sub_question": round(sum(subs) / len(subs), 4) if subs else 0.0,
    }


def answered(record: dict[str, Any]) -> bool:
    """Whether a run gave DABench a response: a non-empty final answer (a harness error gave none)."""
    if record.get("harness_error"):
        return False
    verdict = record.get("verdict") or {}
    return bool(verdict.get("answered", verdict.get("natural")))


def dabench_scores(records: list[dict[str, Any]]) -> dict[str, Any]:
    """DABench's three accuracies over judged records: by question, proportional, by sub-question.

    The plain keys count as DABench does, over answered questions only (its evaluator skips
    a question with no response); ``all_questions`` holds the same rates with every
    unanswered question a failure on each of its sub-answers.
    """
    dabench: list[list[bool]] = []
    every: list[list[bool]] = []
    for r in records:
        answers = (r.get("verdict") or {}).get("answers") or {}
        subs = [bool(a.get("ok")) for a in answers.values()]
        if answered(r):
            dabench.append(subs or [False])
            every.append(subs or [False])
        else:  # as many failed sub-answers as the question has labels
            every.append([False] * max(1, len(subs), len(r.get("expected") or {})))
    return {
        **_accuracies(dabench),
        "answered": len(dabench),
        "unanswered": len(every) - len(dabench),
        "all_questions": _accuracies(every),
    }
