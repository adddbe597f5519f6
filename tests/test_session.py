"""The run core every shell shares: how a run begins, refuses, stops, fails and ends.

Cells run in a real IPython shell through the in-process executor; the sink records what
a notebook would receive, so each rule is checked on what reaches the notebook.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pandas as pd
import pytest

from jupyter_analyst.agent import Budget, CellAdded, CellExecuted, Event, RunFinished, StopReason
from jupyter_analyst.agent.types import AssistantTurn, Message, ToolSpec, Usage
from jupyter_analyst.errors import BackendError, InputError, MissingVariableError
from jupyter_analyst.kernel import InProcessExecutor
from jupyter_analyst.models.scripted import ScriptedPolicy, code, final
from jupyter_analyst.session import RunSpec, Session


class Recorder:
    """A ``NotebookSink`` that keeps what it was given, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.live: list[tuple[str, int]] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def show_outputs(self, cell_id: str, outputs: list[dict[str, Any]]) -> None:
        self.live.append((cell_id, len(outputs)))

    def notes(self) -> list[str]:
        return [e.source for e in self.events if isinstance(e, CellAdded) and e.role == "note"]


@pytest.fixture
def shell(ipython_shell: Any) -> Any:
    ipython_shell.reset(new_session=False)
    ipython_shell.user_ns.update(pd=pd, df=pd.DataFrame({"x": [1.0, 2.0, 4.0], "g": list("aab")}))
    return ipython_shell


def session(shell: Any, sink: Recorder, **spec: Any) -> Session:
    return Session(InProcessExecutor(shell, timeout=0), sink, RunSpec(**spec))


def test_a_finished_run_reaches_the_sink_and_the_caller_alike(shell: Any) -> None:
    sink, seen = Recorder(), []
    s = Session(InProcessExecutor(shell, timeout=0), sink, RunSpec(subject="df"), on_event=seen.append)
    outcome = s.run(ScriptedPolicy([code("print(df.x.sum())"), final("The sum of x is 7.0.")]))
    assert outcome.finished.reason.natural and outcome.finished.steps == 2
    header = sink.events[0]
    assert isinstance(header, CellAdded) and header.role == "header" and "3 rows x 2 columns" in header.source
    assert sink.events[1:] == seen  # the header is the notebook's, not a loop event
    executed = [e for e in seen if isinstance(e, CellExecuted)]
    assert executed[0].result.outputs[0]["text"] == "7.0\n" and not sink.notes()
    assert (executed[0].cell_id, 1) in sink.live  # outputs were shown while the cell ran
    assert outcome.facts["source"] == "variable `df`"


@pytest.mark.parametrize(
    ("variable", "error", "message"),
    [
        ("nope", MissingVariableError, "name 'nope' is not defined"),
        ("pd", InputError, "'pd' is a module, not a pandas DataFrame"),
        ("empty", InputError, "'empty' is an empty DataFrame (0 rows x 0 columns)"),
    ],
)
def test_a_refusal_leaves_the_notebook_untouched(
    shell: Any, variable: str, error: type, message: str
) -> None:
    shell.user_ns["empty"] = pd.DataFrame()
    sink = Recorder()
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        session(shell, sink, variable=variable).run(ScriptedPolicy([final("never")]))
    assert sink.events == []
    assert not any("jupyter-analyst" in str(k) for k in shell.display_formatter.formatters)  # torn down


def test_a_stop_records_what_the_run_really_spent(shell: Any) -> None:
    sink = Recorder()
    s = session(shell, sink)
    steps = [code("1 / 0"), code("x = df.x.mean()\nx")]

    def stop_after_two(messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        turns = sum(1 for m in messages if m["role"] == "assistant")
        if turns == 2:
            s.stop()  # from the UI, say, while the model was thinking
        return ScriptedPolicy(steps + [code("print('more')")] * 5)(messages, tools)

    stop_after_two.name = "stopper"  # type: ignore[attr-defined]
    outcome = s.run(stop_after_two)  # type: ignore[arg-type]
    fin = outcome.finished
    assert fin.reason is StopReason.STOPPED
    assert (fin.steps, fin.errors, fin.errors_fixed) == (3, 1, 1) and fin.seconds > 0
    assert sink.notes() == ["*Run ended without conclusions: the run was stopped at step 3.*"]
    assert sink.events[-1] == fin and isinstance(sink.events[-2], CellAdded)


def test_a_cell_the_stop_interrupts_is_stopped_not_an_error(shell: Any) -> None:
    """A stop is not an error: the interrupted cell keeps what it printed but no traceback,
    the run counts no error to fix, and it ends at once with the stop note."""
    sink = Recorder()
    # an interrupt inside an agent cell stops the run (what Stop does to a running cell)
    steps = [code("print(1)"), code("print('partial')\nraise KeyboardInterrupt"), code("print(3)")]
    fin = session(shell, sink).run(ScriptedPolicy([*steps, final("x")])).finished
    assert fin.reason is StopReason.STOPPED and (fin.steps, fin.errors, fin.errors_fixed) == (2, 0, 0)
    executed = [e for e in sink.events if isinstance(e, CellExecuted)]
    last = executed[-1].result
    assert last.status == "stopped" and not last.error_name and not last.traceback
    assert [o["output_type"] for o in last.outputs] == ["stream"] and "partial" in last.outputs[0]["text"]
    assert sink.notes() == ["*Run ended without conclusions: the run was stopped at step 2.*"]


def test_keyboard_interrupt_ends_the_run_as_stopped_with_its_tallies(shell: Any) -> None:
    sink = Recorder()

    class Impatient(ScriptedPolicy):
        def __call__(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
            if sum(1 for m in messages if m["role"] == "assistant") == 2:
                raise KeyboardInterrupt
            turn = super().__call__(messages, tools)
            turn.usage = Usage(100, 20)
            return turn

    outcome = session(shell, sink).run(Impatient([code("print(1)"), code("print(2)"), final("x")]))
    fin = outcome.finished
    assert fin.reason is StopReason.STOPPED and fin.detail == "interrupted from the keyboard"
    assert (fin.steps, fin.tokens) == (3, 240)
    assert "the run was stopped at step 3" in sink.notes()[0]


def test_abandon_ends_a_run_stuck_in_a_model_call(shell: Any) -> None:
    sink = Recorder()
    s = session(shell, sink)
    stuck, release = threading.Event(), threading.Event()

    class Slow(ScriptedPolicy):
        def __call__(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
            if sum(1 for m in messages if m["role"] == "assistant") == 1:
                stuck.set()
                release.wait(60)
            return super().__call__(messages, tools)

    outcome: list[Any] = []
    worker = threading.Thread(
        target=lambda: outcome.append(s.run(Slow([code("y = 1"), code("y"), final("z")])))
    )
    worker.start()
    assert stuck.wait(60)
    fin = s.abandon(StopReason.STOPPED, "stopped by the user")
    assert fin is not None and fin.reason is StopReason.STOPPED and fin.steps == 2
    assert s.abandon(StopReason.STOPPED) is None  # once
    count = len(sink.events)
    release.set()
    worker.join(60)
    assert outcome and outcome[0].finished is fin
    assert len(sink.events) == count  # the loop's late events were dropped
    assert len(sink.notes()) == 1


def test_a_model_that_fails_to_start_ends_with_a_note(shell: Any) -> None:
    sink = Recorder()

    def factory() -> Any:
        raise BackendError("cannot reach the model server at http://127.0.0.1:9/v1")

    outcome = session(shell, sink).run(factory)
    fin = outcome.finished
    assert fin.reason is StopReason.MODEL_ERROR and "127.0.0.1:9" in fin.detail
    assert sink.notes() == [
        "*Run ended without conclusions: the model backend failed.*\n\n"
        "`cannot reach the model server at http://127.0.0.1:9/v1`"
    ]
    assert isinstance(sink.events[-1], RunFinished)


def test_our_own_failure_after_cells_were_written_gets_a_note_and_raises(shell: Any) -> None:
    class Broken(Recorder):
        def handle(self, event: Event) -> None:
            super().handle(event)
            if isinstance(event, CellExecuted):
                raise RuntimeError("the disk is full")

    sink = Broken()
    with pytest.raises(RuntimeError, match="disk is full"):
        session(shell, sink).run(ScriptedPolicy([code("1"), final("x")]))
    assert sink.notes() == [
        "*Run ended without conclusions: the run failed at step 1.*\n\n`RuntimeError: the disk is full`"
    ]
    assert not any(isinstance(e, RunFinished) for e in sink.events)


def test_budget_ends_with_its_note(shell: Any) -> None:
    sink = Recorder()
    outcome = session(shell, sink, budget=Budget(max_steps=2)).run(ScriptedPolicy([code("1")] * 5))
    assert outcome.finished.reason is StopReason.MAX_STEPS
    assert sink.notes() == [
        "*Run ended without conclusions: the step budget ran out before the analyst wrote its "
        "conclusions at step 2.*"
    ]


USER_NAMES = ("summary", "corr", "table", "counts", "df_clean", "fig", "ax")


class Renaming(ScriptedPolicy):
    """An analyst that writes the usual names, and on a clash rewrites its cell (and every
    later one) with the alternatives the observation offered: what a model is asked to do."""

    def __init__(self, cells: list[str]) -> None:
        super().__init__([])
        self.cells = cells
        self.renames: dict[str, str] = {}
        self.sent = 0

    def __call__(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        last = str(messages[-1].get("content") or "")
        if messages[-1]["role"] == "tool" and "NameClashError" in last:
            self.renames.update(re.findall(r"`(\w+)` -> `(\w+)`", last))
            self.sent -= 1  # the same cell again, renamed
        if self.sent >= len(self.cells):
            return AssistantTurn(tool_calls=[final("done")])
        source = self.cells[self.sent]
        for old, new in self.renames.items():
            source = re.sub(rf"(?<![.\w]){old}\b", new, source)  # names, not attributes
        self.sent += 1
        return AssistantTurn(tool_calls=[code(source)])


def test_the_users_names_survive_a_run(shell: Any, tmp_path: Any) -> None:
    from jupyter_analyst.notebook import NotebookWriter

    user = {name: f"USER {name.upper()}" for name in USER_NAMES}
    shell.user_ns.update(user)
    df, pd_module = shell.user_ns["df"], shell.user_ns["pd"]
    cells = [
        "import pandas as pd\nsummary = df.describe()\ncorr = df[['x']].corr()",
        "table = df.groupby('g').x.mean()\ncounts = df.g.value_counts()\nprint(counts.to_dict())",
        "df_clean = df.dropna()",
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot(df_clean.x)\nplt.close(fig)",
        "print(summary.shape, corr.shape, table.shape, df_clean.shape, type(ax).__name__)",
    ]
    writer = NotebookWriter(tmp_path / "run.ipynb", "run1")
    # keep_failed_cells: the refused cells stay, to show what they look like (tidy's default
    # removes them, superseded by their renamed versions: tests/test_tidy.py)
    spec = RunSpec(budget=Budget(max_steps=20), keep_failed_cells=True)
    s = Session(InProcessExecutor(shell, timeout=0), writer, spec)
    fin = s.run(Renaming(cells)).finished

    assert fin.reason is StopReason.FINAL_ANSWER
    for name, value in user.items():
        assert shell.user_ns[name] == value, name
    assert shell.user_ns["df"] is df and shell.user_ns["pd"] is pd_module
    assert fin.created == [
        "summary_2",
        "corr_2",
        "table_2",
        "counts_2",
        "df_clean_2",
        "plt",
        "fig_2",
        "ax_2",
    ]
    assert shell.user_ns["summary_2"].shape == (8, 1) and shell.user_ns["counts_2"].to_dict() == {
        "a": 2,
        "b": 1,
    }
    assert (fin.errors, fin.errors_fixed) == (4, 4)  # one refusal per cell that used a user's name
    assert {"df", "pd", *USER_NAMES} <= set(s.user_names or {})
    assert (s.user_names or {})["pd"] == ["pandas"]

    nb = writer.nb
    assert nb.metadata["jupyter_analyst"]["created"] == fin.created
    refused = [c for c in nb.cells if c.metadata["jupyter_analyst"].get("status") == "error"]
    assert len(refused) == 4
    for cell in refused:  # a re-run of the notebook can't do what the run refused
        assert all(line.startswith("#") for line in cell.source.splitlines()) and not cell.outputs
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert last.outputs[0]["text"] == "(8, 1) (1, 1) (2,) (3, 2) Axes\n"


def test_user_names_are_the_users_own_with_their_origins(shell: Any) -> None:
    from jupyter_analyst.kernel.facts import USER_NAMES_CODE, parse_user_names

    shell.run_cell(
        "from json import dumps\nimport os.path\nexit = 'mine'\nvalue = 41\nvalue + 1", store_history=True
    )
    names = parse_user_names(InProcessExecutor(shell, timeout=0).run_silent(USER_NAMES_CODE))
    assert set(names) == {"pd", "df", "dumps", "os", "exit", "value"}  # no In, Out, _, _1, _i1...
    assert names["pd"] == ["pandas"] and names["os"] == ["os"] and names["dumps"] == ["json.dumps"]
    assert names["value"] == [] and names["df"] == []
    assert not any(name.startswith("__jupyter_analyst") for name in shell.user_ns)
