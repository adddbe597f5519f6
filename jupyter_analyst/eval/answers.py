"""Closed-form answers: the ``@name[value]`` format, how it is asked for and how it is scored.

The format is InfiAgent-DABench's, so one parser serves the built-in suite and the public
benchmark. The built-in suite reads answers tolerantly and scores with a stated tolerance
per answer (a model that rounds 0.8712 to 0.87 is right); DABench reads and scores them by
its own published rule (one line, nothing trimmed; exact string, or numbers within 1e-6),
kept separate so our figures stay comparable to theirs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

ANSWER_RE = re.compile(r"@(\w+)\[(.*?)\]", re.DOTALL)
"""The built-in suite's tolerant reading of ``@name[value]`` (may span lines; values are
trimmed); the last occurrence of a name wins."""
DABENCH_ANSWER_RE = re.compile(r"@(\w+)\[(.*?)\]")
"""DABench's own reading: the same pattern on one line (``.`` stops at a newline, so an
unclosed bracket never reaches the next line's answer), values kept exactly as written."""

AnswerKind = Literal["number", "int", "text"]


@dataclass(frozen=True)
class AnswerSpec:
    """One sub-answer a closed-form task asks for.

    ``kind``: ``number`` (compared within ``tol``, default one unit in the last of the
    ``decimals`` asked for, so either rounding direction passes), ``int`` (exact), ``text``
    (case-insensitive, surrounding quotes/space/period ignored). ``what`` says in words what
    the value is; it is shown to the model.
    """

    name: str
    what: str
    kind: AnswerKind = "number"
    decimals: int = 2
    tol: float | None = None

    @property
    def tolerance(self) -> float:
        if self.kind == "int":
            return 0.0
        return self.tol if self.tol is not None else 10.0**-self.decimals

    def describe(self) -> str:
        if self.kind == "int":
            how = "an integer"
        elif self.kind == "text":
            how = "text, exactly as it appears in the data"
        else:
            how = f"a number rounded to {self.decimals} decimal place{'s' if self.decimals != 1 else ''}"
        return f"@{self.name}[value] where value is {self.what}, {how}"


def format_instructions(specs: tuple[AnswerSpec, ...] | list[AnswerSpec]) -> str:
    """The paragraph appended to a closed-form question telling the model how to answer."""
    lines = [f"- {s.describe()}" for s in specs]
    return (
        "Compute the answer in the notebook, then include it in your final_answer in exactly this format "
        "(one line per value, no units):\n" + "\n".join(lines)
    )


def extract_answers(text: str | None) -> dict[str, str]:
    """``{name: raw value}`` of every ``@name[value]`` in ``text`` (last one wins)."""
    return {m.group(1): m.group(2).strip() for m in ANSWER_RE.finditer(text or "")}


def extract_dabench_answers(text: str | None) -> dict[str, str]:
    """``{name: raw value}`` exactly as DABench's ``eval_closed_form.py`` reads a response.

    No trimming inside the brackets, no match across a newline, the last one of a name
    wins. On one line an unclosed bracket runs to the next ``]`` (``@a[1 @b[2]`` gives
    ``a = "1 @b[2"`` and no ``b``), as it does in DABench.
    """
    return {m.group(1): m.group(2) for m in DABENCH_ANSWER_RE.finditer(text or "")}


def _to_float(raw: str) -> float | None:
    text = raw.strip().strip("'\"`").replace(",", "").replace("$", "").replace("%", "").strip()
    text = text.replace("\u2212", "-")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _norm_text(raw: Any) -> str:
    return " ".join(str(raw).strip(" \t\r\n'\"`.").casefold().split())


def json_value(value: Any) -> Any:
    """A reference value in plain JSON form (numpy scalars and sets made ordinary)."""
    if isinstance(value, (set, frozenset, tuple, list)):
        return sorted(json_value(v) for v in value)
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def score_answer(spec: AnswerSpec, expected: Any, got: str | None) -> bool:
    """Is ``got`` (the raw text inside the brackets) right for ``expected``?

    ``expected`` for a text answer may be a list of acceptable values (ties).
    """
    if got is None:
        return False
    if spec.kind == "text":
        options = expected if isinstance(expected, (list, tuple, set, frozenset)) else [expected]
        return _norm_text(got) in {_norm_text(o) for o in options}
    value = _to_float(got)
    if value is None or expected is None:
        return False
    if spec.kind == "int":
        return value == float(expected)
    return abs(value - float(expected)) <= spec.tolerance + 1e-9 * max(1.0, abs(float(expected)))


def score_dabench(expected: Mapping[str, str], got: Mapping[str, str]) -> dict[str, bool]:
    """DABench's closed-form rule per sub-answer: equal strings, or numbers within 1e-6.

    ``got`` comes from :func:`extract_dabench_answers`; Python's ``float`` ignores spaces
    around a number (``" 20.0"`` is 20.0), as it does in DABench, but text is compared as is.
    """
    out: dict[str, bool] = {}
    for name, label in expected.items():
        response = got.get(name)
        if response is None:
            out[name] = False
        elif response == label:
            out[name] = True
        else:
            try:
                out[name] = abs(float(response) - float(label)) < 1e-6
            except (TypeError, ValueError):
                out[name] = False
    return out
