"""``{% generation %}`` markers for assistant-only loss, added where a template lacks them.

transformers builds the assistant mask (``return_assistant_tokens_mask=True``) from the
spans a template renders between ``{% generation %}`` and ``{% endgeneration %}``; TRL's
``assistant_only_loss`` depends on it. Official templates rarely carry the markers, so
:func:`add_generation_markers` patches a Qwen-style template: inside the assistant branch
(``if/elif message.role == "assistant"``) it wraps every output expression in its own
generation block, leaving the ``<|im_start|>assistant\\n`` header outside. Only ``{{ }}``
expressions are wrapped, never control flow, so blocks can't be unbalanced whatever the
branch does. :func:`verify_assistant_mask` then proves it on a probe conversation: the
patched template must render byte-identical text, and the mask must cover every assistant
reply, tool call and end-of-turn token and nothing the user, system or tools wrote.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_TAG = re.compile(r"(\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\})", re.S)
_ASSISTANT_TEST = re.compile(
    r"""^\{%-?\s*(el)?if\s+\(?\s*message\.role\s*==\s*(['"])assistant\2\s*\)?\s*-?%\}$"""
)
_BLOCK = re.compile(r"^\{%-?\s*(\w+)")
_HEADER = re.compile(
    r"""^(?P<open>\{\{-?\s*)(?:'<\|im_start\|>'\s*\+\s*message\.role\s*\+\s*(?P<q1>['"])\\n"""
    r"""|(?P<q2>['"])<\|im_start\|>assistant\\n)(?P<rest>.*)$""",
    re.S,
)
_BARE_HEADER = re.compile(
    r"""^\{\{-?\s*(?:'<\|im_start\|>'\s*\+\s*message\.role|(['"])<\|im_start\|>assistant\1)\s*-?\}\}$"""
)
GENERATION_RE = re.compile(r"\{%-?\s*generation\s*-?%\}")

PROBE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add_and_execute_jupyter_code_cell",
            "description": "Run code.",
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string"}},
                "required": ["code"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "final_answer",
            "description": "Finish.",
            "parameters": {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
            },
        },
    },
]

PROBE_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "SYSTEMPROBE you analyse data."},
    {"role": "user", "content": "USERPROBE analyse df please."},
    {
        "role": "assistant",
        "content": "ASSISTANTPROBE first I look.",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {
                    "name": "add_and_execute_jupyter_code_cell",
                    "arguments": {"code": "print(CODEPROBE)"},
                },
            }
        ],
    },
    {
        "role": "tool",
        "tool_call_id": "c1",
        "name": "add_and_execute_jupyter_code_cell",
        "content": "TOOLPROBE 1234 rows",
    },
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "final_answer", "arguments": {"answer": "ANSWERPROBE 1234 rows."}},
            }
        ],
    },
]
"""A two-turn tool conversation; every role's text carries a marker the mask check looks for."""

PLAIN_PROBE: list[dict[str, Any]] = [
    {"role": "user", "content": "USERPROBE hello."},
    {"role": "assistant", "content": "ASSISTANTPROBE hi there."},
    {"role": "user", "content": "USERPROBE again."},
    {"role": "assistant", "content": "ASSISTANTPROBE second reply."},
]
"""Plain replies with no tool call (another branch in most templates)."""

SUPERVISED = ("ASSISTANTPROBE", "CODEPROBE", "ANSWERPROBE")
UNSUPERVISED = ("SYSTEMPROBE", "USERPROBE", "TOOLPROBE")


class TemplateError(ValueError):
    """The template can't be given working generation markers (the message says why)."""


def has_generation_markers(template: str) -> bool:
    return GENERATION_RE.search(template) is not None


def _wrap(expr: str) -> str:
    """One assistant output expression inside a generation block; the role header stays outside.

    ``{{- '<|im_start|>' + message.role + '\\n<think>\\n' + x }}`` becomes
    ``{{- '<|im_start|>' + message.role + '\\n' }}{%- generation %}{{- '<think>\\n' + x }}
    {%- endgeneration %}``.
    """
    if _BARE_HEADER.match(expr):
        return expr
    m = _HEADER.match(expr)
    if not m:
        return "{%- generation %}" + expr + "{%- endgeneration %}"
    quote = m.group("q1") or m.group("q2")
    rest = m.group("rest")
    if re.fullmatch(rf"{re.escape(quote)}\s*-?\}}\}}", rest):
        return expr  # the header alone
    head = (
        "'<|im_start|>' + message.role + " + quote + "\\n" + quote
        if m.group("q1")
        else quote + "<|im_start|>assistant\\n" + quote
    )
    return (
        m.group("open")
        + head
        + " }}"
        + "{%- generation %}"
        + m.group("open")
        + quote
        + rest
        + "{%- endgeneration %}"
    )


def add_generation_markers(template: str) -> str:
    """Patch a Qwen-style template so the assistant's output sits in generation blocks.

    Raises ``TemplateError`` when no ``message.role == "assistant"`` branch is found.
    A template that already has markers is returned unchanged.
    """
    if has_generation_markers(template):
        return template
    pieces = _TAG.split(template)
    out: list[str] = []
    depth = 0
    inside: int | None = None  # the if-depth of the assistant branch while inside it
    found = False
    for piece in pieces:
        if piece.startswith("{%"):
            m = _BLOCK.match(piece)
            word = m.group(1) if m else ""
            if word in ("if", "for", "macro", "call", "filter", "raw"):
                if word == "if" and _ASSISTANT_TEST.match(piece) and inside is None:
                    inside, found = depth + 1, True
                    depth += 1
                    out.append(piece)
                    continue
                depth += 1
            elif word in ("elif", "else"):
                if inside == depth:
                    inside = None
                if word == "elif" and _ASSISTANT_TEST.match(piece) and inside is None:
                    inside, found = depth, True
            elif word in ("endif", "endfor", "endmacro", "endcall", "endfilter", "endraw"):
                if inside == depth:
                    inside = None
                depth -= 1
            out.append(piece)
        elif piece.startswith("{{") and inside is not None:
            out.append(_wrap(piece))
        else:
            out.append(piece)
    if not found:
        raise TemplateError('the chat template has no `message.role == "assistant"` branch to patch')
    return "".join(out)


@dataclass
class MaskReport:
    """What the probe showed: the supervised text and anything wrong with it."""

    supervised: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def supervised_text(tokenizer: Any, input_ids: list[int], mask: list[int]) -> str:
    """The supervised tokens decoded, masked-out runs shown as `` … ``."""
    parts: list[str] = []
    run: list[int] = []
    for tok, bit in zip(input_ids, mask, strict=False):
        if bit:
            run.append(tok)
        elif run:
            parts.append(tokenizer.decode(run))
            run = []
    if run:
        parts.append(tokenizer.decode(run))
    return " … ".join(parts)


def _render(tokenizer: Any, template: str, messages: list[dict[str, Any]], tools: Any, **kw: Any) -> Any:
    return tokenizer.apply_chat_template(
        messages, tools=tools, chat_template=template, tokenize=True, return_dict=True, **kw
    )


def verify_assistant_mask(tokenizer: Any, template: str, original: str | None = None) -> MaskReport:
    """Check the template's assistant mask on the probe conversations (see the module doc)."""
    problems: list[str] = []
    texts: list[str] = []
    eos = tokenizer.eos_token_id
    for messages, tools in ((PROBE_MESSAGES, PROBE_TOOLS), (PLAIN_PROBE, None)):
        try:
            enc = _render(tokenizer, template, messages, tools, return_assistant_tokens_mask=True)
        except Exception as exc:  # noqa: BLE001 - a template that can't render this is unusable
            problems.append(f"the template fails on a probe conversation: {type(exc).__name__}: {exc}")
            continue
        ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
        if original is not None:
            a = tokenizer.apply_chat_template(messages, tools=tools, chat_template=template, tokenize=False)
            b = tokenizer.apply_chat_template(messages, tools=tools, chat_template=original, tokenize=False)
            if a != b:
                problems.append("the patched template renders different text from the original")
        text = supervised_text(tokenizer, ids, mask)
        texts.append(text)
        masked_out = tokenizer.decode([t for t, b in zip(ids, mask, strict=True) if not b])
        for marker in SUPERVISED:
            wanted = any(marker in json.dumps(m, ensure_ascii=False) for m in messages)
            if wanted and marker not in text:
                problems.append(f"assistant text {marker} is not supervised")
        for marker in UNSUPERVISED:
            if marker in text:
                problems.append(f"{marker} (not written by the assistant) is supervised")
        n_assistant = sum(1 for m in messages if m["role"] == "assistant")
        n_eos = sum(1 for t, b in zip(ids, mask, strict=True) if b and t == eos)
        if eos is not None and n_eos != n_assistant:
            problems.append(
                f"{n_eos} end-of-turn tokens supervised for {n_assistant} assistant turns "
                "(the model must learn to stop)"
            )
        if "<|im_start|>assistant" in text:
            problems.append("the assistant header (part of the prompt at inference) is supervised")
        if not any(marker in masked_out for marker in UNSUPERVISED if marker in json.dumps(messages)):
            problems.append("nothing is masked out")
    return MaskReport("\n---\n".join(texts), sorted(set(problems)))


def training_template(tokenizer: Any) -> tuple[str, str]:
    """A template with verified generation markers for ``tokenizer``, and how it was obtained.

    Order: the tokenizer's own template when it already has working markers; our patch
    (renders identically to the original); TRL's shipped training template for known
    templates. Raises ``TemplateError`` listing what failed.
    """
    original = tokenizer.chat_template
    if isinstance(original, dict):
        original = original.get("default") or next(iter(original.values()))
    if not original:
        raise TemplateError("the tokenizer has no chat template; use a chat/instruct model")
    tried: list[str] = []
    if has_generation_markers(original):
        report = verify_assistant_mask(tokenizer, original)
        if report.ok:
            return original, "the model's template (already has generation markers)"
        tried.append("own markers: " + "; ".join(report.problems))
    else:
        try:
            patched = add_generation_markers(original)
            report = verify_assistant_mask(tokenizer, patched, original)
            if report.ok:
                return patched, "the model's template with generation markers added"
            tried.append("patch: " + "; ".join(report.problems))
        except TemplateError as exc:
            tried.append(f"patch: {exc}")
    try:
        from trl.chat_template_utils import get_training_chat_template

        trl_template = get_training_chat_template(tokenizer)
    except Exception as exc:  # noqa: BLE001 - unknown templates raise inside TRL
        trl_template, why = None, f"{type(exc).__name__}: {exc}"
    else:
        why = "TRL has no training variant of this template"
    if trl_template:
        report = verify_assistant_mask(tokenizer, trl_template)
        if report.ok:
            return trl_template, "TRL's training variant of the model's template"
        why = "; ".join(report.problems)
    tried.append(f"TRL: {why}")
    raise TemplateError("no chat template with a working assistant mask: " + " | ".join(tried))
