"""The judge catches each failure on purpose, on real data (Palmer penguins) and real kernels.

Six scripted runs go through the real harness (two workers): a correct run that passes
every check, a wrong answer, a notebook that only works once (fails when re-run), a
conclusion quoting a number no output shows, a run that stops without ``final_answer``
(after an error it fixed), and an open task without a figure. The same folder then shows
resume (nothing re-runs), the report files and a comparison.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from jupyter_analyst.agent import Budget
from jupyter_analyst.eval.datasets import materialize
from jupyter_analyst.eval.harness import EvalConfig, load_records, run_suite
from jupyter_analyst.eval.report import compare, write_report
from jupyter_analyst.eval.suite import BUILTIN
from jupyter_analyst.eval.tasks import EvalTask
from jupyter_analyst.models.scripted import ScriptedPolicy, code, final

pytestmark = pytest.mark.timeout(240)

COMPUTE = (
    "g = df.loc[df.species == 'Gentoo', 'body_mass_g']\n"
    "print('Gentoo mean', round(g.mean(), 2), 'sd', round(g.std(), 2))\n"
    "print('all species mean', round(df.body_mass_g.mean(), 2))"
)
PLOT = (
    "import matplotlib.pyplot as plt\n"
    "ax = g.plot.hist(bins=20, title='Gentoo body mass')\n"
    "ax.set_xlabel('body_mass_g')\n"
    "plt.show()"
)
ONLY_ONCE = (
    "import os\n"
    "if os.path.exists('ran_once.flag'):\n"
    "    raise RuntimeError('this cell only works in the session that created the flag')\n"
    "open('ran_once.flag', 'w').close()\n"
)
GOOD = "Gentoo penguins weigh 5076.02 g on average (sd 504.12 g).\n\n@mean_mass[5076.02]\n@sd_mass[504.12]"

SCRIPTS: dict[str, list[Any]] = {
    "correct": [code(COMPUTE), code(PLOT), final(GOOD)],
    # 4201.75 was printed (the all-species mean), so the run is grounded, but the answer is wrong.
    "wrong-answer": [
        code(COMPUTE),
        code(PLOT),
        final(
            "Gentoo penguins weigh 4201.75 g on average (sd 504.12 g).\n\n"
            "@mean_mass[4201.75]\n@sd_mass[504.12]"
        ),
    ],
    "not-reproducible": [code(ONLY_ONCE + COMPUTE), code(PLOT), final(GOOD)],
    # the loop's grounding gate sends the first final_answer back once; the second is accepted
    "ungrounded": [code(COMPUTE), code(PLOT)]
    + [final(GOOD + "\n\nThe heaviest Gentoo weighs 6543.21 g.")] * 2,
    # a runtime error (a pre-execution check cannot see it), then a fix
    "no-final-answer": [code("int(df.species.iloc[0])"), code(COMPUTE)],
    "open-no-figure": [code(COMPUTE), final("Gentoo penguins are the heaviest: 5076.02 g on average.")],
}


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("eval-judge")
    data = materialize("penguins", root / "cache")
    base = next(t for t in BUILTIN if t.id == "penguins-gentoo-mass")
    tasks: list[EvalTask] = []
    for task_id in SCRIPTS:
        task = replace(base, id=task_id, data_path=data)
        if task_id == "open-no-figure":
            task = replace(
                task, kind="open", answers=(), reference=None, question="Which species is heaviest?"
            )
        tasks.append(task)
    config = EvalConfig(
        output=root / "out",
        budget=Budget(max_steps=4),
        cell_timeout=30,
        workers=2,
        data_cache=root / "cache",
        policy_label="scripted",
    )
    first = run_suite(
        tasks, lambda t: ScriptedPolicy(SCRIPTS[t.id], name=f"script {t.id}"), config, progress=None
    )
    second = run_suite(
        tasks, lambda t: pytest.fail("resume must not run finished tasks"), config, progress=None
    )
    records = {r["task_id"]: r for r in first["records"]}
    return {
        "root": root,
        "config": config,
        "tasks": tasks,
        "first": first,
        "second": second,
        "records": records,
    }


def verdict(evaluation: dict[str, Any], task_id: str) -> dict[str, Any]:
    record = evaluation["records"][task_id]
    assert "harness_error" not in record, record.get("harness_error")
    return record["verdict"]


def test_correct_run_passes_every_check(evaluation: dict[str, Any]) -> None:
    v = verdict(evaluation, "correct")
    assert v["natural"] and v["stop_reason"] == "final_answer"
    assert v["reproducible"] and v["rerun_consistent"] and v["rerun_errors"] == []
    assert v["has_figures"] and v["figures"] == 1
    assert v["answers_correct"] and all(a["ok"] for a in v["answers"].values())
    assert v["grounded"] and v["claims"] == v["claims_supported"] >= 2
    assert v["passed"]
    assert (v["steps"], v["cells"], v["cells_ok"], v["errors"]) == (3, 2, 2, 0)


def test_wrong_answer_fails_only_the_answer_check(evaluation: dict[str, Any]) -> None:
    v = verdict(evaluation, "wrong-answer")
    assert v["answers"]["mean_mass"] == {
        "expected": pytest.approx(5076.016, abs=1e-3),
        "got": "4201.75",
        "ok": False,
        "tolerance": 0.01,
    }
    assert v["answers"]["sd_mass"]["ok"]
    assert v["answers_correct"] is False and not v["passed"]
    assert v["natural"] and v["reproducible"] and v["grounded"]


def test_notebook_that_fails_on_rerun_is_not_reproducible(evaluation: dict[str, Any]) -> None:
    v = verdict(evaluation, "not-reproducible")
    assert v["natural"] and v["answers_correct"] and v["errors"] == 0  # fine while it ran
    assert v["reproducible"] is False and v["rerun_consistent"] is False
    assert v["rerun_errors"][0]["ename"] == "RuntimeError"
    assert not v["passed"]


def test_number_in_no_output_is_ungrounded(evaluation: dict[str, Any]) -> None:
    v = verdict(evaluation, "ungrounded")
    assert v["answers_correct"] and v["reproducible"]
    assert v["grounded"] is False and v["unsupported"] == ["6543.21"]
    assert v["grounding_returns"] <= 1 and not v["passed"]


def test_run_without_final_answer_is_not_natural(evaluation: dict[str, Any]) -> None:
    v = verdict(evaluation, "no-final-answer")
    assert v["natural"] is False and v["stop_reason"] == "max_steps" and v["steps"] == 4
    assert (v["errors"], v["errors_fixed"]) == (1, 1)
    # a failed-then-fixed cell left in the notebook fails the strict re-run; tidy removes it
    assert v["rerun_consistent"] is True and v["reproducible"] is (v["cells_removed"] == 1)
    assert v["grounded"] is False and v["answers_correct"] is False and not v["passed"]


def test_open_task_needs_a_figure(evaluation: dict[str, Any]) -> None:
    v = verdict(evaluation, "open-no-figure")
    assert v["answers_correct"] is None and v["natural"] and v["grounded"] and v["reproducible"]
    assert v["has_figures"] is False and not v["passed"]


def test_records_hold_every_event_and_the_notebook(evaluation: dict[str, Any]) -> None:
    out = evaluation["config"].output
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(SCRIPTS)
    record = json.loads(lines[0])
    types = [e["type"] for e in record["events"]]
    assert types[0] == "step_started" and types[-1] == "run_finished"
    assert {"model_replied", "cell_added", "cell_executed"} <= set(types)
    assert (out / record["notebook"]).exists() and (out / record["data"]).exists()
    assert record["prompt"].count("@") == 2 and record["policy"] == "scripted"
    # the data facts the model was given are kept, so the record can be judged again alike
    assert record["data_facts"].startswith("DataFrame `df`: 344 rows x 8 columns")
    counters = {k: record["verdict"][k] for k in ("prechecks", "grounding_returns", "malformed_calls")}
    assert counters == {"prechecks": 0, "grounding_returns": 0, "malformed_calls": 0}
    assert record["verdict"]["cells_removed"] == 0 and record["verdict"]["answered"] is True


def test_resume_skips_finished_tasks(evaluation: dict[str, Any]) -> None:
    assert evaluation["first"]["ran"] == len(SCRIPTS)
    assert (evaluation["second"]["ran"], evaluation["second"]["skipped"]) == (0, len(SCRIPTS))
    assert len(evaluation["second"]["records"]) == len(SCRIPTS)


def test_harness_error_is_recorded_and_retried(evaluation: dict[str, Any], tmp_path: Path) -> None:
    broken = replace(evaluation["tasks"][0], id="broken", data_path=tmp_path / "missing.csv")
    config = replace(evaluation["config"], output=tmp_path / "out", workers=1)
    first = run_suite([broken], lambda t: ScriptedPolicy([]), config, progress=None)
    assert "harness_error" in first["records"][0]
    again = run_suite([broken], lambda t: ScriptedPolicy([]), config, progress=None)
    assert again["ran"] == 1  # not counted as finished


def test_report_and_compare_files(evaluation: dict[str, Any], tmp_path: Path) -> None:
    out = evaluation["config"].output
    summary = write_report(out)
    assert (out / "report.md").exists() and (out / "plots" / "rates.png").stat().st_size > 1000
    assert (out / "plots" / "steps.png").exists()
    assert summary["rates"]["passed"] == {"n": 1, "of": 6, "rate": pytest.approx(1 / 6, abs=1e-4)}
    assert summary["rates"]["answers_correct"]["of"] == 5  # closed tasks only
    saved = json.loads((out / "report.json").read_text())
    assert saved["tasks"] == 6 and saved["wall_seconds"] > 0
    md = (out / "report.md").read_text()
    assert "| correct | closed |" in md and "Wall time" in md
    assert "| prechecks | gate returns | malformed | removed |" in md
    verdicts = [r["verdict"] for r in load_records(out).values()]
    for key in ("prechecks", "grounding_returns", "malformed_calls", "cells_removed"):
        total = sum(v[key] for v in verdicts)
        runs = sum(1 for v in verdicts if v[key])
        assert summary["counters"][key]["total"] == total
        assert summary["counters"][key]["runs"] == {
            "n": runs,
            "of": 6,
            "rate": pytest.approx(runs / 6, abs=1e-4),
        }
    assert summary["counters"]["malformed_calls"]["total"] == 0  # scripted calls are well formed
    assert "pre-execution catches " in md and "cells removed by tidy " in md
    result = compare(out, out, tmp_path / "cmp")
    assert result["common_tasks"] == 6 and result["changed"] == []
    assert (tmp_path / "cmp" / "compare.md").exists() and (tmp_path / "cmp" / "compare.png").exists()
    assert set(load_records(out)) == set(SCRIPTS)
