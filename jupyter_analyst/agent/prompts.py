"""The words the model reads: the system prompt, the task message and fixed nudges.

The task message renders the frame's facts (computed in the kernel) in one compact,
line-oriented form; small models copy column names from it, and the rule-based
baseline parses it back, so its layout is a contract (see ``FACTS_COLUMN_RE``).

The question is the user's text and the facts are the kernel's, so the two are fenced
apart: the facts sit between a ``<data_facts>`` line and a ``</data_facts>`` line at the
end of the message, and every line of the question after its first is quoted with
``> ``. No line of a question can then be a fence or a facts line, whatever it says
(``DataFrame `os`: 3 rows x 1 columns``, the fences themselves), and readers of the
facts (:func:`split_task`) look only inside the fence.
"""

from __future__ import annotations

import re
from typing import Any

SYSTEM_PROMPT = """\
You are a data analyst working inside a live Jupyter notebook. A pandas DataFrame is \
already loaded in the kernel. Analyse it step by step with the tools:
- add_and_execute_jupyter_code_cell(code): append a code cell, run it, see its output.
- add_markdown_cell(text): append a short markdown note that explains the next step.
- final_answer(answer): finish with written conclusions (markdown) quoting numbers you saw.
Work like a careful analyst: inspect the data, clean types and missing values, look at \
distributions and relationships, compare groups, look at trends over time when there are \
dates, and draw clear charts with seaborn/matplotlib (titles and axis labels). Keep each \
cell small. When a cell fails, read the error and fix the code in the next cell. \
Only state numbers that appear in your outputs. Call exactly one tool per reply; \
the analysis ends only when you call final_answer."""

CONTINUE_MESSAGE = (
    "Continue the analysis: call add_and_execute_jupyter_code_cell with the next step, "
    "or final_answer when you are done."
)

MAX_LISTED = 12
"""Unsupported numbers listed in a grounding return; the rest are counted."""


def grounding_return(numbers: list[str]) -> str:
    """What the model is told when ``final_answer`` states numbers no output or fact shows
    (the loop's grounding gate): which ones, that nothing was added, and what to do."""
    listed = ", ".join(numbers[:MAX_LISTED])
    if len(numbers) > MAX_LISTED:
        listed += f" and {len(numbers) - MAX_LISTED} more"
    return (
        f"Not finished: your conclusions state {listed}, which no cell output printed and the "
        "data facts do not show. Nothing was added to the notebook. Print these values in a "
        "code cell first, or correct or remove them, then call final_answer again with the "
        "whole conclusions."
    )


FACTS_COLUMN_RE = re.compile(
    r"^- (?P<name>.+?): (?P<dtype>[\w\[\], :/-]+?), "
    r"(?P<kind>numeric|categorical|datetime|boolean|text|other), "
    r"(?P<missing>\d+) missing, (?P<unique>\d+) unique(?:, e\.g\. (?P<example>.*))?$",
    re.MULTILINE,
)
"""Parses one column line of :func:`render_task`'s facts block."""

FACTS_HEADER_RE = re.compile(
    r"^DataFrame `(?P<var>[A-Za-z_][A-Za-z0-9_]*)`: (?P<rows>\d+) rows x (?P<cols>\d+) columns", re.MULTILINE
)


FACTS_OPEN = "<data_facts>"
FACTS_CLOSE = "</data_facts>"
"""The lines that fence the facts block of :func:`render_task`."""
QUOTE = "> "
"""Prefix of every line of the question after its first."""
DEFAULT_TASK = (
    "Explore this dataset and report the most important patterns, relationships and anything surprising."
)


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())


def render_facts(facts: dict[str, Any]) -> str:
    """Render kernel-computed frame facts (see ``kernel.facts``) as compact text.

    Every value but the first rows is kept to one line, so data (a file name, a column
    name) can't add a line that reads as another column or header."""
    lines = [f"DataFrame `{facts['name']}`: {facts['rows']} rows x {facts['cols']} columns"]
    if facts.get("source"):
        lines.append(f"Loaded from: {_one_line(facts['source'])}")
    lines.append("Columns:")
    for col in facts["columns"]:
        line = (
            f"- {_one_line(col['name'])}: {_one_line(col['dtype'])}, {col['kind']}, "
            f"{col['missing']} missing, {col['unique']} unique"
        )
        if col.get("example") not in (None, ""):
            line += f", e.g. {_one_line(col['example'])}"
        lines.append(line)
    if facts.get("omitted_columns"):
        lines.append(f"(+{facts['omitted_columns']} more columns not listed)")
    if facts.get("date_columns"):
        lines.append("Date columns: " + ", ".join(_one_line(d) for d in facts["date_columns"]))
    if facts.get("head"):
        lines.append("First rows:\n" + facts["head"])
    return "\n".join(lines)


def render_question(question: str | None) -> str:
    """``Task: `` and the question (or a general brief), its later lines quoted so that no
    line of it can pass for a fence."""
    lines = [line.rstrip() for line in (question or "").strip().splitlines()] or [DEFAULT_TASK]
    return "Task: " + "\n".join([lines[0], *(QUOTE + line if line else QUOTE.rstrip() for line in lines[1:])])


def render_task(facts: dict[str, Any], question: str | None, earlier: str | None = None) -> str:
    """The first user message: the question (or a general brief), then the frame's facts
    fenced off (see the module docstring), then, for a follow-up, the fenced block about
    the run it continues (``agent.followup.render_earlier``)."""
    task = f"{render_question(question)}\n\n{FACTS_OPEN}\n{render_facts(facts)}\n{FACTS_CLOSE}"
    return f"{task}\n\n{earlier}" if earlier else task


def split_task(text: str) -> tuple[str, str | None]:
    """(question, facts) of a :func:`render_task` message; facts is None without a fence.

    The facts are what lies between the first line that is exactly the opening fence (no
    line of the question can be) and the last closing fence; the question is the text
    before it, unquoted. A message of another shape is all question.
    """
    lines = text.split("\n")
    try:
        start = lines.index(FACTS_OPEN)
        end = len(lines) - 1 - lines[::-1].index(FACTS_CLOSE)
    except ValueError:
        start = end = -1
    asked = lines[:start] if 0 <= start < end else lines
    question = "\n".join(
        line.removeprefix(QUOTE.rstrip()).removeprefix(" ") if i else line for i, line in enumerate(asked)
    )
    question = question.removeprefix("Task:").strip()
    if not 0 <= start < end:
        return question, None
    return question, "\n".join(lines[start + 1 : end])
