"""Trajectories: one JSONL line per run, ``{"messages": [...], "tools": [...], "meta": {...}}``.

``messages`` is exactly the conversation the model saw and produced (``AgentLoop.messages``:
system prompt, task, every assistant turn with its tool calls, every tool result and every
"continue" nudge), so training on it teaches the model the very context it meets at
inference. Tool-call arguments are stored as JSON objects, not JSON strings: Qwen-style
chat templates render ``arguments`` only when it is a mapping (design.md §3).

Filters run when a record is written and again when training data is built: keep only
judged-successful (or finished) runs, drop duplicates (ignoring the random tool-call ids),
cap the length.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .. import __version__
from ..agent.copaw import is_tool_response
from ..agent.tools import FINAL_TOOL, TOOLS
from ..agent.types import Message, ToolSpec
from ..jsonl import read_records

Keep = Literal["passed", "finished", "any"]
KEEP_CHOICES: tuple[str, ...] = ("passed", "finished", "any")


# ------------------------------------------------------------------------------ messages


def _text(content: Any) -> str:
    """Message content as plain text (OpenAI content parts are joined)."""
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p.get("text") or "" if isinstance(p, Mapping) else str(p) for p in content)
    return str(content)


class BadTrajectory(ValueError):
    """A conversation that can't be trained on as it is (the message says why)."""


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments as a dict, from a dict or a JSON string; raise ``BadTrajectory`` else."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            raise BadTrajectory(f"tool-call arguments are not valid JSON: {raw[:80]!r}") from None
        if isinstance(value, dict):
            return value
    raise BadTrajectory(f"tool-call arguments must be an object, got {type(raw).__name__}")


def normalize_call(call: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One tool call in OpenAI form with dict arguments (accepts the flat ``{name, arguments}`` too)."""
    fn = call.get("function") if isinstance(call.get("function"), Mapping) else call
    name = fn.get("name") if fn else None
    if not name:
        raise BadTrajectory("a tool call has no function name")
    return {
        "id": str(call.get("id") or f"call_{index}"),
        "type": "function",
        "function": {"name": str(name), "arguments": parse_arguments(fn.get("arguments"))},  # type: ignore[union-attr]
    }


def normalize_messages(messages: Iterable[Mapping[str, Any]]) -> list[Message]:
    """Messages with text content and dict arguments; keys a template doesn't use are dropped."""
    out: list[Message] = []
    n_calls = 0
    for raw in messages:
        role = raw.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise BadTrajectory(f"unknown message role {role!r}")
        msg: Message = {"role": role, "content": _text(raw.get("content"))}
        if role == "assistant":
            calls = []
            for call in raw.get("tool_calls") or []:
                n_calls += 1
                calls.append(normalize_call(call, n_calls))
            if calls:
                msg["tool_calls"] = calls
            if raw.get("reasoning_content"):
                msg["reasoning_content"] = _text(raw.get("reasoning_content"))
        elif role == "tool":
            if raw.get("tool_call_id"):
                msg["tool_call_id"] = str(raw["tool_call_id"])
            if raw.get("name"):
                msg["name"] = str(raw["name"])
        out.append(msg)
    return out


def content_key(messages: Iterable[Mapping[str, Any]]) -> str:
    """A hash of what the model saw and said, ignoring tool-call ids (random per run)."""
    parts = []
    for m in messages:
        calls = [[c["function"]["name"], c["function"]["arguments"]] for c in m.get("tool_calls") or []]
        parts.append([m.get("role"), m.get("content") or "", calls])
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def ends_with_final_answer(messages: Sequence[Mapping[str, Any]]) -> bool:
    """True when the last assistant turn calls ``final_answer`` (the run ended by itself)."""
    for m in reversed(messages):
        if m.get("role") == "assistant":
            return any(c["function"]["name"] == FINAL_TOOL for c in m.get("tool_calls") or [])
    return False


def ends_with_reply(messages: Sequence[Mapping[str, Any]]) -> bool:
    """The CoPaw dialect's ending: the last assistant turn has no call, after at least one
    ``<tool_response>`` (that dialect never calls ``final_answer``)."""
    answered = any(m.get("role") == "user" and is_tool_response(m.get("content")) for m in messages)
    last = next((m for m in reversed(messages) if m.get("role") == "assistant"), None)
    return answered and last is not None and "<tool_call>" not in str(last.get("content") or "")


def ended_by_itself(messages: Sequence[Mapping[str, Any]], dialect: str | None = None) -> bool:
    """Whether the run ended the way its dialect ends a run (``final_answer``, or a reply)."""
    return ends_with_reply(messages) if dialect == "copaw" else ends_with_final_answer(messages)


def message_chars(messages: Iterable[Mapping[str, Any]]) -> int:
    """Characters of content and arguments: a cheap, tokenizer-free length."""
    total = 0
    for m in messages:
        total += len(m.get("content") or "")
        for c in m.get("tool_calls") or []:
            total += len(json.dumps(c["function"]["arguments"], ensure_ascii=False))
    return total


# ------------------------------------------------------------------------------ records


def make_record(
    messages: Sequence[Mapping[str, Any]],
    tools: list[ToolSpec] | None = None,
    verdict: Any = None,
    meta: Mapping[str, Any] | None = None,
    finished: Any = None,
) -> dict[str, Any]:
    """One trajectory line; ``verdict`` is a judge ``Verdict`` (or dict), ``finished`` a ``RunFinished``."""
    msgs = normalize_messages(messages)
    verdict_dict = verdict.to_dict() if hasattr(verdict, "to_dict") else (dict(verdict) if verdict else None)
    info: dict[str, Any] = {
        "id": content_key(msgs),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "chars": message_chars(msgs),
        "turns": sum(1 for m in msgs if m["role"] == "assistant"),
        "finished": ended_by_itself(msgs, (meta or {}).get("dialect")),
        "verdict": verdict_dict,
        "passed": bool(verdict_dict.get("passed")) if verdict_dict else None,
    }
    if finished is not None:
        info.update(
            stop_reason=finished.reason.value,
            steps=finished.steps,
            tokens=finished.tokens,
            seconds=finished.seconds,
            errors=finished.errors,
            errors_fixed=finished.errors_fixed,
        )
    info.update(meta or {})
    return {"messages": msgs, "tools": list(tools if tools is not None else TOOLS), "meta": info}


def record_run(
    outcome: Any,
    tools: list[ToolSpec] | None = None,
    verdict: Any = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A trajectory from a ``runner.RunOutcome`` (its ``messages`` and ``finished``)."""
    extra = (
        {"data": Path(str(outcome.facts.get("source", ""))).name} if getattr(outcome, "facts", None) else {}
    )
    return make_record(outcome.messages, tools, verdict, {**extra, **(meta or {})}, outcome.finished)


@dataclass
class TrajectoryFilter:
    """Which records to keep.

    ``keep``: ``passed`` = the judge passed the run; ``finished`` = it ended with
    ``final_answer`` (judged or not); ``any`` = everything. ``max_chars`` caps content plus
    arguments (tokens are capped at training time by ``max_length``).
    """

    keep: Keep = "passed"
    max_chars: int | None = 200_000
    max_turns: int | None = None
    min_turns: int = 1
    dedupe: bool = True

    def reject(self, record: Mapping[str, Any]) -> str:
        """Why ``record`` is dropped, or '' when it is kept (duplicates are the writer's job)."""
        meta = record.get("meta") or {}
        msgs = record.get("messages") or []
        turns = sum(1 for m in msgs if m.get("role") == "assistant")
        if turns < self.min_turns:
            return "no assistant turn"
        if self.keep == "passed" and not meta.get("passed"):
            return "not judged successful" if meta.get("verdict") else "no verdict (unjudged)"
        if self.keep == "finished" and not ended_by_itself(msgs, meta.get("dialect")):
            copaw = meta.get("dialect") == "copaw"
            return "did not end with a reply" if copaw else "did not end with final_answer"
        if self.max_turns is not None and turns > self.max_turns:
            return f"longer than {self.max_turns} turns"
        if self.max_chars is not None and message_chars(msgs) > self.max_chars:
            return f"longer than {self.max_chars} characters"
        return ""


# ------------------------------------------------------------------------------ files


def read_trajectories(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file; blank lines and a torn last line are skipped."""
    for rec in read_records(path):
        if isinstance(rec.get("messages"), list):
            yield rec


class TrajectoryWriter:
    """Appends filtered, de-duplicated records to a JSONL file; safe across threads.

    Opening an existing file loads its keys, so a resumed collection never writes a
    duplicate. Each line is flushed as written: an interrupted run leaves a valid file.
    """

    def __init__(self, path: str | os.PathLike[str], filters: TrajectoryFilter | None = None) -> None:
        self.path = Path(path)
        self.filters = filters or TrajectoryFilter()
        self.keys: set[str] = set()
        self.written = 0
        self.rejected: dict[str, int] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            self.keys = {content_key(r["messages"]) for r in read_trajectories(self.path)}

    def write(self, record: Mapping[str, Any]) -> str:
        """Append ``record`` unless filtered; return '' when written, else why it was skipped."""
        why = self.filters.reject(record)
        key = content_key(record["messages"])
        with self._lock:
            if not why and self.filters.dedupe and key in self.keys:
                why = "duplicate"
            if why:
                self.rejected[why] = self.rejected.get(why, 0) + 1
                return why
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                fh.flush()
            self.keys.add(key)
            self.written += 1
        return ""


def save_trajectory(
    path: str | os.PathLike[str],
    outcome: Any,
    tools: list[ToolSpec] | None = None,
    verdict: Any = None,
    meta: Mapping[str, Any] | None = None,
    filters: TrajectoryFilter | None = None,
) -> str:
    """Record one finished run into ``path`` (the one call the CLI and the server need).

    Default filters keep any run (the user asked to save it) but still drop duplicates;
    returns '' when written, else why not.
    """
    record = record_run(outcome, tools, verdict, meta)
    return TrajectoryWriter(path, filters or TrajectoryFilter(keep="any", max_chars=None)).write(record)
