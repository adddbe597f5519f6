"""Tidy at the end: failed agent cells a later fix superseded leave the finished notebook.

The rules (``agent.tidy``) one by one on cells and tracebacks as a real kernel prints them,
then real runs in every shell: a kernel of its own writing a notebook file (the CLI and
evaluation), this IPython shell (the magic) and a live notebook on a real Jupyter server.
Each checks that the failed cell is gone from the notebook but not from the run's events,
that ``RunFinished.cells_removed`` counts it, and that the notebook re-runs with no error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest

from jupyter_analyst.agent import Budget, CellAdded, CellExecuted, CellsRemoved, Event, RunFinished
from jupyter_analyst.agent.names import CLASH_ERROR
from jupyter_analyst.agent.tidy import failing_line, reads_before_rebinding, superseded, why_kept
from jupyter_analyst.agent.types import CellResult
from jupyter_analyst.models.scripted import ScriptedPolicy, code, final


def traceback(source: str, line: int, ename: str = "NameError", count: int = 3) -> list[str]:
    """The traceback ipykernel sends for an error at ``line`` of a cell (its real shape)."""
    lines = source.splitlines()
    shown = "\n".join(
        ("----> " if i == line else "      ") + f"{i} {text}"
        for i, text in enumerate(lines, 1)
        if i <= line + 1
    )
    return [
        "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
        f"\x1b[0;31m{ename}\x1b[0m                                 Traceback (most recent call last)",
        f"Cell \x1b[0;32mIn[{count}], line {line}\x1b[0m\n{shown}\n",
        f"\x1b[0;31m{ename}\x1b[0m: boom",
    ]


def failed(source: str, line: int, ename: str = "NameError") -> CellResult:
    return CellResult("error", execution_count=3, error_name=ename, traceback=traceback(source, line, ename))


# -- the failing line ------------------------------------------------------------------------


def test_the_failing_line_is_the_cells_own_frame() -> None:
    assert failing_line(traceback("x = 1\ny = nope", 2)) == 2
    assert failing_line(traceback("x = 1\ny = nope", 2), 3) == 2
    nested = [
        "Traceback (most recent call last)",
        "Cell In[3], line 4\n----> 4 f()\n",
        "Cell In[3], line 2, in f()\n----> 2     return nope\n",
        "NameError: boom",
    ]
    assert failing_line(nested, 3) == 4  # the module level, not the function's frame
    other = ["Traceback (most recent call last)", "Cell In[1], line 2, in helper()\n----> 2 x\n", "E"]
    assert failing_line(other, 3) is None  # only a frame of an earlier cell's function
    assert failing_line(["Traceback", "----> 5 df['x']\n", "KeyError"]) == 5  # the marker alone
    assert failing_line([]) is None


def test_a_chained_exception_is_read_from_its_last_part() -> None:
    chained = [
        "Traceback (most recent call last)",
        "Cell In[1], line 9, in helper()\n----> 9 raise\n",
        "KeyError: 'b'",
        "\nThe above exception was the direct cause of the following exception:\n",
        "KeyError                                  Traceback (most recent call last)",
        "Cell In[3], line 3\n----> 3 df['b']\n",
        "KeyError: 'b'",
    ]
    assert failing_line(chained) == 3


# -- which failed cells may go -----------------------------------------------------------------


def test_nothing_ran_before_the_failing_line() -> None:
    source = "df.groupby('spieces').mean()"
    assert why_kept(source, failed(source, 1, "KeyError"), ["df.groupby('species').mean()"]) is None


def test_a_refused_cell_never_ran() -> None:
    result = CellResult("error", error_name=CLASH_ERROR, error_value="would overwrite `df`")
    assert why_kept("# Not run by the analyst: ...\n# df = 1", result, ["print(df)"]) is None


def test_a_cell_python_could_not_compile_never_ran() -> None:
    assert why_kept("x = (\n", CellResult("error", error_name="SyntaxError"), ["print(x)"]) is None
    # a SyntaxError raised at run time (ast.parse of a string) is an ordinary failure
    source = "import ast\nx = 1\nast.parse('(')"
    assert why_kept(source, failed(source, 3, "SyntaxError"), ["print(x)"]) is not None


def test_a_name_bound_before_the_failing_line_and_read_later_keeps_the_cell() -> None:
    source = "means = df.groupby('species').mean()\nmeans['ratio'] = means['bill'] / means['mass']"
    result = failed(source, 2, "KeyError")
    why = why_kept(source, result, ["means['ratio'] = means['bill_length_mm'] / means['body_mass_g']"])
    assert why is not None and "`means`" in why
    # rebound before it is read: the later cell does not need this one
    assert why_kept(source, result, ["means = df.groupby('species').mean()\nprint(means)"]) is None
    # a read inside a later function body or a query string counts
    assert why_kept(source, result, ["def f():\n    return means"]) is not None
    assert why_kept(source, result, ["df.query('x > @means')"]) is not None
    # a binding inside a block is no sure rebinding
    assert why_kept(source, result, ["if len(df):\n    means = 1\nprint(means)"]) is not None


def test_the_failing_assignment_itself_binds_nothing() -> None:
    source = "total = df['nope'].sum()"
    assert why_kept(source, failed(source, 1, "KeyError"), ["total = df['x'].sum()\nprint(total)"]) is None
    assert why_kept(source, failed(source, 1, "KeyError"), ["print(len(df))"]) is None
    # but a walrus in it did bind, and a failing ``import a, b`` bound ``a``
    walrus = "print((n := len(df)), nope)"
    assert why_kept(walrus, failed(walrus, 1), ["print(n)"]) is not None
    imports = "import numpy as np, nonexistent_module"
    assert why_kept(imports, failed(imports, 1, "ModuleNotFoundError"), ["np.mean([1])"]) is not None


@pytest.mark.parametrize(
    ("prefix", "what"),
    [
        ("df['ratio'] = df.x / df.y", "assigned to `df['ratio']`"),
        ("df.loc[0, 'x'] = 1", "assigned to"),
        ("df.attrs = {}", "assigned to `df.attrs`"),
        ("counter += 1", "augmented assignment"),
        ("del tmp", "deleted `tmp`"),
        ("df.dropna(inplace=True)", "in place"),
        ("df.fillna(0, inplace=True)", "in place"),
        ("results.append(1)", "`results.append` changes"),
        ("settings.update(a=1)", "`settings.update` changes"),
        ("np.random.seed(0)", "`np.random.seed`"),
        ("df.to_csv('out.csv')", "writes a file"),
        ("plt.savefig('fig.png')", "writes a file"),
        ("open('out.txt', 'w').write('x')", "writes a file"),
        ("exec('z = 1')", "calls `exec`"),
        ("for df.name in ['a']:\n    pass", "assigned to `df.name`"),
        ("helper(df)", "calls `helper`, a function the run defined"),
        ("!pip install foo", "magic or shell command"),
    ],
)
def test_a_prefix_that_changed_something_keeps_the_cell(prefix: str, what: str) -> None:
    source = f"{prefix}\nprint(nope)"
    line = len(prefix.splitlines()) + 1
    why = why_kept(source, failed(source, line), [], functions={"helper"})
    assert why is not None and what in why, why


@pytest.mark.parametrize(
    "prefix",
    [
        "print(df.describe())",
        "clean = df.drop(columns=['x'])",  # a new frame; nobody reads it later
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot(df.x)\nplt.title('x')",
        "plt.figure()\nplt.clf()",  # plotting state is fine to drop
        "%matplotlib inline",
        "def unused(v):\n    v.append(1)",  # a body that never ran
        "with open('data.csv') as fh:\n    head = fh.readline()",
    ],
)
def test_a_harmless_prefix_lets_the_cell_go(prefix: str) -> None:
    source = f"{prefix}\nprint(nope)"
    line = len(prefix.splitlines()) + 1
    assert why_kept(source, failed(source, line), ["print(df.shape)"]) is None


def test_when_unsure_the_cell_stays() -> None:
    source = "x = 1\ny = nope"
    assert "unknown" in (why_kept(source, CellResult("error", error_name="NameError")) or "")
    assert "timeout" in (why_kept(source, CellResult("timeout", error_name="CellTimeoutError")) or "")
    assert why_kept(source, CellResult("dead", error_name="DeadKernelError")) is not None
    assert "interrupted" in (why_kept(source, failed(source, 2, "KeyboardInterrupt")) or "")
    magic = "%%time\nx = 1\ny = nope"
    assert "cell magic" in (why_kept(magic, failed(magic, 1)) or "")
    assert why_kept(source, failed(source, 9)) is not None  # a line the cell doesn't have
    # two statements on the failing line: the first counts as run
    same_line = "x = 1; y = nope"
    assert why_kept(same_line, failed(same_line, 1), ["print(x)"]) is not None


# -- chains of failures over a run's events ------------------------------------------------------


def events_of(cells: list[tuple[str, CellResult, bool]]) -> list[Event]:
    events: list[Event] = []
    for i, (source, result, fixed) in enumerate(cells):
        events.append(CellAdded(i + 1, f"c{i}", "code", source, "code"))
        events.append(CellExecuted(i + 1, f"c{i}", result, "", fixed))
    return events


OK = CellResult("ok")


def test_a_chain_of_failures_a_fix_ended_goes_whole() -> None:
    a, b = "df['bill']", "df['bill_mm']"
    events = events_of([(a, failed(a, 1, "KeyError"), False), (b, failed(b, 1, "KeyError"), False)])
    events.append(CellAdded(3, "fix", "code", "df['bill_length_mm']", "code"))
    events.append(CellAdded(3, "md", "markdown", "## Bills", "markdown"))
    events.append(CellExecuted(3, "fix", OK, "", True))
    assert superseded(events) == ["c0", "c1"]


def test_a_failure_no_fix_followed_stays() -> None:
    a = "df['bill']"
    events = events_of([("x = 1", OK, False), (a, failed(a, 1, "KeyError"), False)])
    events.append(CellAdded(3, "end", "markdown", "## Conclusions", "conclusions"))
    assert superseded(events) == []


def test_a_cell_a_kept_later_failure_needs_stays_and_removed_cells_need_nothing() -> None:
    first = "tmp = df.copy()\ntmp['r'] = tmp['nope']"
    second = "print(tmp['nope2'])"  # reads tmp, but goes itself: tmp no longer needed
    fix = "tmp = df.copy()\nprint(tmp.shape)"
    events = events_of([(first, failed(first, 2, "KeyError"), False), (second, failed(second, 1), False)])
    events += [CellAdded(3, "fix", "code", fix, "code"), CellExecuted(3, "fix", OK, "", True)]
    assert superseded(events) == ["c0", "c1"]
    fix_reads = "print(tmp.shape)"  # the fix reads tmp: the cell that bound it stays
    events[-2:] = [CellAdded(3, "fix", "code", fix_reads, "code"), CellExecuted(3, "fix", OK, "", True)]
    assert superseded(events) == ["c1"]


# -- real runs ----------------------------------------------------------------------------------

FAILS = "summary = df.groupby('species')['bill_length'].mean()\nprint(summary)"
FIX = "summary = df.groupby('species')['bill_length_mm'].mean()\nprint(summary.round(2))"
BINDS_THEN_FAILS = "means = df.groupby('species').mean(numeric_only=True)\nprint(means['bill_length'])"
USES_IT = "print(means['bill_length_mm'].round(2))"
ANSWER = "Gentoo penguins have the longest bills."


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from palmerpenguins import load_penguins

    path = tmp_path_factory.mktemp("data") / "penguins.csv"
    load_penguins().to_csv(path, index=False)
    return path


def run_file(
    csv: Path, out: Path, steps: list[Any], keep: bool = False
) -> tuple[RunFinished, list[Event], nbformat.NotebookNode]:
    from jupyter_analyst.runner import RunConfig, run_analysis

    events: list[Event] = []
    config = RunConfig(csv, out, budget=Budget(max_steps=10), cell_timeout=60, keep_failed_cells=keep)
    outcome = run_analysis(config, ScriptedPolicy(steps), on_event=events.append)
    return outcome.finished, events, nbformat.read(str(out), as_version=4)


def statuses(nb: nbformat.NotebookNode) -> list[str]:
    return [c.metadata["jupyter_analyst"].get("status", "") for c in nb.cells if c.cell_type == "code"]


def test_a_fixed_error_leaves_the_notebook_and_it_re_runs_clean(penguins_csv: Path, tmp_path: Path) -> None:
    from jupyter_analyst.eval.judge import rerun_notebook

    out = tmp_path / "fixed.ipynb"
    fin, events, nb = run_file(penguins_csv, out, [code(FAILS), code(FIX), final(ANSWER)])
    failed_cell = next(e for e in events if isinstance(e, CellExecuted) and not e.result.ok)
    assert failed_cell.result.error_name == "KeyError"
    assert fin.errors == 1 and fin.errors_fixed == 1 and fin.cells_removed == 1
    removed = [e for e in events if isinstance(e, CellsRemoved)]
    assert [r.cell_ids for r in removed] == [[failed_cell.cell_id]]  # the record keeps the cell
    ids = [c.get("id") for c in nb.cells]
    assert failed_cell.cell_id not in ids and statuses(nb) == ["ok", "ok"]
    assert nb.metadata["jupyter_analyst"]["cells_removed"] == 1
    rerun = rerun_notebook(out)
    assert rerun.ok, rerun.errors


def test_keep_failed_cells_keeps_them(penguins_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "kept.ipynb"
    fin, events, nb = run_file(penguins_csv, out, [code(FAILS), code(FIX), final(ANSWER)], keep=True)
    assert fin.cells_removed == 0 and not any(isinstance(e, CellsRemoved) for e in events)
    assert statuses(nb) == ["ok", "error", "ok"]


def test_a_failed_cell_whose_prefix_a_later_cell_needs_stays(penguins_csv: Path, tmp_path: Path) -> None:
    from jupyter_analyst.eval.judge import rerun_notebook

    out = tmp_path / "needed.ipynb"
    fin, events, nb = run_file(penguins_csv, out, [code(BINDS_THEN_FAILS), code(USES_IT), final(ANSWER)])
    assert fin.errors_fixed == 1 and fin.cells_removed == 0
    assert statuses(nb) == ["ok", "error", "ok"]
    rerun = rerun_notebook(out)  # the kept cell fails again (tagged raises-exception) and binds `means`
    assert rerun.consistent and [e["ename"] for e in rerun.errors] == ["KeyError"]


def test_in_process_the_report_loses_the_failed_cell(ipython_shell: Any, tmp_path: Path) -> None:
    """The magic's path outside a server: this shell runs the cells, a report file is written."""
    from jupyter_analyst.kernel import InProcessExecutor
    from jupyter_analyst.notebook import NotebookWriter
    from jupyter_analyst.session import RunSpec, Session

    ipython_shell.user_ns.update(
        pd=pd, df=pd.DataFrame({"species": list("aab"), "bill_length_mm": [1.0, 2, 3]})
    )
    writer = NotebookWriter(tmp_path / "report.ipynb", "r1")
    session = Session(InProcessExecutor(ipython_shell, timeout=0), writer, RunSpec(subject="df"))
    fin = session.run(ScriptedPolicy([code(FAILS), code(FIX), final(ANSWER)])).finished
    assert fin.cells_removed == 1
    nb = nbformat.read(str(tmp_path / "report.ipynb"), as_version=4)
    assert statuses(nb) == ["ok"] and nb.cells[-1].metadata["jupyter_analyst"]["role"] == "conclusions"


class RefusingSink:
    """A sink that can't remove cells (a document gone at the very end, say)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        if isinstance(event, CellsRemoved):
            raise RuntimeError("no document")
        self.events.append(event)

    def show_outputs(self, cell_id: str, outputs: list[dict[str, Any]]) -> None:
        pass


def test_a_sink_that_cannot_remove_still_gets_the_end(ipython_shell: Any) -> None:
    from jupyter_analyst.kernel import InProcessExecutor
    from jupyter_analyst.session import RunSpec, Session

    frame = pd.DataFrame({"species": list("aab"), "bill_length_mm": [1.0, 2, 3]})
    ipython_shell.user_ns.update(pd=pd, df=frame)
    sink, seen = RefusingSink(), []
    session = Session(InProcessExecutor(ipython_shell, timeout=0), sink, RunSpec(), on_event=seen.append)
    fin = session.run(ScriptedPolicy([code(FAILS), code(FIX), final(ANSWER)])).finished
    assert fin.reason.natural and fin.cells_removed == 0  # the cell stays, as without tidy
    assert isinstance(sink.events[-1], RunFinished) and not any(isinstance(e, CellsRemoved) for e in seen)


def test_the_magic_takes_keep_failed_cells() -> None:
    from jupyter_analyst.magic import parse_line

    assert parse_line('df "q" --keep-failed-cells').keep_failed_cells is True
    assert parse_line('df "q"').keep_failed_cells is False


def test_the_cli_takes_keep_failed_cells() -> None:
    from jupyter_analyst.cli import build_parser

    args = build_parser().parse_args(["run", "data.csv", "--keep-failed-cells"])
    assert args.keep_failed_cells is True


# -- the live notebook on a real Jupyter server -------------------------------------------------

pytest.register_assert_rewrite("server_conftest")

from server_conftest import *  # noqa: E402, F403  (the server fixtures, module-local)
from server_conftest import NB_PATH, api, asynctest, saved_notebook, wait_run, ydoc  # noqa: E402

from jupyter_analyst.notebook import META_KEY  # noqa: E402

RUNS = ("jupyter-analyst", "runs")
LIVE_FAILS = "summary = df.groupby('species')['bill_length'].mean()"
LIVE_FAILS_TOO = "print(summary_of_bills)"
LIVE_FIX = (
    "import time\ntime.sleep(2)\nsummary = df.groupby('species')['bill_length_mm'].mean()\nprint(summary)"
)


async def frames_of(jp_ws_fetch: Any, run_id: str) -> list[dict[str, Any]]:
    import asyncio
    import json

    ws = await jp_ws_fetch(*RUNS, run_id, "events")
    frames = []
    while True:
        message = await asyncio.wait_for(ws.read_message(), timeout=300)  # a guard against a hang
        if message is None:
            break
        frames.append(json.loads(message))
    ws.close()
    return frames


@asynctest
async def test_live_run_removes_the_cell_from_the_document_but_not_a_users_edit(
    jp_fetch: Any,
    jp_ws_fetch: Any,
    jp_serverapp: Any,
    jp_root_dir: Path,
    analyst_app: Any,
    live_notebook: Any,
    tmp_path: Path,
) -> None:
    import asyncio
    import json
    import time

    await live_notebook()
    script = tmp_path / "fix.json"
    steps = [{"code": LIVE_FAILS}, {"code": LIVE_FAILS_TOO}, {"code": LIVE_FIX}, {"final_answer": ANSWER}]
    script.write_text(json.dumps(steps))
    analyst_app.replay = str(script)
    _, status = await api(
        jp_fetch, *RUNS, method="POST", expect=201, body={"path": NB_PATH, "variable": "df"}
    )
    doc = await ydoc(jp_serverapp)
    deadline = time.monotonic() + 300  # a guard against a hang
    while True:  # the second failed cell has run: the user edits it while the fix runs
        second = [c for c in doc.ycells if str(c["source"]) == LIVE_FAILS_TOO]
        if second and second[0]["metadata"].to_py()[META_KEY].get("status") == "error":
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    edited_id = second[0]["id"]
    index = next(i for i, c in enumerate(doc.ycells) if c["id"] == edited_id)
    doc.set_cell(index, source="# mine now\nprint('the user kept this')")
    frames = await frames_of(jp_ws_fetch, status["run_id"])
    final = await wait_run(jp_fetch, status["run_id"])
    assert final["state"] == "finished", final

    added = {f["source"]: f["cell_id"] for f in frames if f["type"] == "cell_added"}
    failed_id = added[LIVE_FAILS]
    executed = [f for f in frames if f["type"] == "cell_executed"]
    assert [f["status"] for f in executed] == ["error", "error", "ok"]  # the record keeps them
    removed = [f for f in frames if f["type"] == "cells_removed"]
    assert len(removed) == 1 and removed[0]["cell_ids"] == [failed_id]
    assert removed[0]["kept_edited"] == [edited_id]
    finished = next(f for f in frames if f["type"] == "run_finished")
    assert finished["cells_removed"] == 1
    assert failed_id not in final["cells"] and edited_id in final["cells"]

    ids = [c["id"] for c in doc.get()["cells"]]
    assert failed_id not in ids and edited_id in ids
    assert ids[:3] == ["user-md", "user-code", "user-tail"]
    saved = await saved_notebook(jp_root_dir / NB_PATH, lambda nb: failed_id not in [c.id for c in nb.cells])
    assert [c.source for c in saved.cells if c.id == edited_id] == ["# mine now\nprint('the user kept this')"]

    # the setting keeps them (new names: the first run's are the user's now)
    again = [
        {"code": LIVE_FAILS.replace("summary", "means")},
        {"code": "means = 1"},
        {"final_answer": ANSWER},
    ]
    (tmp_path / "again.json").write_text(json.dumps(again))
    analyst_app.replay = str(tmp_path / "again.json")  # a new policy (the pool keeps the first)
    _, status = await api(
        jp_fetch,
        *RUNS,
        method="POST",
        expect=201,
        body={"path": NB_PATH, "variable": "df", "keep_failed_cells": True},
    )
    frames = await frames_of(jp_ws_fetch, status["run_id"])
    assert not any(f["type"] == "cells_removed" for f in frames)
    assert [f["status"] for f in frames if f["type"] == "cell_executed"] == ["error", "ok"]
    kept = next(f["cell_id"] for f in frames if f["type"] == "cell_added")
    assert kept in [c["id"] for c in doc.get()["cells"]]


def test_a_try_body_is_read_in_order() -> None:
    """The baseline's fallback cell rebinds its names inside ``try``: a read after the
    binding in the body is safe; after the ``try`` only a first, can't-raise binding is sure."""
    fallback = (
        "try:\n    subset = df\n    counts = subset['a'].value_counts()\n"
        "    values = counts.idxmin()\n    print(values)\nexcept Exception as error:\n    print(error)\n"
    )
    assert not reads_before_rebinding("subset", [fallback, "subset.head()"])  # first and sure
    assert not reads_before_rebinding("counts", [fallback])  # bound, then read, in the body
    assert reads_before_rebinding("counts", [fallback, "counts.head()"])  # maybe skipped by an error
    assert reads_before_rebinding(
        "subset", ["try:\n    print(subset)\n    subset = df\nexcept Exception:\n    pass"]
    )
    assert reads_before_rebinding("subset", ["try:\n    subset = df\nexcept Exception:\n    print(subset)"])
    assert reads_before_rebinding(
        "subset", ["try:\n    subset = df.copy()\nexcept Exception:\n    pass", "subset"]
    )
