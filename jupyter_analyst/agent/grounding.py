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
  and any number that the question itself contains (it was given, not found).
* **Matching.** Each number carries the precision it was written with: half a unit in its
  last digit (``4201.75`` -> 0.005; an integer with trailing zeros, ``4,200``, -> 50). A
  claim matches an output number when they differ by at most the larger of the two
  half-units, i.e. either could be a rounding of the other (``0.87`` matches ``0.8712``).
* **Verdict.** Grounded when there is at least one claim and every claim matched; a
  conclusion with no number at all is not grounded (it states nothing checkable).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
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
_ANSWER_NAME_RE = re.compile(r"@\w+\[")
CONSTANTS = frozenset({"0.05", "0.01", "0.001", "1.5", "95", "99", "100"})
"""Conventional thresholds (as written) a conclusion may mention without any cell printing them."""


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


def extract_numbers(text: str) -> list[Number]:
    """Every number in ``text`` (evidence side: nothing filtered out); % gives two readings."""
    out: list[Number] = []
    for m in _NUMBER_RE.finditer(text):
        end = m.end()
        if not m.group("scale") and end < len(text) and (text[end].isalnum() or text[end] == "_"):
            continue
        out.extend(_parse(m))
    return out


def _is_given(value: float, given: list[Number]) -> bool:
    return any(abs(value - g.value) <= g.half_unit + 1e-12 for g in given)


def extract_claims(text: str, question: str = "") -> list[list[Number]]:
    """The numbers a conclusion states, each as its alternative readings (see module doc)."""
    given = extract_numbers(question) if question else []
    cleaned = _ORDINAL_RE.sub(lambda m: m.group(1), _DATE_RE.sub(" ", text))
    cleaned = _ANSWER_NAME_RE.sub("[", cleaned)  # @mean_fare_class1[...] names are not claims
    claims: list[list[Number]] = []
    for m in _NUMBER_RE.finditer(cleaned):
        end = m.end()
        if not m.group("scale") and end < len(cleaned) and (cleaned[end].isalnum() or cleaned[end] == "_"):
            continue
        readings = _parse(m)
        first = readings[0]
        is_integer = "." not in m.group("num") and not m.group("exp") and not m.group("scale")
        if is_integer:
            if first.value <= 10 or 1800 <= first.value <= 2100:
                continue
            stripped = m.group("num").replace(",", "")
            zeros = len(stripped) - len(stripped.rstrip("0"))
            if zeros:
                readings = [Number(first.value, 0.5 * 10.0**zeros, first.text)]
        if m.group("num") in CONSTANTS and not m.group("exp"):
            continue
        if any(_is_given(r.value, given) for r in readings):
            continue
        claims.append(readings)
    return claims


@dataclass
class Evidence:
    """Numbers found in outputs, sorted for range look-ups."""

    values: list[float] = field(default_factory=list)
    halves: list[float] = field(default_factory=list)
    max_half: float = 0.0

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Evidence:
        numbers = sorted((n.value, n.half_unit) for t in texts for n in extract_numbers(t))
        ev = cls([v for v, _ in numbers], [h for _, h in numbers])
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

    def __len__(self) -> int:
        return len(self.values)


def output_texts(nb: Any) -> list[str]:
    """Text of every non-error output of every code cell (stream, plain/markdown/latex data)."""
    texts: list[str] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                texts.append(_join(out.get("text", "")))
            elif kind in ("execute_result", "display_data"):
                data = out.get("data", {})
                for mime in ("text/plain", "text/markdown", "text/latex"):
                    if mime in data:
                        texts.append(_join(data[mime]))
    return texts


def _join(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


@dataclass
class Grounding:
    """How many claims a conclusion made and which ones no output supports."""

    claims: int
    supported: int
    unsupported: list[str]

    @property
    def grounded(self) -> bool:
        return self.claims > 0 and not self.unsupported

    def to_dict(self) -> dict[str, Any]:
        return {
            "claims": self.claims,
            "supported": self.supported,
            "unsupported": self.unsupported[:20],
            "grounded": self.grounded,
        }


def check_grounding(conclusion: str, evidence: Evidence, question: str = "") -> Grounding:
    """Match every claim of ``conclusion`` against ``evidence``; see the module doc for the rule."""
    claims = extract_claims(conclusion, question)
    unsupported = [c[0].text for c in claims if not any(evidence.matches(r) for r in c)]
    return Grounding(len(claims), len(claims) - len(unsupported), unsupported)
