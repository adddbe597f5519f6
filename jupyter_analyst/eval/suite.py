"""The built-in suite: open analyses and closed-form questions over real packaged datasets.

Every closed-form answer is computed by a reference function from the CSV the analyst
loads (never typed in), so the key can't drift from the data. Questions state their
cleaning rule (which rows to drop, which filter) so each has exactly one right answer;
categorical answers return every tied value. Open tasks are judged on completion,
re-runnability, figures and grounded numbers (see ``judge``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .answers import AnswerSpec
from .datasets import materialize
from .tasks import EvalTask

Frame = Any  # a pandas DataFrame (pandas ships no type stubs here)


def _num(name: str, what: str, decimals: int = 2, tol: float | None = None) -> AnswerSpec:
    return AnswerSpec(name, what, "number", decimals, tol)


def _int(name: str, what: str) -> AnswerSpec:
    return AnswerSpec(name, what, "int", 0)


def _text(name: str, what: str) -> AnswerSpec:
    return AnswerSpec(name, what, "text", 0)


def _top(series: pd.Series, largest: bool = True) -> list[Any]:
    """Every index label at the max (or min) of ``series``: ties are all right answers."""
    s = series.dropna()
    best = s.max() if largest else s.min()
    return [k.item() if hasattr(k, "item") else k for k in s.index[np.isclose(s.to_numpy(dtype=float), best)]]


def _pct(mask: pd.Series) -> float:
    return float(mask.mean() * 100)


def _year(col: pd.Series) -> pd.Series:
    return pd.to_datetime(col).dt.year


_TASKS: list[EvalTask] = []


def _open(id: str, dataset: str, question: str, *tags: str) -> None:
    _TASKS.append(EvalTask(id, dataset, question, "open", tags=("open", *tags)))


def _closed(
    id: str,
    dataset: str,
    question: str,
    answers: list[AnswerSpec],
    ref: Callable[[Frame], dict[str, Any]],
    *tags: str,
) -> None:
    _TASKS.append(EvalTask(id, dataset, question, "closed", tuple(answers), ref, tags=tags))


# --------------------------------------------------------------------------- open analyses

_open(
    "churn-drivers",
    "wa_churn",
    "Which customer characteristics are most strongly associated with churn? "
    "Quantify the churn rate for the strongest drivers.",
    "drivers",
)
_open("ames-price-drivers", "ames", "What drives house sale prices (Sale_Price) in Ames?", "drivers")
_open(
    "attrition-drivers",
    "attrition",
    "Which factors are associated with employees leaving (Attrition)?",
    "drivers",
)
_open(
    "diamonds-price", "diamonds", "How do carat, cut, color and clarity relate to diamond price?", "drivers"
)
_open(
    "titanic-survival",
    "titanic",
    "Who survived? Compare survival by sex, passenger class and age (mind the missing ages).",
    "drivers",
    "missing",
)
_open(
    "flights-delays",
    "nycflights",
    "What explains arrival delays: carrier, origin airport, month or departure hour?",
    "drivers",
)
_open(
    "lending-bad-loans",
    "lending_club",
    "Which loan characteristics distinguish bad loans from good ones (Class)?",
    "drivers",
)
_open(
    "txhousing-trend",
    "txhousing",
    "How did housing sales and median prices in Texas change over time?",
    "trend",
    "missing",
)
_open(
    "hotel-prices",
    "hotel_rates",
    "What drives the average price per room, and how does it vary over the arrival dates?",
    "drivers",
    "dates",
)
_open("wage-factors", "wage", "How do wages vary with age, education and job class?", "drivers")
_open(
    "gapminder-life",
    "gapminder",
    "How has life expectancy changed over time across continents, and how does it relate to GDP per capita?",
    "trend",
)
_open(
    "seattle-seasons",
    "seattle_weather",
    "Describe the seasonal patterns of temperature and precipitation.",
    "trend",
    "dates",
)
_open(
    "helprct-depression",
    "helprct",
    "What is associated with higher depression scores (cesd)?",
    "drivers",
    "missing",
)
_open(
    "fatalities-beertax", "fatalities", "Is the beer tax associated with traffic fatality rates?", "drivers"
)
_open(
    "penguins-explore",
    "penguins",
    "Explore this dataset and report the most important patterns, relationships and anything surprising.",
    "general",
    "missing",
)

# --------------------------------------------------------------------------- closed-form questions

_closed(
    "churn-month-to-month",
    "wa_churn",
    "What percentage of customers with a Month-to-month contract churned (churn == 'Yes')?",
    [_num("churn_pct", "the churn percentage (0-100)")],
    lambda d: {"churn_pct": _pct(d.loc[d.contract == "Month-to-month", "churn"] == "Yes")},
    "rate",
)
_closed(
    "churn-total-charges",
    "wa_churn",
    "total_charges has missing values. Drop the rows where it is missing; what is the mean total_charges "
    "of the customers who churned and of those who did not?",
    [
        _num("mean_churned", "mean total_charges where churn == 'Yes'"),
        _num("mean_stayed", "mean total_charges where churn == 'No'"),
    ],
    lambda d: (
        lambda x: {
            "mean_churned": x.loc[x.churn == "Yes", "total_charges"].mean(),
            "mean_stayed": x.loc[x.churn == "No", "total_charges"].mean(),
        }
    )(d.dropna(subset=["total_charges"])),
    "cleaning",
    "missing",
)
_closed(
    "ames-top-neighborhood",
    "ames",
    "Among neighborhoods with at least 20 sales, which Neighborhood has the highest median Sale_Price?",
    [_text("neighborhood", "the Neighborhood")],
    lambda d: (lambda g: {"neighborhood": _top(g.loc[g["size"] >= 20, "median"])})(
        d.groupby("Neighborhood").Sale_Price.agg(["median", "size"])
    ),
    "top-category",
)
_closed(
    "attrition-overtime",
    "attrition",
    "What is the attrition rate (percentage with Attrition == 'Yes') among employees with OverTime == 'Yes', "
    "and among those with OverTime == 'No'?",
    [
        _num("rate_overtime", "the percentage (0-100) for OverTime == 'Yes'"),
        _num("rate_no_overtime", "the percentage (0-100) for OverTime == 'No'"),
    ],
    lambda d: {
        "rate_overtime": _pct(d.loc[d.OverTime == "Yes", "Attrition"] == "Yes"),
        "rate_no_overtime": _pct(d.loc[d.OverTime == "No", "Attrition"] == "Yes"),
    },
    "rate",
)
_closed(
    "diamonds-ideal-price",
    "diamonds",
    "What is the mean price of diamonds whose cut is 'Ideal'?",
    [_num("mean_price", "the mean price")],
    lambda d: {"mean_price": d.loc[d.cut == "Ideal", "price"].mean()},
    "mean",
)
_closed(
    "diamonds-carat-corr",
    "diamonds",
    "What is the Pearson correlation between carat and price?",
    [_num("r", "the correlation coefficient", 3)],
    lambda d: {"r": d.carat.corr(d.price)},
    "correlation",
)
_closed(
    "titanic-mean-age",
    "titanic",
    "Age has missing values. What is the mean Age of the passengers whose "
    "age is known, and how many passengers have a missing Age?",
    [_num("mean_age", "the mean known age"), _int("missing_age", "the number of passengers with no Age")],
    lambda d: {"mean_age": d.Age.mean(), "missing_age": int(d.Age.isna().sum())},
    "cleaning",
    "missing",
)
_closed(
    "titanic-female-first",
    "titanic",
    "What percentage of female passengers travelling in PClass '1st' survived (Survived == 1)?",
    [_num("survival_pct", "the survival percentage (0-100)")],
    lambda d: {"survival_pct": _pct(d.loc[(d.Sex == "female") & (d.PClass == "1st"), "Survived"] == 1)},
    "rate",
)
_closed(
    "flights-late-count",
    "nycflights",
    "How many flights had a departure delay (dep_delay) of more than 60 minutes?",
    [_int("n_late", "the number of flights")],
    lambda d: {"n_late": int((d.dep_delay > 60).sum())},
    "count-filter",
)
_closed(
    "flights-worst-carrier",
    "nycflights",
    "Among carriers with at least 500 flights, which carrier has the highest mean arrival delay (arr_delay)?",
    [_text("carrier", "the carrier code")],
    lambda d: (
        lambda n: {"carrier": _top(d[d.carrier.isin(n[n >= 500].index)].groupby("carrier").arr_delay.mean())}
    )(d.carrier.value_counts()),
    "top-category",
)
_closed(
    "lending-rate-by-term",
    "lending_club",
    "What is the mean int_rate of loans with term 'term_60'?",
    [_num("mean_rate", "the mean interest rate")],
    lambda d: {"mean_rate": d.loc[d.term == "term_60", "int_rate"].mean()},
    "mean",
)
_closed(
    "txhousing-peak-year",
    "txhousing",
    "Summing sales over all cities and months (ignoring missing "
    "values), which year had the highest total sales?",
    [_int("year", "the year")],
    lambda d: {"year": _top(d.groupby("year").sales.sum())[0]},
    "trend",
    "missing",
)
_closed(
    "txhousing-austin-2014",
    "txhousing",
    "What is the average of the monthly median sale price (median) in Austin during 2014?",
    [_num("mean_median", "the average of the monthly medians")],
    lambda d: {"mean_median": d.loc[(d.city == "Austin") & (d.year == 2014), "median"].mean()},
    "mean",
)
_closed(
    "economics-unemploy-peak",
    "economics",
    "Using the date column, in which calendar year was the average number of unemployed (unemploy) highest?",
    [_int("year", "the year")],
    lambda d: {"year": _top(d.groupby(_year(d.date)).unemploy.mean())[0]},
    "trend",
    "dates",
)
_closed(
    "economics-savings-2000s",
    "economics",
    "What was the mean personal savings rate (psavert) over the "
    "months from 2000-01-01 to 2009-12-01 inclusive?",
    [_num("mean_psavert", "the mean savings rate")],
    lambda d: {"mean_psavert": d.loc[_year(d.date).between(2000, 2009), "psavert"].mean()},
    "mean",
    "dates",
)
_closed(
    "airquality-ozone",
    "airquality",
    "Ozone has missing values. What is the mean Ozone over the days "
    "where it was measured, and on how many days is it missing?",
    [_num("mean_ozone", "the mean Ozone"), _int("missing_days", "the number of days with no Ozone value")],
    lambda d: {"mean_ozone": d.Ozone.mean(), "missing_days": int(d.Ozone.isna().sum())},
    "cleaning",
    "missing",
)
_closed(
    "airquality-hottest-month",
    "airquality",
    "Which Month has the highest mean Temp?",
    [_int("month", "the Month number")],
    lambda d: {"month": _top(d.groupby("Month").Temp.mean())[0]},
    "top-category",
)
_closed(
    "msleep-herbivores",
    "msleep",
    "What is the mean sleep_total of the animals whose vore is 'herbi'?",
    [_num("mean_sleep", "the mean total sleep in hours")],
    lambda d: {"mean_sleep": d.loc[d.vore == "herbi", "sleep_total"].mean()},
    "mean",
)
_closed(
    "msleep-missing-rem",
    "msleep",
    "How many animals have no sleep_rem value, and what is the median sleep_rem of the others?",
    [_int("n_missing", "the number of animals"), _num("median_rem", "the median sleep_rem")],
    lambda d: {"n_missing": int(d.sleep_rem.isna().sum()), "median_rem": d.sleep_rem.median()},
    "missing",
)
_closed(
    "starwars-homeworld",
    "starwars",
    "Ignoring missing values, which homeworld is the most common?",
    [_text("homeworld", "the homeworld")],
    lambda d: {"homeworld": _top(d.homeworld.value_counts())},
    "top-category",
    "missing",
)
_closed(
    "starwars-mass-no-outlier",
    "starwars",
    "Among characters with a known mass, drop the single heaviest one; what is the mean mass of the rest?",
    [_num("mean_mass", "the mean mass")],
    lambda d: {"mean_mass": d.mass.dropna().sort_values().iloc[:-1].mean()},
    "cleaning",
    "missing",
)
_closed(
    "hitters-median-salary",
    "hitters",
    "Salary is missing for some players. What is the median Salary of players with a known salary?",
    [_num("median_salary", "the median salary")],
    lambda d: {"median_salary": d.Salary.median()},
    "missing",
)
_closed(
    "credit-bad-rate",
    "credit_data",
    "What percentage of applications have Status 'bad'?",
    [_num("bad_pct", "the percentage (0-100)")],
    lambda d: {"bad_pct": _pct(d.Status == "bad")},
    "rate",
)
_closed(
    "credit-owner-income",
    "credit_data",
    "Drop the rows with a missing Income. What is the mean Income of the applicants whose Home is 'owner'?",
    [_num("mean_income", "the mean income")],
    lambda d: {"mean_income": d.dropna(subset=["Income"]).query("Home == 'owner'").Income.mean()},
    "cleaning",
    "missing",
)
_closed(
    "sacramento-top-city",
    "sacramento",
    "Which city has the most sales?",
    [_text("city", "the city")],
    lambda d: {"city": _top(d.city.value_counts())},
    "top-category",
)
_closed(
    "sacramento-price-sqft",
    "sacramento",
    "For 'Residential' sales, what is the median price per square foot (price / sqft)?",
    [_num("median_ppsf", "the median price per square foot")],
    lambda d: {"median_ppsf": (lambda r: (r.price / r.sqft).median())(d[d.type == "Residential"])},
    "derived",
)
_closed(
    "carseats-shelf",
    "carseats",
    "What is the mean Sales for stores whose ShelveLoc is 'Good' and for those whose ShelveLoc is 'Bad'?",
    [_num("mean_good", "mean Sales for 'Good'"), _num("mean_bad", "mean Sales for 'Bad'")],
    lambda d: {
        "mean_good": d.loc[d.ShelveLoc == "Good", "Sales"].mean(),
        "mean_bad": d.loc[d.ShelveLoc == "Bad", "Sales"].mean(),
    },
    "mean",
)
_closed(
    "college-selective",
    "college",
    "Among colleges with at least 1000 applications (Apps), which one "
    "(name) has the lowest acceptance rate Accept / Apps?",
    [_text("college", "the college name")],
    lambda d: {"college": _top(d[d.Apps >= 1000].set_index("name").eval("Accept / Apps"), largest=False)},
    "top-category",
    "derived",
)
_closed(
    "default-students",
    "default",
    "What percentage of students (student == 'Yes') defaulted (default == 'Yes')?",
    [_num("default_pct", "the percentage (0-100)")],
    lambda d: {"default_pct": _pct(d.loc[d.student == "Yes", "default"] == "Yes")},
    "rate",
)
_closed(
    "cps-gender-gap",
    "cps1985",
    "How much higher is the mean wage of men than that of women (mean for "
    "gender 'male' minus mean for 'female')?",
    [_num("gap", "the difference in mean wage")],
    lambda d: {"gap": d.loc[d.gender == "male", "wage"].mean() - d.loc[d.gender == "female", "wage"].mean()},
    "derived",
)
_closed(
    "teaching-beauty-corr",
    "teaching_ratings",
    "What is the Pearson correlation between beauty and eval?",
    [_num("r", "the correlation coefficient", 3)],
    lambda d: {"r": d.beauty.corr(d["eval"])},
    "correlation",
)
_closed(
    "gestation-smokers",
    "gestation",
    "What is the mean birth weight (wt) of babies whose mother's smoke "
    "status is 'now', and of those whose mother's is 'never'?",
    [_num("mean_now", "mean wt for 'now'"), _num("mean_never", "mean wt for 'never'")],
    lambda d: {
        "mean_now": d.loc[d.smoke == "now", "wt"].mean(),
        "mean_never": d.loc[d.smoke == "never", "wt"].mean(),
    },
    "mean",
    "missing",
)
_closed(
    "mpg-best-class",
    "mpg",
    "Which class of car has the highest mean highway mileage (hwy)?",
    [_text("class", "the class")],
    lambda d: {"class": _top(d.groupby("class").hwy.mean())},
    "top-category",
)
_closed(
    "storms-hurricanes",
    "storms",
    "How many distinct storms (a storm is a name and year pair) reached status 'hurricane' at least once?",
    [_int("n_storms", "the number of storms")],
    lambda d: {"n_storms": int(d.loc[d.status == "hurricane", ["name", "year"]].drop_duplicates().shape[0])},
    "count-filter",
)
_closed(
    "storms-max-wind",
    "storms",
    "What is the highest wind speed recorded, and in which year did it occur?",
    [_int("max_wind", "the highest wind"), _int("year", "the year")],
    lambda d: {"max_wind": int(d.wind.max()), "year": int(d.loc[d.wind.idxmax(), "year"])},
    "top-category",
)
_closed(
    "gapminder-richest-2007",
    "gapminder",
    "Which country had the highest gdpPercap in 2007?",
    [_text("country", "the country")],
    lambda d: {"country": _top(d[d.year == 2007].set_index("country").gdpPercap)},
    "top-category",
)
_closed(
    "gapminder-life-gain",
    "gapminder",
    "By how many years did the mean lifeExp across countries rise "
    "from 1952 to 2007 (mean in 2007 minus mean in 1952)?",
    [_num("gain", "the rise in years")],
    lambda d: {"gain": d.loc[d.year == 2007, "lifeExp"].mean() - d.loc[d.year == 1952, "lifeExp"].mean()},
    "trend",
)
_closed(
    "arrests-release",
    "arrests",
    "What percentage of arrestees were released (released == 'Yes') for "
    "colour 'Black' and for colour 'White'?",
    [
        _num("pct_black", "the percentage (0-100) for 'Black'"),
        _num("pct_white", "the percentage for 'White'"),
    ],
    lambda d: {
        "pct_black": _pct(d.loc[d.colour == "Black", "released"] == "Yes"),
        "pct_white": _pct(d.loc[d.colour == "White", "released"] == "Yes"),
    },
    "rate",
)
_closed(
    "salaries-prof",
    "salaries",
    "What is the mean salary of professors with rank 'Prof'?",
    [_num("mean_salary", "the mean salary")],
    lambda d: {"mean_salary": d.loc[d["rank"] == "Prof", "salary"].mean()},
    "mean",
)
_closed(
    "computers-price-trend",
    "computers",
    "Fit a least-squares straight line of price on trend (the month index). What is its slope?",
    [_num("slope", "the slope in price units per month")],
    lambda d: {"slope": float(np.polyfit(d.trend, d.price, 1)[0])},
    "trend",
)
_closed(
    "tips-percent",
    "tips",
    "Compute each bill's tip as a percentage of total_bill; what is the mean of these percentages?",
    [_num("mean_tip_pct", "the mean tip percentage (0-100)")],
    lambda d: {"mean_tip_pct": (d.tip / d.total_bill * 100).mean()},
    "derived",
)
_closed(
    "marriage-bride-age",
    "marriage",
    "From dob and ceremonydate, compute each bride's (person == 'Bride') "
    "age at the ceremony in years as days / 365.25. What is the mean?",
    [_num("mean_age", "the mean age in years")],
    lambda d: {
        "mean_age": ((pd.to_datetime(d.ceremonydate) - pd.to_datetime(d.dob)).dt.days / 365.25)[
            d.person == "Bride"
        ].mean()
    },
    "derived",
    "dates",
)
_closed(
    "penguins-gentoo-mass",
    "penguins",
    "Ignoring missing values, what are the mean and the (sample) standard "
    "deviation of body_mass_g for Gentoo penguins?",
    [_num("mean_mass", "the mean body mass"), _num("sd_mass", "the standard deviation")],
    lambda d: (lambda s: {"mean_mass": s.mean(), "sd_mass": s.std()})(
        d.loc[d.species == "Gentoo", "body_mass_g"]
    ),
    "mean",
    "missing",
)
_closed(
    "seattle-rainiest-month",
    "seattle_weather",
    "Summing precipitation over all years, which calendar month (1-12) is the wettest?",
    [_int("month", "the month number")],
    lambda d: {"month": _top(d.groupby(pd.to_datetime(d.date).dt.month).precipitation.sum())[0]},
    "trend",
    "dates",
)
_closed(
    "seattle-sun-2015",
    "seattle_weather",
    "How many days in 2015 have weather 'sun'?",
    [_int("n_days", "the number of days")],
    lambda d: {"n_days": int(((_year(d.date) == 2015) & (d.weather == "sun")).sum())},
    "count-filter",
    "dates",
)
_closed(
    "stocks-aapl-growth",
    "stocks",
    "By what factor did the AAPL price grow from its first to its last date (last price / first price)?",
    [_num("factor", "the growth factor")],
    lambda d: (lambda s: {"factor": s.price.iloc[-1] / s.price.iloc[0]})(
        d[d.symbol == "AAPL"].assign(date=lambda x: pd.to_datetime(x.date)).sort_values("date")
    ),
    "trend",
    "dates",
)
_closed(
    "cars-japan-mpg",
    "cars",
    "Miles_per_Gallon has missing values. What is the mean Miles_per_Gallon of the "
    "cars whose Origin is 'Japan', ignoring missing values?",
    [_num("mean_mpg", "the mean mpg")],
    lambda d: {"mean_mpg": d.loc[d.Origin == "Japan", "Miles_per_Gallon"].mean()},
    "mean",
    "missing",
)
_closed(
    "airports-top-state",
    "airports",
    "Which state has the most airports?",
    [_text("state", "the state code")],
    lambda d: {"state": _top(d.state.value_counts())},
    "top-category",
)
_closed(
    "helprct-cesd-alcohol",
    "helprct",
    "What is the mean cesd score of the patients whose substance is 'alcohol'?",
    [_num("mean_cesd", "the mean cesd")],
    lambda d: {"mean_cesd": d.loc[d.substance == "alcohol", "cesd"].mean()},
    "mean",
)
_closed(
    "saratoga-fuel",
    "saratoga_houses",
    "What is the median price of houses whose fuel is 'gas'?",
    [_num("median_price", "the median price")],
    lambda d: {"median_price": d.loc[d.fuel == "gas", "price"].median()},
    "mean",
)


BUILTIN: tuple[EvalTask, ...] = tuple(_TASKS)
"""The suite as defined; :func:`builtin_tasks` attaches data paths."""


def builtin_tasks(cache: Path | None = None, materialise: bool = True) -> list[EvalTask]:
    """The built-in tasks, with each dataset written once as CSV into ``cache``."""
    from dataclasses import replace

    if not materialise:
        return list(BUILTIN)
    return [replace(t, data_path=materialize(t.dataset, cache)) for t in BUILTIN]
