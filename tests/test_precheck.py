"""Pre-execution checks (``agent.precheck``): what they catch, and the many correct cells
they must never catch.

Every cell in the corpora below also runs in a real IPython shell on the real Palmer
penguins frame, so "correct" and "wrong" are the kernel's verdict, not ours: each correct
cell runs without an error and is not caught; each wrong cell fails in the kernel with the
error the check predicted, and is caught. The rule-based baseline, driven by the real loop
over four real datasets with the checks on, is never caught either.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

from jupyter_analyst.agent import AgentLoop, Budget, CellAdded, CellExecuted, RunFinished
from jupyter_analyst.agent.precheck import Catch, Prechecker, iter_catches, known_frames, parse_cell
from jupyter_analyst.agent.prompts import render_task
from jupyter_analyst.kernel import InProcessExecutor
from jupyter_analyst.kernel.facts import USER_NAMES_CODE, frame_facts_code, parse_facts, parse_user_names
from jupyter_analyst.models.baseline import BaselineAnalyst

PENGUINS = [
    "species",
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
    "year",
]
FRAMES = {"df": PENGUINS}


def catches(*cells: str, frames: dict[str, list[str]] | None = None) -> list[Catch | None]:
    """The verdict on each cell, in order, each after the ones before ran."""
    checker = Prechecker(FRAMES if frames is None else frames)
    return [catch for _, catch in iter_catches(checker, cells)]


def caught(code: str) -> Catch:
    (catch,) = catches(code)
    assert catch is not None, code
    return catch


# -- syntax --------------------------------------------------------------------------------------


def test_a_syntax_error_gets_its_line_and_a_caret() -> None:
    catch = caught("import pandas as pd\nprint(df.head()\nx = 1")
    assert catch.kind == "syntax"
    lines = catch.observation.splitlines()
    assert lines[0].startswith("Error: SyntaxError: '(' was never closed (line 2;")
    assert "NOT run" in lines[0] and "not added to the notebook" in lines[0]
    assert lines[1:3] == ["    print(df.head()", "         ^"]
    indent = caught("for i in range(3):\nprint(i)")
    assert indent.observation.startswith("Error: IndentationError: expected an indented block")
    assert "    print(i)\n    ^" in indent.observation
    assert caught("total = (1 +\n2").observation.splitlines()[1:3] == ["    total = (1 +", "            ^"]


@pytest.mark.parametrize(
    "code",
    [
        "%matplotlib inline\ndf.head()",
        "!echo hello\nx = 1",
        "df?",
        "df.describe??",
        "%%time\nx = sum(range(10))",
        "%%bash\necho 'not python at all ('",
        "files = !ls\nprint(files)",
        "%time df['species'].nunique()",
        "import asyncio\nawait asyncio.sleep(0)",
        "async with lock:\n    pass",
        'print(f"{df["species"].iloc[0]}")',  # PEP 701: valid on a 3.12+ kernel
        "print('unknown escape \\d')",
        "",
        "# only a comment",
    ],
)
def test_ipython_syntax_and_newer_python_are_not_flagged(code: str) -> None:
    assert catches(code) == [None]


def test_a_cell_sent_again_unchanged_goes_to_the_kernel() -> None:
    """The check may be wrong (a newer kernel): the second time the kernel decides."""
    first, second, other = catches("print(1", "print(1", "print(2")
    assert first is not None and second is None and other is not None


def test_the_syntax_error_matches_the_kernels(ipython_shell: Any) -> None:
    for code in [
        "print(df.head()\nx = 1",
        "if x > 1\n    y = 2",
        "for i in range(3):\nprint(i)",
        "a = [1, 2",
    ]:
        result = ipython_shell.run_cell(code, store_history=False)
        error = result.error_before_exec
        assert isinstance(error, SyntaxError), code
        catch = caught(code)
        assert catch.observation.startswith(f"Error: {type(error).__name__}: ")  # same kind, same line
        assert f"(line {error.lineno};" in catch.observation


# -- columns -------------------------------------------------------------------------------------

WRONG_CELLS: list[tuple[str, str, str, str | None]] = [
    # (cell, error the kernel raises, the column named, the first suggestion)
    ('print(df["bil_length_mm"].mean())', "KeyError", "bil_length_mm", "bill_length_mm"),
    ('df[["species", "Island"]].value_counts()', "KeyError", "Island", "island"),
    ('df.loc[:, "bodymass_g"].mean()', "KeyError", "bodymass_g", "body_mass_g"),
    ('df.loc[df["sex"] == "male", "body_mass"].mean()', "KeyError", "body_mass", "body_mass_g"),
    ('df.loc[df["sex"] == "male", ["species", "Sex"]]', "KeyError", "Sex", "sex"),
    ('df.at[0, "Species"]', "KeyError", "Species", "species"),
    ("df.flipper_len_mm.mean()", "AttributeError", "flipper_len_mm", "flipper_length_mm"),
    ("df.Species.value_counts()", "AttributeError", "Species", "species"),
    (
        'df["ratio"] = df["bill_length_mm"] / df["bill_depht_mm"]',
        "KeyError",
        "bill_depht_mm",
        "bill_depth_mm",
    ),
    ('x = 1\nfor s in ["Adelie"]:\n    print(df[df["specie"] == s].shape)', "KeyError", "specie", "species"),
    ('[df["islands"].nunique() for _ in range(2)]', "KeyError", "islands", "island"),
    ("print(f\"{df['boddy_mass_g'].mean():.1f}\")", "KeyError", "boddy_mass_g", "body_mass_g"),
    ('df["weight"].mean()', "KeyError", "weight", None),
]


@pytest.mark.parametrize(("code", "error", "column", "suggestion"), WRONG_CELLS)
def test_a_missing_column_is_caught_with_the_nearest_names(
    code: str, error: str, column: str, suggestion: str | None
) -> None:
    catch = caught(code)
    assert catch.kind == "column"
    first, *rest = catch.observation.splitlines()
    assert first.startswith("Error: the cell reads columns that do not exist") and "NOT run" in first
    assert f"{error}: `df` has no column {column!r}" in catch.observation
    if suggestion:
        assert re.search(rf"did you mean {re.escape(repr(suggestion))}", catch.observation)
    else:  # nothing close: the model is shown the columns
        assert "The columns of `df` are: 'species', 'island'," in catch.observation
    assert rest[-1] == "Fix the names and send the whole corrected cell."


def test_the_wrong_cells_fail_in_the_kernel_as_predicted(ipython_shell: Any, penguins: pd.DataFrame) -> None:
    for code, error, _, _ in WRONG_CELLS:
        fresh(ipython_shell, penguins)
        result = ipython_shell.run_cell(code, store_history=False, silent=True)
        assert type(result.error_in_exec).__name__ == error, (code, result.error_in_exec)


def test_each_miss_is_listed_with_its_line() -> None:
    catch = caught('a = df["species"]\nb = df["islnd"]\nc = df.bill_lenght_mm')
    assert '- line 2, `df["islnd"]`: KeyError' in catch.observation
    assert "- line 3, `df.bill_lenght_mm`: AttributeError" in catch.observation


def test_a_column_named_once_is_not_named_again() -> None:
    """A false catch costs one step, never the analysis: sent again, the kernel decides."""
    first, again, other = catches('df["bil"]', 'print(df["bil"])', 'df["bil"], df["isl"]')
    assert first is not None and again is None
    assert other is not None and "'isl'" in other.observation and "'bil'" not in other.observation


def test_only_frames_with_every_column_known_are_checked() -> None:
    facts: dict[str, Any] = {
        "name": "df",
        "cols": 2,
        "columns": [{"name": "a"}, {"name": "b"}],
        "omitted_columns": 0,
    }
    assert known_frames(facts) == {"df": ["a", "b"]}
    assert known_frames({**facts, "cols": 70, "omitted_columns": 10}) == {}
    assert known_frames({**facts, "columns": [{"name": "a"}, {"name": "x" * 97 + "..."}]}) == {}
    assert known_frames({**facts, "columns": [{"name": "('a', 'x')"}, {"name": "('a', 'y')"}]}) == {}
    assert known_frames({**facts, "cols": 3}) == {}
    assert known_frames(None) == {} and known_frames({}) == {}
    assert catches('df["zz"]', frames={}) == [None]


# -- what must never be caught --------------------------------------------------------------------

CORRECT: dict[str, list[str]] = {
    "reads": [
        "df.head()",
        'df["bill_length_mm"].describe()',
        'df[["species", "island"]].value_counts()',
        'df.loc[:, "body_mass_g"].mean()',
        'df.loc[df["sex"] == "male", ["species", "body_mass_g"]].head()',
        'df.loc[df.index[:3], "species"]',
        'df.loc[0], df.iloc[:, 0].head(), df.at[0, "species"], df.iat[0, 0]',
        'df.groupby("species")["body_mass_g"].agg(["mean", "std"])',
        'df.groupby(["species", "sex"]).body_mass_g.mean().unstack()',
        "df.species.value_counts(), df.shape, df.T.shape, df.dtypes, df.columns.tolist()",
        'df.query("body_mass_g > 4000").shape',
        'df.select_dtypes("number").corr()',
        'df.pivot_table(index="species", columns="sex", values="body_mass_g", observed=True)',
        'pd.crosstab(df["species"], df["island"])',
        'df.get("nonexistent") is None',
        'df.filter(like="bill").head()',
        'df[df["species"].isin(["Adelie", "Gentoo"])].groupby("species").size()',
        "print(f\"mean mass {df['body_mass_g'].mean():.1f} g\")",
        'df.loc[:, "bill_length_mm":"flipper_length_mm"].mean()',
        'df.sort_values("body_mass_g", ascending=False).head(3)',
        "import matplotlib.pyplot as plt\n"
        'ax = df.plot.scatter(x="bill_length_mm", y="bill_depth_mm", title="Bills")\nplt.close("all")',
        "!echo hello",
        "%precision 3",
    ],
    "magics": ['%time df["body_mass_g"].mean()', "%who", "files = !ls\nlen(files)"],
    "guards": [
        'if "bill_ratio" in df.columns:\n    print(df["bill_ratio"])\nelse:\n    print("no ratio")',
        'try:\n    df["bil_length"]\nexcept KeyError as exc:\n    print("missing", exc)',
        'x = df["nope"] if "nope" in df else None',
        'print("nope" in df and df["nope"].sum())',
        'from contextlib import suppress\nwith suppress(KeyError):\n    df["nope"]',
        'while "nope" in df.columns:\n    df["nope"]\n    break',
        '[df["nope"] for c in df.columns if c == "nope"]',
        "try:\n    df.bill_lenght_mm\nexcept AttributeError:\n    pass",
    ],
    "functions and other scopes": [
        "def summarize(frame, col):\n    return frame[col].describe()\nsummarize(df, 'body_mass_g')",
        'def only_defined(df):\n    return df["x"]',
        'df.apply(lambda r: r["bill_length_mm"] * 2, axis=1).head()',
        'others = [pd.DataFrame({"x": [1, 2]})]\n[df["x"].sum() for df in others]',
        'class Report:\n    def total(self, df):\n        return df["x"].sum()',
        'stats = {}\nfor c in ["bill_length_mm", "body_mass_g"]:\n    stats[c] = df[c].mean()\nstats',
        'grouped = df.groupby("species")\ngrouped["body_mass_g"].mean()',
        'df2 = df.rename(columns={"sex": "gender"})\ndf2["gender"].value_counts()',
        'df2 = df.assign(mass_kg=df["body_mass_g"] / 1000)\ndf2.mass_kg.mean()',
        "df.hvplot if hasattr(df, 'hvplot') else None",
    ],
    "new columns": [
        'df["bill_ratio"] = df["bill_length_mm"] / df["bill_depth_mm"]\nprint(df["bill_ratio"].median())',
        "df.bill_ratio.describe()",
        'df.loc[:, "mass_kg"] = df["body_mass_g"] / 1000\ndf[["mass_kg", "bill_ratio"]].corr()',
        'df[["aa", "bb"]] = 0\ndf.aa.sum() + df["bb"].sum()',
        'df.insert(0, "row_id", range(len(df)))\ndf["row_id"].max()',
        'df.rename(columns={"flipper_length_mm": "flipper"}, inplace=True)\nprint(df["flipper"].mean())',
        'df["species"] = df["species"].astype("category")\ndf.species.cat.categories',
        'df.drop(columns=["year"], inplace=True)\ndf["species"].nunique()',
        'df.dropna(subset=["sex"], inplace=True)\ndf["sex"].value_counts()',
    ],
    "computed names": [
        'for col in ["bill_length_mm", "bill_depth_mm"]:\n'
        '    df[col + "_z"] = (df[col] - df[col].mean()) / df[col].std()\n'
        'print(df["bill_length_mm_z"].abs().max())',
        "df.bill_depth_mm_z.abs().max()",
    ],
    "computed names in a function": [
        "def add_flag(frame, name):\n    frame[name] = 1\nadd_flag(df, 'flag')",
        'print(df["flag"].sum())',
    ],
    "through an alias": ['data = df\ncol = "new"\ndata[col] = 1\nprint(df["new"].sum())', "df.new.sum()"],
    "header rewritten": ['df.columns = df.columns.str.replace("_mm", "")', 'df["bill_length"].mean()'],
    "header upper case": ["df.columns = [c.upper() for c in df.columns]", 'df["SPECIES"].nunique()'],
    "in-place rename by a function": [
        "df.rename(columns=str.title, inplace=True)",
        'df["Species"].nunique()',
    ],
    "reset index": ['df.set_index("species", inplace=True)', 'df.reset_index(inplace=True)\ndf["species"]'],
    "eval in place": ['df.eval("mass_kg = body_mass_g / 1000", inplace=True)\ndf["mass_kg"].mean()'],
    "exec": ["exec(\"df['e'] = 1\")", 'df["e"].sum()'],
    "magic": ['%time df["timed"] = 1', 'df["timed"].sum()'],
    "rebound": ['df = df.rename(columns={"sex": "gender"})', 'df["gender"].value_counts()'],
    "rebound in a loop": ['for df in [pd.DataFrame({"x": [1]})]:\n    print(df["x"].sum())'],
    "deleted": ["del df", 'df = pd.DataFrame({"x": [1]})\ndf["x"]'],
    "attribute set": ["df.note = 'penguins'", "print(df.note)"],
    "setattr": ["setattr(df, 'source', 'palmer')", "df.source"],
}


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    return load_penguins()


def fresh(shell: Any, df: pd.DataFrame) -> None:
    import numpy as np

    shell.reset(new_session=False)
    shell.user_ns.update(df=df.copy(), pd=pd, np=np)


@pytest.mark.parametrize("scenario", list(CORRECT))
def test_correct_cells_are_not_caught_and_do_run(
    scenario: str, ipython_shell: Any, penguins: pd.DataFrame
) -> None:
    cells = CORRECT[scenario]
    assert [(c, None) for c in cells] == [(c, catch) for c, catch in zip(cells, catches(*cells), strict=True)]
    fresh(ipython_shell, penguins)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for code in cells:
            result = ipython_shell.run_cell(code, store_history=False, silent=True)
            assert result.success, (code, result.error_before_exec or result.error_in_exec)


def test_the_checks_stay_on_after_cells_that_change_nothing_they_cannot_see() -> None:
    """The corpus above is not trivially passed: after the reads, guards, scopes and new
    columns the check still catches a typo (it only gives up where it must)."""
    checker = Prechecker(FRAMES)
    for scenario in ("reads", "guards", "functions and other scopes", "new columns"):
        for code, catch in iter_catches(checker, CORRECT[scenario]):
            assert catch is None, code
    assert checker.check('df["bil_length_mm"]').catch is not None
    assert checker.check('df["bill_ratio"] + df["row_id"] + df.mass_kg').catch is None  # created


def test_what_the_checks_give_up_on() -> None:
    for scenario in (
        "computed names",
        "computed names in a function",
        "through an alias",
        "header rewritten",
    ):
        checker = Prechecker(FRAMES)
        for _ in iter_catches(checker, CORRECT[scenario][:1]):
            pass
        assert checker.check('df["no_such_column"]').catch is None, scenario


@pytest.mark.parametrize(
    "code",
    [
        'df["new"] = 1',  # an assignment target
        'df.loc[:, "new"] = 1',
        'df["2007"]',  # a date-like key: row selection on a date index in older pandas
        "df.hvplot()",  # not close to any column: may be an accessor
        "df._private",
        'df.loc["Adelie"]',  # a row label
        'df.groupby("specis")',  # not checked (index level names are valid there)
        'del df["island"]',
        'df["species"]\n\n\n',
    ],
)
def test_never_caught(code: str) -> None:
    assert catches(code) == [None]


def test_an_earlier_statement_of_the_cell_counts() -> None:
    assert catches('df["z"] = 1\nprint(df["z"], df.z)') == [None]
    (catch,) = catches('print(df["z"])\ndf["z"] = 1')  # read before it exists: a real KeyError
    assert catch is not None and "'z'" in catch.observation


def test_parse_cell_reads_ipython() -> None:
    tree, source, error = parse_cell("%matplotlib inline\nx = 1")
    assert tree is not None and error is None and "run_line_magic" in source
    tree, source, error = parse_cell("x = 1")
    assert tree is not None and source == "x = 1" and error is None


# -- the baseline through the real loop ----------------------------------------------------------


def _datasets() -> dict[str, Any]:
    from palmerpenguins import load_penguins
    from vega_datasets import local_data

    return {
        "penguins": (load_penguins, "How do body mass and bill size differ by species and sex?"),
        "cars": (local_data.cars, None),
        "seattle-weather": (local_data.seattle_weather, "How does the weather change over the years?"),
        "messy": (
            lambda: pd.DataFrame(
                {
                    "Order ID": range(40),
                    "unit price ($)": [1.5 * i for i in range(40)],
                    "Région": ["north", "south"] * 20,
                    "when": pd.date_range("2024-01-01", periods=40, freq="D").astype(str),
                }
            ),
            None,
        ),
    }


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(_datasets()))
def test_the_baseline_is_never_caught(name: str, ipython_shell: Any) -> None:
    load, question = _datasets()[name]
    ipython_shell.reset(new_session=False)
    ipython_shell.user_ns.update(df=load(), pd=pd)
    executor = InProcessExecutor(ipython_shell, timeout=0)
    executor.prepare()
    try:
        facts = parse_facts(executor.run_silent(frame_facts_code("df")))
        frames = known_frames(facts)
        assert frames == {"df": [str(c) for c in ipython_shell.user_ns["df"].columns]}
        protected = parse_user_names(executor.run_silent(USER_NAMES_CODE))
        loop = AgentLoop(
            BaselineAnalyst(), executor, Budget(max_steps=40), protected_names=protected, frames=frames
        )
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            events = list(loop.run(render_task(facts, question)))
    finally:
        executor.release()
    end = events[-1]
    assert isinstance(end, RunFinished) and end.reason.natural, end
    added = [e for e in events if isinstance(e, CellAdded) and e.cell_type == "code"]
    executed = [e for e in events if isinstance(e, CellExecuted)]
    assert end.prechecks == 0, [m["content"] for m in loop.messages if "NOT run" in str(m.get("content"))]
    assert len(added) == len(executed) >= 8


@pytest.mark.parametrize(
    ("code", "still_checked"),
    [
        ('print("df" in globals(), len(df), type(df))', True),  # reads the namespace, changes nothing
        ("globals()['df'] = df.rename(columns=str.upper)", False),
        ("globals().update(df=df.rename(columns=str.upper))", False),
        ("get_ipython().user_ns['df'] = df.head()", False),
        ("get_ipython().push({'df': df.head()})", False),
        ("frames = [df]\nframes[0][frames[0].columns[0] + '_x'] = 1", False),
    ],
)
def test_namespace_writes_stop_the_checks_reads_do_not(code: str, still_checked: bool) -> None:
    checker = Prechecker(FRAMES)
    assert [catch for _, catch in iter_catches(checker, [code])] == [None]
    assert (checker.check('df["no_such_column"]').catch is not None) is still_checked
