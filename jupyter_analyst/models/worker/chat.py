"""Chat messages on the wire: make requests renderable, parse replies, split streams.

Pure text handling with no model in sight, so the agreement between a streamed and a
non-streamed reply can be tested without loading anything.
"""

from __future__ import annotations

import json
from typing import Any

from ...agent.parsing import parse_tool_calls
from .common import RequestError

_MARKERS = ("<tool_call>", "<function=")


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def prepare_messages(messages: Any) -> list[dict[str, Any]]:
    """Make OpenAI wire messages renderable: text content, dict tool-call arguments."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list")
    out = []
    for msg in messages:
        if not isinstance(msg, dict) or "role" not in msg:
            raise RequestError(400, "every message needs a 'role'")
        msg = {**msg, "content": _text(msg.get("content"))}
        if msg.get("tool_calls"):
            calls = []
            for call in msg["tool_calls"]:
                fn = dict(call.get("function") or {})
                args = fn.get("arguments")
                if isinstance(args, str):
                    try:
                        args = json.loads(args) if args.strip() else {}
                    except ValueError:
                        args = {"__raw_arguments__": args}
                    if not isinstance(args, dict):
                        args = {"__raw_arguments__": fn.get("arguments")}
                fn["arguments"] = args or {}
                calls.append({**call, "function": fn})
            msg["tool_calls"] = calls
        out.append(msg)
    return out


def build_message(text: str, thinking: bool) -> tuple[dict[str, Any], bool]:
    """Split reasoning and tool calls out of raw generated text; return (message, has_calls)."""
    parsed = parse_tool_calls(("<think>" if thinking else "") + text)
    message: dict[str, Any] = {"role": "assistant", "content": parsed.content}
    if parsed.reasoning:
        message["reasoning_content"] = parsed.reasoning
    if parsed.calls:
        message["tool_calls"] = [call.to_openai() for call in parsed.calls]
        return message, True
    if parsed.error:
        # Keep the malformed call visible: the loop re-parses content and tells the model.
        rest = text.split("</think>", 1)[1] if "</think>" in text else ("" if thinking else text)
        message["content"] = rest.strip()
    return message, False


class StreamSplitter:
    """Route streamed text to ``reasoning_content`` / ``content`` and hold back tool calls.

    Emits only what the final, parsed message will also contain (stripped, without markup),
    so a streamed reply concatenates to the same content as a non-streamed one.
    """

    def __init__(self, thinking: bool) -> None:
        self.state = "reasoning" if thinking else "content"
        self.pending = ""
        self.sent = {"reasoning_content": "", "content": ""}

    def _emit(self, kind: str, text: str, final: bool = False) -> list[tuple[str, str]]:
        if not self.sent[kind]:
            text = text.lstrip()
        keep = "" if final else text[len(text.rstrip()) :]
        text = text.rstrip()  # trailing space is held (or, at a section's end, dropped)
        self.pending = keep
        if not text:
            return []
        self.sent[kind] += text
        return [(kind, text)]

    def feed(self, piece: str) -> list[tuple[str, str]]:
        """Take the next streamed piece; return the (kind, text) deltas now safe to send."""
        self.pending += piece
        out: list[tuple[str, str]] = []
        if self.state == "reasoning":
            if "</think>" in self.pending:
                before, _, after = self.pending.partition("</think>")
                out += self._emit("reasoning_content", before, final=True)
                self.state, self.pending = "content", after
            else:
                return self._emit_safe("reasoning_content", ("</think>",))
        if self.state == "content":
            cut = min((self.pending.find(m) for m in _MARKERS if m in self.pending), default=-1)
            if cut >= 0:
                held = self.pending[cut:]
                out += self._emit("content", self.pending[:cut])
                self.state, self.pending = "held", held
            else:
                out += self._emit_safe("content", _MARKERS)
        return out

    def _emit_safe(self, kind: str, markers: tuple[str, ...]) -> list[tuple[str, str]]:
        """Emit all but a tail that might be the start of a marker."""
        text = self.pending
        hold = 0
        for marker in markers:
            for n in range(min(len(marker) - 1, len(text)), 0, -1):
                if text.endswith(marker[:n]):
                    hold = max(hold, n)
                    break
        head, tail = (text[:-hold], text[-hold:]) if hold else (text, "")
        out = self._emit(kind, head)
        self.pending += tail
        return out

    def finish(self, message: dict[str, Any]) -> list[tuple[str, str]]:
        """Whatever the final message holds beyond what was already streamed."""
        out = []
        for kind in ("reasoning_content", "content"):
            final = message.get(kind) or ""
            if final.startswith(self.sent[kind]) and len(final) > len(self.sent[kind]):
                out.append((kind, final[len(self.sent[kind]) :]))
        return out
