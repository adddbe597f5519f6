"""Scripted policies: deterministic stand-ins for a model, for tests, demos and replays.

A script step can depend on what the model would have seen (e.g. answer step 3 with a fix
only once step 2's traceback is in the conversation), which is how tests prove the loop
really feeds observations back rather than replaying a canned list blindly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..agent.copaw import is_tool_response
from ..agent.dialect import DIALECTS
from ..agent.tools import CODE_TOOL, FINAL_TOOL, MARKDOWN_TOOL
from ..agent.types import AssistantTurn, Message, ToolCall, ToolSpec
from ..errors import InputError

ScriptStep = str | ToolCall | AssistantTurn | Callable[[list[Message]], str | ToolCall | AssistantTurn]


def code(source: str) -> ToolCall:
    return ToolCall(CODE_TOOL, {"code": source})


def markdown(text: str) -> ToolCall:
    return ToolCall(MARKDOWN_TOOL, {"text": text})


def final(answer: str) -> ToolCall:
    return ToolCall(FINAL_TOOL, {"answer": answer})


def _as_turn(item: str | ToolCall | AssistantTurn) -> AssistantTurn:
    if isinstance(item, AssistantTurn):
        return item
    if isinstance(item, ToolCall):
        # A fresh id each time, as a model would produce.
        return AssistantTurn(tool_calls=[ToolCall(item.name, dict(item.arguments))])
    return AssistantTurn(content=item)  # raw text: the loop parses it like a model's reply


class ScriptedPolicy:
    """Answers turn N with ``steps[N]`` (a raw reply, a tool call or a function of the messages).

    Past the end of the script it repeats ``fallback`` (default: a plain reply with no tool
    call, i.e. a model that has stopped working).
    """

    def __init__(
        self, steps: Sequence[ScriptStep], name: str = "scripted policy", fallback: str = "Done."
    ) -> None:
        self.steps = list(steps)
        self.name = name
        self.fallback = fallback
        self.calls = 0
        self.dialect: str | None = None
        """The tool dialect of the replayed turns (``agent.dialect``); None: ours."""

    def __call__(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        index = sum(1 for m in messages if m.get("role") == "assistant")
        self.calls += 1
        if index >= len(self.steps):
            return AssistantTurn(content=self.fallback, model=self.name)
        step = self.steps[index]
        item = step(messages) if callable(step) else step
        turn = _as_turn(item)
        turn.model = self.name
        return turn


def load_replay(path: str | Path) -> ScriptedPolicy:
    """A policy that replays the assistant turns of a saved conversation or script.

    Accepts a JSON list of steps (``{"code": ...}``, ``{"markdown": ...}``, ``{"final_answer":
    ...}`` or a raw reply string) or a trajectory ``{"messages": [...]}`` whose assistant
    turns are replayed in order.
    """
    p = Path(path)
    try:
        data: Any = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"replay file not found: {p}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read replay file {p}: {exc}") from None
    steps: list[ScriptStep] = []
    dialect = data.get("dialect") if isinstance(data, dict) else None
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        if dialect is None and any(is_tool_response(m.get("content")) for m in data["messages"]):
            dialect = "copaw"  # results as <tool_response> user turns: the terminal agent's data
        for m in data["messages"]:
            if m.get("role") != "assistant":
                continue
            calls = [
                ToolCall(c["function"]["name"], _args(c["function"].get("arguments")))
                for c in m.get("tool_calls") or []
            ]
            steps.append(AssistantTurn(content=m.get("content") or "", tool_calls=calls))
    elif isinstance(data, list):
        for item in data:
            steps.append(_script_item(item, p))
    else:
        raise InputError(f"replay file {p} must hold a JSON list of steps or {{'messages': [...]}}")
    policy = ScriptedPolicy(steps, name=f"replay of {p.name}")
    if dialect is not None:
        if dialect not in DIALECTS:
            known = ", ".join(DIALECTS)
            raise InputError(f"replay file {p}: unknown dialect {dialect!r}; use one of {known}")
        policy.dialect = str(dialect)
    return policy


def _args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {"__raw_arguments__": raw}
    return value if isinstance(value, dict) else {"__raw_arguments__": raw}


def _script_item(item: Any, p: Path) -> ScriptStep:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        if "code" in item:
            return code(str(item["code"]))
        if "markdown" in item:
            return markdown(str(item["markdown"]))
        if "final_answer" in item:
            return final(str(item["final_answer"]))
    raise InputError(f"replay file {p}: cannot understand step {item!r}")
