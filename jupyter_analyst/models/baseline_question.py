"""How the baseline honours a question: the columns and groupings it names come first.

:func:`read_question` maps the question's words to the frame's columns (case, underscore,
plural and unit insensitive: "body mass" is ``body_mass_g``; a word naming the start of
several columns stands for all of them: "bill size" is ``bill_length_mm`` and
``bill_depth_mm``), and reads what it asks: groupings ("by species and sex", "per region",
"across origins", "for each day", "differ between"), a relationship ("X vs Y", "how does X
relate to Y"), a target ("what drives X", "predict X") and change over time. Words in a
column's place that name no column are kept with the closest column, so the analysis can
say so and go on.

The cell generators here write the question's own analysis (a grouped summary by all the
named groupings together, a chart of the measures by those groups, the named relationship)
and :func:`answer` turns their fixed printed lines into the conclusions' lead, so the
answer names those columns and groups with numbers the cells printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from ..notebook.markdown import code_span as code
from ..notebook.markdown import escape_markdown as esc
from .baseline_task import Column

MAX_MEASURES = 3
"""Measures analysed by name (one grouped-summary cell each); more are listed, not analysed."""
MAX_GROUPS = 3
TOP_FIRST, TOP_OTHER = 10, 6
"""Levels kept of the first grouping and of the others: the largest ones."""

_UNITS = frozenset(
    "mm cm m km g kg mg lb lbs oz in inch inches ft s sec secs ms min mins h hr hrs pct "
    "percent usd eur gbp kwh mph kmh ml l".split()
)
_KEY_STOP = frozenset("of in per the a an and to for".split())
"""Words that don't count when matching a column's name (``Miles_per_Gallon`` is "miles gallon")."""
_GENERIC = frozenset(
    "total mean average median number count value values sum max min size sizes rate data "
    "length width height".split()
)
"""Words too general to stand for a family of columns on their own."""
_SIZE_WORDS = frozenset("size sizes dimension dimensions measurement measurements shape shapes".split())
_SYNONYMS = {
    "weight": ("mass",),
    "weigh": ("mass", "weight"),
    "heavy": ("mass", "weight"),
    "heavier": ("mass", "weight"),
    "heaviest": ("mass", "weight"),
    "mass": ("weight",),
    "gender": ("sex",),
    "sex": ("gender",),
    "price": ("cost",),
    "cost": ("price",),
    "temperature": ("temp",),
    "temp": ("temperature",),
}
_GROUP_WORDS = frozenset("by per across each every between among amongst within".split())
_FILLERS = frozenset(
    "and or the each every different their its a an both all , & / various separate individual "
    "number of type kind level value group category class".split()
)
_COMMON = frozenset(
    """how much many what which when where why who whom is are was were be do does did has have
    had it they them there this that these those more most less least than average mean median
    typical overall over time change changes changed differ differs vary varies compare compared
    relate related relationship between with without on off up down into from about and or not no
    i we you me my our your can could should would will across among per by each every for of the
    a an to in at as if so any some also there here group groups category categories type types
    level levels value values show tell find give trend trends year years month months""".split()
)
"""Words never reported as a column the question names but the frame lacks."""
_TOKEN_RE = re.compile(r"[^\W_]+|[,;:?.!&/]")
_RELATION_RE = re.compile(
    r"\b(relat\w*|correlat\w*|associat\w*|vs|versus|against|depend\w*|affect\w*|impact\w*|"
    r"effect\w*|influenc\w*|driv\w*|predict\w*|explain\w*|determin\w*)\b",
    re.I,
)
_VERSUS_RE = re.compile(r"^(vs|versus|against)$", re.I)
_TARGET_RE = re.compile(
    r"\b(driv\w*|predict\w*|explain\w*|determin\w*|affect\w*|influenc\w*|impact\w*)\s+(.*)$", re.I
)
_DEPENDS_RE = re.compile(r"^(.*?)\b(depend\w*|effect of .*? on)\b", re.I)
_TREND_RE = re.compile(
    r"\b(over time|over the (years|months|decades|period)|through time|across time|trends?|evolv\w*|"
    r"grow\w*|growth|time series)\b",
    re.I,
)
_SUBJECT_RE = re.compile(
    r"\bhow (?:does|do|did|is|are|has|have) (?:the )?(.+?) "
    r"(?:differ|vary|varies|change|compare|relate|depend|affect|evolve|look)",
    re.I,
)


def stem(word: str) -> str:
    """A plural-insensitive form: "tips" and "tip", "origins" and "origin", "sexes" and "sex"."""
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("xes", "ses", "ches", "shes")) and not w.endswith("sses"):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def column_key(name: str) -> tuple[str, ...]:
    """A column's words, stemmed, without units or joining words: ``body_mass_g`` ->
    ("body", "mass"), ``Weight_in_lbs`` -> ("weight",), ``Miles_per_Gallon`` -> ("mile", "gallon")."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    words = [w.lower() for w in re.findall(r"[^\W_]+", spaced)]
    kept = [w for i, w in enumerate(words) if not (i > 0 and w in _UNITS) and w not in _KEY_STOP]
    return tuple(stem(w) for w in kept) or tuple(stem(w) for w in words)


def _initials(name: str) -> str:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    words = [w.lower() for w in re.findall(r"[^\W_]+", spaced)]
    return "".join(w[0] for w in words if not w.isdigit())


@dataclass(frozen=True)
class Unknown:
    """Words in a column's place that name no column, and the column used instead."""

    phrase: str
    role: str
    """"grouping" or "measure"."""
    closest: str | None


@dataclass(frozen=True)
class Focus:
    """What the question names and asks, in the frame's own column names."""

    measures: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    target: str | None = None
    pair: tuple[str, str] | None = None
    """(x, y) of a relationship the question asks about."""
    trend: bool = False
    families: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Words that stand for several columns ("bill" -> both bill columns)."""
    unknown: tuple[Unknown, ...] = ()
    more_measures: tuple[str, ...] = field(default=())
    """Measures named beyond :data:`MAX_MEASURES`."""

    @property
    def named(self) -> bool:
        return bool(self.measures or self.groups or self.target or self.pair or self.unknown)


@dataclass
class _Mention:
    cols: list[str]
    start: int
    end: int
    word: str = ""
    family: bool = False


def _match(tokens: list[str], columns: list[Column]) -> list[_Mention]:
    """Column mentions in ``tokens`` (stemmed), longest first at each place."""
    keys = {c.name: column_key(c.name) for c in columns}
    vocab = {w for k in keys.values() for w in k}
    words = [(i, t) for i, t in enumerate(tokens) if t[0].isalnum() and t not in _KEY_STOP]
    found: list[_Mention] = []
    p = 0
    while p < len(words):
        i, w = words[p]
        options = [w] if w in vocab else [s for s in _SYNONYMS.get(w, ()) if s in vocab] or [w]
        mention = None
        for option in options:
            seq = [option] + [t for _, t in words[p + 1 :]]
            best = max((len(k) for k in keys.values() if tuple(seq[: len(k)]) == k), default=0)
            if best:
                cols = [n for n, k in keys.items() if len(k) == best and tuple(seq[:best]) == k]
                mention = _Mention(cols, i, words[p + best - 1][0], option)
                p += best - 1
                break
            if option in _GENERIC or len(option) < 3:
                continue
            family = [n for n, k in keys.items() if len(k) > 1 and k[0] == option]
            if not family and len(option) >= 4:
                family = [n for n, k in keys.items() if option in k[1:]]
            if not family and len(option) >= 3:
                family = [n for n in keys if len(keys[n]) > 1 and _initials(n) == option]
            if family:
                mention = _Mention(family, i, i, option, family=len(family) > 1)
                break
        if mention is not None:
            nxt = words[p + 1] if p + 1 < len(words) else None
            if mention.family and nxt and nxt[1] in _SIZE_WORDS and nxt[1] not in vocab:
                mention.end = nxt[0]
                p += 1
            found.append(mention)
        p += 1
    return found


def _closest(phrase: str, candidates: list[Column]) -> str | None:
    """The candidate column whose name (or one of its words) is most like ``phrase``."""
    target = " ".join(stem(w) for w in phrase.split())
    best, score = None, 0.0
    for c in candidates:
        key = column_key(c.name)
        ratio = max(
            [SequenceMatcher(None, target, " ".join(key)).ratio()]
            + [SequenceMatcher(None, target, w).ratio() for w in key]
        )
        if ratio > score:
            best, score = c.name, ratio
    return best if score >= 0.6 else None


def read_question(question: str, columns: list[Column]) -> Focus:
    """What ``question`` names among ``columns`` (their kinds as after cleaning)."""
    if not question.strip() or not columns:
        return Focus()
    text = _TREND_RE.sub(" , ", question)
    raw = _TOKEN_RE.findall(text)
    tokens = [stem(t) if t[0].isalnum() else t for t in raw]
    by_name = {c.name: c for c in columns}
    mentions = _match(tokens, columns)
    covered = {i for m in mentions for i in range(m.start, m.end + 1)}

    def in_scope(start: int) -> bool:
        """Whether the words before ``start`` open a grouping ("by a, b and")."""
        j = start - 1
        while j >= 0:
            if j in covered:
                owner = next(m for m in mentions if m.start <= j <= m.end)
                return in_scope(owner.start)
            t = tokens[j]
            if t in _GROUP_WORDS:
                return True
            if t not in _FILLERS:
                return False
            j -= 1
        return False

    measures: list[str] = []
    groups: list[str] = []
    dates: list[str] = []
    families = []
    for m in mentions:
        scoped = in_scope(m.start)
        if m.family:
            families.append((" ".join(raw[m.start : m.end + 1]), tuple(m.cols)))
        for name in m.cols:
            c = by_name[name]
            few = c.unique <= 12
            if c.kind == "datetime":
                dates.append(name)
            elif c.kind != "numeric" or (scoped and few):
                groups.append(name)
            else:
                measures.append(name)

    unknown: list[Unknown] = []
    numeric = [c for c in columns if c.kind == "numeric"]
    groupable = [c for c in columns if c.kind not in ("numeric", "datetime") or c.unique <= 12]

    def slot(start: int, role: str) -> None:
        """Unmatched words at ``start`` in a column's place: a value of a column, or unknown."""
        words: list[str] = []
        j = start
        while j < len(tokens) and j not in covered and raw[j][0].isalnum() and len(words) < 3:
            if tokens[j] in _COMMON or raw[j].lower() in _COMMON:
                if words:
                    break
            else:
                words.append(raw[j])
            j += 1
        if not words:
            return
        following = None
        if role == "grouping" and j < len(tokens) and tokens[j] in ("and", "or", ",", "&", "/"):
            k = j
            while k < len(tokens) and tokens[k] in _FILLERS and k not in covered:
                k += 1
            following = k if k < len(tokens) and k not in covered else None
        phrase = " ".join(words)
        owner = next((c.name for c in groupable if c.example.lower() == phrase.lower()), None)
        if owner and role == "grouping":
            groups.append(owner)
        else:
            pool = groupable if role == "grouping" else numeric
            closest = _closest(phrase, pool)
            unknown.append(Unknown(phrase, role, closest))
            if closest:
                (groups if role == "grouping" else measures).append(closest)
        if following is not None:
            slot(following, role)  # "by speceis and colour": the next grouping

    for j, t in enumerate(tokens):
        if t in _GROUP_WORDS and j not in covered:
            k = j + 1
            while k < len(tokens) and tokens[k] in _FILLERS and k not in covered:
                k += 1
            if k < len(tokens) and k not in covered:
                slot(k, "grouping")
    for m in mentions:  # "by species and wing colour": the words after a named grouping
        k = m.end + 1
        if not in_scope(m.start) or k >= len(tokens) or tokens[k] not in ("and", "or", ",", "&", "/"):
            continue
        while k < len(tokens) and tokens[k] in _FILLERS and k not in covered:
            k += 1
        if k < len(tokens) and k not in covered:
            slot(k, "grouping")
    subject = _SUBJECT_RE.search(text)
    if subject and not any(_inside(m, subject) for m in mentions):
        start = len(_TOKEN_RE.findall(text[: subject.start(1)]))
        slot(start, "measure")

    measures, groups, dates = _unique(measures), _unique(groups), _unique(dates)
    unknown = list(dict.fromkeys(unknown))
    groups = [g for g in groups if g not in measures][:MAX_GROUPS]
    target, pair = _target_and_pair(question, columns, measures)
    if target and target not in measures:
        measures.insert(0, target)
    return Focus(
        measures=tuple(measures[:MAX_MEASURES]),
        groups=tuple(groups),
        dates=tuple(dates),
        target=target,
        pair=pair,
        trend=bool(_TREND_RE.search(question)) or bool(dates),
        families=tuple(families),
        unknown=tuple(unknown),
        more_measures=tuple(measures[MAX_MEASURES:]),
    )


def _inside(m: _Mention, match: re.Match[str]) -> bool:
    """Whether mention ``m`` lies inside the regex match (by token position)."""
    text = match.string
    first = len(_TOKEN_RE.findall(text[: match.start(1)]))
    last = len(_TOKEN_RE.findall(text[: match.end(1)])) - 1
    return first <= m.start <= last


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _target_and_pair(
    question: str, columns: list[Column], measures: list[str]
) -> tuple[str | None, tuple[str, str] | None]:
    """The measure the question asks to explain, and the (x, y) pair it relates."""
    numeric = [c for c in columns if c.kind == "numeric"]

    def first_measure(text: str) -> str | None:
        tokens = [stem(t) if t[0].isalnum() else t for t in _TOKEN_RE.findall(text)]
        for m in _match(tokens, numeric):
            if m.cols[0] in measures:
                return m.cols[0]
        return None

    target = None
    m = _DEPENDS_RE.search(question)
    if m:
        target = first_measure(m.group(1)) if "depend" in m.group(2).lower() else None
        if target is None and "effect" in m.group(2).lower():
            target = first_measure(question[m.end() :])
    if target is None:
        m = _TARGET_RE.search(question)
        if m:
            target = first_measure(m.group(2))
    pair = None
    if len(measures) >= 2 and _RELATION_RE.search(question):
        x, y = measures[0], measures[1]
        tokens = _TOKEN_RE.findall(question)
        if any(_VERSUS_RE.match(t) for t in tokens):
            x, y = y, x  # "y vs x"
        if target in (x, y):
            x, y = (y, x) if target == x else (x, y)
        pair = (x, y)
    elif target and len(measures) >= 2:
        pair = (next(n for n in measures if n != target), target)
    return target, pair


# --------------------------------------------------------------------------- the markdown


def reading(focus: Focus, var: str, fallback_measure: str | None, fallback_group: str | None) -> str:
    """The section's opening: how the question was read, and what it names that isn't there."""
    lines = ["## The question's columns", ""]
    said = []
    if focus.measures:
        said.append("the measure" + ("s " if len(focus.measures) > 1 else " ") + _names(focus.measures))
    if focus.groups:
        joined = " x ".join(map(code, focus.groups))
        said.append(f"the grouping{'s' if len(focus.groups) > 1 else ''} {joined}")
    if said:
        lines.append("The question names " + " and ".join(said) + ".")
    for word, cols in focus.families:
        lines.append(f'"{esc(word)}" stands for {_names(cols)}.')
    if focus.pair:
        lines.append(f"It asks how {code(focus.pair[1])} relates to {code(focus.pair[0])}.")
    elif focus.target:
        lines.append(f"It asks what goes with {code(focus.target)}.")
    for u in focus.unknown:
        role = "grouping" if u.role == "grouping" else "measure"
        if u.closest:
            lines.append(
                f'No column of {code(var)} is called "{esc(u.phrase)}": the closest {role} column, '
                f"{code(u.closest)}, is used instead."
            )
        else:
            other = fallback_group if u.role == "grouping" else fallback_measure
            instead = f"; the analysis goes on with {code(other)}" if other else ""
            lines.append(f'No column of {code(var)} is called "{esc(u.phrase)}" or anything close{instead}.')
    if focus.more_measures:
        lines.append(f"Also named, covered by the overview below: {_names(focus.more_measures)}.")
    if focus.groups and not focus.measures and fallback_measure:
        lines.append(f"It names no measure, so the main numeric column {code(fallback_measure)} is compared.")
    lines += ["", "These are analysed first; the general overview follows."]
    return "\n".join(lines)


def _names(cols: tuple[str, ...] | list[str]) -> str:
    spans = [code(c) for c in cols]
    return spans[0] if len(spans) == 1 else ", ".join(spans[:-1]) + " and " + spans[-1]


# --------------------------------------------------------------------------- the cells


def _keep_top(groups: list[Column], indent: str = "", say: bool = True) -> list[str]:
    """Keep the largest levels of a grouping with many (the facts say which have many)."""
    lines = []
    for i, g in enumerate(groups):
        n = TOP_FIRST if i == 0 else TOP_OTHER
        if g.unique <= n:
            continue
        lines += [
            f"col = {g.name!r}",
            f"if subset[col].nunique() > {n}:  # keep the {n} largest groups",
        ]
        if say:
            lines.append(
                f'    print(f"Kept the {n} most common of {{subset[col].nunique()}} values of {{col}}")'
            )
        lines.append(f"    subset = subset[subset[col].isin(subset[col].value_counts().index[:{n}])]")
    return [indent + ln for ln in lines]


def grouped_summary(frame: str, target: str, groups: list[Column], simple: bool) -> str:
    """One measure by all the named groupings together: the key lines first (they survive a
    shortened output), then the full count/mean/median/std table."""
    names = [g.name for g in groups]
    lines = [
        f"target, by = {target!r}, {names!r}",
        f"subset = {frame}.dropna(subset=by)",
        f"print(f\"Rows left out for a missing {{' or '.join(by)}}: {{len({frame}) - len(subset)}} of {{len({frame})}}\")",  # noqa: E501
        *_keep_top(groups),
    ]
    if simple:  # the fix after an error: the means only
        return "\n".join(
            [*lines, "print(subset.groupby(by, observed=True)[target].mean().round(3).to_string())"]
        )
    lines.append(
        'summary = subset.groupby(by, observed=True)[target].agg(["count", "mean", "median", "std"])'
    )
    if groups:
        lines += [
            "for col in by:",
            '    means = subset.groupby(col, observed=True)[target].agg(["mean", "count"])',
            '    means = means.sort_values("mean", ascending=False)',
            '    print(f"Mean {target} by {col}: " + ", ".join(',
            "        f\"{label} {row['mean']:.3f} (n = {int(row['count'])})\" for label, row in means.iterrows()",  # noqa: E501
            "    ))",
        ]
    key_label = (
        'label = ", ".join(f"{col} = {value}" for col, value in zip(by, key))'
        if len(groups) > 1
        else 'label = f"{by[0]} = {key}"'
    )
    lines += [
        'means = summary["mean"].dropna().sort_values(ascending=False)',
        'for rank, key in [("Highest", means.index[0]), ("Lowest", means.index[-1])]:',
        f"    {key_label}",
        "    print(f\"{rank} mean {target}: {label} (mean = {means[key]:.3f}, n = {int(summary.loc[key, 'count'])})\")",  # noqa: E501
    ]
    if len(groups) >= 2:
        lines += [
            "table = subset.groupby(by[:2], observed=True)[target].mean().unstack(by[1])",
            "if table.shape[1] == 2:  # the difference between the two levels within each group",
            "    a, b = subset.groupby(by[1], observed=True)[target].mean().sort_values(ascending=False).index",  # noqa: E501
            "    values = (table[a] - table[b]).dropna()",
            '    print(f"Mean {target}, {a} minus {b}, within each {by[0]}: "',
            '          + ", ".join(f"{label} {value:.3f}" for label, value in values.items())',
            '          + f" ({a} higher in {int((values > 0).sum())} of {len(values)})")',
        ]
    lines += ["print(f\"\\n{target} by {' and '.join(by)}:\")", "print(summary.round(3).to_string())"]
    return "\n".join(lines)


def _finish(title: str, xlabel: str, ylabel: str, indent: str = "") -> list[str]:
    return [
        f"{indent}ax.set_title({title})",
        f"{indent}ax.set_xlabel({xlabel})",
        f"{indent}ax.set_ylabel({ylabel})",
    ]


def grouped_chart(frame: str, measures: list[str], groups: list[Column], level: int) -> str | None:
    """The measures by the named groups, one panel each: box plots coloured by the second
    grouping (seaborn), or bars of the means (matplotlib)."""
    if level > 1:
        return None
    two = len(groups) > 1
    lines = [
        f"measures, by = {measures!r}, {[g.name for g in groups[:2]]!r}",
        f"subset = {frame}.dropna(subset=by)",
        *_keep_top(groups[:2], say=False),
        f"fig, axes = plt.subplots(1, len(measures), figsize=({5.5 if two else 4.5} * len(measures), 4.5), squeeze=False)",  # noqa: E501
        "for ax, target in zip(axes[0], measures):",
    ]
    if level == 0:
        hue = ", hue=by[1]" if two else ""
        lines.append(f"    sns.boxplot(data=subset, x=by[0], y=target{hue}, ax=ax)")
        ylabel = "target"
    else:
        means = "subset.groupby(by, observed=True)[target].mean()"
        lines.append(f"    {means}.unstack(by[1]).plot.bar(ax=ax)" if two else f"    {means}.plot.bar(ax=ax)")
        ylabel = 'f"mean {target}"'
    title = 'f"{target} by {by[0]} and {by[1]}"' if two else 'f"{target} by {by[0]}"'
    lines += _finish(title, "by[0]", ylabel, "    ")
    lines += [
        "    if subset[by[0]].nunique() > 4:",
        '        ax.tick_params(axis="x", labelrotation=45)',
        "plt.tight_layout()",
        "plt.show()",
    ]
    return "\n".join(lines)


def relation(frame: str, plot_frame: str, x: str, y: str, group: str | None, level: int) -> str:
    """The named relationship: a scatter coloured by the named grouping, the correlation and
    slope overall and within each group."""
    lines = [f"x, y = {x!r}, {y!r}"]
    cols = [x, y] + ([group] if group else [])
    lines.append(f"pair = {frame}[{cols!r}].dropna(subset=[x, y])")
    if level <= 1:
        lines.append("fig, ax = plt.subplots(figsize=(7, 5))")
        if level == 0:
            hue = f", hue={group!r}" if group else ""
            lines.append(f"sns.scatterplot(data={plot_frame}, x=x, y=y{hue}, alpha=0.7, ax=ax)")
        else:
            lines.append(f"ax.scatter({plot_frame}[x], {plot_frame}[y], alpha=0.6)")
        lines += _finish('f"{y} vs {x}"', "x", "y") + ["plt.tight_layout()", "plt.show()"]
    lines += [
        "slope = np.polyfit(pair[x], pair[y], 1)[0]",
        'print(f"Correlation of {x} with {y}: r = {pair[x].corr(pair[y]):.3f}, "',
        '      f"slope = {slope:.3f} {y} per unit of {x} ({len(pair)} rows)")',
    ]
    if group:
        lines += [
            f"group = {group!r}",
            f"top = pair[group].value_counts().index[:{TOP_FIRST}]",
            "for label, part in pair[pair[group].isin(top)].groupby(group, observed=True):",
            "    if len(part) >= 3:",
            "        slope = np.polyfit(part[x], part[y], 1)[0]",
            '        print(f"Within {group} = {label}: r = {part[x].corr(part[y]):.3f}, slope = {slope:.3f}, n = {len(part)}")',  # noqa: E501
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the answer


def _line(text: str, pattern: str) -> re.Match[str] | None:
    for m in re.finditer(pattern, text, re.MULTILINE):
        if "nan" not in m.group(0).split():
            return m
    return None


def answer(focus: Focus, measures: list[str], out: dict[str, str]) -> list[str]:
    """Sentences that answer the question by its own columns and groups, copied from the
    lines the question's cells printed (``out``: step key -> output)."""
    num = r"(-?[\d.]+(?:e[-+]?\d+)?)"
    said: list[str] = []
    notes: list[str] = []
    groups = list(focus.groups)
    for i, measure in enumerate(measures):
        text = out.get(f"q_group_{i}", "")
        if not text:
            continue
        t = re.escape(measure)
        parts = []
        hi = _line(text, rf"^Highest mean {t}: (.+) \(mean = {num}, n = (\d+)\)$")
        lo = _line(text, rf"^Lowest mean {t}: (.+) \(mean = {num}, n = (\d+)\)$")
        if hi and lo:
            one = f"{groups[0]} = " if len(groups) == 1 else ""  # one grouping: its values suffice
            parts.append(
                f"the mean is highest for {esc(hi[1].removeprefix(one))} ({hi[2]}, n = {hi[3]}) "
                f"and lowest for {esc(lo[1].removeprefix(one))} ({lo[2]}, n = {lo[3]})"
            )
        within = _line(
            text, rf"^Mean {t}, (.+) minus (.+), within each (.+?): (.+) \((.+) higher in (\d+) of (\d+)\)$"
        )
        if within:
            parts.append(
                f"{esc(within[1])} minus {esc(within[2])} within each {code(within[3])}: {esc(within[4])} "
                f"({esc(within[5])} higher in {within[6]} of {within[7]})"
            )
        for g in groups:
            by = _line(text, rf"^Mean {t} by {re.escape(g)}: (.+)$")
            if by:
                parts.append(f"by {code(g)}{' alone' if len(groups) > 1 else ''}: {esc(by[1])}")
        if parts:
            said.append(
                f"**{code(measure)} by {' and '.join(map(code, groups))}:** " + "; ".join(parts) + "."
            )
        for note in re.findall(r"^(Kept the \d+ most common of \d+ values of .+)$", text, re.MULTILINE):
            notes.append(f"{esc(note)}.")
        left = _line(text, r"^Rows left out for a missing (.+): (\d+) of (\d+)$")
        if left and left[2] != "0":
            notes.append(
                f"{left[2]} of {left[3]} rows have no {esc(left[1])} and are left out of these groups."
            )
    rel = out.get("q_rel", "")
    if focus.pair and rel:
        x, y = focus.pair
        pattern = rf"^Correlation of {re.escape(x)} with {re.escape(y)}: r = {num}, slope = {num} .+ \((\d+) rows\)$"  # noqa: E501
        m = _line(rel, pattern)
        if m:
            direction = "rises" if not m[1].startswith("-") else "falls"
            sentence = (
                f"**{code(y)} and {code(x)}:** {code(y)} {direction} as {code(x)} rises "
                f"(r = {m[1]}, slope = {m[2]} per unit, {m[3]} rows)"
            )
            rows = re.findall(
                rf"^Within (.+?) = (.+): r = {num}, slope = {num}, n = (\d+)$", rel, re.MULTILINE
            )
            if rows and focus.groups:
                each = [f"{esc(v)} r = {r} (n = {n})" for _, v, r, s, n in rows if "nan" not in (r, s)]
                sentence += f"; within {code(rows[0][0])}: " + ", ".join(each)
            said.append(sentence + ".")
    notes = list(dict.fromkeys(notes))
    return said + ([" ".join(notes)] if notes else [])
