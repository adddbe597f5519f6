"""The baseline answers closed-form questions, and the teacher's error->fix episodes.

Driven through the real ``AgentLoop`` in a real IPython shell (``test_baseline.drive``) and
in a kernel process of its own: the values are computed by a cell, printed, and copied into
``@name[value]`` lines the judge's reader scores against the suite's reference."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_baseline import drive

from jupyter_analyst.agent import AgentLoop, CellExecuted, RunFinished
from jupyter_analyst.agent.prompts import render_task
from jupyter_analyst.agent.tools import TOOLS
from jupyter_analyst.eval.answers import extract_answers, score_answer
from jupyter_analyst.eval.suite import builtin_tasks
from jupyter_analyst.models.baseline import BaselineAnalyst
from jupyter_analyst.models.baseline_closed import plan_answer, split_question
from jupyter_analyst.models.teacher import MISTAKE_ID, TeacherPolicy, make_mistake


@pytest.fixture
def sh(ipython_shell: Any) -> Any:
    return ipython_shell


def _task(task_id: str, cache: Path) -> Any:
    return next(t for t in builtin_tasks(cache) if t.id == task_id)


def _correct(task: Any, answer: str | None) -> bool:
    got, expected = extract_answers(answer), task.expected()
    return all(score_answer(a, expected[a.name], got.get(a.name)) for a in task.answers)


@pytest.mark.parametrize(
    "task_id", ["airquality-ozone", "mpg-best-class", "arrests-release", "flights-late-count"]
)
def test_builtin_closed_questions_answered_through_the_loop(
    sh: Any, tmp_path_factory: pytest.TempPathFactory, task_id: str
) -> None:
    task = _task(task_id, tmp_path_factory.getbasetemp() / "cache")
    run = drive(sh, pd.read_csv(task.data_path), task.prompt)
    assert _correct(task, run.answer), (run.answer or "")[:800]
    assert run.errors == []
    lines = [ln for ln in (run.answer or "").splitlines() if ln.startswith("@")]
    assert len(lines) == len(task.answers)
    for line in lines:  # every value was printed by a cell (grounded), not typed in
        assert f"Answer {line[1:].split('[')[0]}: {line.split('[', 1)[1][:-1]}" in run.printed()


def test_pool_questions_answered_through_the_loop(sh: Any, tmp_path: Path) -> None:
    from jupyter_analyst.training.questions import pool_tasks

    tasks = [t for t in pool_tasks(1, 0, tmp_path) if t.kind == "closed"]
    df = pd.read_csv(tasks[0].data_path)
    for task in tasks:
        run = drive(sh, df, task.prompt)
        assert _correct(task, run.answer), (task.question, (run.answer or "")[:600])


def test_question_reading() -> None:
    """Conditions, operations and the answer kind read from the question's words."""
    from test_baseline import _columns

    df = pd.DataFrame({"cut": ["Ideal", "Good"] * 60, "price": range(120), "carat": [0.5, 1.0, 1.5] * 40})
    cols = _columns(df)
    for question, op, filters in [
        ("What is the mean price of diamonds whose cut is 'Ideal'?", "mean", [("cut", "==", "Ideal")]),
        ("How many rows have price greater than 50?", "count", [("price", ">", 50)]),
        ("Count the rows where carat > 0.75. How many are there?", "count", [("carat", ">", 0.75)]),
        ("What is the Pearson correlation between carat and price?", "corr", []),
        ("Which cut has the highest mean price?", "best_mean", []),
        ("Ignoring missing values, which cut is the most common?", "mode", []),
        ("What percentage of the rows have cut equal to 'Good'?", "pct", []),
    ]:
        from jupyter_analyst.eval.answers import AnswerSpec, format_instructions

        kind = "int" if op == "count" else "text" if op in ("best_mean", "mode") else "number"
        spec = AnswerSpec("v", "the value", kind)  # type: ignore[arg-type]
        body, [want] = split_question(f"{question}\n\n{format_instructions([spec])}")
        plan = plan_answer(body, want, cols)
        assert plan is not None and plan.op == op, (question, plan)
        assert [(c.column, c.op, c.value) for c in plan.filters] == filters, (question, plan)


def test_teacher_mistakes_fail_in_the_kernel_and_get_fixed(sh: Any, tmp_path: Path) -> None:
    """Every code step goes wrong first (rate 1): the kernel reports each mistake (none is
    caught before running), the next cell fixes it, and the answers are still right."""
    task = _task("msleep-herbivores", tmp_path)
    df = pd.read_csv(task.data_path)
    teacher = TeacherPolicy(BaselineAnalyst(), rate=1.0, seed=0)
    run = drive(sh, df, task.prompt, policy=teacher, max_turns=80)  # type: ignore[arg-type]
    assert _correct(task, run.answer)
    executed = [e for e in run.events if isinstance(e, CellExecuted)]
    failed = [i for i, e in enumerate(executed) if not e.result.ok]
    assert len(failed) >= 5
    kinds = {executed[i].result.error_name for i in failed}
    assert (
        kinds <= {"NameError", "TypeError", "AttributeError", "KeyError", "ValueError"} and len(kinds) >= 2
    ), kinds
    for i in failed:
        assert executed[i + 1].result.ok and executed[i + 1].fixed_error
    assert run.finished.errors_fixed == len(failed) == run.finished.errors
    assert "checked before running" not in "".join(str(m.get("content")) for m in run.messages)
    fixes = [c for c in run.cells if c.startswith("# Fix: ")]
    assert len(fixes) == len(failed)
    # Stateless: any prefix of the run gets the reply the run got (mistakes and fixes alike).
    for cut in range(2, len(run.messages), 7):
        if run.messages[cut]["role"] == "assistant":
            again = teacher(run.messages[:cut], TOOLS).tool_calls[0].to_openai()
            assert again == run.messages[cut]["tool_calls"][0]


def test_teacher_episode_in_a_kernel_process(tmp_path: Path) -> None:
    """The same episode through a kernel of its own (the CLI's executor)."""
    from jupyter_analyst.kernel import KernelExecutor
    from jupyter_analyst.session import read_frame_facts

    task = _task("salaries-prof", tmp_path)
    with KernelExecutor() as executor:
        executor.run_silent(f"import pandas as pd\ndf = pd.read_csv({str(task.data_path)!r})")
        facts = read_frame_facts(executor, "df")
        loop = AgentLoop(TeacherPolicy(BaselineAnalyst(), rate=0.3, seed=1), executor)
        events = list(loop.run(render_task(facts, task.prompt)))
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.reason.natural
    assert finished.errors >= 1 and finished.errors_fixed == finished.errors
    assert any(e.fixed_error for e in events if isinstance(e, CellExecuted))
    assert _correct(task, finished.answer)
    ids = [tc["id"] for m in loop.messages if m["role"] == "assistant" for tc in m.get("tool_calls") or []]
    assert any(i.startswith(MISTAKE_ID) for i in ids)


def test_make_mistake_kinds() -> None:
    from test_baseline import _columns

    df = pd.DataFrame({"Species": ["a", "b"] * 10, "when": ["2020-01-02"] * 20, "mass": range(20)})
    cols = _columns(df)
    code = "target = 'mass'\nvalues = df[target].dropna()\nprint(np.round(values.mean(), 2))"
    seen = {make_mistake(code, cols, "df", random.Random(i)).kind for i in range(30)}  # type: ignore[union-attr]
    assert seen == {"missing_import", "text_mean", "wrong_case"}
    assert make_mistake("print(1)", [], "df", random.Random(0)) is None
