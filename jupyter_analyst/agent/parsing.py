"""Parse tool calls out of a model's raw text.

Local models answer in their own syntax, and servers without a tool parser hand that text
back verbatim. We read the two Qwen dialects (Qwen3.5's XML ``<function=...>`` form and the
older JSON-in-``<tool_call>`` form), strip ``<think>`` blocks, and forgive the near-misses a
small model makes (an unclosed tag at the end of a truncated reply, JSON inside a code
fence). A reply that clearly tried to call a tool but cannot be read yields ``error``, which
the loop shows the model so it can try again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .tools import TOOL_ARGUMENT
from .types import ToolCall

_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_TOOL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_FUNCTION = re.compile(r"<function=([^>\s]+)\s*>(.*?)(?:</function>|(?=<function=)|\Z)", re.DOTALL)
_PARAMETER = re.compile(
    r"<parameter=([^>\s]+)\s*>(.*?)(?:</parameter>|(?=<parameter=)|(?=</function>)|\Z)", re.DOTALL
)
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)

FORMAT_HINT = (
    "Use exactly this format:\n<tool_call>\n<function=add_and_execute_jupyter_code_cell>\n"
    "<parameter=code>\nprint(df.shape)\n</parameter>\n</function>\n</tool_call>"
)

_STRING_ARGS = frozenset(TOOL_ARGUMENT.values())


@dataclass
class ParseResult:
    """What a raw reply contained: calls, the prose around them, and any parse problem."""

    calls: list[ToolCall] = field(default_factory=list)
    content: str = ""
    reasoning: str | None = None
    error: str = ""


def split_reasoning(text: str) -> tuple[str | None, str]:
    """Separate ``<think>`` text from the answer.

    Qwen's generation prompt opens ``<think>`` itself, so a reply may hold only the closing
    tag; everything before it is then reasoning.
    """
    parts = [m.group(1).strip() for m in _THINK_BLOCK.finditer(text)]
    rest = _THINK_BLOCK.sub("", text)
    if "</think>" in rest:
        before, _, rest = rest.partition("</think>")
        parts.insert(0, before.replace("<think>", "").strip())
    elif "<think>" in rest and "<tool_call>" not in rest.split("<think>", 1)[1]:
        # An unclosed think block that runs to the end: the model never answered.
        rest, _, thought = rest.partition("<think>")
        parts.append(thought.strip())
    reasoning = "\n\n".join(p for p in parts if p) or None
    return reasoning, rest


def _param_value(name: str, raw: str) -> Any:
    """Strip the one newline the template puts around values; decode non-string JSON."""
    value = raw[1:] if raw.startswith("\n") else raw
    value = value[:-1] if value.endswith("\n") else value
    if name in _STRING_ARGS:
        return value
    try:
        decoded = json.loads(value)
    except (ValueError, TypeError):
        return value
    return decoded


def _parse_xml(body: str) -> list[ToolCall]:
    calls = []
    for fn in _FUNCTION.finditer(body):
        args = {m.group(1): _param_value(m.group(1), m.group(2)) for m in _PARAMETER.finditer(fn.group(2))}
        calls.append(ToolCall(name=fn.group(1).strip(), arguments=args))
    return calls


def _parse_json(body: str) -> list[ToolCall]:
    """The older Qwen / Hermes form: ``{"name": ..., "arguments": {...}}``."""
    fenced = _FENCE.match(body)
    text = (fenced.group(1) if fenced else body).strip()
    if not text:
        return []
    obj = json.loads(text)
    items = obj if isinstance(obj, list) else [obj]
    calls = []
    for item in items:
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError("a tool call needs a 'name'")
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):
            args = json.loads(args)
        if not isinstance(args, dict):
            raise ValueError("'arguments' must be an object")
        calls.append(ToolCall(name=str(item["name"]), arguments=args))
    return calls


def parse_tool_calls(text: str) -> ParseResult:
    """Read every tool call in ``text``; see the module docstring for what is tolerated."""
    reasoning, rest = split_reasoning(text or "")
    calls: list[ToolCall] = []
    problems: list[str] = []
    blocks = list(_TOOL_BLOCK.finditer(rest))
    if blocks:
        content = _TOOL_BLOCK.sub("", rest)
        for block in blocks:
            body = block.group(1)
            if "<function=" in body:
                found = _parse_xml(body)
            else:
                try:
                    found = _parse_json(body)
                except (ValueError, TypeError) as exc:
                    problems.append(f"could not read the tool call ({exc})")
                    continue
            if not found:
                problems.append("a <tool_call> block held no function")
            calls.extend(found)
    elif "<function=" in rest:
        # The model forgot the <tool_call> wrapper but wrote the function block itself.
        calls = _parse_xml(rest)
        content = _FUNCTION.sub("", rest)
    else:
        content = rest
    error = ""
    if problems and not calls:
        error = "Your reply tried to call a tool but " + "; ".join(problems) + ". " + FORMAT_HINT
    return ParseResult(calls=calls, content=content.strip(), reasoning=reasoning, error=error)
