"""Is a conclusion grounded? Every number it states must appear in some cell's output.

A model that writes "churn is 26.5%" without any cell having printed 26.5 (or 0.265) is
making the number up, however plausible it sounds. This module pulls numbers out of the
conclusions ("claims") and out of the notebook's outputs ("evidence") and matches them.

The rule, in full (the report and README quote it):

* **Extraction.** A number is digits with an optional decimal part, thousands separators
  (``1,234,567.5``) and exponent (``1.2e-05``); a leading ``$ € £`` is skipped; the sign is
  ignored (``fell by 12.3`` states the magnitude of ``-12.3``). A number glued to a letter
  or underscore (``Q1``, ``x2``, ``open_il_6m``, ``3rd``) is part of a name, not a claim.
* **Scale words.** ``%`` makes two readings, ``p`` and ``p/100`` (outputs print 0.265 as
  often as 26.5%); ``k``/``thousand``, ``M``/``million``, ``bn``/``billion`` multiply.
* **Not claims.** Integers up to 10 (step numbers, "top 3", "2 groups"); integers from
  1800 to 2100 (years); list ordinals at the start of a line (``1.``, ``2)``); ISO dates and
  clock times; conventional constants (0.05, 0.01, 0.001, 1.5 for the IQR rule, 95, 99, 100);
  and a number of the question restated as the same value (``more than 60 minutes`` ->
  ``60``; but "between -1 and 1" does not excuse ``0.87``).
* **Answers are always claims.** A number inside a closed-form answer ``@name[...]`` is
  checked whatever it is (a small integer, a year, a constant, a number of the question):
  it is what was asked for. A text answer (``@is_normal[no]``, ``@species[Adelie]``) is
  checked as text when the caller passes the answers: the value, or else each of its
  comma-separated items made of words (an item with a digit is left to the number rule),
  must occur as whole words, case-insensitively, in one non-error output (``yes``/``no``
  also match a printed ``True``/``False``). Text is never looked for in the data facts:
  they show the data's labels, not a result.
* **Evidence.** The text of every non-error output of every code cell (never markdown,
  code source or error tracebacks), plus, for numbers only, the data facts the model was
  given (the ``<data_facts>`` block of the task: row counts, missing counts, first rows).
  Where the cell's code is known, what an output merely echoes of it is not evidence: a
  number written as a literal in the cell's own code (``print(5123.45)``), a text answer
  that the code spells out (``print('Gentoo')``).
* **Matching.** Each number carries the precision it was written with: half a unit in its
  last digit (``4201.75`` -> 0.005; an integer with trailing zeros, ``4,200``, -> 50, but
  not inside an answer, where ``@n[4200]`` is exact). A
  claim matches an output number when they differ by at most the larger of the two
  half-units, i.e. either could be a rounding of the other (``0.87`` matches ``0.8712``).
* **Verdict.** Grounded when every claim matched; not grounded when one did not; *n/a*
  (``None``) when the conclusion states nothing checkable. The judge counts n/a as no
  failure on a closed-form task (its answers are scored on their own) and as a failure on
  an open analysis, which must state figures.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_NUMBER_RE = re.compile(
    r"(?<![\w.])"  # not glued to a name or the middle of another number
    r"[$€£]?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<exp>[eE][-+]?\d+)?"
    r"(?P<scale>\s?%|\s?(?:thousand|million|billion|bn|k|K|M)\b)?"
)
_SCALES = {"k": 1e3, "K": 1e3, "thousand": 1e3, "M": 1e6, "million": 1e6, "bn": 1e9, "billion": 1e9}
_DATE_RE = re.compile(
    r"\b\d{4}-\d{1,2}-\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\b|\b\d{1,2}:\d{2}(?::\d{2})?\b"
)
_ORDINAL_RE = re.compile(r"^(\s*(?:[#>*-]+\s*)?)\d{1,2}[.)](?=\s)", re.MULTILINE)
_ANSWER_RE = re.compile(r"@(\w+)\[([^\]\n]*)\]")
"""A closed-form answer on one line; the value is whatever lies inside its brackets."""
_QUOTES = " \t'\"`"
CONSTANTS = frozenset({"0.05", "0.01", "0.001", "1.5", "95", "99", "100"})
"""Conventional thresholds (as written) a conclusion may mention without any cell printing them."""
TEXT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "yes": ("yes", "true"),
    "no": ("no", "false"),
    "true": ("true", "yes"),
    "false": ("false", "no"),
}
"""A yes/no answer is also supported by the boolean a cell printed."""


@dataclass(frozen=True)
class Number:
    """One number as written: its value, the half-unit of its last digit, and its text."""

    value: float
    half_unit: float
    text: str


def _parse(match: re.Match[str]) -> list[Number]:
    raw = match.group("num")
    digits = raw.replace(",", "")
    decimals = len(digits.split(".", 1)[1]) if "." in digits else 0
    exponent = int(match.group("exp")[1:]) if match.group("exp") else 0
    value = float(digits) * 10.0**exponent
    half = 0.5 * 10.0 ** (exponent - decimals)
    scale = (match.group("scale") or "").strip()
    text = match.group(0).strip()
    if scale == "%":
        return [Number(value, half, text), Number(value / 100, half / 100, text)]
    factor = _SCALES.get(scale, 1.0)
    return [Number(value * factor, half * factor, text)]


def _glued(text: str, m: re.Match[str]) -> bool:
    end = m.end()
    return not m.group("scale") and end < len(text) and (text[end].isalnum() or text[end] == "_")


def extract_numbers(text: str) -> list[Number]:
    """Every number in ``text`` (evidence side: nothing filtered out); % gives two readings."""
    out: list[Number] = []
    for m in _NUMBER_RE.finditer(text):
        if not _glued(text, m):
            out.extend(_parse(m))
    return out


def _same_value(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _is_given(readings: list[Number], given: list[Number]) -> bool:
    """The claim restates a number of the question: the same value, not merely a nearby one."""
    return any(_same_value(r.value, g.value) for r in readings for g in given)


def _blank(m: re.Match[str]) -> str:
    return " " * len(m.group(0))


def answer_spans(text: str) -> list[tuple[int, int]]:
    """Where the values of the ``@name[value]`` answers in ``text`` lie (start, end)."""
    return [m.span(2) for m in _ANSWER_RE.finditer(text)]


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


def extract_claims(text: str, question: str = "") -> list[list[Number]]:
    """The numbers a conclusion states, each as its alternative readings (see module doc)."""
    given = extract_numbers(question) if question else []
    spans = answer_spans(text)
    # blank out what is not a claim, keeping every offset so answer spans stay valid
    cleaned = re.sub(r"@\w+\[", _blank, text)  # @mean_fare_class1[...] names are not claims
    cleaned = _DATE_RE.sub(lambda m: m.group(0) if _inside(m.start(), spans) else _blank(m), cleaned)
    cleaned = _ORDINAL_RE.sub(lambda m: m.group(1) + " " * (len(m.group(0)) - len(m.group(1))), cleaned)
    claims: list[list[Number]] = []
    for m in _NUMBER_RE.finditer(cleaned):
        if _glued(cleaned, m):
            continue
        readings = _parse(m)
        first = readings[0]
        is_integer = "." not in m.group("num") and not m.group("exp") and not m.group("scale")
        answered = _inside(m.start(), spans)
        if is_integer and not answered:  # an answer's 4000 is exact; prose's "4,000" may be rounded
            stripped = m.group("num").replace(",", "")
            zeros = len(stripped) - len(stripped.rstrip("0"))
            if zeros:
                readings = [Number(first.value, 0.5 * 10.0**zeros, first.text)]
        if not answered:  # answers are always claims
            if is_integer and (first.value <= 10 or 1800 <= first.value <= 2100):
                continue
            if m.group("num") in CONSTANTS and not m.group("exp"):
                continue
            if _is_given(readings, given):
                continue
        claims.append(readings)
    return claims


def text_items(value: str) -> list[str]:
    """The items of an answer value that are words, to be checked as text.

    A value is split at commas and semicolons (lists); an item with a digit is left to the
    number rule (its numbers are claims already), so ``@n[42]`` has no text item and
    ``@species[Adelie, Gentoo]`` has two.
    """
    items = [p.strip(_QUOTES + "()[]{}") for p in re.split(r"[,;]", value)]
    return [p for p in items if any(c.isalpha() for c in p) and not any(c.isdigit() for c in p)]


def _phrase_re(phrase: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in phrase.split()]
    return re.compile(r"(?<![^\W_])" + r"\s+".join(words) + r"(?![^\W_])", re.IGNORECASE)


@dataclass
class Evidence:
    """Numbers found in outputs (and facts), sorted for range look-ups; output texts for text answers."""

    values: list[float] = field(default_factory=list)
    halves: list[float] = field(default_factory=list)
    max_half: float = 0.0
    texts: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    """The code of the cell that printed each of ``texts`` ('' when unknown)."""

    @classmethod
    def from_texts(cls, texts: Iterable[str], facts: Iterable[str] = ()) -> Evidence:
        """Evidence from output texts; ``facts`` (the data facts the model was given) add numbers only."""
        return cls.from_cells([("", [t]) for t in texts], facts)

    @classmethod
    def from_cells(cls, cells: Iterable[tuple[str, list[str]]], facts: Iterable[str] = ()) -> Evidence:
        """Evidence from ``(cell source, output texts)`` pairs: what a cell merely echoes of its
        own code (``print(5123.45)``, ``print('Gentoo')``) is not evidence; facts add numbers only."""
        numbers = [(n.value, n.half_unit) for t in facts for n in extract_numbers(t)]
        texts: list[str] = []
        sources: list[str] = []
        for source, outputs in cells:
            literals = [n.value for n in extract_numbers(source)]
            for text in outputs:
                texts.append(text)
                sources.append(source)
                numbers += [
                    (n.value, n.half_unit)
                    for n in extract_numbers(text)
                    if not any(_same_value(n.value, lit) for lit in literals)
                ]
        numbers.sort()
        ev = cls([v for v, _ in numbers], [h for _, h in numbers], texts=texts, sources=sources)
        ev.max_half = max(ev.halves, default=0.0)
        return ev

    def matches(self, claim: Number) -> bool:
        window = max(claim.half_unit, self.max_half)
        lo = bisect.bisect_left(self.values, claim.value - window - 1e-9)
        hi = bisect.bisect_right(self.values, claim.value + window + 1e-9)
        for i in range(lo, hi):
            slack = max(claim.half_unit, self.halves[i]) * (1 + 1e-9) + 1e-12 * max(1.0, abs(claim.value))
            if abs(self.values[i] - claim.value) <= slack:
                return True
        return False

    def has_phrase(self, phrase: str) -> bool:
        """Whether ``phrase`` occurs as whole words (any case, any spacing) in one output text."""
        phrase = " ".join(phrase.split())
        if not phrase:
            return False
        options = TEXT_SYNONYMS.get(phrase.casefold(), (phrase,))
        patterns = [_phrase_re(p) for p in options]
        sources = self.sources if len(self.sources) == len(self.texts) else [""] * len(self.texts)
        pairs = zip(self.texts, sources, strict=True)
        return any(p.search(t) and not p.search(src) for t, src in pairs for p in patterns)

    def supports_text(self, value: str) -> bool:
        """A text answer is supported when printed whole, or when each of its text items is."""
        return self.has_phrase(value.strip(_QUOTES)) or all(self.has_phrase(p) for p in text_items(value))

    def __len__(self) -> int:
        return len(self.values)


def output_texts(nb: Any) -> list[str]:
    """Text of every non-error output of every code cell (stream, plain/markdown/latex data)."""
    return [t for _, texts in cell_outputs(nb) for t in texts]


def cell_outputs(nb: Any) -> list[tuple[str, list[str]]]:
    """``(source, output texts)`` of every code cell, for :meth:`Evidence.from_cells`."""
    cells: list[tuple[str, list[str]]] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        texts: list[str] = []
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                texts.append(_join(out.get("text", "")))
            elif kind in ("execute_result", "display_data"):
                data = out.get("data", {})
                for mime in ("text/plain", "text/markdown", "text/latex"):
                    if mime in data:
                        texts.append(_join(data[mime]))
        cells.append((_join(cell.get("source", "")), texts))
    return cells


def _join(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


@dataclass
class Grounding:
    """How many claims a conclusion made and which ones no output supports.

    ``claims`` counts numbers and text answers; ``text_claims`` the text answers among them.
    """

    claims: int
    supported: int
    unsupported: list[str]
    text_claims: int = 0

    @property
    def grounded(self) -> bool | None:
        """True: every claim supported; False: some claim is not; None: nothing to check (n/a)."""
        if not self.claims:
            return None
        return not self.unsupported

    def to_dict(self) -> dict[str, Any]:
        return {
            "claims": self.claims,
            "supported": self.supported,
            "unsupported": self.unsupported[:20],
            "text_claims": self.text_claims,
            "grounded": self.grounded,
        }


def check_grounding(
    conclusion: str,
    evidence: Evidence,
    question: str = "",
    *,
    answers: Mapping[str, str] | None = None,
) -> Grounding:
    """Match every claim of ``conclusion`` against ``evidence``; see the module doc for the rule.

    ``answers`` (``{name: raw value}`` as the scorer read them) adds the text answers to
    the check; numeric answer values are already claims of the conclusion.
    """
    claims = extract_claims(conclusion, question)
    unsupported = [c[0].text for c in claims if not any(evidence.matches(r) for r in c)]
    texts = [(name, raw) for name, raw in (answers or {}).items() if text_items(raw)]
    unsupported += [f"@{name}[{raw}]" for name, raw in texts if not evidence.supports_text(raw)]
    total = len(claims) + len(texts)
    return Grounding(total, total - len(unsupported), unsupported, len(texts))
