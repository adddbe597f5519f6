"""What a follow-up run is told of the run it continues.

A follow-up ("now break it down by month") runs in the same notebook and kernel as an
earlier run, so the earlier run's variables are still there; the model needs to know what
they are and what was concluded, without the earlier conversation (tens of thousands of
tokens). It gets the earlier question, a line per earlier cell (the first code lines,
whether it ran), the names it created and its conclusions, bounded to a few thousand
characters.

The block sits after the data facts between its own fences, every line quoted with
``> `` (as a question's lines are), so no line of it can be a fence or a facts line; the
loop reads it back (:func:`earlier_of`) to let the conclusions quote the earlier run's
figures, which its outputs printed in the same notebook.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

EARLIER_OPEN = "<earlier_run>"
EARLIER_CLOSE = "</earlier_run>"
QUOTE = "> "

CELL_CHARS = 160
"""One earlier cell's line: the first code lines, enough to show what it computed."""
STEPS_CHARS = 3000
"""All cell lines together; the earliest go first when over (the latest matter most)."""
ANSWER_CHARS = 3000
"""The earlier conclusions."""


@dataclass
class EarlierRun:
    """The run a follow-up continues, as the follow-up's task message shows it."""

    question: str | None
    answer: str | None
    outcome: str
    """How it ended, in words: "finished with conclusions", "stopped at step 7"."""
    steps: list[str] = field(default_factory=list)
    """A line per cell, in notebook order (:func:`cell_lines`)."""
    created: list[str] = field(default_factory=list)
    """Names its cells bound in the kernel: the follow-up may use and rebind them."""
    variable: str = ""


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def cell_lines(cells: Iterable[dict[str, Any]]) -> list[str]:
    """A line per earlier cell: code as its first lines (comments skipped) and whether it
    ran; a note as its first line. The header and the conclusions are left out (the
    conclusions go in whole, the header only repeats the facts)."""
    lines: list[str] = []
    for cell in cells:
        meta = (cell.get("metadata") or {}).get("jupyter_analyst") or {}
        role = meta.get("role", "")
        if role in ("header", "conclusions"):
            continue
        text = _source(cell)
        if cell.get("cell_type") == "code":
            code = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
            status = meta.get("status") or "not run"
            state = "ran" if status == "ok" else status
            lines.append(_clip(f"[{state}] " + "; ".join(code), CELL_CHARS))
        else:
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            if first:
                lines.append(_clip(f"[note] {first.lstrip('#').strip()}", CELL_CHARS))
    return lines


def outcome_words(state: str, step: int, answer: str | None, stop_reason: str | None) -> str:
    """How an earlier run ended, as the follow-up's task message says it."""
    if answer:
        return f"ended with the conclusions below after {step} steps"
    why = f" ({stop_reason.replace('_', ' ')})" if stop_reason else ""
    return f"ended without conclusions at step {step}: {state}{why}"


def render_earlier(earlier: EarlierRun) -> str:
    """The fenced block of the follow-up's task message (see the module docstring)."""
    steps = list(earlier.steps)
    dropped = 0
    while steps and sum(len(s) + 1 for s in steps) > STEPS_CHARS:
        steps.pop(0)
        dropped += 1
    body = [
        "This task follows up an earlier analysis in this notebook. Its cells ran in the same "
        "kernel, so the variables it made are still defined: reuse them instead of recomputing.",
        f"Earlier question: {' '.join((earlier.question or 'a general analysis').split())}",
        f"It {earlier.outcome}.",
    ]
    if earlier.created:
        body.append("Variables it made: " + ", ".join(earlier.created[:40]))
    if steps:
        body.append(f"Its cells ({dropped} earlier ones left out):" if dropped else "Its cells:")
        body.extend(f"- {s}" for s in steps)
    if earlier.answer:
        body.append("Its conclusions:")
        body.extend(_clip(earlier.answer.strip(), ANSWER_CHARS).splitlines())
    quoted = [QUOTE + line if line.strip() else QUOTE.rstrip() for line in body]
    return "\n".join([EARLIER_OPEN, *quoted, EARLIER_CLOSE])


def earlier_of(text: str) -> str:
    """The earlier-run block of a task message, unquoted ('' without one): what the
    follow-up may quote besides its own outputs and the facts."""
    lines = text.split("\n")
    try:
        start = len(lines) - 1 - lines[::-1].index(EARLIER_OPEN)
        end = lines.index(EARLIER_CLOSE, start)
    except ValueError:
        return ""
    return "\n".join(line.removeprefix(QUOTE.rstrip()).removeprefix(" ") for line in lines[start + 1 : end])
