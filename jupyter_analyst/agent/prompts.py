"""The words the model reads: the system prompt, the task message and fixed nudges.

The task message renders the frame's facts (computed in the kernel) in one compact,
line-oriented form; small models copy column names from it, and the rule-based
baseline parses it back, so its layout is a contract (see ``FACTS_COLUMN_RE``).
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


def render_facts(facts: dict[str, Any]) -> str:
    """Render kernel-computed frame facts (see ``kernel.facts``) as compact text."""
    lines = [f"DataFrame `{facts['name']}`: {facts['rows']} rows x {facts['cols']} columns"]
    if facts.get("source"):
        lines.append(f"Loaded from: {facts['source']}")
    lines.append("Columns:")
    for col in facts["columns"]:
        line = (
            f"- {col['name']}: {col['dtype']}, {col['kind']}, {col['missing']} missing, "
            f"{col['unique']} unique"
        )
        if col.get("example") not in (None, ""):
            line += f", e.g. {col['example']}"
        lines.append(line)
    if facts.get("omitted_columns"):
        lines.append(f"(+{facts['omitted_columns']} more columns not listed)")
    if facts.get("date_columns"):
        lines.append("Date columns: " + ", ".join(facts["date_columns"]))
    if facts.get("head"):
        lines.append("First rows:\n" + facts["head"])
    return "\n".join(lines)


def render_task(facts: dict[str, Any], question: str | None) -> str:
    """The first user message: the question (or a general brief) and the frame's facts."""
    ask = (
        question.strip()
        if question and question.strip()
        else (
            "Explore this dataset and report the most important patterns, relationships and "
            "anything surprising."
        )
    )
    return f"Task: {ask}\n\n{render_facts(facts)}"
