"""A rule-based analyst with no language model: the offline default, test policy and teacher.

``BaselineAnalyst`` implements the ``Policy`` protocol. It reads the task message (the
question and the frame's facts, see ``agent.prompts.render_task``) and its own earlier
tool calls with their observations, and answers with exactly one tool call: overview,
cleaning, distributions, relationships, group comparison, trend, then ``final_answer``.

It keeps no state between calls: every call replays the conversation through the same
planner, so it can continue any prefix of its own run and two equal conversations always
get the same reply. Numbers in its conclusions are copied from lines its cells printed
(fixed formats, see ``baseline_cells`` and ``baseline_answer``), never computed, so they
are grounded by construction; a failed cell is reported as failed rather than quoted.

It works in the user's kernel without touching the user's variables: its first code cell
asks the kernel which suffix keeps its names free (``baseline_names``), and the text it
writes from data (column names, values) is escaped so it shows literally in markdown.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..agent.tools import CODE_TOOL, FINAL_TOOL, MARKDOWN_TOOL, TOOL_ARGUMENT
from ..agent.types import AssistantTurn, Message, ToolCall, ToolSpec
from ..notebook.markdown import code_span, escape_markdown
from . import baseline_answer as answer
from . import baseline_cells as cells
from . import baseline_closed as closed
from . import baseline_names as naming
from . import baseline_question as asked
from .baseline_roles import Roles, State, Step, decide_roles, mentions, run_suffix, tidy_names
from .baseline_task import Column, Task, own_calls, parse_task

__all__ = ["NAME", "BaselineAnalyst", "Column", "Task", "parse_task"]

NAME = "rule-based baseline analyst (no language model)"

_NUMERIC_TEXT_RE = re.compile(r"^\s*[-+]?[$€£]?\s*\d[\d,]*(\.\d+)?\s*%?\s*$")
_DATEY_RE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
_TIME_WORDS = re.compile(
    r"\b(time|trend|over the|grow|rise|rising|fall|declin|increas|decreas|season|month|year|week|daily)", re.I
)

# --------------------------------------------------------------------------- the plan


def _pre_clean_steps(task: Task, state: State) -> list[Step]:
    var, rows = naming.FRAME, task.rows  # code names the frame FRAME; see baseline_names
    question = (
        f"**Question:** {escape_markdown(task.question)}"
        if task.question
        else "**Goal:** explore the data and report its main patterns."
    )
    any_missing = any(c.missing for c in task.columns)
    has_num = any(c.kind == "numeric" for c in task.columns)
    has_cat = any(c.kind in ("categorical", "boolean", "text") for c in task.columns)
    steps = [
        Step(
            "intro",
            MARKDOWN_TOOL,
            lambda lv, fx: (
                f"## Follow-up on {code_span(task.var)}\n\n{question}\n\nThe earlier analysis above "
                "explored the frame; this one checks it again, answers the question, then concludes."
                "\n\n*Written by the rule-based baseline analyst (no language model).*"
                if task.follow_up
                else f"# Analysis of {code_span(task.var)}\n\n{question}\n\n"
                f"The frame has {rows} rows and {task.cols} columns. Plan: overview, cleaning, "
                "distributions, relationships, group comparisons, trends over time where there are dates, "
                "then conclusions.\n\n*Written by the rule-based baseline analyst (no language model).*"
            ),
        ),
        Step("names", CODE_TOOL, lambda lv, fx: naming.names_cell(f"{task.var}_clean"), "variable names"),
        Step("overview", CODE_TOOL, lambda lv, fx: cells.overview(var, lv), "overview"),
    ]
    if rows == 0:
        return steps
    steps.append(
        Step("missing", CODE_TOOL, lambda lv, fx: cells.missing(var, any_missing, lv), "missing values")
    )
    if has_num or has_cat:
        steps.append(
            Step(
                "describe",
                CODE_TOOL,
                lambda lv, fx: cells.describe_simple(var) if fx else cells.describe(var, has_num, has_cat),
                "summary statistics",
            )
        )
    out = f"{task.var}_clean{run_suffix(state)}"
    names = [c.name for c in task.columns]
    dates = [
        c.name
        for c in task.columns
        if c.kind in ("categorical", "text")
        and (
            c.name in task.date_columns
            or (re.search(r"date|time", c.name, re.I) and _DATEY_RE.search(c.example))
        )
    ]
    numeric_text = [
        c.name
        for c in task.columns
        if c.kind in ("categorical", "text")
        and c.name not in dates
        and c.missing < rows
        and _NUMERIC_TEXT_RE.match(c.example)
    ]
    nullable = [
        c.name for c in task.columns if c.kind == "numeric" and c.dtype.startswith(("Int", "UInt", "Float"))
    ]
    empty = [c.name for c in task.columns if c.missing >= rows]
    strip = any(
        c.kind in ("categorical", "text") and not c.dtype.startswith("category") for c in task.columns
    )
    sample = rows > cells.SAMPLE_ROWS
    tidy = tidy_names(task)
    dedupe = len(set(" ".join(n.split()) for n in names)) < len(names)
    rename = dict(zip(names, tidy, strict=True))

    def fix_names(lst: list[str]) -> list[str]:
        return [rename.get(n, n) for n in lst]

    notes = []
    if dates:
        notes.append("parse " + ", ".join(map(code_span, dates)) + " as dates")
    if numeric_text:
        notes.append("convert " + ", ".join(map(code_span, numeric_text)) + " from text to numbers")
    if nullable:
        notes.append("store nullable numbers as float")
    if empty:
        notes.append("drop the empty column(s) " + ", ".join(map(code_span, empty)))
    if strip:
        notes.append("strip stray whitespace in text")
    notes.append("drop exact duplicate rows")
    sample_note = (
        f" Charts sample {cells.SAMPLE_ROWS:,} rows of this large frame; statistics use every row."
        if sample
        else ""
    )
    steps += [
        Step(
            "clean_md",
            MARKDOWN_TOOL,
            lambda lv, fx: (
                f"## Cleaning\n\nWork on a copy, `{out}`, so `{task.var}` stays as loaded: "
                + "; ".join(notes)
                + "."
                + sample_note
            ),
        ),
        Step(
            "clean",
            CODE_TOOL,
            lambda lv, fx: (
                cells.clean_simple(var, out, sample)
                if fx
                else cells.clean(
                    var,
                    out,
                    dedupe=dedupe,
                    strip_text=strip,
                    date_cols=fix_names(dates),
                    numeric_text_cols=fix_names(numeric_text),
                    nullable_cols=fix_names(nullable),
                    empty_cols=fix_names(empty),
                    sample=sample,
                )
            ),
            "cleaning",
        ),
    ]
    return steps


def _summary_of(frame: str, measure: str, groups: list[Column]) -> Callable[[int, bool], str | None]:
    return lambda lv, fx: asked.grouped_summary(frame, measure, groups, fx)


def _question_steps(task: Task, state: State, r: Roles) -> list[Step]:
    """The question's own analysis, first: its measures by all its groupings together (a
    summary per measure, one chart of them all), and the relationship it names."""
    focus = r.focus
    if not focus.named:
        return []
    f, pf = r.frame, r.plot_frame
    steps = [
        Step("q_md", MARKDOWN_TOOL, lambda lv, fx: asked.reading(focus, task.var, r.target, r.group)),
    ]
    groups = r.q_groups
    if groups:
        by = " and ".join(g.name for g in groups)
        for i, m in enumerate(r.q_measures):
            steps.append(Step(f"q_group_{i}", CODE_TOOL, _summary_of(f, m, groups), f"{m} by {by}"))
        if r.q_measures:
            steps.append(
                Step(
                    "q_chart",
                    CODE_TOOL,
                    lambda lv, fx: asked.grouped_chart(pf, r.q_measures, groups, lv),
                    f"chart by {by}",
                )
            )
    if focus.pair:
        x, y = focus.pair
        hue = groups[0].name if groups else None
        steps.append(
            Step("q_rel", CODE_TOOL, lambda lv, fx: asked.relation(f, pf, x, y, hue, lv), f"{y} vs {x}")
        )
    return steps


def _analysis_steps(task: Task, state: State, r: Roles) -> list[Step]:
    f, pf, t, g = r.frame, r.plot_frame, r.target, r.group
    charts = state.level <= 1
    kde = bool(t) and task.rows >= 10
    steps: list[Step] = []
    if t or g:
        intro = []
        if t:
            intro.append(f"The main measure is {code_span(t)} ({r.target_why}).")
        if g:
            intro.append(f"The main grouping column is {code_span(g)}.")
        steps.append(Step("dist_md", MARKDOWN_TOOL, lambda lv, fx: "## Distributions\n\n" + " ".join(intro)))
    if t:
        steps.append(
            Step(
                "dist",
                CODE_TOOL,
                lambda lv, fx: cells.distribution(f, pf, t, lv, kde),
                f"distribution of {t}",
            )
        )
        steps.append(
            Step("outliers", CODE_TOOL, lambda lv, fx: cells.outliers(f, pf, t, lv), f"outliers of {t}")
        )
    if g:
        steps.append(Step("counts", CODE_TOOL, lambda lv, fx: cells.counts(f, g, lv), f"counts of {g}"))
    if len(r.numeric) >= 2:
        steps.append(
            Step(
                "rel_md",
                MARKDOWN_TOOL,
                lambda lv, fx: (
                    "## Relationships\n\nPearson correlations between the numeric columns"
                    + (" (the first 12)" if len(r.numeric) >= 12 else "")
                    + "; the strongest pair is drawn as a scatter plot."
                ),
            )
        )
        steps.append(
            Step("corr", CODE_TOOL, lambda lv, fx: cells.correlation(f, r.numeric, t, lv), "correlations")
        )
        pair = _scatter_pair(state.output.get("corr", ""), r)
        if pair and r.focus.pair and set(pair) == set(r.focus.pair):
            pair = None  # the question's relationship is drawn already
        if pair and charts:
            hue = g if g and r.group_unique <= 10 else None
            steps.append(
                Step(
                    "scatter",
                    CODE_TOOL,
                    lambda lv, fx: cells.scatter(f, pf, pair[0], pair[1], hue, lv) if lv <= 1 else None,
                    f"scatter of {pair[1]} vs {pair[0]}",
                )
            )
    asked = [c.name for c in r.q_groups]
    compared = bool(g and asked[:1] == [g] and t in r.q_measures)  # by the question's summary
    g2 = r.group2 if r.group2 not in asked else None
    if g and ((t and not compared) or g2):
        second = code_span(t) if t and not compared else code_span(g2 or "")
        title = f"## {second} by {code_span(g)}" if t and not compared else f"## {code_span(g)} and {second}"
        body = (
            "Compare the main measure across the (top 10) groups."
            if t and not compared
            else "How the two categorical columns co-occur."
        )
        steps.append(Step("group_md", MARKDOWN_TOOL, lambda lv, fx: f"{title}\n\n{body}"))
        if t and not compared:
            steps.append(
                Step("group", CODE_TOOL, lambda lv, fx: cells.group_compare(f, pf, t, g, lv), f"{t} by {g}")
            )
        if g2:
            steps.append(
                Step("cross", CODE_TOOL, lambda lv, fx: cells.crosstab(f, g, g2, lv), f"{g} by {g2}")
            )
    if r.date:
        d = r.date
        what = f"mean {code_span(t)}" if t else "the number of rows"
        per = f"per {r.period}, using {code_span(d)}" if r.period != "{date_col}" else f"per {code_span(d)}"
        hue = g if g and r.group_unique <= 8 else None
        lines = "; one line per value of " + code_span(hue) if hue and t else ""
        steps.append(
            Step(
                "trend_md",
                MARKDOWN_TOOL,
                lambda lv, fx: f"## Trend over time\n\n{what[0].upper() + what[1:]} {per}{lines}.",
            )
        )
        steps.append(
            Step(
                "trend",
                CODE_TOOL,
                lambda lv, fx: cells.trend(f, d, t, r.freq, r.period, r.dated, hue, lv),
                "trend over time",
            )
        )
    return steps


def _filler_steps(task: Task, state: State, r: Roles) -> list[Step]:
    """Extra charts so that even a one-column frame gets at least three."""
    if state.level > 1 or (state.figures >= 3 and "extra_md" not in state.status):
        return []
    steps = [
        Step(
            "extra_md",
            MARKDOWN_TOOL,
            lambda lv, fx: "## More views\n\nA few more charts of the main columns.",
        )
    ]
    if r.target:
        steps.append(
            Step(
                "ecdf",
                CODE_TOOL,
                lambda lv, fx: cells.ecdf(r.frame, r.target or "", lv) if lv <= 1 else None,
                "cumulative distribution",
            )
        )
    if r.group2:
        steps.append(
            Step(
                "counts2",
                CODE_TOOL,
                lambda lv, fx: cells.counts(r.frame, r.group2 or "", lv),
                f"counts of {r.group2}",
            )
        )
    if r.group:
        steps.append(
            Step(
                "pareto",
                CODE_TOOL,
                lambda lv, fx: cells.pareto(r.frame, r.group or "") if lv <= 1 else None,
                "category shares",
            )
        )
    if r.group:
        steps.append(
            Step(
                "positions",
                CODE_TOOL,
                lambda lv, fx: cells.positions(r.frame, r.group or "") if lv <= 1 else None,
                "row order",
            )
        )
    if r.text:
        steps.append(
            Step(
                "textlen",
                CODE_TOOL,
                lambda lv, fx: cells.text_lengths(r.frame, r.text or "", lv) if lv <= 1 else None,
                "text lengths",
            )
        )
    if len(steps) == 1:
        return []
    if state.figures >= 3:  # enough charts now: stop after the ones already drawn
        return [s for s in steps if s.key in state.status]
    return steps


def _scatter_pair(corr_output: str, r: Roles) -> tuple[str, str] | None:
    """The pair to scatter: the target's strongest partner, else the strongest pair overall."""
    if r.target:
        prefix = f"Strongest correlation with {r.target}: "
        for line in corr_output.splitlines():
            if line.startswith(prefix):
                other = line[len(prefix) :].rsplit(": r = ", 1)[0]
                if other in r.numeric:
                    return other, r.target
    for line in corr_output.splitlines():
        if line.startswith("Strongest correlation: "):
            body = line[len("Strongest correlation: ") :].rsplit(": r = ", 1)[0]
            for a in r.numeric:
                for b in r.numeric:
                    if a != b and body == f"{a} vs {b}":
                        return a, b
    return None


def plan(task: Task, state: State) -> tuple[list[Step], Roles | None]:
    """Every step of the run as far as it can be known from ``state``."""
    steps = _pre_clean_steps(task, state)
    if task.rows and closed.wanted(task.question):  # a closed-form question: its values come first
        at = next(i for i, s in enumerate(steps) if s.key == "overview") + 1

        def build(lv: int, fx: bool) -> str | None:
            return closed.answer_cell(task.question, task.columns, fx)

        steps.insert(at, Step("closed", CODE_TOOL, build, "the question's values"))
    if task.rows == 0 or "clean" not in state.status:
        return steps, None
    roles = decide_roles(task, state)
    own = _question_steps(task, state, roles)
    steps += own
    if task.follow_up and own:  # the earlier run did the general analysis: the question only
        return steps, roles
    steps += _analysis_steps(task, state, roles)
    steps += _filler_steps(task, state, roles)
    return steps, roles


# --------------------------------------------------------------------------- the policy


def _answer(task: Task, state: State, roles: Roles | None, steps: list[Step]) -> str:
    titles = {s.key: s.title or s.key for s in steps}
    t, g = (roles.target, roles.group) if roles else (None, None)
    values = closed.answer_lines(task.question, state.output.get("closed", ""))
    text = answer.conclusions(
        name=NAME,
        question=task.question,
        var=task.var,
        out=state.output,
        failures={titles.get(k, k): e for k, e in state.errors.items()},
        target=t,
        group=g,
        group2=roles.group2 if roles else None,
        sampled=bool(roles and roles.plot_frame != roles.frame),
        group_first=bool(g and mentions(task.question, [g]) and not (t and mentions(task.question, [t]))),
        time_first=bool(_TIME_WORDS.search(task.question)),
        lead=asked.answer(roles.focus, roles.q_measures, state.output) if roles else [],
        answered=bool(values),
    )
    if values:  # the asked @name[value] lines lead the answer, copied from the cell's output
        text = text.replace("### Answer\n\n", "### Answer\n\n" + "\n".join(values) + "\n\n", 1)
    return text


def next_action(task: Task, state: State) -> tuple[Step, int, bool]:
    """The step to take now, at which level, and whether it is the fix of a failed cell."""
    steps, roles = plan(task, state)
    if state.pending_fix:
        step = next((s for s in steps if s.key == state.pending_fix), None)
        level = state.fix_level
        if step is not None and step.build(level, True) is not None:
            return step, level, True
    for step in steps:
        if step.key not in state.status and step.build(state.level, False) is not None:
            return step, state.level, False
    final = Step("final", FINAL_TOOL, lambda lv, fx: _answer(task, state, roles, steps), "conclusions")
    return final, state.level, False


class BaselineAnalyst:
    """Rule-based analyst: one tool call per turn, derived only from the conversation."""

    name = NAME

    def __call__(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        task = parse_task(messages)
        state = State()
        for _name, observation in own_calls(messages):
            step, _level, is_fix = next_action(task, state)
            state.record(step.key, is_fix, observation)
        step, level, is_fix = next_action(task, state)
        text = step.build(level, is_fix) or ""
        if step.tool == CODE_TOOL and step.key != "names":
            text = naming.finalize(text, task.var, run_suffix(state))
        if is_fix and step.tool == CODE_TOOL:
            text = f"# Simpler version of the {step.title} step after the error above\n{text}"
        call = ToolCall(
            step.tool, {TOOL_ARGUMENT[step.tool]: text}, id=f"call_baseline_{state.calls + 1:02d}"
        )
        return AssistantTurn(tool_calls=[call], model=self.name)


__all__ = [
    "BaselineAnalyst",
    "NAME",
    "Task",
    "parse_task",
    "own_calls",
    "plan",
    "next_action",
    "decide_roles",
]
