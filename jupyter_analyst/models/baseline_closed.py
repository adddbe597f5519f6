"""How the baseline answers a closed-form question: one cell computes each asked value.

A closed-form task ends with format instructions (``eval.answers.format_instructions``):
one ``@name[value] where value is WHAT, HOW`` line per value. :func:`wanted` reads them;
:func:`plan_answer` reads the question and each ``WHAT`` into a small computation (which
rows: the conditions the question states, ``col == 'v'``, ``col is 'v'``, ``col > 60``,
"more than 60"; which operation: mean, median, standard deviation, sum, share, count,
count of missing values, correlation, the most common value, the group with the highest
or lowest mean), and :func:`answer_cell` writes the cell that computes and prints each
value as ``Answer name: value``. The final answer copies those printed lines into
``@name[value]`` lines (:func:`answer_lines`), so every value is grounded by an output,
never echoed from a literal. Work is on the frame as loaded (no cleaning), as the answer
key is computed from the same file.

A value the rules can't read is left out (the cell says so) rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .baseline_names import FRAME
from .baseline_task import Column

FORMAT_RE = re.compile(
    r"^- @(\w+)\[value\] where value is (.+), "
    r"(an integer|text, exactly as it appears in the data|a number rounded to (\d+) decimal places?)$",
    re.M,
)
_INSTRUCTIONS = "Compute the answer in the notebook, then include it in your final_answer"
ANSWER_LINE_RE = re.compile(r"^Answer (\w+): (.+)$", re.M)
_OPS = {"==": "==", "!=": "!=", ">=": ">=", "<=": "<=", ">": ">", "<": "<", "=": "=="}
_WORD_OPS = [
    (r"(?:greater|more|higher|larger|bigger) than|above|over|exceeds?|exceeding", ">"),
    (r"(?:less|lower|smaller|fewer) than|below|under", "<"),
    (r"at least|no less than", ">="),
    (r"at most|no more than", "<="),
]
_NUM = r"-?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class Wanted:
    """One asked value: its name, what it is in words, and its kind."""

    name: str
    what: str
    kind: str  # "number" | "int" | "text"
    decimals: int = 2


@dataclass(frozen=True)
class Cond:
    column: str
    op: str
    value: str | float
    start: int = 0


@dataclass
class Plan:
    """How one value is computed: an operation over rows meeting ``filters``."""

    op: str
    measure: str | None = None
    other: str | None = None
    group: str | None = None
    filters: list[Cond] = field(default_factory=list)
    outcome: Cond | None = None
    min_count: int | None = None
    largest: bool = True


def split_question(question: str) -> tuple[str, list[Wanted]]:
    """The question's own text, and the values its format instructions ask for."""
    body = question.split(_INSTRUCTIONS, 1)[0].strip()
    out = []
    for m in FORMAT_RE.finditer(question):
        how = m.group(3)
        kind = "int" if how == "an integer" else "text" if how.startswith("text") else "number"
        out.append(Wanted(m.group(1), m.group(2), kind, int(m.group(4) or 0)))
    return body, out


def wanted(question: str) -> list[Wanted]:
    return split_question(question)[1]


def _mentions(text: str, columns: list[Column]) -> list[tuple[int, str]]:
    """(position, column) of each column named in ``text``, longest names first, no overlaps."""
    found: list[tuple[int, int, str]] = []
    taken: set[int] = set()
    for c in sorted(columns, key=lambda c: -len(c.name)):
        variants = [c.name] + ([c.name.replace("_", " ")] if "_" in c.name else [])
        for flags in (0, re.I):
            for v in variants:
                for m in re.finditer(r"(?<![\w.])" + re.escape(v) + r"(?![\w])", text, flags):
                    span = set(range(m.start(), m.end()))
                    if not span & taken:
                        taken |= span
                        found.append((m.start(), m.end(), c.name))
            if any(n == c.name for _, _, n in found):
                break
    return sorted((s, n) for s, _, n in found)


def _value(raw: str) -> str | float:
    if raw[:1] in "'\"":
        return raw[1:-1]
    return float(raw) if "." in raw else int(raw)


def conditions(text: str, columns: list[Column]) -> list[Cond]:
    """The row conditions ``text`` states on columns, in order."""
    by_name = {c.name: c for c in columns}
    mentions = _mentions(text, columns)
    conds: list[Cond] = []
    used: set[int] = set()
    for m in re.finditer(rf"((?<!\w)'[^']*'(?!\w)|\"[^\"]*\"|(?<![\w.]){_NUM}(?!\w|\.\d))", text):
        if m.start() in used:
            continue
        before = text[: m.start()]
        prior = [(s, n) for s, n in mentions if s < m.start()]
        if not prior:
            continue
        start, col = prior[-1]
        gap = before[start + len(col) :]
        quoted = m.group(1)[0] in "'\""
        op = None
        g = re.sub(r"[()]", " ", gap).strip().lower()
        sym = re.fullmatch(r"(?:is |was |of )?(==|!=|>=|<=|>|<|=)", g)
        if sym:
            op = _OPS[sym.group(1)]
        elif quoted and re.fullmatch(r"(?:\w+ )?(?:is|was|of|equal to|equals|is equal to|being)?", g):
            op = "=="
        else:
            for words, o in _WORD_OPS:
                if re.fullmatch(rf"(?:(?:is|was|of|has|have|had|a|an|value)\s+)*(?:{words})", g):
                    op = o
                    break
        if op is None or len(gap) > 40:
            continue
        if not quoted and by_name[col].kind != "numeric":
            continue
        conds.append(Cond(col, op, _value(m.group(1)), start))
    year = next((c.name for c in columns if c.name.lower() == "year" and c.kind == "numeric"), None)
    for m in re.finditer(r"\b(?:in|during) (1[89]\d\d|2[01]\d\d)\b", text):
        if year and not any(c.column == year for c in conds):
            conds.append(Cond(year, "==", int(m.group(1)), m.start()))
    return conds


def _measure(text: str, columns: list[Column], exclude: set[str]) -> str | None:
    numeric = [c for c in columns if c.kind == "numeric"]
    for _, name in _mentions(text, numeric):
        if name not in exclude:
            return name
    return None


def plan_answer(body: str, want: Wanted, columns: list[Column]) -> Plan | None:
    """How to compute ``want`` from the question ``body`` (None: the rules can't tell)."""
    what, low, wlow = want.what, body.lower(), want.what.lower()
    body_conds, what_conds = conditions(body, columns), conditions(what, columns)
    # A value quoted in ``what`` alone ("mean Sales for 'Good'") belongs to the body's column for it.
    for m in re.finditer(r"'([^']*)'", what):
        if not any(c.value == m.group(1) for c in what_conds):
            same = next((c for c in body_conds if c.value == m.group(1)), None)
            sibling = next((c for c in body_conds if isinstance(c.value, str)), None)
            if same:
                what_conds.append(same)
            elif sibling:  # "... 'now', and of those whose mother's is 'never'": the same column
                what_conds.append(Cond(sibling.column, "==", m.group(1)))
    if what_conds:
        cols = {c.column for c in what_conds}
        filters = what_conds + [c for c in body_conds if c.column not in cols]
    else:
        filters = list(body_conds)
    cond_cols = {c.column for c in filters}
    text = f"{what} || {body}"
    tlow = text.lower()
    if "correlat" in tlow:
        nums = [n for _, n in _mentions(body, [c for c in columns if c.kind == "numeric"])]
        nums = list(dict.fromkeys(nums))
        if len(nums) >= 2:
            return Plan("corr", nums[0], nums[1], filters=filters)
        return None
    which = re.search(r"\bwhich\b|\bwhat is the most\b|\bmost (?:common|frequent)\b|occurs most", low)
    if want.kind in ("text", "int") and which and "how many" not in low:
        after = body[which.start() :]
        group = next((n for _, n in _mentions(after, columns)), None)
        wm = _mentions(what, columns)
        if wm and not re.search(r"\bmonth|year\b", wlow):
            group = wm[0][1]
        if group is None:
            return None
        at_least = re.search(r"at least (\d+)", low)
        min_count = int(at_least.group(1)) if at_least else None
        filters = [c for c in filters if not (at_least and c.op == ">=" and c.value == min_count)]
        measure = _measure(after, columns, {group})
        largest = not re.search(r"\b(lowest|smallest|(?<!at )least|fewest|minimum)\b", low)
        if measure is None or re.search(r"most (?:common|frequent)|occurs most|the most \w+\?", low):
            return Plan("mode", group=group, filters=filters, min_count=min_count)
        op = "sum" if re.search(r"\btotal|\bsum", low) else "median" if "median" in low else "mean"
        return Plan(f"best_{op}", measure, group=group, filters=filters, min_count=min_count, largest=largest)
    if want.kind == "int" and re.search(r"\bmissing\b|\bno \w+ value|\bhave no\b", wlow + " " + low):
        col = next((n for _, n in _mentions(what, columns)), None) or next(
            (n for _, n in _mentions(body, columns)), None
        )
        return Plan("missing", col) if col else None
    averaged = re.search(r"\bmean\b|average|median|deviation", wlow)
    if re.search(r"percent|share|proportion|\brate\b|%", tlow) and want.kind == "number" and not averaged:
        if what_conds:
            outcome = next((c for c in body_conds if c.column not in {x.column for x in what_conds}), None)
            rest = [c for c in filters if c is not outcome]
        elif body_conds:
            outcome, rest = body_conds[-1], body_conds[:-1]
        else:
            return None
        return Plan("pct", filters=rest, outcome=outcome) if outcome else None
    if want.kind == "int" and re.search(r"how many|number of|\bcount\b", tlow):
        if "distinct" in tlow or not filters:
            return None
        return Plan("count", filters=filters)
    for pattern, op in (
        (r"standard deviation|\bsd\b|\bstd\b", "std"),
        (r"median", "median"),
        (r"\bmean\b|average", "mean"),
        (r"\btotal\b|\bsum\b", "sum"),
        (r"highest|maximum|largest|\bmax\b", "max"),
        (r"lowest|minimum|smallest|\bmin\b", "min"),
    ):
        if re.search(pattern, wlow) or (
            not re.search(r"mean|average|median|deviation", wlow) and re.search(pattern, low)
        ):
            measure = _measure(what, columns, cond_cols) or _measure(body, columns, cond_cols)
            if measure is None:
                measure = _measure(what, columns, set()) or _measure(body, columns, set())
            return Plan(op, measure, filters=filters) if measure else None
    return None


def _mask(frame: str, conds: list[Cond]) -> str:
    return " & ".join(f"({frame}[{c.column!r}] {c.op} {c.value!r})" for c in conds)


def _compute(plan: Plan, frame: str) -> list[str]:
    """Lines that leave the answer in ``values`` (a label for ``mode``/``best_*``)."""
    lines = [f"subset = {frame}[{_mask(frame, plan.filters)}]" if plan.filters else f"subset = {frame}"]
    if plan.op == "corr":
        lines.append(f"values = subset[{plan.measure!r}].corr(subset[{plan.other!r}])")
    elif plan.op == "missing":
        lines.append(f"values = subset[{plan.measure!r}].isna().sum()")
    elif plan.op == "pct":
        assert plan.outcome is not None
        lines.append(f"values = ({_mask('subset', [plan.outcome])}).mean() * 100")
    elif plan.op == "count":
        lines.append("values = len(subset)")
    elif plan.op in ("mode",) or plan.op.startswith("best_"):
        g = plan.group
        if plan.min_count is not None:
            lines += [
                f"counts = subset[{g!r}].value_counts()",
                f"subset = subset[subset[{g!r}].isin(counts[counts >= {plan.min_count}].index)]",
            ]
        if plan.op == "mode":
            lines.append(f"values = subset[{g!r}].value_counts()")
        else:
            agg = plan.op.removeprefix("best_")
            lines.append(f"values = subset.groupby({g!r})[{plan.measure!r}].{agg}()")
        lines.append(f"values = values.{'idxmax' if plan.largest else 'idxmin'}()")
    else:
        lines.append(f"values = subset[{plan.measure!r}].{plan.op}()")
    return lines


def answer_cell(question: str, columns: list[Column], simple: bool = False) -> str | None:
    """The cell computing every asked value (None when nothing is asked). ``simple``: the fix
    after an error, each value guarded so one that fails doesn't hide the others."""
    body, wants = split_question(question)
    if not wants:
        return None
    lines = ["# The question's values, computed on the data as loaded"]
    for w in wants:
        plan = plan_answer(body, w, columns)
        lines.append(f"# {w.name}: {w.what}")
        if plan is None:
            lines.append(f'print("Answer {w.name}: not computed (the question is not one these rules read)")')
            continue
        if w.kind == "int":
            show = (
                "{int(values)}"
                if plan.op not in ("mode",) and not plan.op.startswith("best_")
                else "{values}"
            )
        elif w.kind == "text":
            show = "{values}"
        else:
            show = f"{{values:.{w.decimals}f}}"
        body_lines = [*_compute(plan, FRAME), f'print(f"Answer {w.name}: {show}")']
        if simple:
            lines += [
                "try:",
                *("    " + ln for ln in body_lines),
                "except Exception as error:",
                f'    print(f"Answer {w.name}: not computed ({{type(error).__name__}})")',
            ]
        else:
            lines += body_lines
    return "\n".join(lines)


def answer_lines(question: str, output: str) -> list[str]:
    """``@name[value]`` lines for the values a cell printed (copied, never computed)."""
    names = [w.name for w in wanted(question)]
    printed = {m.group(1): m.group(2).strip() for m in ANSWER_LINE_RE.finditer(output)}
    return [
        f"@{n}[{printed[n]}]" for n in names if n in printed and not printed[n].startswith("not computed")
    ]
