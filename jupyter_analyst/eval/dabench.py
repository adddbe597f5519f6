"""InfiAgent-DABench's closed-form format, read from a folder the user downloaded.

Layout (as in the InfiAgent repository's ``examples/DA-Agent/data``):
``da-dev-questions.jsonl`` (id, question, concepts, constraints, format, file_name, level),
``da-dev-labels.jsonl`` (id, common_answers: [[name, value], ...]) and ``da-dev-tables/``.
Answers are scored with the benchmark's own rule (``answers.score_dabench``): every
sub-answer must match, as the same string or as numbers within 1e-6. No benchmark data
ships with this project.
"""

from __future__ import annotations

import json
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


def load_dabench(data_dir: Path) -> list[EvalTask]:
    """One closed-form task per question that has a label and an existing table."""
    root = find_root(Path(data_dir).expanduser())
    labels_path = root / LABELS
    if not labels_path.exists():
        raise InputError(f"{root} has no {LABELS}")
    labels = {str(r["id"]): r for r in _read_jsonl(labels_path) if "id" in r}
    tasks: list[EvalTask] = []
    missing_tables: set[str] = set()
    for q in _read_jsonl(root / QUESTIONS):
        qid = str(q.get("id"))
        label = labels.get(qid)
        if label is None:
            continue
        table = root / TABLES / str(q.get("file_name", ""))
        if not table.is_file():
            missing_tables.add(str(q.get("file_name")))
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
        hint = f" (missing tables: {', '.join(sorted(missing_tables)[:5])})" if missing_tables else ""
        raise InputError(f"no DABench question in {root} has both a label and a table{hint}")
    return tasks


def dabench_scores(records: list[dict[str, Any]]) -> dict[str, float]:
    """DABench's three accuracies over judged records: by question, proportional, by sub-question."""
    per_q: list[list[bool]] = []
    for r in records:
        answers = (r.get("verdict") or {}).get("answers") or {}
        per_q.append([bool(a.get("ok")) for a in answers.values()] if answers else [False])
    if not per_q:
        return {"accuracy_by_question": 0.0, "accuracy_proportional": 0.0, "accuracy_by_sub_question": 0.0}
    subs = [ok for q in per_q for ok in q]
    return {
        "accuracy_by_question": round(sum(all(q) for q in per_q) / len(per_q), 4),
        "accuracy_proportional": round(sum(sum(q) / len(q) for q in per_q) / len(per_q), 4),
        "accuracy_by_sub_question": round(sum(subs) / len(subs), 4),
    }
