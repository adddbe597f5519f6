"""The baseline's final answer: markdown built only from lines its cells printed.

Kept apart from the cell generators (``baseline_cells``) because it reads their fixed
one-line sentences back; ``baseline_question`` adds the sentences that answer a question's
named columns and groups. Numbers are copied verbatim, never computed here, so they are
grounded by construction.
"""

from __future__ import annotations

import re

from ..notebook.markdown import code_span as code
from ..notebook.markdown import escape_markdown as esc
from .baseline_cells import SAMPLE_ROWS


def find_line(text: str, pattern: str) -> re.Match[str] | None:
    """The first line of ``text`` matching ``pattern`` (anchored), skipping lines with nan."""
    for m in re.finditer(pattern, text, re.MULTILINE):
        if "nan" not in m.group(0).split():
            return m
    return None


def strength(r: str) -> str:
    try:
        value = float(r)
    except ValueError:
        return ""
    if abs(value) >= 0.99:
        return ", nearly perfect: one column may be derived from the other"
    size = "strong" if abs(value) >= 0.7 else "moderate" if abs(value) >= 0.4 else "weak"
    return f", a {size} {'positive' if value > 0 else 'negative'} association"


def conclusions(
    *,
    name: str,
    question: str,
    var: str,
    out: dict[str, str],
    failures: dict[str, str],
    target: str | None,
    group: str | None,
    group2: str | None,
    sampled: bool,
    group_first: bool,
    time_first: bool,
    lead: list[str] | None = None,
    answered: bool = False,
) -> str:
    """The final answer: markdown built only from lines the cells printed (quoted verbatim).

    ``out`` maps step keys to the observations of cells that ran; ``failures`` maps step
    titles to their error line, reported instead of numbers; ``lead`` holds the sentences
    that answer the question by the columns and groups it names, which come first;
    ``answered``: the asked ``@name[value]`` lines will lead. The section is titled "Answer"
    only when something leads that addresses the question (those, ``lead``, or the group or
    trend sentence the question asks about); otherwise it says it is what the checks found.
    """
    num = r"(-?[\d.]+(?:e[-+]?\d+)?|-?inf)"
    head = [
        f"*Produced by the {name}: a fixed sequence of checks; every number below was printed by a cell above.*",  # noqa: E501
        "",
    ]
    head.append(
        f"**Question:** {esc(question)}"
        if question
        else f"**Question:** none given; a general exploration of {code(var)}."
    )
    summary: list[str] = []
    findings: list[str] = []
    t, g = target, group

    m = find_line(out.get("overview", ""), r"^Shape: (\d+) rows x (\d+) columns$")
    data = f"{m[1]} rows x {m[2]} columns" if m else ""
    m = find_line(out.get("missing", ""), r"^Missing cells: (\d+) of (\d+) \(([\d.]+)%\)$")
    if m:
        data += f"; {m[1]} of {m[2]} cells missing ({m[3]}%)"
    m = find_line(out.get("missing", ""), r"^Duplicate rows: (\d+)$")
    if m:
        data += f"; {m[1]} duplicate rows"
    if data:
        findings.append(f"**Data:** {data.lstrip('; ')}.")
    clean = out.get("clean", "")
    changes = [ln for ln in clean.splitlines() if re.match(r"^(Converted|Parsed|Kept|Dropped|Renamed) ", ln)]
    m = find_line(clean, r"^Cleaned frame (\w+): (\d+) rows x (\d+) columns")
    if m:
        findings.append(
            f"**Cleaning:** analysed the copy {code(m[1])} ({m[2]} rows x {m[3]} columns). "
            + " ".join(f"{esc(c)}." for c in changes)
        )

    if t:
        m = find_line(
            out.get("dist", ""),
            rf"^Summary of {re.escape(t)}: mean = {num}, median = {num}, std = {num}, min = {num}, max = {num}, skew = (\S+)$",  # noqa: E501
        )
        if m:
            summary.append(
                f"{code(t)} has mean {m[1]} and median {m[2]} (from {m[4]} to {m[5]}, std {m[3]})."
            )
            findings.append(
                f"**Distribution of {code(t)}:** mean = {m[1]}, median = {m[2]}, std = {m[3]}, skew = {m[6]}."
            )
        m = find_line(
            out.get("outliers", ""),
            rf"^Outliers in {re.escape(t)} \(outside {num} to {num}, 1\.5 x IQR rule\): (\d+) rows \(([\d.]+)%\)$",  # noqa: E501
        )
        if m:
            findings.append(
                f"**Outliers:** {m[3]} rows ({m[4]}%) of {code(t)} lie outside {m[1]} to {m[2]} (1.5 x IQR rule)."  # noqa: E501
            )
    for key, col in (("counts", g), ("counts2", group2)):
        if col:
            m = find_line(
                out.get(key, ""),
                rf"^Most common {re.escape(col)}: (.+) \((\d+) rows, ([\d.]+)% of non-missing\)$",
            )
            if m:
                findings.append(
                    f"**Most common {code(col)}:** {esc(m[1])} ({m[2]} rows, {m[3]}% of non-missing values)."
                )
                if not t and key == "counts":
                    summary.append(f"The most common {code(col)} is {esc(m[1])} ({m[3]}% of rows).")
    corr = out.get("corr", "")
    m = find_line(corr, rf"^Strongest correlation: (.+): r = {num}$")
    if m:
        findings.append(f"**Strongest correlation:** {esc(m[1])} (r = {m[2]}{strength(m[2])}).")
        if not t:
            summary.append(f"The strongest correlation is {esc(m[1])} (r = {m[2]}).")
    if t:
        m = find_line(corr, rf"^Strongest correlation with {re.escape(t)}: (.+): r = {num}$")
        if m:
            summary.append(f"It is most correlated with {code(m[1])} (r = {m[2]}{strength(m[2])}).")
    if t and g:
        text = out.get("group", "")
        hi = find_line(
            text, rf"^Highest mean {re.escape(t)}: {re.escape(g)} = (.+) \(mean = {num}, n = (\d+)\)$"
        )
        lo = find_line(
            text, rf"^Lowest mean {re.escape(t)}: {re.escape(g)} = (.+) \(mean = {num}, n = (\d+)\)$"
        )
        if hi and lo:
            detail = (
                f"highest for {esc(hi[1])} ({hi[2]}, n = {hi[3]}) "
                f"and lowest for {esc(lo[1])} ({lo[2]}, n = {lo[3]})"
            )
            by_group = f"By {code(g)}, the mean {code(t)} is {detail}."
            summary.insert(0 if group_first else len(summary), by_group)
            answered = answered or group_first
            findings.append(f"**Mean {code(t)} by {code(g)}:** {detail}.")
    m = find_line(out.get("cross", ""), r"^Most frequent combination: (.+) \((\d+) rows\)$")
    if m:
        findings.append(f"**Most frequent combination:** {esc(m[1])} ({m[2]} rows).")
    trend = out.get("trend", "")
    m = find_line(trend, rf"^Trend of (.+): {num} \((.+?)\) -> {num} \((.+?)\), (\d+) periods$")
    if m:
        direction = ""
        try:
            a, b = float(m[2]), float(m[4])
            direction = (
                "ending higher than it started"
                if b > a
                else "ending lower than it started"
                if b < a
                else "ending where it started"
            )
        except ValueError:
            pass
        sentence = (
            f"Over time ({m[6]} periods), the {esc(m[1])} went from {m[2]} ({esc(m[3])}) "
            f"to {m[4]} ({esc(m[5])})"
        )
        sentence += f", {direction}" if direction else ""
        peak = find_line(trend, rf"^Peak of .+: {num} \((.+)\)$")
        sentence += f"; its peak was {peak[1]} ({esc(peak[2])})." if peak else "."
        summary.insert(0 if time_first else len(summary), sentence)
        answered = answered or time_first
        findings.append("**Trend:** " + sentence)
    for key in ("ecdf", "pareto", "positions", "textlen"):
        m = find_line(
            out.get(key, ""),
            r"^(Quartiles of .+|The top \d+ values of .+|.+ changes value \d+ times along \d+ rows|Length of .+ values: .+)$",  # noqa: E501
        )
        if m:
            findings.append(esc(m[1]) + ".")

    title = "### Answer" if answered or lead else "### What the checks found"
    title = title if question else "### Summary"
    parts = head + ["", title, ""]
    if lead:
        parts += [line for sentence in lead for line in (sentence, "")]
        parts.append("More broadly: " + " ".join(summary) if summary else "")
    else:
        parts.append(
            " ".join(summary)
            if summary
            else "The cells above produced no result that answers this directly; see the findings."
        )
    if findings:
        parts += ["", "### Findings", ""] + [f"- {f}" for f in findings]
    caveats = []
    for title, error in failures.items():
        why = esc(error.removeprefix("Error: "))
        caveats.append(f"The {esc(title)} step failed ({why}), so no numbers are quoted from it.")
    if sampled:
        caveats.append(f"Charts use a random sample of {SAMPLE_ROWS:,} rows; statistics use every row.")
    caveats.append(
        "Correlations and group differences describe association in this data, not cause and effect."
    )
    if question:
        caveats.append(
            "This rule-based analysis reads the question for the columns and groupings it names; "
            "it answers with the summaries above, not by reasoning about the question."
        )
    parts += ["", "### Caveats", ""] + [f"- {c}" for c in caveats]
    return "\n".join(parts)
