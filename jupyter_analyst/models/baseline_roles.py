"""What the baseline's replay established (``State``) and which columns play which part
(``Roles``): split from the planner (``baseline``) so each stays small.

``decide_roles`` reads the facts, the cleaning cell's report of what it changed, and how
the question was read (``baseline_question.Focus``): columns the question names win over
the rules that pick a main measure and grouping by themselves.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from . import baseline_cells as cells
from . import baseline_names as naming
from .baseline_question import Focus, read_question
from .baseline_task import Column, Task

_ERROR_RE = re.compile(r"^Error: ", re.MULTILINE)
_CONTAINER_RE = re.compile(r"^[\[{(].*[\]})]$")
_ID_NAME_RE = re.compile(
    r"(^|[^a-z0-9])(id|uuid|guid|key|idx|index|code|zip|zipcode|postcode|phone|iata|icao)$"
)
_KEYWORDS = (
    "price",
    "sales",
    "revenue",
    "amount",
    "total",
    "value",
    "score",
    "target",
    "salary",
    "income",
    "cost",
    "profit",
    "rate",
    "mass",
    "weight",
    "charge",
    "spend",
    "duration",
    "temp",
    "close",
)
_FREQS = ((120, "D", "day"), (3 * 365, "W", "week"), (30 * 365, "MS", "month"))


# --------------------------------------------------------------------------- state


@dataclass
class State:
    """What the replayed history established: step outcomes and what the cells printed."""

    status: dict[str, str] = field(default_factory=dict)
    """step key -> "ok" | "failed"."""
    output: dict[str, str] = field(default_factory=dict)
    """step key -> observation of its last successful attempt."""
    errors: dict[str, str] = field(default_factory=dict)
    """step key -> first error line, for steps that never succeeded."""
    pending_fix: str | None = None
    fix_level: int = 1
    """Level of the fix: one simpler than the failed cell, or as a missing library demands."""
    figures: int = 0
    sns_missing: bool = False
    plt_missing: bool = False
    calls: int = 0

    @property
    def level(self) -> int:
        return 2 if self.plt_missing else 1 if self.sns_missing else 0

    def record(self, key: str, is_fix: bool, observation: str) -> None:
        before = self.level
        self.calls += 1
        self.figures += observation.count("[figure")
        if "No module named 'matplotlib" in observation:
            self.plt_missing = self.sns_missing = True
        if "No module named 'seaborn" in observation:
            self.sns_missing = True
        error = _ERROR_RE.search(observation)
        if error:
            self.status[key] = "failed"
            line = observation[error.start() :].splitlines()[0]
            self.errors[key] = line[:200]
            self.pending_fix = None if is_fix else key
            self.fix_level = min(max(before + 1, self.level), 2)
        else:
            self.status[key] = "ok"
            self.output[key] = observation
            self.errors.pop(key, None)
            self.pending_fix = None


@dataclass
class Step:
    """One planned tool call; ``build(level, fix)`` returns its text, or None to skip."""

    key: str
    tool: str
    build: Callable[[int, bool], str | None]
    title: str = ""


def run_suffix(state: State) -> str:
    """The suffix of this run's variable names, as the names cell printed it (see
    ``baseline_names``): "" before it ran, a fallback when it could not say."""
    if "names" not in state.status:
        return ""
    found = naming.suffix_of(state.output.get("names", ""))
    return naming.FALLBACK_SUFFIX if found is None else found


# --------------------------------------------------------------------------- roles


@dataclass
class Roles:
    """Which columns play which part, decided from the facts and the cleaning output."""

    frame: str
    plot_frame: str
    numeric: list[str]
    target: str | None
    target_why: str
    group: str | None
    group_unique: int
    group2: str | None
    text: str | None
    date: str | None
    freq: str | None
    period: str
    dated: bool
    focus: Focus = field(default_factory=Focus)
    """How the question was read: its named columns are analysed first."""
    q_measures: list[str] = field(default_factory=list)
    """The measures compared across the question's groupings (its own, else the target)."""
    q_groups: list[Column] = field(default_factory=list)


def _looks_like_id(c: Column, rows: int) -> bool:
    low = c.name.strip().lower()
    if _ID_NAME_RE.search(low) or low.startswith("id_") or re.search(r"[a-z](Id|ID)$", c.name):
        return True
    integer = c.dtype.lower().startswith(("int", "uint")) or c.kind in ("text", "categorical")
    return integer and rows >= 20 and c.unique >= 0.95 * max(rows - c.missing, 1)


def _looks_like_year(c: Column) -> bool:
    if "year" not in c.name.lower() and c.name.lower() not in ("yr", "season"):
        return False
    try:
        return 1700 <= float(c.example) <= 2200
    except ValueError:
        return False


def mentions(question: str, names: list[str]) -> list[str]:
    """Column names the question mentions, in the order it mentions them."""
    q = question.lower()
    found = []
    for name in names:
        for variant in {name.lower(), name.lower().replace("_", " ")}:
            m = re.search(r"(?<![\w])" + re.escape(variant) + r"(?![\w])", q) if len(variant) > 1 else None
            if m:
                found.append((m.start(), -len(variant), name))
                break
    return [n for _, _, n in sorted(found)]


def tidy_names(task: Task) -> list[str]:
    """Labels after cleaning: text with single spaces, repeated labels suffixed ``_1``..."""
    seen: dict[str, int] = {}
    out = []
    for c in task.columns:
        label = " ".join(c.name.split())
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}_{seen[label] - 1}")
    return out


def _literal_names(pattern: str, text: str) -> set[str]:
    names = set()
    for m in re.finditer(pattern, text, re.MULTILINE):
        try:
            names.add(str(ast.literal_eval(m.group(1))))
        except (ValueError, SyntaxError):
            continue
    return names


def decide_roles(task: Task, state: State) -> Roles:
    """Pick target, groups and time axis; uses the cleaning cell's report of what changed."""
    cleaned = state.status.get("clean") == "ok"
    frame = f"{task.var}_clean{run_suffix(state)}" if cleaned else naming.FRAME
    report = state.output.get("clean", "")
    converted = _literal_names(r"^Converted (.+) to numbers \(", report)
    parsed = _literal_names(r"^Parsed (.+) as dates \(", report)
    ranges = {}
    for m in re.finditer(
        r"^Date range of (.+): (-?\d+)-(\d\d)-(\d\d) to (-?\d+)-(\d\d)-(\d\d) \((\d+) distinct", report, re.M
    ):
        try:
            name = str(ast.literal_eval(m.group(1)))
        except (ValueError, SyntaxError):
            continue
        days = (int(m[5]) - int(m[2])) * 365 + (int(m[6]) - int(m[3])) * 30 + int(m[7]) - int(m[4])
        ranges[name] = (days, int(m[8]))
    names = tidy_names(task) if cleaned else [c.name for c in task.columns]
    cols = [replace(c, name=n) for c, n in zip(task.columns, names, strict=True)]
    cols = [
        replace(c, kind="numeric", dtype="float64")
        if c.name in converted
        else replace(c, kind="datetime")
        if c.name in parsed
        else c
        for c in cols
    ]
    usable = [c for c in cols if c.missing < task.rows]
    is_num = {c.name: (c.kind == "numeric" or c.name in converted) for c in usable}
    numeric = [c for c in usable if is_num[c.name] and c.unique >= 2 and not _looks_like_id(c, task.rows)]
    mentioned = mentions(task.question, [c.name for c in usable])
    focus = read_question(task.question, usable)
    named = focus.target or (focus.pair[1] if focus.pair else None) or next(iter(focus.measures), None)

    candidates = [c for c in numeric if not _looks_like_year(c)]
    target, why = None, ""
    if named is not None:
        target, why = named, "the question mentions it"
    for name in [] if target else mentioned:
        if any(c.name == name for c in candidates):
            target, why = name, "the question mentions it"
            break
    if target is None and candidates:
        best = max(
            candidates,
            key=lambda c: (any(k in c.name.lower() for k in _KEYWORDS), c.unique >= 3, c.unique, -c.index),
        )
        target, why = (
            best.name,
            "the numeric column with the most distinct values"
            if best.unique >= 3
            else "the main numeric column",
        )

    def bucket(c: Column) -> int:
        return 0 if 3 <= c.unique <= 12 else 1 if c.unique == 2 else 2

    cats = [
        c
        for c in usable
        if c.kind in ("categorical", "boolean", "text")
        and 2 <= c.unique <= 50
        and not _CONTAINER_RE.match(c.example)
        and not is_num[c.name]
        and c.name not in parsed
        and c.name not in task.date_columns
        and not _looks_like_id(c, task.rows)
    ]
    cats.sort(key=lambda c: (bucket(c), c.index))
    group = next(iter(focus.groups), None) or next(
        (n for n in mentioned if any(c.name == n for c in cats)), None
    )
    if group is None and cats:
        group = cats[0].name
    if group is None:  # a small integer code such as "cylinders" can group rows too
        small = [c for c in numeric if 2 <= c.unique <= 10 and c.name != target and not _looks_like_year(c)]
        group = small[0].name if small else None
    group_unique = next((c.unique for c in usable if c.name == group), 0)
    group2 = focus.groups[1] if len(focus.groups) > 1 else None
    group2 = group2 or next((c.name for c in cats if c.name != group and c.unique <= 20), None)
    text = next(
        (
            c.name
            for c in usable
            if c.kind in ("text", "categorical")
            and not is_num[c.name]
            and not _CONTAINER_RE.match(c.example)
            and c.name not in parsed
            and c.name != group
            and c.unique > 50
        ),
        None,
    )

    first = ([target] if target else []) + [m for m in focus.measures if m != target]
    num_cols = first + [c.name for c in numeric if c.name not in first]
    date, freq, period, dated = None, None, "", False
    datetimes = [n for n in ranges if n in {c.name for c in usable}]
    if datetimes:
        date = next((n for n in [*focus.dates, *mentioned] if n in datetimes), datetimes[0])
        days, distinct = ranges[date]
        dated = True
        if distinct <= 60:
            period = "date"
        else:
            freq, period = next(((f, p) for limit, f, p in _FREQS if days <= limit), ("QS", "quarter"))
    else:
        years = [c.name for c in numeric if _looks_like_year(c)]
        if years:
            date, period = years[0], "{date_col}"
    plot_frame = "plot_df" if cleaned and task.rows > cells.SAMPLE_ROWS else frame
    return Roles(
        frame,
        plot_frame,
        num_cols[:12],
        target,
        why,
        group,
        group_unique,
        group2,
        text,
        date,
        freq,
        period,
        dated,
        focus,
        list(focus.measures) or ([target] if focus.groups and target else []),
        [next(c for c in usable if c.name == g) for g in focus.groups],
    )
