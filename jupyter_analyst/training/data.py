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


@dataclass(frozen=True)
class TokenCount:
    """One row as the trainer tokenizes it: its length and where its supervised part starts.

    TRL truncates each sequence to ``max_length`` (keeping the start) and then silently drops
    every sequence left with no assistant token, so where the first one sits decides whether a
    row trains at all, whatever its length.
    """

    length: int
    first_supervised: int | None
    """0-based index of the first assistant (trainable) token; ``None`` when the row has none."""

    def trains_at(self, max_length: int) -> bool:
        """Whether truncation to ``max_length`` leaves at least one assistant token."""
        return self.first_supervised is not None and self.first_supervised < max_length

    @property
    def min_length(self) -> int | None:
        """The shortest ``max_length`` that keeps an assistant token of this row."""
        return None if self.first_supervised is None else self.first_supervised + 1


def token_counts(tokenizer: Any, rows: list[dict[str, Any]], template: str) -> list[TokenCount]:
    """Each row tokenized exactly as the trainer will (template, tools, assistant mask)."""
    counts = []
    for row in rows:
        enc = tokenizer.apply_chat_template(
            row["messages"],
            tools=json.loads(row["tools"]) or None,
            chat_template=template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        first = next((i for i, bit in enumerate(enc["assistant_masks"]) if bit), None)
        counts.append(TokenCount(len(enc["input_ids"]), first))
    return counts
