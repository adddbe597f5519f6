"""Questions for any pool table: closed-form ones with computed answers, and open ones.

Like the suite's (``eval.suite``), every closed-form answer is a reference function run on
the CSV the analyst loads, never a value typed in, so the key can't drift from the data.
The templates cover what a short analysis is asked most: a mean, a share, a count after a
filter, a correlation, the most common category, the group with the highest mean, a mean
within a group. Each has several phrasings (picked by a seeded draw), so a model trained
on them learns the operation rather than one sentence. Columns and values are chosen from
the table itself: measures are numeric columns with several values (no id-like ones),
groupings are text columns with 2 to 20 levels.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..eval.answers import AnswerSpec
from ..eval.tasks import EvalTask
from .pool import materialize_pool, pool_datasets

Frame = Any
Reference = Callable[[Frame], dict[str, Any]]
TEMPLATES = ("mean", "share", "count", "corr", "top", "best_group", "group_mean")
"""The closed-form templates, in the order a table's questions are made."""


def _top(series: pd.Series, largest: bool = True) -> list[Any]:
    """Every label at the max (or min): ties are all right answers."""
    s = series.dropna()
    best = s.max() if largest else s.min()
    return [k.item() if hasattr(k, "item") else k for k in s.index[np.isclose(s.to_numpy(dtype=float), best)]]


def measures(df: Frame) -> list[str]:
    """Numeric columns worth a mean: several values, mostly present, not an id or row number."""
    out = []
    for name in df.columns:
        col = df[name]
        if col.dtype.kind not in "if" or col.nunique() < 5 or col.notna().mean() < 0.5:
            continue
        low = str(name).lower()
        if (
            low in ("id", "index", "x", "rownames")
            or low.endswith(("_id", "id"))
            and col.nunique() > 0.9 * len(col)
        ):
            continue
        if col.dtype.kind == "i" and col.nunique() >= 0.95 * len(col):
            continue
        out.append(str(name))
    return out


def groupings(df: Frame) -> list[str]:
    """Text columns with 2 to 20 levels whose values are safe to quote in a question."""
    out = []
    for name in df.columns:
        col = df[name]
        if col.dtype.kind in "if" or col.dtype.kind == "M":
            continue
        values = col.dropna().astype(str)
        if (
            2 <= values.nunique() <= 20
            and not values.str.contains(r"['\"\[\]\n]").any()
            and (values == values.str.strip()).all()  # padded labels read ambiguously in a question
        ):
            out.append(str(name))
    return out


def nice_threshold(values: pd.Series) -> float | int:
    """A round number near the median (so a filter splits the rows, and reads naturally)."""
    med = float(values.dropna().median())
    if med == 0:
        return 0
    step = 10 ** math.floor(math.log10(abs(med)))
    out = round(med / step) * step
    return int(out) if float(out).is_integer() else round(out, 6)


def _phrase(rng: random.Random, options: list[str], **names: Any) -> str:
    return rng.choice(options).format(**names)


def _spec(name: str, what: str, kind: str = "number", decimals: int = 2) -> AnswerSpec:
    return AnswerSpec(name, what, kind, decimals if kind == "number" else 0)  # type: ignore[arg-type]


def closed_questions(key: str, df: Frame, seed: int = 0) -> list[EvalTask]:
    """The closed-form questions one table supports (at most one per template)."""
    rng = random.Random(f"{seed}:{key}")
    ms, gs = measures(df), groupings(df)
    tasks: list[EvalTask] = []

    def add(template: str, question: str, answers: list[AnswerSpec], ref: Reference) -> None:
        tasks.append(
            EvalTask(
                f"{key}-{template}", key, question, "closed", tuple(answers), ref, tags=("pool", template)
            )
        )

    if not ms:
        return tasks
    m = rng.choice(ms)
    g = rng.choice(gs) if gs else None
    q = _phrase(
        rng,
        [
            "What is the mean {m}, ignoring missing values?",
            "Ignoring missing values, what is the average {m}?",
            "What is the average value of {m} (missing values left out)?",
        ],
        m=m,
    )
    add("mean", q, [_spec("mean_value", f"the mean {m}")], lambda d: {"mean_value": d[m].mean()})

    if g:
        counts = df[g].value_counts()
        v = str(counts.index[min(1, len(counts) - 1)])
        q = _phrase(
            rng,
            [
                "What percentage of the rows have {g} equal to '{v}'?",
                "What share of the rows (as a percentage) have {g} == '{v}'?",
                "In what percentage of rows is {g} '{v}'?",
            ],
            g=g,
            v=v,
        )
        add(
            "share",
            q,
            [_spec("pct", "the percentage (0-100)")],
            lambda d: {"pct": float((d[g] == v).mean() * 100)},
        )

    m2 = rng.choice(ms)
    thr = nice_threshold(df[m2])
    q = _phrase(
        rng,
        [
            "How many rows have {m} greater than {t}?",
            "How many rows have a {m} above {t}?",
            "Count the rows where {m} > {t}. How many are there?",
        ],
        m=m2,
        t=thr,
    )
    add(
        "count",
        q,
        [_spec("n_rows", "the number of rows", "int")],
        lambda d: {"n_rows": int((d[m2] > thr).sum())},
    )

    if len(ms) >= 2:
        a, b = rng.sample(ms, 2)
        q = _phrase(
            rng,
            [
                "What is the Pearson correlation between {a} and {b}?",
                "How strongly are {a} and {b} correlated (Pearson r)?",
                "Compute the Pearson correlation coefficient of {a} with {b}.",
            ],
            a=a,
            b=b,
        )
        add(
            "corr",
            q,
            [_spec("r", "the correlation coefficient", decimals=3)],
            lambda d: {"r": d[a].corr(d[b])},
        )

    if g:
        q = _phrase(
            rng,
            [
                "Ignoring missing values, which {g} is the most common?",
                "Which value of {g} occurs most often (missing values ignored)?",
                "What is the most frequent {g}, ignoring missing values?",
            ],
            g=g,
        )
        add(
            "top",
            q,
            [_spec("top", f"the {g} value", "text")],
            lambda d: {"top": _top(d[g].value_counts())},
        )
        q = _phrase(
            rng,
            [
                "Which {g} has the highest mean {m}?",
                "Grouping the rows by {g}, which group has the highest average {m}?",
                "For which {g} is the mean {m} highest?",
            ],
            g=g,
            m=m2,
        )
        add(
            "best_group",
            q,
            [_spec("group", f"the {g} value", "text")],
            lambda d: {"group": _top(d.groupby(g)[m2].mean())},
        )
        levels = [str(x) for x in df[g].value_counts().index[:2]]
        v2 = rng.choice(levels)
        m3 = rng.choice(ms)
        q = _phrase(
            rng,
            [
                "What is the mean {m} of the rows whose {g} is '{v}'?",
                "Among rows with {g} == '{v}', what is the average {m}?",
                "For {g} '{v}', what is the mean {m} (ignoring missing values)?",
            ],
            g=g,
            v=v2,
            m=m3,
        )
        add(
            "group_mean",
            q,
            [_spec("mean_value", f"the mean {m3} where {g} == '{v2}'")],
            lambda d: {"mean_value": d.loc[d[g] == v2, m3].mean()},
        )
    return tasks


def open_questions(key: str, df: Frame, seed: int = 0) -> list[EvalTask]:
    """Open analyses of one table: what drives a measure, how it differs by a grouping."""
    rng = random.Random(f"{seed}:{key}:open")
    ms, gs = measures(df), groupings(df)
    tasks = []
    if ms:
        m = rng.choice(ms)
        q = rng.choice(["What drives {m}?", "Which columns are most strongly associated with {m}?"]).format(
            m=m
        )
        tasks.append(EvalTask(f"{key}-drivers", key, q, "open", tags=("pool", "open", "drivers")))
        if gs:
            g = rng.choice(gs)
            q = rng.choice(["How does {m} differ by {g}?", "Compare {m} across the values of {g}."]).format(
                m=m, g=g
            )
            tasks.append(EvalTask(f"{key}-by-group", key, q, "open", tags=("pool", "open", "groups")))
    return tasks


def dataset_tasks(key: str, path: Path, seed: int = 0) -> list[EvalTask]:
    """Every question about one pool table, with its data file attached."""
    from dataclasses import replace

    df = pd.read_csv(path)
    tasks = closed_questions(key, df, seed) + open_questions(key, df, seed)
    return [replace(t, data_path=path) for t in tasks]


def pool_tasks(n: int = 10, seed: int = 0, cache: Path | None = None) -> list[EvalTask]:
    """The ``pool`` suite: questions over ``n`` pool tables (seeded), each written as CSV once."""
    tasks: list[EvalTask] = []
    for spec in pool_datasets(n, seed):
        tasks += dataset_tasks(spec.key, materialize_pool(spec, cache), seed)
    return tasks


__all__ = ["TEMPLATES", "closed_questions", "dataset_tasks", "open_questions", "pool_tasks", "nice_threshold"]
