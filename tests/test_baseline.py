"""The rule-based baseline analyst, driven in-process over real and awkward DataFrames.

No kernel here: a small driver ``exec``s each code cell in a namespace holding ``df`` (with
matplotlib's Agg backend), formats the observation the way the loop does (stdout, one
``[figure: ...]`` line per figure, ``Error: Name: message`` on failure) and feeds it back
in OpenAI wire form, until ``final_answer``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from jupyter_analyst.agent.prompts import SYSTEM_PROMPT, render_task  # noqa: E402
from jupyter_analyst.agent.tools import CODE_TOOL, FINAL_TOOL, MARKDOWN_TOOL, TOOLS  # noqa: E402
from jupyter_analyst.models.baseline import NAME, BaselineAnalyst, parse_task  # noqa: E402

LIMIT = 1500


def _describe_figure(fig: Any) -> str:
    bits = []
    for ax in fig.get_axes():
        if ax.get_label() == "<colorbar>":
            continue
        bits.append(f"title {ax.get_title()!r}, x {ax.get_xlabel()!r}, y {ax.get_ylabel()!r}")
    return "[figure: " + "; ".join(bits) + "]"


def _head_tail(text: str) -> str:
    if len(text) <= LIMIT:
        return text
    return f"{text[:1000]}\n[... {len(text) - LIMIT} characters omitted ...]\n{text[-500:]}"


@dataclass
class Run:
    messages: list[dict[str, Any]]
    answer: str | None = None
    outputs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def execute(code: str, ns: dict[str, Any], run: Run) -> str:
    """Run one cell like a kernel would and return the observation text."""
    buf = io.StringIO()
    error = ""
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buf):
        warnings.simplefilter("always")
        try:
            exec(compile(code, f"<cell {len(run.cells)}>", "exec"), ns)
        except Exception as exc:  # the cell's error becomes the observation
            error = f"Error: {type(exc).__name__}: {exc}"
    run.warnings += [f"{w.category.__name__}: {w.message}" for w in caught]
    figs = [_describe_figure(plt.figure(n)) for n in plt.get_fignums()]
    plt.close("all")
    text = buf.getvalue().rstrip("\n")
    run.outputs.append(text)
    run.figures += figs
    if error:
        run.errors.append(error)
    body = "\n".join(p for p in [_head_tail(text), *figs] if p)
    return "\n".join(p for p in [body, error] if p) or "(cell ran, no output)"


def kernel_frame_facts(df: pd.DataFrame) -> dict[str, Any]:
    """The facts as the real kernel code computes them (IPython's namespace faked)."""
    import IPython

    from jupyter_analyst.kernel.facts import frame_facts_code, parse_facts

    fake = type("FakeShell", (), {"user_ns": {"df": df}})()
    original = IPython.get_ipython
    IPython.get_ipython = lambda: fake
    try:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(frame_facts_code("df"), {})
    finally:
        IPython.get_ipython = original
    return parse_facts(buf.getvalue())


def drive(
    df: pd.DataFrame,
    question: str | None = None,
    policy: BaselineAnalyst | None = None,
    fail: dict[int, str] | None = None,
    max_turns: int = 40,
    facts: dict[str, Any] | None = None,
) -> Run:
    """The agent loop in miniature; ``fail`` forces an error observation at given turns."""
    policy = policy or BaselineAnalyst()
    ns: dict[str, Any] = {"pd": pd, "df": df.copy()}
    run = Run(
        [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": render_task(facts or kernel_frame_facts(df), question)},
        ]
    )
    for turn in range(max_turns):
        reply = policy(run.messages, TOOLS)
        assert len(reply.tool_calls) == 1
        call = reply.tool_calls[0]
        run.messages.append({"role": "assistant", "content": reply.content, "tool_calls": [call.to_openai()]})
        if call.name == FINAL_TOOL:
            run.answer = call.arguments["answer"]
            return run
        if call.name == MARKDOWN_TOOL:
            observation = "ok"
        else:
            assert call.name == CODE_TOOL
            run.cells.append(call.arguments["code"])
            if fail and turn in fail:
                observation = fail[turn]  # forced, so not counted in run.errors
            else:
                observation = execute(call.arguments["code"], ns, run)
        run.messages.append({"role": "tool", "tool_call_id": call.id, "content": observation})
    raise AssertionError("no final_answer within the turn budget")


def check(run: Run, min_figures: int = 3) -> None:
    assert run.answer is not None
    assert run.errors == [], run.errors
    assert run.answer.splitlines()[0].startswith(f"*Produced by the {NAME}")
    assert len(run.figures) >= min_figures, run.figures
    for fig in run.figures:
        assert "title ''" not in fig and "x ''" not in fig and "y ''" not in fig, fig
    bad = [w for w in run.warnings if w.startswith(("FutureWarning", "DeprecationWarning"))]
    assert not bad, bad
    printed = "\n".join(run.outputs)
    numbers = re.findall(r"(?<![\w.])-?\d+\.\d+|(?<![\w.])\d{2,}(?![\w.])", run.answer)
    assert numbers, run.answer
    missing = [n for n in numbers if n not in printed]
    assert not missing, (missing, run.answer)
    n_calls = sum(1 for m in run.messages if m["role"] == "assistant")
    assert n_calls <= 25


def _datasets() -> dict[str, pd.DataFrame]:
    from palmerpenguins import load_penguins
    from vega_datasets import data

    return {
        "penguins": load_penguins(),
        "cars": data.cars(),
        "seattle_weather": data.seattle_weather(),
        "stocks": data.stocks(),
        "iris": data.iris(),
        "airports": data.airports(),
    }


@pytest.fixture(scope="module")
def datasets() -> dict[str, pd.DataFrame]:
    return _datasets()


@pytest.mark.parametrize("name", ["penguins", "cars", "seattle_weather", "stocks", "iris", "airports"])
def test_real_datasets(datasets: dict[str, pd.DataFrame], name: str) -> None:
    run = drive(datasets[name])
    check(run)
    n_calls = sum(1 for m in run.messages if m["role"] == "assistant")
    assert n_calls >= 12


def test_penguins_question_steers_target_and_group(datasets: dict[str, pd.DataFrame]) -> None:
    run = drive(datasets["penguins"], "How does flipper_length_mm differ by island?")
    check(run)
    assert "**Question:** How does flipper_length_mm differ by island?" in run.answer
    assert "Highest mean flipper_length_mm: island = " in "\n".join(run.outputs)
    assert "By `island`, the mean `flipper_length_mm` is highest for" in run.answer


def test_trend_over_time(datasets: dict[str, pd.DataFrame]) -> None:
    run = drive(datasets["seattle_weather"], "How did temp_max change over time?")
    check(run)
    assert "### Answer\n\nOver time (48 periods), the mean temp_max per month went from" in run.answer
    stocks = drive(datasets["stocks"])
    assert any("hue" in c and "lineplot" in c for c in stocks.cells)


def test_deterministic_and_resumable(datasets: dict[str, pd.DataFrame]) -> None:
    run = drive(datasets["penguins"])
    for cut in (2, 7, 15, len(run.messages) - 1):
        prefix = run.messages[:cut]
        a, b = BaselineAnalyst()(prefix, TOOLS), BaselineAnalyst()(prefix, TOOLS)
        assert a.tool_calls[0].to_openai() == b.tool_calls[0].to_openai()
        if cut < len(run.messages) and run.messages[cut]["role"] == "assistant":
            assert a.tool_calls[0].to_openai() == run.messages[cut]["tool_calls"][0]


def test_continue_messages_are_ignored(datasets: dict[str, pd.DataFrame]) -> None:
    run = drive(datasets["iris"])
    msgs = run.messages[:6] + [{"role": "user", "content": "Continue the analysis: call a tool."}]
    assert BaselineAnalyst()(msgs, TOOLS).tool_calls[0].to_openai() == run.messages[6]["tool_calls"][0]


def test_error_gets_one_simpler_fix_then_moves_on(datasets: dict[str, pd.DataFrame]) -> None:
    df = datasets["penguins"]
    clean = drive(df)
    turn = next(
        i for i, c in enumerate(clean.messages[2::2]) if "sns.histplot" in json.dumps(c.get("tool_calls"))
    )
    err = "Error: ValueError: could not convert string to float: 'x'"
    run = drive(df, fail={turn: err})
    codes = [
        json.loads(m["tool_calls"][0]["function"]["arguments"]).get("code", "")
        for m in run.messages
        if m["role"] == "assistant"
    ]
    fix = codes[turn + 1]
    assert fix.startswith("# Simpler version of the distribution") and "ax.hist(" in fix and "sns." not in fix
    assert "distribution of body_mass_g step failed" not in run.answer  # the fix worked
    twice = drive(df, fail={turn: err, turn + 1: err})
    assert "The distribution of" in twice.answer and "step failed (ValueError" in twice.answer
    assert "Summary of" not in twice.answer.split("### Caveats")[0] or "Distribution of" not in twice.answer


def test_missing_seaborn_falls_back_to_matplotlib(datasets: dict[str, pd.DataFrame]) -> None:
    run = drive(datasets["iris"], fail={1: "Error: ModuleNotFoundError: No module named 'seaborn'"})
    later = run.cells[1:]
    assert later[0].startswith("# Simpler version of the overview") and "import seaborn" not in later[0]
    assert all("sns." not in c for c in later)
    check(run)


EDGE_CASES: dict[str, pd.DataFrame] = {
    "one_numeric_column": pd.DataFrame({"x": np.random.default_rng(0).normal(10, 2, 200)}),
    "one_categorical_column": pd.DataFrame({"colour": list("rgbrgbrrgx") * 20}),
    "no_numerics": pd.DataFrame(
        {
            "city": ["Oslo", "Rome", "Lima", "Oslo"] * 30,
            "tier": ["a", "b", "a", "c"] * 30,
            "note": [f"note number {i}" for i in range(120)],
        }
    ),
    "all_nan_column": pd.DataFrame(
        {"a": np.arange(50.0), "b": [np.nan] * 50, "g": ["u", "v"] * 25, "c": np.sin(np.arange(50))}
    ),
    "weird_names": pd.DataFrame(
        {
            "ratio: a/b": np.linspace(0, 1, 40),
            "x vs y": np.cos(np.arange(40)),
            "price ($)": [1.5, 2.5, 3.0, 4.0] * 10,
            'it\'s "quoted"': list("abcd") * 10,
            "température": np.arange(40) * 0.5,
            "{braces}": np.arange(40) % 3,
            "  padded  name ": np.arange(40) ** 2,
        }
    ),
    "three_rows": pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [3.0, 1.0, 2.0], "g": ["x", "y", "x"]}),
    "booleans": pd.DataFrame(
        {
            "flag": [True, False, True, True] * 25,
            "score": np.arange(100) % 17 * 1.5,
            "other": [False, False, True, True] * 25,
        }
    ),
    "numbers_as_text_and_dates": pd.DataFrame(
        {
            "when": [f"2021-{m:02d}-{d:02d}" for m in range(1, 13) for d in (1, 15)] * 5,
            "amount": [f"${v:,.2f}" for v in np.linspace(10, 5000, 120)],
            "region": ["north", " south", "east ", "west"] * 30,
            "id": np.arange(120),
        }
    ),
    "nullable_and_duplicates": pd.DataFrame(
        {
            "n": pd.array([1, None, 3, 4] * 10, dtype="Int64"),
            "v": [0.5, 0.5, 1.5, 2.5] * 10,
            "k": ["p", "p", "q", "r"] * 10,
        }
    ),
    "integer_labels": pd.DataFrame(np.random.default_rng(1).normal(size=(60, 3))),
    "duplicate_labels": pd.DataFrame(
        [[1, 2.0, "a"], [2, 3.5, "b"], [3, 1.0, "a"]] * 10, columns=["v", "v", "g"]
    ),
    "mixed_objects": pd.DataFrame(
        {"m": [1, "two", 3.0, None] * 10, "y": np.arange(40) * 1.0, "lst": [[1, 2], [3], [], [1, 2]] * 10}
    ),
    "wide": pd.DataFrame(
        np.random.default_rng(3).normal(size=(80, 30)),
        columns=[f"a fairly long measurement name {i}" for i in range(30)],
    ),
    "tz_dates_and_categories": pd.DataFrame(
        {
            "ts": pd.date_range("2020-01-01", periods=400, freq="D", tz="Europe/Oslo"),
            "load": np.arange(400) % 50 * 1.0,
            "kind": pd.Categorical(["x", "y"] * 200, categories=["x", "y", "unused"]),
            "lag": pd.to_timedelta(np.arange(400), unit="h"),
        }
    ),
    "yearly_strings": pd.DataFrame(
        {
            "Order Date": [f"{d:02d}/03/2019" for d in range(1, 29)] * 3,
            "Sales": np.arange(84) * 2.5,
            "Segment": ["A", "B", "C"] * 28,
        }
    ),
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_cases(name: str) -> None:
    df = EDGE_CASES[name]
    run = drive(df)
    check(run, min_figures=3)


def test_text_dates_and_numbers_are_cleaned_and_used() -> None:
    run = drive(EDGE_CASES["yearly_strings"])
    assert "Parsed 'Order Date' as dates (0 values could not be parsed)" in run.answer
    assert "Over time (" in run.answer
    run = drive(EDGE_CASES["numbers_as_text_and_dates"])
    assert "Converted 'amount' to numbers" in run.answer and "`amount` has mean" in run.answer


def test_big_frame_samples_plots() -> None:
    rng = np.random.default_rng(2)
    df = pd.DataFrame(
        {"v": rng.normal(size=60_000), "w": rng.normal(size=60_000), "g": rng.choice(list("abc"), 60_000)}
    )
    run = drive(df)
    check(run)
    assert any("plot_df = " in c for c in run.cells)
    assert "random sample of 50,000 rows" in run.answer


def test_empty_frame_and_unparseable_task() -> None:
    run = drive(pd.DataFrame({"a": pd.Series([], dtype=float)}))
    assert run.answer is not None and run.errors == []
    reply = BaselineAnalyst()(
        [{"role": "system", "content": "x"}, {"role": "user", "content": "hello"}], TOOLS
    )
    assert reply.tool_calls[0].name in (MARKDOWN_TOOL, CODE_TOOL)
    assert parse_task([{"role": "user", "content": "hello"}]).var == "df"


@pytest.mark.parametrize("name", ["numbers_as_text_and_dates", "weird_names", "mixed_objects"])
def test_with_the_kernels_own_facts(name: str) -> None:
    try:
        facts = kernel_frame_facts(EDGE_CASES[name])
    except ImportError as exc:  # the kernel package is built in parallel; skip until it exists
        pytest.skip(f"kernel facts unavailable: {exc}")
    check(drive(EDGE_CASES[name], facts=facts))


def test_real_dataset_with_the_kernels_own_facts(datasets: dict[str, pd.DataFrame]) -> None:
    try:
        facts = kernel_frame_facts(datasets["seattle_weather"])
    except ImportError as exc:
        pytest.skip(f"kernel facts unavailable: {exc}")
    check(drive(datasets["seattle_weather"], facts=facts))


def test_real_kernel_and_loop() -> None:
    """The whole path: AgentLoop + a real ipykernel (skipped where either is unavailable)."""
    try:
        from jupyter_analyst.agent.loop import AgentLoop
        from jupyter_analyst.agent.types import CellExecuted, RunFinished
        from jupyter_analyst.kernel.executor import KernelExecutor
        from jupyter_analyst.kernel.facts import frame_facts_code, parse_facts
    except ImportError as exc:
        pytest.skip(f"loop or kernel unavailable: {exc}")
    executor = KernelExecutor()
    try:
        executor.start()
    except Exception as exc:  # no kernel here: nothing of ours to test
        pytest.skip(f"kernel did not start: {exc}")
    try:
        executor.run_silent(
            "import pandas as pd\nfrom palmerpenguins import load_penguins\ndf = load_penguins()"
        )
        facts = parse_facts(executor.run_silent(frame_facts_code("df")))
        loop = AgentLoop(BaselineAnalyst(), executor)
        events = list(loop.run(render_task(facts, "Which species is heaviest?")))
    finally:
        executor.shutdown()
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.reason.natural and finished.errors == 0
    assert all(e.result.ok for e in events if isinstance(e, CellExecuted))
    observations = "\n".join(m["content"] for m in loop.messages if m["role"] == "tool")
    assert observations.count("[figure") >= 3
    assert finished.answer and "Gentoo" in finished.answer
