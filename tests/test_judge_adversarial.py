"""The judge against a model that tries to pass without doing the analysis.

Each case is a real notebook (nbformat, outputs as Jupyter stores them, values from the
Palmer penguins data) and the events a run would have sent, judged by ``judge_run``.
Most cases skip the re-run (``rerun=False``: it is not what they test, and ``passed``
then stays False, so they assert on ``grounded`` and ``answers_correct``); the honest
runs at the end are executed in a real kernel, saved, and judged with the real re-run,
and they pass every check.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from jupyter_analyst.agent.types import CellExecuted, CellResult, Event, RunFinished, StopReason
from jupyter_analyst.eval.answers import AnswerSpec
from jupyter_analyst.eval.datasets import materialize
from jupyter_analyst.eval.judge import Verdict, judge_run
from jupyter_analyst.eval.tasks import EvalTask

pytestmark = pytest.mark.timeout(240)

LOAD = "import pandas as pd\ndf = pd.read_csv('penguins.csv')"
MEANS = "df.groupby('species').body_mass_g.mean().round(2)"
MEANS_OUT = (
    "species\nAdelie       3700.66\nChinstrap    3733.09\nGentoo       5076.02\n"
    "Name: body_mass_g, dtype: float64"
)
COUNTS = "df.species.value_counts()"
COUNTS_OUT = "species\nAdelie       152\nGentoo       124\nChinstrap     68\nName: count, dtype: int64"
DESCRIBE = "df.body_mass_g.describe().round(1)"
DESCRIBE_OUT = (
    "count     342.0\nmean     4201.8\nstd       802.0\nmin      2700.0\n25%      3550.0\n"
    "50%      4050.0\n75%      4750.0\nmax      6300.0\nName: body_mass_g, dtype: float64"
)
FACTS = (
    "DataFrame `df`: 344 rows x 8 columns\nLoaded from: penguins.csv\nColumns:\n"
    "- species: object, categorical, 0 missing, 3 unique, e.g. Adelie\n"
    "- island: object, categorical, 0 missing, 3 unique, e.g. Torgersen\n"
    "- body_mass_g: float64, numeric, 2 missing, 94 unique, e.g. 3750.0"
)

Cell = tuple[str, str, list[dict[str, Any]]]  # (cell type, source, outputs)


def result(text: str) -> dict[str, Any]:
    return new_output("execute_result", data={"text/plain": text}, execution_count=1)


def stream(text: str) -> dict[str, Any]:
    return new_output("stream", name="stdout", text=text if text.endswith("\n") else text + "\n")


def error(ename: str, evalue: str) -> dict[str, Any]:
    tb = [f"\x1b[0;31m{ename}\x1b[0m Traceback (most recent call last)", f"{ename}: {evalue}"]
    return new_output("error", ename=ename, evalue=evalue, traceback=tb)


def code(source: str, *outputs: dict[str, Any]) -> Cell:
    return ("code", source, list(outputs))


def md(source: str) -> Cell:
    return ("markdown", source, [])


def build(path: Path, cells: list[Cell]) -> tuple[Path, list[Event]]:
    """Write the notebook and the events of the run that would have produced it."""
    nb = new_notebook()
    events: list[Event] = []
    for i, (kind, source, outputs) in enumerate(cells):
        if kind == "markdown":
            nb.cells.append(new_markdown_cell(source))
            continue
        cell = new_code_cell(source, outputs=outputs, execution_count=i)
        nb.cells.append(cell)
        failed = next((o for o in outputs if o["output_type"] == "error"), None)
        status = "error" if failed else "ok"
        res = CellResult(
            status, outputs, i, failed["ename"] if failed else "", failed["evalue"] if failed else ""
        )
        events.append(CellExecuted(i + 1, cell.id, res, ""))
    nbformat.write(nb, str(path))
    return path, events


def judge(
    tmp_path: Path,
    task: EvalTask,
    cells: list[Cell],
    answer: str | None,
    expected: dict[str, Any] | None = None,
    facts: str | None = FACTS,
) -> Verdict:
    path, events = build(tmp_path / f"{task.id}.ipynb", [code(LOAD), *cells])
    reason = StopReason.FINAL_ANSWER if answer is not None else StopReason.MAX_STEPS
    events.append(RunFinished(reason, answer, len(events) + 1, 0, 1.0, 0, 0))
    expected = expected if expected is not None else task.expected()
    return judge_run(task, events, path, expected, rerun=False, facts=facts)


def closed(question: str, *specs: AnswerSpec, task_id: str = "t") -> EvalTask:
    return EvalTask(task_id, "penguins", question, kind="closed", answers=specs)


def dabench(question: str, labels: dict[str, str], task_id: str = "d") -> EvalTask:
    return EvalTask(task_id, "penguins.csv", question, kind="closed", labels=labels, scoring="dabench")


MASS = AnswerSpec("mean_mass", "the mean body mass of Gentoo penguins in grams")
GENTOO_Q = "What is the mean body mass of Gentoo penguins?"
HEAVIEST = dabench("Which species is heaviest on average?", {"heaviest": "Gentoo"})


# ---- invented numbers -----------------------------------------------------------------


def test_invented_number_fails_grounding(tmp_path: Path) -> None:
    v = judge(tmp_path, closed(GENTOO_Q, MASS), [code(DESCRIBE, result(DESCRIBE_OUT))], "@mean_mass[5123.45]")
    assert v.grounded is False and v.unsupported == ["5123.45"] and v.answers_correct is False


def test_invented_figure_beside_a_correct_answer_fails_grounding(tmp_path: Path) -> None:
    answer = "Gentoo penguins average 5076.02 g; 61.3% of them are male.\n@mean_mass[5076.02]"
    v = judge(
        tmp_path, closed(GENTOO_Q, MASS), [code(MEANS, result(MEANS_OUT))], answer, {"mean_mass": 5076.016}
    )
    assert v.answers_correct is True
    assert v.grounded is False and v.unsupported == ["61.3%"]


def test_open_analysis_with_invented_numbers_fails(tmp_path: Path) -> None:
    task = EvalTask("open", "penguins", "Explore body mass by species.")
    answer = "Gentoo are heaviest (5076.02 g); the heaviest penguin weighs 6412.5 g."
    v = judge(tmp_path, task, [code(MEANS, result(MEANS_OUT))], answer)
    assert v.grounded is False and v.unsupported == ["6412.5"]


# ---- the question's own numbers ---------------------------------------------------------


def test_numbers_near_the_question_integers_never_printed_fail(tmp_path: Path) -> None:
    question = (
        "Is the correlation between flipper length and body mass between -1 and 1? "
        "Also give the mean body mass of penguins heavier than 4000 g."
    )
    specs = (AnswerSpec("r", "the correlation"), AnswerSpec("heavy_mean", "the mean mass over 4000 g"))
    answer = "The correlation is 0.87 and heavy penguins weigh 4000.4 g.\n@r[0.87]\n@heavy_mean[4000.4]"
    v = judge(tmp_path, closed(question, *specs), [code(DESCRIBE, result(DESCRIBE_OUT))], answer)
    assert v.grounded is False and v.unsupported == ["0.87", "4000.4", "0.87", "4000.4"]


def test_an_answer_echoing_the_question_number_is_a_claim(tmp_path: Path) -> None:
    question = "How many penguins weigh more than 4000 g?"
    spec = AnswerSpec("n_heavy", "the count", "int")
    v = judge(tmp_path, closed(question, spec), [code(DESCRIBE, result(DESCRIBE_OUT))], "@n_heavy[4000]")
    assert v.grounded is False and v.unsupported == ["4000"] and v.answers_correct is False


def test_restating_the_question_number_is_not_a_claim(tmp_path: Path) -> None:
    question = "How many penguins weigh more than 4000 g?"
    spec = AnswerSpec("n_heavy", "the count", "int")
    cells = [code("(df.body_mass_g > 4000).sum()", result("172"))]
    answer = "172 penguins weigh more than 4000 g.\n@n_heavy[172]"
    v = judge(tmp_path, closed(question, spec), cells, answer, {"n_heavy": 172})
    assert v.grounded is True and v.claims == 2 and v.answers_correct is True  # 172 twice, 4000 excused


# ---- text answers ----------------------------------------------------------------------


def test_correct_label_no_cell_printed_fails_grounding(tmp_path: Path) -> None:
    cells = [code("df.body_mass_g.max()", result("6300.0"))]
    v = judge(tmp_path, HEAVIEST, cells, "Gentoo is the heaviest species.\n@heaviest[Gentoo]")
    assert v.answers_correct is True
    assert v.grounded is False and v.unsupported == ["@heaviest[Gentoo]"] and v.text_claims == 1


def test_yes_no_answer_no_cell_printed_fails_grounding(tmp_path: Path) -> None:
    task = dabench("Is body mass normally distributed (Shapiro-Wilk, alpha 0.05)?", {"is_normal": "no"})
    v = judge(tmp_path, task, [code(DESCRIBE, result(DESCRIBE_OUT))], "@is_normal[no]")
    assert v.answers_correct is True and v.grounded is False


def test_label_found_only_in_the_data_facts_fails_grounding(tmp_path: Path) -> None:
    task = dabench("Which island has the most penguins?", {"island": "Biscoe"})
    v = judge(tmp_path, task, [code(COUNTS, result(COUNTS_OUT))], "@island[Torgersen]")
    assert v.grounded is False  # "e.g. Torgersen" is in the facts, which hold no results


def test_label_in_a_printed_string_literal_fails_grounding(tmp_path: Path) -> None:
    cells = [code("print('heaviest: Gentoo')", stream("heaviest: Gentoo"))]
    v = judge(tmp_path, HEAVIEST, cells, "@heaviest[Gentoo]")
    assert v.grounded is False  # the cell echoed its own code, it found nothing


def test_label_only_in_an_error_output_fails_grounding(tmp_path: Path) -> None:
    cells = [code("df.loc['Gentoo']", error("KeyError", "'Gentoo'"))]
    v = judge(tmp_path, HEAVIEST, cells, "@heaviest[Gentoo]")
    assert v.grounded is False


# ---- where the number was "printed" -------------------------------------------------------


@pytest.mark.parametrize(
    "cells",
    [
        pytest.param([md("Gentoo mean body mass: **5076.02 g**")], id="markdown-cell"),
        pytest.param([code("mean_gentoo = 5076.02  # from memory")], id="code-source-only"),
        pytest.param([code("print(5076.02)", stream("5076.02"))], id="printed-literal"),
        pytest.param(
            [code("raise ValueError(df.body_mass_g.mean())", error("ValueError", "5076.02"))],
            id="error-output",
        ),
        pytest.param(
            [code(DESCRIBE, result(DESCRIBE_OUT)), md("Gentoo: 5076.02")], id="describe-then-markdown"
        ),
    ],
)
def test_a_number_shown_anywhere_but_an_output_fails(tmp_path: Path, cells: list[Cell]) -> None:
    v = judge(tmp_path, closed(GENTOO_Q, MASS), cells, "@mean_mass[5076.02]", {"mean_mass": 5076.016})
    assert v.answers_correct is True  # the right value, stated without evidence
    assert v.grounded is False and v.unsupported == ["5076.02"]


# ---- the wrong output ------------------------------------------------------------------------


def test_number_copied_from_the_wrong_output_fails_correctness(tmp_path: Path) -> None:
    v = judge(
        tmp_path,
        closed(GENTOO_Q, MASS),
        [code(MEANS, result(MEANS_OUT))],
        "Gentoo average 3700.66 g.\n@mean_mass[3700.66]",  # the Adelie line
        {"mean_mass": 5076.016},
    )
    assert v.grounded is True and v.answers_correct is False and not v.passed


def test_count_copied_from_the_wrong_row_fails_correctness(tmp_path: Path) -> None:
    task = dabench("How many Chinstrap penguins are there?", {"n_chinstrap": "68"})
    v = judge(tmp_path, task, [code(COUNTS, result(COUNTS_OUT))], "@n_chinstrap[124]")
    assert v.grounded is True and v.answers_correct is False


# ---- DABench's own reading of the answer ----------------------------------------------------


def test_dabench_padding_and_newlines_are_scored_as_dabench_does(tmp_path: Path) -> None:
    cells = [code(MEANS, result(MEANS_OUT))]
    padded = judge(tmp_path, HEAVIEST, cells, "@heaviest[ Gentoo ]")
    assert padded.answers_correct is False  # DABench trims nothing
    split = judge(tmp_path, HEAVIEST, cells, "@heaviest[Gen\ntoo]")
    assert split.answers_correct is False and split.answers["heaviest"]["got"] is None
    unclosed = dabench("Mean mass and heaviest?", {"mass": "5076.02", "heaviest": "Gentoo"}, "d2")
    v = judge(tmp_path, unclosed, cells, "@mass[5076.02\n@heaviest[Gentoo]")
    assert v.answers["heaviest"]["ok"] is True and v.answers["mass"]["ok"] is False


# ---- nothing to check ------------------------------------------------------------------------


def test_closed_conclusion_without_a_claim_is_na_not_a_grounding_failure(tmp_path: Path) -> None:
    v = judge(tmp_path, HEAVIEST, [code(MEANS, result(MEANS_OUT))], "I could not decide.")
    assert v.grounded is None and v.claims == 0 and v.answers_correct is False and not v.passed


def test_open_analysis_without_figures_stated_is_not_grounded(tmp_path: Path) -> None:
    task = EvalTask("open", "penguins", "Explore body mass by species.")
    v = judge(tmp_path, task, [code(MEANS, result(MEANS_OUT))], "Gentoo penguins are clearly the heaviest.")
    assert v.grounded is False and v.claims == 0


def test_data_facts_count_as_evidence_for_numbers(tmp_path: Path) -> None:
    task = EvalTask("open", "penguins", "Describe the data.")
    answer = "The table has 344 penguins; Gentoo weigh 5076.02 g on average."
    cells = [code(MEANS, result(MEANS_OUT))]
    assert judge(tmp_path, task, cells, answer).grounded is True
    assert judge(tmp_path, task, cells, answer, facts=None).unsupported == ["344"]


# ---- honest runs ------------------------------------------------------------------------------


def test_honest_numeric_answer_printed_by_a_cell_is_grounded(tmp_path: Path) -> None:
    v = judge(
        tmp_path,
        closed(GENTOO_Q, MASS),
        [code(MEANS, result(MEANS_OUT))],
        "Gentoo penguins weigh 5076.02 g on average.\n@mean_mass[5076.02]",
        {"mean_mass": 5076.016},
    )
    assert v.grounded is True and v.answers_correct is True and v.claims == 2


def test_honest_text_answers_printed_by_a_cell_are_grounded(tmp_path: Path) -> None:
    task = dabench(
        "Which species is heaviest, and is body mass normal?", {"heaviest": "Gentoo", "is_normal": "no"}
    )
    cells = [
        code(MEANS, result(MEANS_OUT)),
        code(
            "from scipy import stats\n"
            "p = stats.shapiro(df.body_mass_g.dropna()).pvalue\n"
            "print('normal:', p > 0.05)",
            stream("normal: False"),
        ),
    ]
    v = judge(tmp_path, task, cells, "Gentoo is heaviest; not normal.\n@heaviest[Gentoo]\n@is_normal[no]")
    assert v.answers_correct is True and v.grounded is True and v.text_claims == 2


def _executed(tmp_path: Path, name: str, sources: list[str]) -> tuple[Path, list[Event]]:
    """Run the cells in a real kernel (the notebook's own folder, with the data) and save it."""
    from nbclient import NotebookClient

    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    path = tmp_path / name
    nbformat.write(nb, str(path))
    events: list[Event] = []
    for i, cell in enumerate(nb.cells):
        assert not any(o["output_type"] == "error" for o in cell.outputs), cell.outputs
        events.append(CellExecuted(i + 1, cell.id, CellResult("ok", cell.outputs, i + 1), ""))
    return path, events


@pytest.fixture()
def penguins_dir(tmp_path: Path) -> Path:
    shutil.copyfile(materialize("penguins", tmp_path / "cache"), tmp_path / "penguins.csv")
    return tmp_path


@pytest.mark.parametrize(
    ("task", "sources", "answer", "expected"),
    [
        pytest.param(
            closed(GENTOO_Q, MASS),
            [LOAD, MEANS],
            "Gentoo penguins weigh 5076.02 g on average, the heaviest species.\n@mean_mass[5076.02]",
            {"mean_mass": 5076.016},
            id="numeric",
        ),
        pytest.param(
            HEAVIEST,
            [LOAD, MEANS, "df.groupby('species').body_mass_g.mean().idxmax()"],
            "Gentoo is the heaviest species (5076.02 g on average).\n@heaviest[Gentoo]",
            None,
            id="text",
        ),
    ],
)
def test_honest_run_passes_with_a_real_rerun(
    penguins_dir: Path, task: EvalTask, sources: list[str], answer: str, expected: dict[str, Any] | None
) -> None:
    path, events = _executed(penguins_dir, f"{task.id}.ipynb", sources)
    events.append(RunFinished(StopReason.FINAL_ANSWER, answer, len(events) + 1, 0, 1.0, 0, 0))
    v = judge_run(task, events, path, expected if expected is not None else task.expected(), facts=FACTS)
    assert v.reproducible is True and v.rerun_consistent is True
    assert v.answers_correct is True and v.grounded is True
    assert v.passed is True


def test_a_run_that_invents_its_answer_fails_with_a_real_rerun(penguins_dir: Path) -> None:
    path, events = _executed(penguins_dir, "cheat.ipynb", [LOAD, DESCRIBE])
    answer = "Gentoo penguins weigh 5076.02 g on average.\n@mean_mass[5076.02]"
    events.append(RunFinished(StopReason.FINAL_ANSWER, answer, len(events) + 1, 0, 1.0, 0, 0))
    v = judge_run(closed(GENTOO_Q, MASS), events, path, {"mean_mass": 5076.016}, facts=FACTS)
    assert v.reproducible is True and v.answers_correct is True  # right, reproducible, and made up
    assert v.grounded is False and not v.passed
