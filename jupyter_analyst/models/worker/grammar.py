"""Constrained decoding: a grammar of the tool-call form, enforced token by token.

A small or quantised model often writes a call the parser cannot read (a missing tag, a
made-up tool, an empty argument), and each such reply costs the loop a whole step. With
``llguidance`` the worker masks, at every step, the tokens that could not continue a
well-formed reply, so every constrained reply is one or more calls that
``agent.parsing.parse_tool_calls`` reads into known tools with their required arguments.

The grammar is generated from the request's tool specs (names, parameters, which are
required), so a new tool needs no grammar edit. Parameter values are free text that cannot
contain the tags the parser splits on (code can contain anything else). When the reply
starts inside a ``<think>`` block (the template opened it), free reasoning comes first.

The library is optional: ``available()`` says whether it is importable, and
``require()`` turns its absence into one clear line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

LIBRARY = "llguidance"

_MARKERS = (
    "<parameter=",
    "</parameter>",
    "<function=",
    "</function>",
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
)
"""Substrings no free text may hold: the parser splits on them (``agent/parsing.py``)."""

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def reply_problem(text: str, thinking: bool = False) -> str:
    """Why a raw reply is not a usable turn for the loop ('' when it is): what the grammar
    guarantees, judged by the loop's own parser. Usable means at least one call, no parse
    error, every call a known tool with its required argument as non-blank text."""
    from ...agent.parsing import parse_tool_calls
    from ...agent.tools import TOOL_ARGUMENT

    parsed = parse_tool_calls(("<think>" if thinking else "") + text)
    if parsed.error:
        return "unreadable call"
    if not parsed.calls:
        return "no call"
    for call in parsed.calls:
        if call.name not in TOOL_ARGUMENT:
            return f"unknown tool {call.name!r}"
        value = call.arguments.get(TOOL_ARGUMENT[call.name])
        if not isinstance(value, str) or not value.strip():
            return f"{call.name} without its {TOOL_ARGUMENT[call.name]!r}"
    return ""


def available() -> bool:
    """Whether the constrained-decoding library can be imported here."""
    from importlib.util import find_spec

    return find_spec(LIBRARY) is not None


def require() -> None:
    """Raise ``RuntimeError`` with one line when constraining was asked for but cannot run."""
    if not available():
        raise RuntimeError(
            f"constrained decoding needs the {LIBRARY} package: "
            "pip install 'jupyter-analyst[models]' (or turn it off with --no-constrained)"
        )


def _lark_string(text: str) -> str:
    return json.dumps(text)


def _lark_regex(text: str) -> str:
    """``text`` as a literal inside ``/.../``."""
    return re.sub(r"([\\/.^$|?*+()\[\]{}])", r"\\\1", text).replace("\n", "\\n")


def _free_text(first_nonspace: bool) -> str:
    """Terminal body: any text without a marker (and, for values, starting non-blank)."""
    any_marker = "|".join(_lark_regex(m) for m in _MARKERS)
    head = r"/[^\s](?s:.*)/" if first_nonspace else r"/(?s:.*)/"
    return f"{head} & ~/(?s:.*)({any_marker})(?s:.*)/"


def token_tags(tokenizer: Any) -> dict[str, str]:
    """The tags the tokenizer holds as added tokens, each with how the grammar names it.

    llguidance treats added tokens as special (they never match inside a text terminal),
    so a tag such as ``<tool_call>`` must be written as a token where the model has one:
    by its text when that reads as a token name, else by id (``<function=`` is ``<[id]>``).
    """
    added: dict[str, int] = dict(getattr(tokenizer, "get_added_vocab", dict)())
    return {t: t if _TOKEN_NAME.match(t) else f"<[{added[t]}]>" for t in TAGS if t in added}


_TOKEN_NAME = re.compile(r"^<[A-Za-z0-9_/|]+>$")


TAGS = (
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
    "<function=",
    "</function>",
    "<parameter=",
    "</parameter>",
)
"""Tags that a tokenizer may hold as one added token (Qwen's hold the first four; a model
made by ``jupyter analyst scratch`` holds all of them)."""


class _Builder:
    """Turns sequences of literals and terminal names into rules and text terminals.

    Consecutive text goes into one terminal, so a free value and the tag that closes it
    are lexed together (llguidance lexes greedily: a value followed by a separate closing
    terminal would swallow the closing text); tags that are tokens sit between terminals.
    """

    def __init__(self, tags: Mapping[str, str] | Collection[str]) -> None:
        self.refs = dict(tags) if isinstance(tags, Mapping) else {t: t for t in tags}
        self.tags = frozenset(self.refs)
        self.lines: list[str] = []
        alternatives = "|".join(re.escape(t) for t in sorted(self.tags, key=len, reverse=True))
        self._split = re.compile(f"({alternatives})")

    def seq(self, name: str, items: list[str]) -> str:
        """Define rule ``name`` as ``items``: literals, ``@TERMINAL`` (joins the text around
        it) or ``%rule`` (a separate rule, optionally followed by ``?``)."""
        out: list[str] = []
        run: list[str] = []

        def flush() -> None:
            if run:
                term = f"{name.upper()}_{len(out)}"
                self.lines.append(f"{term}: {' '.join(run)}")
                out.append(term)
                run.clear()

        for item in items:
            if item.startswith("@"):
                run.append(item[1:])
                continue
            if item.startswith("%"):
                flush()
                out.append(item[1:])
                continue
            pieces = self._split.split(item) if self.tags else [item]
            for piece in pieces:
                if piece in self.tags:
                    flush()
                    out.append(self.refs[piece])
                elif piece:
                    run.append(_lark_string(piece))
        flush()
        self.lines.append(f"{name}: {' '.join(out)}")
        return name


def _tool_parts(spec: dict[str, Any]) -> tuple[str, list[tuple[str, bool]]]:
    fn = spec.get("function") or spec
    name = str(fn.get("name") or "")
    params = fn.get("parameters") or {}
    props: dict[str, Any] = params.get("properties") or {}
    required = [p for p in params.get("required") or [] if p in props]
    return name, [(p, True) for p in required] + [(p, False) for p in props if p not in required]


def tool_call_grammar(
    tools: list[dict[str, Any]],
    thinking: bool = False,
    tags: Mapping[str, str] | Collection[str] = frozenset(),
    max_think_tokens: int | None = None,
) -> str:
    """A Lark grammar (llguidance dialect) for replies made only of well-formed tool calls.

    ``thinking``: the generation prompt ends inside an open ``<think>``, so the reply starts
    with free reasoning, then ``</think>``, then the calls; ``max_think_tokens`` bounds the
    reasoning so a reply cannot spend its whole budget before its call. ``tags``: the tags
    that are single tokens for this tokenizer (``token_tags``: each with its name in the
    grammar). Every parameter is free text (the parser decodes a non-string one as JSON when
    it can); required ones come first, in order, then the optional ones, each optional.
    """
    b = _Builder(tags)
    b.lines.append(f"VALUE: {_free_text(first_nonspace=True)}")
    calls: list[str] = []
    for i, spec in enumerate(tools):
        name, params = _tool_parts(spec)
        if not _NAME.match(name) or any(not _NAME.match(p) for p, _ in params):
            continue  # a name the parser could not read back is never offered
        items = [f"<function={name}>\n"]
        for j, (param, required) in enumerate(params):
            param_items = [f"<parameter={param}>\n", "@VALUE", "\n</parameter>\n"]
            if required:
                items += param_items
            else:
                items.append(f"%{b.seq(f'p{i}_{j}', param_items)}?")
        items.append("</function>\n")
        calls.append(b.seq(f"fn{i}", items))
    if not calls:
        raise ValueError("no tool has a name the tool-call parser can read back")
    b.lines.append(f"call_body: {' | '.join(calls)}")
    b.seq("call_open", ["<tool_call>\n"])
    b.seq("call_close", ["</tool_call>"])
    b.lines += ["call: call_open call_body call_close", f"calls: call ({_lark_string(chr(10))} call)*"]
    if thinking:
        b.lines.append(f"THOUGHT: {_free_text(first_nonspace=False)}")
        limit = f"[max_tokens={max(1, max_think_tokens)}]" if max_think_tokens else ""
        b.lines.append(f"thought{limit}: THOUGHT")
        b.seq("think", ["%thought", "</think>", "@/\\n{0,2}/"])
        b.lines.append("start: think calls")
    else:
        b.lines.append("start: calls")
    return "%llguidance {}\n" + "\n".join(b.lines) + "\n"


class ToolCallConstraint:
    """The tokenizer as llguidance sees it (built once: ~1 s) and the grammars it compiled.

    ``processor`` gives a fresh transformers ``LogitsProcessor`` per request; it runs
    before temperature and top-p, so sampling only ever chooses among allowed tokens.
    """

    def __init__(self, tokenizer: Any, eos: list[int], vocab_size: int) -> None:
        require()
        import llguidance
        import llguidance.hf

        self.vocab_size = max(vocab_size, len(tokenizer))
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=self.vocab_size, eos_token=eos)
        self.tags = token_tags(tokenizer)
        self._grammars: dict[str, str] = {}
        self._llguidance = llguidance

    def grammar(
        self, tools: list[dict[str, Any]], thinking: bool, max_think_tokens: int | None = None
    ) -> str:
        """The compiled grammar for these tools (cached by their JSON); raises on a bad one."""
        key = json.dumps([tools, thinking, max_think_tokens], sort_keys=True)
        if key not in self._grammars:
            lark = tool_call_grammar(tools, thinking, self.tags, max_think_tokens)
            grammar = self._llguidance.LLMatcher.grammar_from_lark(lark)
            problem = self._llguidance.LLMatcher.validate_grammar(grammar, self.tokenizer)
            if problem and not problem.startswith("WARNING"):
                raise ValueError(f"the tool-call grammar does not compile: {problem}")
            self._grammars[key] = grammar
        return self._grammars[key]

    def processor(self, tools: list[dict[str, Any]], thinking: bool, max_new_tokens: int) -> Any:
        """A logits processor holding one matcher for one generation (batch of one).

        Reasoning may use at most half of ``max_new_tokens``, so the call always has room.
        """
        from transformers import LogitsProcessor

        grammar = self.grammar(tools, thinking, max(1, max_new_tokens // 2) if thinking else None)
        matcher = self._llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        vocab = self.vocab_size

        class _Mask(LogitsProcessor):
            def __init__(self) -> None:
                self.prompt_len: int | None = None
                self.failed = False

            def __call__(self, input_ids: Any, scores: Any) -> Any:
                import numpy as np
                import torch

                if self.prompt_len is None:
                    self.prompt_len = int(input_ids.shape[1])
                elif not self.failed and not matcher.consume_token(int(input_ids[0, -1])):
                    self.failed = True  # cannot happen with the mask applied; never loop on it
                if self.failed or matcher.is_error():
                    self.failed = True
                    return scores
                words = np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8)
                bits = np.unpackbits(words, bitorder="little")  # bit k of 32-bit word w: token 32w+k
                allowed = torch.from_numpy(bits[:vocab].astype(bool)).to(scores.device)
                width = scores.shape[-1]
                if width > vocab:
                    allowed = torch.cat([allowed, allowed.new_zeros(width - vocab)])
                return scores.masked_fill(~allowed[:width], float("-inf"))

        return _Mask()
