"""What the baseline reads: the task message's question and facts, and its own calls.

Kept apart from the planner (``baseline``) so the parsing of ``agent.prompts.render_task``'s
layout lives in one place: the facts are read only from inside their fence, so text in the
question can never pose as facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..agent.followup import earlier_of
from ..agent.prompts import DEFAULT_TASK, FACTS_COLUMN_RE, FACTS_HEADER_RE, split_task
from ..agent.types import Message


@dataclass(frozen=True)
class Column:
    """One column line of the facts block."""

    name: str
    dtype: str
    kind: str
    missing: int
    unique: int
    example: str
    index: int


@dataclass
class Task:
    """What the first user message says: the question and the frame's facts."""

    question: str
    var: str = "df"
    rows: int = 0
    cols: int = 0
    columns: list[Column] = field(default_factory=list)
    date_columns: list[str] = field(default_factory=list)
    follow_up: bool = False
    """The task follows up an earlier run in the same kernel (``agent.followup``): the
    general analysis is done, only the question's own steps are left."""


def parse_task(messages: list[Message]) -> Task:
    """Read the question and facts from the task message (``render_task``'s layout); the
    facts only from inside their fence, so a question can't forge them."""
    users = [message_text(m.get("content")) for m in messages if m.get("role") == "user"]
    text = next((u for u in users if u.startswith("Task:")), users[0] if users else "")
    question, facts = split_task(text)
    if question == DEFAULT_TASK:
        question = ""
    follow_up = bool(earlier_of(text))
    header = FACTS_HEADER_RE.match(facts) if facts is not None else None
    if facts is None or header is None:
        return Task(question=question, follow_up=follow_up)
    body = facts[header.end() :].split("\nFirst rows:", 1)[0]
    columns = []
    for i, m in enumerate(FACTS_COLUMN_RE.finditer(body)):
        name, dtype = m["name"], m["dtype"]
        while ": " in dtype:  # a name containing ": " (dtypes never do)
            head, dtype = dtype.split(": ", 1)
            name = f"{name}: {head}"
        example = (m["example"] or "").strip().strip("'\"")
        columns.append(Column(name, dtype, m["kind"], int(m["missing"]), int(m["unique"]), example, i))
    dates: list[str] = []
    line = re.search(r"^Date columns: (.*)$", body, re.MULTILINE)
    if line:
        listed = f", {line.group(1)},"
        dates = [c.name for c in columns if f", {c.name}," in listed]
    return Task(question, header["var"], int(header["rows"]), int(header["cols"]), columns, dates, follow_up)


def message_text(content: Any) -> str:
    """A message's content as text (a string, or OpenAI content parts)."""
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def own_calls(messages: list[Message]) -> list[tuple[str, str]]:
    """(tool name, observation) of each tool call in the conversation, in order."""
    observations = {
        m.get("tool_call_id"): message_text(m.get("content")) for m in messages if m.get("role") == "tool"
    }
    calls: list[tuple[str, str]] = []
    for m in messages:
        if m.get("role") != "assistant":
            continue
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function", tc)
            calls.append((str(fn.get("name", "")), observations.get(tc.get("id"), "")))
    return calls
