"""Trajectory files -> the rows SFTTrainer trains on.

Rows keep the conversational form (``messages`` + ``tools``) so TRL applies the chat
template and builds the assistant mask itself. ``messages`` is stored with the ``Json``
feature: Arrow would otherwise unify every tool call's ``arguments`` into one struct with
all keys (``code``, ``answer``, ``text``), filling the missing ones with nulls that the
template would render as extra ``<parameter=...>None`` blocks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .trajectory import TrajectoryFilter, content_key, normalize_messages, read_trajectories


@dataclass
class DataSummary:
    """What was read and what was kept (printed before training starts)."""

    read: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        drops = ", ".join(f"{n} {why}" for why, n in self.dropped.most_common()) or "none"
        return f"trajectories: {self.read} read, {self.kept} kept (dropped: {drops})"


def load_rows(
    paths: Iterable[str | Path], filters: TrajectoryFilter
) -> tuple[list[dict[str, Any]], DataSummary]:
    """Filtered, de-duplicated ``{"messages", "tools"}`` rows from trajectory JSONL files."""
    summary = DataSummary()
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    for path in paths:
        if not Path(path).exists():
            from ..errors import InputError

            raise InputError(f"trajectory file not found: {path}")
        for rec in read_trajectories(path):
            summary.read += 1
            try:
                messages = normalize_messages(rec["messages"])
            except ValueError as exc:
                summary.dropped[f"malformed ({exc})"[:60]] += 1
                continue
            rec = {**rec, "messages": messages}
            why = filters.reject(rec)
            key = content_key(messages)
            if not why and filters.dedupe and key in seen:
                why = "duplicate"
            if why:
                summary.dropped[why] += 1
                continue
            seen.add(key)
            rows.append({"messages": messages, "tools": json.dumps(rec.get("tools") or [])})
            summary.sources[str((rec.get("meta") or {}).get("source", "unknown"))] += 1
    summary.kept = len(rows)
    return rows, summary


def to_dataset(rows: list[dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` with ``messages`` as JSON (see the module docstring) and ``tools`` as text."""
    from datasets import Dataset, Features, Json, Value

    return Dataset.from_list(rows, features=Features({"messages": Json(), "tools": Value("string")}))


def token_lengths(tokenizer: Any, rows: list[dict[str, Any]], template: str) -> list[int]:
    """Tokens per row as the trainer will render it (for ``--overlong drop`` and the summary)."""
    lengths = []
    for row in rows:
        ids = tokenizer.apply_chat_template(
            row["messages"],
            tools=json.loads(row["tools"]) or None,
            chat_template=template,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
        lengths.append(len(ids))
    return lengths
