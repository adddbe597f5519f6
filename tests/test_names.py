"""The static reading of which names an agent cell binds (``agent.names``), form by form.

Each case is a cell and the module-level names it binds: what the loop compares with the
user's names before it lets the cell run.
"""

from __future__ import annotations

import pytest

from jupyter_analyst.agent.names import (
    CLASH_ERROR,
    alternative,
    alternatives,
    cell_names,
    commented,
    protect,
    refusal,
)


def bound(code: str) -> list[str]:
    return list(cell_names(code).origins)


@pytest.mark.parametrize(
    ("code", "names"),
    [
        ("summary = df.describe()", ["summary"]),
        ("a = b = 1", ["a", "b"]),
        ("x, (y, *rest) = 1, (2, 3, 4)", ["x", "y", "rest"]),
        ("[p, q] = 1, 2", ["p", "q"]),
        ("counts += 1", ["counts"]),
        ("table: dict = {}", ["table"]),
        ("for i, row in enumerate(rows):\n    pass", ["i", "row"]),
        ("async def f():\n    async for item in it:\n        pass", ["f"]),
        ("with open('f') as fh, lock as (l1, l2):\n    pass", ["fh", "l1", "l2"]),
        ("def corr(): pass", ["corr"]),
        ("async def fetch(): pass", ["fetch"]),
        ("class Model: pass", ["Model"]),
        ("if (n := len(df)) > 3:\n    pass", ["n"]),
        ("fig, ax = plt.subplots()", ["fig", "ax"]),
        ("df_clean = df.dropna()\ndf_clean['x'] = 1", ["df_clean"]),  # the subscript binds no name
        ("df.x = 1\ndf['y'] = 2", []),  # in-place changes rebind nothing
        ("print(summary)", []),
    ],
)
def test_assignment_forms(code: str, names: list[str]) -> None:
    assert bound(code) == names


def test_annotation_without_a_value_binds_nothing() -> None:
    assert bound("table: dict") == []


@pytest.mark.parametrize(
    ("code", "origins"),
    [
        ("import numpy", {"numpy": "numpy"}),
        ("import matplotlib.pyplot", {"matplotlib": "matplotlib"}),  # binds the top package
        ("import numpy as np, matplotlib.pyplot as plt", {"np": "numpy", "plt": "matplotlib.pyplot"}),
        ("from scipy import stats", {"stats": "scipy.stats"}),
        ("from scipy.stats import pearsonr as r", {"r": "scipy.stats.pearsonr"}),
        ("from . import helpers", {"helpers": None}),  # relative: no absolute path to compare
        ("import pandas as pd\npd = 3", {"pd": None}),  # bound two ways: not a plain re-import
    ],
)
def test_imports_carry_their_origin(code: str, origins: dict[str, str | None]) -> None:
    assert cell_names(code).origins == origins


def test_star_imports_are_reported() -> None:
    names = cell_names("from pylab import *")
    assert names.star_imports == ["pylab"] and names.origins == {}


def test_comprehension_variables_do_not_leak_but_a_walrus_in_them_does() -> None:
    assert bound("squares = [v * v for v in values if v]") == ["squares"]
    assert bound("{k: v for k, v in d.items()}; {s for s in x}; list(g for g in x)") == []
    assert bound("[last := v for v in values]") == ["last"]  # binds the enclosing scope


def test_function_and_class_bodies_are_their_own_scope_except_for_global() -> None:
    code = "def f(x=1):\n    local = 2\n    for j in x: pass\n    import os\n    return local"
    assert bound(code) == ["f"]
    assert bound("class K:\n    attr = 1\n    def method(self): pass") == ["K"]
    assert bound("lam = lambda q: (qq := q)") == ["lam"]
    code = "def setup():\n    global counts, fig\n    counts = {}\n    import matplotlib.pyplot as fig"
    assert cell_names(code).origins == {"setup": None, "counts": None, "fig": "matplotlib.pyplot"}
    code = "def outer():\n    def inner():\n        global table\n        table = 1\n    inner()"
    assert bound(code) == ["outer", "table"]


def test_except_as_binds_then_deletes() -> None:
    names = cell_names("try:\n    pass\nexcept ValueError as err:\n    print(err)")
    assert list(names.origins) == ["err"] and names.final == {"err": False}


def test_del_counts_as_a_change_and_ends_the_name() -> None:
    names = cell_names("tmp = 1\ndel tmp, other")
    assert list(names.origins) == ["tmp", "other"]
    assert names.final == {"tmp": False, "other": False}
    assert cell_names("del tmp\ntmp = 2").final == {"tmp": True}


def test_match_captures() -> None:
    code = (
        "match point:\n"
        "    case [a, *others]: pass\n"
        "    case {'x': b, **extra}: pass\n"
        "    case Point(x=c) as whole: pass\n"
        "    case _: pass"
    )
    assert bound(code) == ["a", "others", "b", "extra", "c", "whole"]


def test_ipython_syntax_is_read_through_its_transforms() -> None:
    assert bound("%matplotlib inline\nsummary = 1") == ["summary"]
    assert bound("files = !ls\n!echo hi") == ["files"]


def test_a_cell_that_is_not_python_binds_nothing() -> None:
    names = cell_names("summary = (")
    assert not names.parsed and names.origins == {}


def test_clashes_allow_reimporting_what_the_name_holds() -> None:
    protected = protect({"pd": ["pandas"], "r": ["scipy.stats._stats_py.pearsonr", "scipy.stats.pearsonr"]})
    assert cell_names("import pandas as pd").clashes(protected) == []
    assert cell_names("from scipy.stats import pearsonr as r").clashes(protected) == []
    assert cell_names("pd = 3").clashes(protected) == ["pd"]
    assert cell_names("import polars as pd").clashes(protected) == ["pd"]
    assert cell_names("import pandas as pd\npd = pd.DataFrame").clashes(protected) == ["pd"]
    assert cell_names("del pd").clashes(protected) == ["pd"]
    assert cell_names("summary, pd = 1, 2").clashes(protect(["summary", "pd"])) == ["summary", "pd"]


def test_alternative_is_free_in_every_name_given() -> None:
    assert alternative("summary", {"summary"}) == "summary_2"
    assert alternative("summary", {"summary", "summary_2", "summary_3"}) == "summary_4"
    assert alternative("df_2", {"df", "df_2"}) == "df_3"  # counts on, no df_2_2
    assert alternative("_1", set()) == "_1_2"
    assert alternatives(["fig", "fig_2"], {"fig", "fig_2"}) == {"fig": "fig_3", "fig_2": "fig_4"}


def test_refusal_names_each_clash_and_its_alternative() -> None:
    error, observation = refusal({"summary": "summary_2", "corr": "corr_2"})
    assert error == "the cell would overwrite the user's variables `summary` and `corr`"
    assert observation.startswith(f"Error: {CLASH_ERROR}: ")
    assert "`summary` -> `summary_2`" in observation and "`corr` -> `corr_2`" in observation
    assert "NOT run" in observation
    error, observation = refusal({}, ["pylab"])
    assert "`from pylab import *`" in error and "explicitly" in observation


def test_a_refused_cell_is_kept_commented_out() -> None:
    source = commented("summary = df.describe()\n\nsummary", "it would overwrite `summary`")
    assert source.splitlines() == [
        "# Not run by the analyst: it would overwrite `summary`.",
        "# summary = df.describe()",
        "#",
        "# summary",
    ]
    compile(source, "<cell>", "exec")  # a re-run executes nothing
    assert cell_names(source).origins == {}
