"""The loop's contract, driven by scripted policies over an in-process executor.

The same contract is exercised on a real kernel in test_run.py; here each rule is isolated.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import traceback
from typing import Any

import pytest

from jupyter_analyst.agent import AgentLoop, Budget, CellExecuted, ModelReplied, RunFinished, StopReason
from jupyter_analyst.agent.prompts import CONTINUE_MESSAGE
from jupyter_analyst.agent.types import AssistantTurn, CellResult, Message, Usage
from jupyter_analyst.errors import BackendError
from jupyter_analyst.kernel import InProcessExecutor as ShellExecutor
from jupyter_analyst.models.scripted import ScriptedPolicy, code, final, markdown


class RecordingExecutor(ShellExecutor):
    """The real in-process executor (on an IPython shell), noting each cell it was asked to run."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell, timeout=0)
        self.ran: list[str] = []

    def execute(self, code: str, cell_id: str = "") -> CellResult:
        self.ran.append(code)
        return super().execute(code, cell_id)


class InProcessExecutor:
    """exec() in a namespace: enough to test the loop without starting a kernel."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {}
        self.count = 0
        self.dead = False

    def execute(self, source: str, cell_id: str = "") -> CellResult:
        if self.dead:
            return CellResult(status="dead")
        self.count += 1
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                exec(source, self.ns)
        except SystemExit:
            self.dead = True
            return CellResult(status="dead")
        except Exception as exc:  # noqa: BLE001 - the model's error is an observation
            tb = traceback.format_exception(exc)
            return CellResult(
                status="error",
                error_name=type(exc).__name__,
                error_value=str(exc),
                traceback=tb,
                execution_count=self.count,
                outputs=[{"output_type": "stream", "name": "stdout", "text": buf.getvalue()}],
            )
        outs = [{"output_type": "stream", "name": "stdout", "text": buf.getvalue()}] if buf.getvalue() else []
        return CellResult(status="ok", outputs=outs, execution_count=self.count)


def run(policy: Any, budget: Budget | None = None, **kw: Any) -> tuple[AgentLoop, list[Any]]:
    loop = AgentLoop(policy, InProcessExecutor(), budget or Budget(max_steps=10), **kw)
    return loop, list(loop.run("Task: analyse"))


def test_final_answer_ends_the_run() -> None:
    loop, events = run(ScriptedPolicy([code("x = 2\nprint(x * 21)"), markdown("## Done"), final("x is 42")]))
    end = events[-1]
    assert isinstance(end, RunFinished) and end.reason is StopReason.FINAL_ANSWER
    assert end.answer == "x is 42" and end.steps == 3
    executed = [e for e in events if isinstance(e, CellExecuted)]
    assert executed[0].observation == "42"
    assert loop.messages[-1]["role"] == "tool" and loop.messages[-1]["tool_call_id"]


def test_a_model_that_never_calls_a_tool_runs_to_the_step_budget() -> None:
    loop, events = run(ScriptedPolicy([], fallback="I think the data looks fine."), Budget(max_steps=5))
    end = events[-1]
    assert end.reason is StopReason.MAX_STEPS and end.steps == 5 and end.answer is None
    nudges = [m for m in loop.messages if m["role"] == "user" and m["content"] == CONTINUE_MESSAGE]
    assert len(nudges) == 5


def test_unparseable_reply_becomes_an_observation() -> None:
    bad = '<tool_call>\n{"name": "final_answer", "arguments": {oops}\n</tool_call>'
    loop, events = run(ScriptedPolicy([bad, final("ok")]))
    replied = [e for e in events if isinstance(e, ModelReplied)]
    assert "tried to call a tool" in replied[0].problem
    assert loop.messages[3]["role"] == "user" and "tried to call a tool" in loop.messages[3]["content"]
    assert events[-1].reason is StopReason.FINAL_ANSWER


def test_error_then_fix_only_after_the_traceback_is_seen() -> None:
    def fix(messages: list[Message]) -> Any:
        last = messages[-1]
        if last["role"] == "tool" and "NameError" in last["content"] and "undefined_total" in last["content"]:
            return code("total = 10\nprint(total)")
        return code("raise RuntimeError('policy did not see the traceback')")

    loop, events = run(
        ScriptedPolicy([code("a = 1"), code("print(undefined_total)"), fix, final("total is 10")])
    )
    executed = [e for e in events if isinstance(e, CellExecuted)]
    assert [e.result.status for e in executed] == ["ok", "error", "ok"]
    assert executed[1].observation.startswith("Error: NameError")
    assert executed[2].fixed_error and executed[2].observation == "10"
    end = events[-1]
    assert end.errors == 1 and end.errors_fixed == 1 and end.reason is StopReason.FINAL_ANSWER


def test_unknown_tool_and_bad_arguments_are_told_to_the_model() -> None:
    turn = AssistantTurn(content="<tool_call>\n<function=delete_everything>\n</function>\n</tool_call>")
    loop, events = run(ScriptedPolicy([turn, code(""), final("done")]))
    tool_msgs = [m["content"] for m in loop.messages if m["role"] == "tool"]
    assert "no tool named 'delete_everything'" in tool_msgs[0]
    assert "needs a non-empty string argument 'code'" in tool_msgs[1]


def test_backend_error_stops_with_model_error() -> None:
    def broken(messages: list[Message], tools: list[Any]) -> AssistantTurn:
        raise BackendError("cannot reach the model server at http://127.0.0.1:9: connection refused")

    broken.name = "broken"  # type: ignore[attr-defined]
    _, events = run(broken)
    assert events[-1].reason is StopReason.MODEL_ERROR and "connection refused" in events[-1].detail


def test_dead_kernel_stops_the_run() -> None:
    _, events = run(ScriptedPolicy([code("raise SystemExit"), final("never")]))
    assert events[-1].reason is StopReason.KERNEL_DIED


def test_token_and_stop_budgets() -> None:
    costly = AssistantTurn(content="thinking...", usage=Usage(1000, 500))
    _, events = run(ScriptedPolicy([costly] * 10), Budget(max_steps=10, max_tokens=3000))
    assert events[-1].reason is StopReason.MAX_TOKENS and events[-1].steps == 2
    flag = {"stop": False}

    def stopper(messages: list[Message]) -> Any:
        flag["stop"] = True
        return code("print(1)")

    _, events = run(ScriptedPolicy([stopper, final("x")]), should_stop=lambda: flag["stop"])
    assert events[-1].reason is StopReason.STOPPED and events[-1].steps == 1


def test_time_budget() -> None:
    _, events = run(
        ScriptedPolicy([code("import time; time.sleep(0.3)")] * 5), Budget(max_steps=10, max_seconds=0.2)
    )
    assert events[-1].reason is StopReason.MAX_TIME


@pytest.mark.parametrize("raw", ["not json", "[1, 2]"])
def test_raw_arguments_are_reported(raw: str) -> None:
    from jupyter_analyst.models.scripted import _args

    assert "__raw_arguments__" in _args(raw)


def test_every_event_has_a_json_form() -> None:
    import json

    from jupyter_analyst.agent.wire import event_to_dict

    _, events = run(ScriptedPolicy([code("print(1)"), "no tool here", final("x")]))
    wire = [event_to_dict(e) for e in events]
    json.dumps(wire)
    assert [w["type"] for w in wire][:4] == ["step_started", "model_replied", "cell_added", "cell_executed"]
    assert wire[-1] == {**wire[-1], "type": "run_finished", "reason": "final_answer", "answer": "x"}
    with pytest.raises(TypeError):
        event_to_dict("nope")  # type: ignore[arg-type]


def test_long_runs_are_fitted_to_the_context_budget() -> None:
    from jupyter_analyst.agent.loop import DROPPED, TRIMMED

    chatty = [code(f"print('row {i}: ' + 'x' * 1400)") for i in range(30)] + [final("done")]
    loop = AgentLoop(ScriptedPolicy(chatty), InProcessExecutor(), Budget(max_steps=40), context_chars=20_000)
    events = list(loop.run("Task: analyse"))
    assert events[-1].reason is StopReason.FINAL_ANSWER
    tools = [m["content"] for m in loop.messages if m["role"] == "tool"]
    assert sum(len(str(m.get("content") or "")) for m in loop.messages) < 22_000
    assert tools[0].endswith((TRIMMED, DROPPED)) and "row 0" in tools[0]  # shortened, still labelled
    assert all(not t.endswith((TRIMMED, DROPPED)) for t in tools[-7:])  # recent outputs stay whole
    codes = [c["function"]["arguments"] for m in loop.messages for c in m.get("tool_calls") or []]
    assert all("1400" in c for c in codes[:30])  # the model's own code is never cut


def test_short_runs_stay_a_pure_append() -> None:
    snapshots: list[list[str]] = []

    def spy(messages: list[Message]) -> Any:
        snapshots.append([str(m.get("content")) for m in messages])
        return code("print(1)")

    run(ScriptedPolicy([spy] * 5 + [final("x")]))
    for before, after in zip(snapshots, snapshots[1:], strict=False):
        assert after[: len(before)] == before


def test_a_saved_conversation_replays_the_same_cells(tmp_path: Any) -> None:
    import json

    from jupyter_analyst.models.scripted import load_replay

    loop, first = run(
        ScriptedPolicy([code("x = 6 * 7"), markdown("## Result"), code("print(x)"), final("x is 42")])
    )
    path = tmp_path / "trajectory.json"
    path.write_text(json.dumps({"messages": loop.messages}))
    _, again = run(load_replay(path))

    def cells(events: list[Any]) -> list[tuple[str, str]]:
        return [(e.cell_type, e.source) for e in events if type(e).__name__ == "CellAdded"]

    assert cells(again) == cells(first) and again[-1].answer == "x is 42"
    (tmp_path / "bad.json").write_text('{"oops": 1}')
    with pytest.raises(Exception, match="must hold a JSON list"):
        load_replay(tmp_path / "bad.json")


def test_a_cell_that_would_rebind_a_user_name_is_refused_not_run(ipython_shell: Any) -> None:
    """In a real IPython shell: the refused cell never runs, the model is told the clash and
    an alternative, and its next cell, using that alternative, runs."""
    from jupyter_analyst.agent import CellAdded
    from jupyter_analyst.agent.names import CLASH_ERROR

    ipython_shell.reset(new_session=False)
    ipython_shell.user_ns.update(summary="USER SUMMARY", summary_2="the user's too")
    executor = RecordingExecutor(ipython_shell)
    ran = executor.ran

    def use_the_alternative(messages: list[Message]) -> Any:
        told = messages[-1]["content"]
        match = re.search(r"`summary` -> `(\w+)`", told)
        assert match, told
        return code(f"{match.group(1)} = 'agent summary'\nprint({match.group(1)})")

    loop = AgentLoop(
        ScriptedPolicy([code("summary = 'agent summary'"), use_the_alternative, final("done")]),
        executor,
        Budget(max_steps=5),
        protected_names={"summary", "summary_2"},
    )
    events = list(loop.run("Task: analyse"))
    refused, fixed = [e for e in events if isinstance(e, CellExecuted)]
    assert refused.result.status == "error" and refused.result.error_name == CLASH_ERROR
    assert "`summary` -> `summary_3`" in refused.observation and "NOT run" in refused.observation
    assert loop.messages[3] == {**loop.messages[3], "role": "tool", "content": refused.observation}
    assert ran == ["summary_3 = 'agent summary'\nprint(summary_3)"]  # the refused cell never ran
    assert ipython_shell.user_ns["summary"] == "USER SUMMARY"
    assert ipython_shell.user_ns["summary_2"] == "the user's too"
    assert ipython_shell.user_ns["summary_3"] == "agent summary"
    assert fixed.result.ok and fixed.fixed_error and fixed.observation == "agent summary"
    added = [e for e in events if isinstance(e, CellAdded) and e.cell_id == refused.cell_id]
    assert added[0].source.startswith("# Not run by the analyst: the cell would overwrite")
    assert "\n# summary = 'agent summary'" in added[0].source  # kept, commented out
    end = events[-1]
    assert end.created == ["summary_3"] and (end.errors, end.errors_fixed) == (1, 1)


def test_the_run_may_rebind_its_own_names_and_reimport_the_users_modules() -> None:
    import pandas

    executor = InProcessExecutor()
    executor.ns.update(pd=pandas, df="USER FRAME")
    policy = ScriptedPolicy(
        [
            code("import pandas as pd\ntable = pd.DataFrame({'a': [1]})\ntmp = 1"),
            code("table = table.assign(b=2)\ndel tmp\nfor i in range(2): pass"),
            code("pd = None"),
            code("from pylab import *"),
            final("done"),
        ]
    )
    loop = AgentLoop(policy, executor, Budget(max_steps=6), protected_names={"pd": ["pandas"], "df": []})
    events = list(loop.run("Task: analyse"))
    statuses = [(e.result.status, e.result.error_name) for e in events if isinstance(e, CellExecuted)]
    assert statuses == [("ok", ""), ("ok", ""), ("error", "NameClashError"), ("error", "NameClashError")]
    assert executor.ns["pd"] is pandas and executor.ns["df"] == "USER FRAME"
    assert events[-1].created == ["table", "i"]  # pd was the user's; tmp was deleted again


def test_without_protected_names_nothing_is_refused() -> None:
    _, events = run(ScriptedPolicy([code("summary = 1"), code("summary = 2"), final("x")]))
    assert all(e.result.ok for e in events if isinstance(e, CellExecuted))
    assert events[-1].created == ["summary"]


# -- the levers: pre-execution checks and the grounding gate ---------------------------------------


def test_a_misspelled_column_is_answered_before_it_runs(ipython_shell: Any) -> None:
    """On the real penguins frame in a real shell: the model gets the nearest column name,
    the cell neither runs nor reaches the notebook, and the corrected cell runs."""
    from palmerpenguins import load_penguins

    from jupyter_analyst.agent import CellAdded, StepStarted
    from jupyter_analyst.agent.precheck import known_frames
    from jupyter_analyst.agent.prompts import render_task
    from jupyter_analyst.kernel.facts import frame_facts_code, parse_facts

    ipython_shell.reset(new_session=False)
    ipython_shell.user_ns.update(df=load_penguins())
    executor = RecordingExecutor(ipython_shell)
    ran = executor.ran
    executor.prepare()

    def use_the_suggestion(messages: list[Message]) -> Any:
        told = messages[-1]["content"]
        match = re.search(r"did you mean '(\w+)'", told)
        assert match and "NOT run" in told, told
        return code(f"print(round(df[{match.group(1)!r}].mean(), 2))")

    try:
        facts = parse_facts(executor.run_silent(frame_facts_code("df")))
        loop = AgentLoop(
            ScriptedPolicy(
                [
                    code('print(df["bil_length_mm"].mean())'),
                    use_the_suggestion,
                    final("The mean bill length is 43.92 mm."),
                ]
            ),
            executor,
            Budget(max_steps=5),
            frames=known_frames(facts),
        )
        events = list(loop.run(render_task(facts, "How long are the bills?")))
    finally:
        executor.release()
    assert ran == ["print(round(df['bill_length_mm'].mean(), 2))"]  # the misspelled cell never ran
    kinds = [type(e).__name__ for e in events]
    assert kinds[:3] == ["StepStarted", "ModelReplied", "StepStarted"]  # no cell for step 1
    assert isinstance(events[2], StepStarted) and events[2].step == 2
    assert "did you mean 'bill_length_mm'" in loop.messages[3]["content"]
    assert loop.messages[3]["role"] == "tool" and loop.messages[3]["tool_call_id"]
    added = [e for e in events if isinstance(e, CellAdded)]
    assert [(e.step, e.role) for e in added] == [(2, "code"), (3, "conclusions")]
    executed = [e for e in events if isinstance(e, CellExecuted)]
    assert [e.observation for e in executed] == ["43.92"]
    end = events[-1]
    assert end.reason is StopReason.FINAL_ANSWER
    assert (end.prechecks, end.errors, end.errors_fixed, end.grounding_returns) == (1, 0, 0, 0)


def test_a_syntax_error_is_answered_before_it_runs() -> None:
    loop, events = run(ScriptedPolicy([code("x = 1\nprint((x)"), code("print(1)"), final("done")]))
    assert loop.executor.count == 1  # type: ignore[attr-defined]
    told = loop.messages[3]["content"]
    assert told.startswith("Error: SyntaxError: '(' was never closed (line 2;")
    assert "    print((x)\n         ^" in told
    assert [e.result.status for e in events if isinstance(e, CellExecuted)] == ["ok"]
    assert (events[-1].prechecks, events[-1].errors) == (1, 0)


def test_the_checks_can_be_switched_off() -> None:
    loop, events = run(ScriptedPolicy([code("print((1)"), code("print(1)"), final("done")]), prechecks=False)
    assert loop.executor.count == 2  # type: ignore[attr-defined]  # both went to the executor
    statuses = [e.result.status for e in events if isinstance(e, CellExecuted)]
    assert statuses == ["error", "ok"]
    assert (events[-1].prechecks, events[-1].errors, events[-1].errors_fixed) == (0, 1, 1)


def test_a_refused_rebinding_counts_as_a_precheck() -> None:
    _, events = run(ScriptedPolicy([code("summary = 1"), final("done")]), protected_names={"summary"})
    assert [e.result.error_name for e in events if isinstance(e, CellExecuted)] == ["NameClashError"]
    assert events[-1].prechecks == 1


UNGROUNDED = "The answer is 42; the churn rate is 17.5% and the total 1,234."


def test_ungrounded_conclusions_go_back_once_then_are_recorded() -> None:
    from jupyter_analyst.agent import CellAdded
    from jupyter_analyst.agent.wire import event_from_dict, event_to_dict

    def told_the_numbers(messages: list[Message]) -> Any:
        told = messages[-1]["content"]
        assert messages[-1]["role"] == "tool" and "17.5%, 1,234" in told and "42" not in told, told
        assert "Nothing was added to the notebook" in told
        return final(UNGROUNDED)  # a model that insists: accepted, and recorded

    _, events = run(ScriptedPolicy([code("print(6 * 7)"), final(UNGROUNDED), told_the_numbers]))
    conclusions = [e for e in events if isinstance(e, CellAdded) and e.role == "conclusions"]
    assert len(conclusions) == 1 and conclusions[0].step == 3
    assert conclusions[0].unverified == ["17.5%", "1,234"]
    end = events[-1]
    assert end.reason is StopReason.FINAL_ANSWER and end.answer == UNGROUNDED and end.steps == 3
    assert (end.grounding_returns, end.unverified) == (1, ["17.5%", "1,234"])
    assert event_from_dict(event_to_dict(end)) == end
    assert event_to_dict(conclusions[0])["unverified"] == ["17.5%", "1,234"]


def test_numbers_printed_after_the_return_are_grounded() -> None:
    script = [code("print(6 * 7)"), final(UNGROUNDED), code("print(0.35 / 2, 617 * 2)"), final(UNGROUNDED)]
    _, events = run(ScriptedPolicy(script))
    end = events[-1]
    assert (end.reason, end.grounding_returns, end.unverified) == (StopReason.FINAL_ANSWER, 1, [])


def test_a_grounded_answer_passes_at_once() -> None:
    """Printed outputs, the data facts and the question's own numbers all count."""
    from jupyter_analyst.agent.prompts import render_task

    facts = {
        "name": "df",
        "rows": 344,
        "cols": 2,
        "columns": [
            {"name": "mass", "dtype": "float64", "kind": "numeric", "missing": 2, "unique": 94},
            {"name": "species", "dtype": "object", "kind": "categorical", "missing": 0, "unique": 3},
        ],
    }
    task = render_task(facts, "Is the mean mass above 4000 g?")
    policy = ScriptedPolicy(
        [
            code("print(8403.5 / 2)"),
            final("Yes: 4201.75 g on average, above 4000 g, over 344 rows (94 values)."),
        ]
    )
    loop = AgentLoop(policy, InProcessExecutor(), Budget(max_steps=5))
    events = list(loop.run(task))
    end = events[-1]
    assert (end.reason, end.steps, end.grounding_returns, end.unverified) == (
        StopReason.FINAL_ANSWER,
        2,
        0,
        [],
    )


def test_the_gate_can_be_switched_off_and_never_spends_the_last_step() -> None:
    _, events = run(ScriptedPolicy([code("print(1)"), final(UNGROUNDED)]), grounding_gate=False)
    end = events[-1]
    assert (end.reason, end.grounding_returns, end.unverified) == (StopReason.FINAL_ANSWER, 0, [])
    _, events = run(ScriptedPolicy([code("print(6 * 7)"), final(UNGROUNDED)]), Budget(max_steps=2))
    end = events[-1]
    assert (end.reason, end.steps, end.grounding_returns) == (StopReason.FINAL_ANSWER, 2, 0)
    assert end.unverified == ["17.5%", "1,234"]  # no step left to go back: accepted, recorded


def test_fit_context_measures_each_message_once_and_trims_the_same() -> None:
    """The loop's meter caches sizes; the trimmed conversation must be the one a full
    measurement gives, step after step (a trim replaces the message it shortens)."""
    from jupyter_analyst.agent.loop import TRIMMED, ContextMeter, fit_context

    plain: list[dict[str, Any]] = [{"role": "user", "content": "task " * 50}]
    metered = [dict(m) for m in plain]
    meter = ContextMeter()
    for step in range(60):
        for conversation in (plain, metered):
            conversation.append({"role": "assistant", "content": f"step {step}"})
            conversation.append({"role": "tool", "content": f"output {step} " + "x" * 900})
        fit_context(plain, 20_000, keep_recent=3)
        fit_context(metered, 20_000, keep_recent=3, meter=meter)
        assert metered == plain, step
    assert any(str(m["content"]).endswith(TRIMMED) for m in plain)  # it did trim


def test_over_budget_the_history_is_cut_in_one_go_so_the_prefix_holds_for_many_steps() -> None:
    """A prefix cache restarts whenever an earlier message changes. Trimming one result per
    step changed the prefix at every step once the budget was reached; cut to 75% in one
    go, it changes once every many steps, and the conversation stays under the budget."""
    from jupyter_analyst.agent.loop import SHORTENED_CODE, ContextMeter, fit_context
    from jupyter_analyst.agent.tools import CODE_TOOL

    def call(step: int) -> dict[str, Any]:
        code = "\n".join([f"# step {step}", f"table_{step} = df.groupby('g').x.mean()", *["print(1)"] * 30])
        arguments = json.dumps({"code": code})
        return {"id": f"c{step}", "type": "function", "function": {"name": CODE_TOOL, "arguments": arguments}}

    messages: list[dict[str, Any]] = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    meter, budget, changes = ContextMeter(), 60_000, 0
    for step in range(100):
        before = list(messages)
        messages.append({"role": "assistant", "content": "", "tool_calls": [call(step)]})
        messages.append({"role": "tool", "tool_call_id": f"c{step}", "content": f"out {step} " + "y" * 900})
        fit_context(messages, budget, meter=meter)
        changes += any(a is not b for a, b in zip(before, messages, strict=False))
        assert sum(map(meter.size, messages)) <= budget
    assert 1 <= changes <= 12, changes
    old_code = json.loads(messages[2]["tool_calls"][0]["function"]["arguments"])["code"]
    assert SHORTENED_CODE in old_code and "table_0 = df.groupby('g').x.mean()" in old_code  # names kept
    recent = json.loads(messages[-2]["tool_calls"][0]["function"]["arguments"])["code"]
    assert SHORTENED_CODE not in recent


def test_last_resort_old_outputs_go_down_to_their_first_line_and_every_exchange_stays() -> None:
    """A long run of short code and mid-size outputs: shortening outputs to 300 characters
    and code to its binding lines is not enough, so old outputs keep only their first line.
    No exchange is dropped: the model (and the baseline's plan) reads what was done there."""
    from jupyter_analyst.agent.loop import DROPPED, TRIMMED, ContextMeter, fit_context
    from jupyter_analyst.agent.tools import CODE_TOOL

    def call(step: int) -> dict[str, Any]:
        arguments = json.dumps({"code": f"summary_{step} = df['m{step}'].describe()\nsummary_{step}"})
        return {"id": f"c{step}", "type": "function", "function": {"name": CODE_TOOL, "arguments": arguments}}

    messages: list[dict[str, Any]] = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    meter, budget = ContextMeter(), 40_000
    for step in range(120):
        messages.append({"role": "assistant", "content": "", "tool_calls": [call(step)]})
        out = f"count 500 for m{step}\n" + "\n".join(f"stat{k} {k}.123456" for k in range(40))
        messages.append({"role": "tool", "tool_call_id": f"c{step}", "content": out})
        fit_context(messages, budget, meter=meter)
        assert sum(map(meter.size, messages)) <= budget
    tools = [str(m["content"]) for m in messages if m.get("role") == "tool"]
    assert len(tools) == 120  # every exchange is still there
    assert tools[0] == "count 500 for m0" + DROPPED
    assert all(not t.endswith((DROPPED, TRIMMED)) for t in tools[-6:])  # recent outputs whole
    codes = [m["tool_calls"][0]["function"]["arguments"] for m in messages if m.get("tool_calls")]
    assert all(f"summary_{n} = " in c for n, c in enumerate(codes))  # names kept


def test_a_tool_response_turn_is_shortened_inside_its_wrapper() -> None:
    """The CoPaw dialect's results are user turns wrapped in <tool_response>: trimming them
    keeps the wrapper whole, so the model still reads a well-formed result."""
    from jupyter_analyst.agent.copaw import tool_response
    from jupyter_analyst.agent.loop import DROPPED, ContextMeter, fit_context

    messages: list[dict[str, Any]] = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    meter = ContextMeter()
    for step in range(60):
        messages.append({"role": "assistant", "content": f"step {step}"})
        out = f"result {step}\n" + "\n".join(f"line {k} " + "x" * 60 for k in range(40))
        messages.append({"role": "user", "content": tool_response([out])})
        fit_context(messages, 40_000, meter=meter)
        assert sum(map(meter.size, messages)) <= 40_000
    results = [str(m["content"]) for m in messages[2:] if m["role"] == "user"]
    assert all(r.startswith("<tool_response>\n") and r.endswith("\n</tool_response>") for r in results)
    assert results[0] == tool_response(["result 0" + DROPPED])
    assert "line 39" in results[-1]  # recent results stay whole


def test_the_budget_is_the_rendered_prompt_counted_by_the_backend() -> None:
    """With the window known, the prompt tokens the backend reports size the history: a
    tokenizer that makes 2 characters a token gets half the characters a 4-character guess
    would allow, and every prompt after the first call stays within 80% of the window."""
    from jupyter_analyst.agent.loop import ContextMeter
    from jupyter_analyst.agent.tools import CODE_TOOL
    from jupyter_analyst.agent.types import ToolCall

    def loop_seen(report: bool) -> list[int]:
        seen: list[int] = []
        meter = ContextMeter()

        def policy(messages: list[Message], tools: Any) -> AssistantTurn:
            chars = sum(map(meter.size, messages))
            seen.append(chars)
            usage = Usage(prompt_tokens=chars // 2 if report else 0, completion_tokens=5)
            code = "print('z' * 1500)\nvalue = 1"
            return AssistantTurn(tool_calls=[ToolCall(CODE_TOOL, {"code": code})], usage=usage)

        policy.name = "two chars a token"  # type: ignore[attr-defined]
        loop = AgentLoop(
            policy, InProcessExecutor(), Budget(max_steps=25), context_tokens=12_000, prechecks=False
        )
        list(loop.run("Task: t"))
        return seen

    calibrated, guessed = loop_seen(True), loop_seen(False)
    assert max(calibrated[1:]) <= 0.8 * 12_000 * 2, max(calibrated)
    assert max(guessed) > 0.8 * 12_000 * 2  # without counts: the default character budget
