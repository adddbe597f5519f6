"""DABench's format on a small synthetic folder, and ``jupyter analyst eval`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_analyst.cli import main
from jupyter_analyst.errors import InputError
from jupyter_analyst.eval.dabench import dabench_scores, load_dabench, read_dabench

pytestmark = pytest.mark.timeout(180)


def write_dabench(root: Path) -> Path:
    """Two questions with labels and tables, one without a label, one without a table."""
    tables = root / "da-dev-tables"
    tables.mkdir(parents=True)
    (tables / "sales.csv").write_text("region,units,price\nnorth,10,2.5\nsouth,30,3.5\nnorth,20,4.0\n")
    questions = [
        {
            "id": 0,
            "question": "Calculate the mean of units.",
            "concepts": ["Summary Statistics"],
            "constraints": "Use all rows.",
            "format": "@mean_units[mean] where mean is rounded to two decimals.",
            "file_name": "sales.csv",
            "level": "easy",
        },
        {
            "id": 3,
            "question": "Which region sold the most units, and how many?",
            "concepts": ["Aggregation"],
            "constraints": "Sum units per region.",
            "format": "@top_region[name] @top_units[count]",
            "file_name": "sales.csv",
            "level": "medium",
        },
        {
            "id": 7,
            "question": "Unlabelled question.",
            "concepts": [],
            "constraints": "",
            "format": "@x[x]",
            "file_name": "sales.csv",
            "level": "hard",
        },
        {
            "id": 9,
            "question": "Question on a missing table.",
            "concepts": [],
            "constraints": "",
            "format": "@y[y]",
            "file_name": "absent.csv",
            "level": "easy",
        },
    ]
    labels = [
        {"id": 0, "common_answers": [["mean_units", "20.00"]]},
        {"id": 3, "common_answers": [["top_region", "north"], ["top_units", "30"]]},
        {"id": 9, "common_answers": [["y", "1"]]},
    ]
    (root / "da-dev-questions.jsonl").write_text("\n".join(json.dumps(q) for q in questions) + "\n")
    (root / "da-dev-labels.jsonl").write_text("\n".join(json.dumps(lab) for lab in labels) + "\n")
    return root


def test_reader_builds_closed_tasks_with_labels(tmp_path: Path) -> None:
    tasks = load_dabench(write_dabench(tmp_path / "data").parent)  # finds the data/ subfolder too
    assert [t.id for t in tasks] == ["dabench-0", "dabench-3"]
    t = tasks[1]
    assert t.kind == "closed" and t.scoring == "dabench" and t.level == "medium"
    assert t.labels == {"top_region": "north", "top_units": "30"} and t.expected() == t.labels
    assert "Sum units per region." in t.prompt and "@top_region[name]" in t.prompt
    assert t.data_path == tmp_path / "data" / "da-dev-tables" / "sales.csv"
    with pytest.raises(InputError):
        load_dabench(tmp_path / "nowhere")


def test_reader_names_questions_skipped_for_a_missing_table(tmp_path: Path) -> None:
    found = read_dabench(write_dabench(tmp_path / "data"))
    assert [t.id for t in found.tasks] == ["dabench-0", "dabench-3"]
    assert found.missing_table == [{"id": "dabench-9", "file": "absent.csv", "why": "table missing"}]
    assert found.skipped_line() == (
        "1 DABench question(s) skipped, their table is missing: dabench-9 (absent.csv)"
    )


def test_dabench_accuracies_as_dabench_counts_and_with_unanswered_as_failures() -> None:
    def rec(*oks: bool, answered: bool = True) -> dict:
        answers = {f"a{i}": {"ok": ok} for i, ok in enumerate(oks)}
        return {"verdict": {"answers": answers, "answered": answered, "natural": answered}}

    answered = [rec(True), rec(True, False), rec(False, False)]
    expected = {"accuracy_by_question": 0.3333, "accuracy_proportional": 0.5, "accuracy_by_sub_question": 0.4}
    scores = dabench_scores(answered)
    assert {k: scores[k] for k in expected} == expected
    assert (scores["answered"], scores["unanswered"]) == (3, 0)
    assert scores["all_questions"] == expected

    # a run without a final answer and a harness error: DABench drops them, we also count them failed
    crashed = {"harness_error": "boom", "expected": {"x": "1", "y": "2"}}
    scores = dabench_scores([*answered, rec(False, answered=False), crashed])
    assert {k: scores[k] for k in expected} == expected
    assert (scores["answered"], scores["unanswered"]) == (3, 2)
    assert scores["all_questions"] == {
        "accuracy_by_question": 0.2,  # 1 of 5
        "accuracy_proportional": 0.3,  # 1.5 of 5
        "accuracy_by_sub_question": 0.25,  # 2 of 8 (the crash had two labels)
    }


def test_eval_cli_runs_dabench_scores_and_compares(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dabench(tmp_path / "dab")
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            [
                {"code": "print(df.units.mean())\nprint(df.groupby('region').units.sum())"},
                {
                    "final_answer": "Mean units 20.0; north sold 30.\n"
                    "@mean_units[20.00] @top_region[north] @top_units[30]"
                },
            ]
        )
    )
    out = tmp_path / "res"
    args = [
        "eval",
        "--suite",
        "dabench",
        "--data-dir",
        str(data),
        "--replay",
        str(script),
        "-o",
        str(out),
        "--workers",
        "2",
        "--quiet",
        "--cell-timeout",
        "30",
        "--max-steps",
        "4",
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "1 DABench question(s) skipped, their table is missing: dabench-9 (absent.csv)" in err
    report = json.loads((out / "report.json").read_text())
    assert report["suite"] == "dabench" and report["tasks"] == 2
    assert report["dabench"]["accuracy_by_question"] == 1.0  # "20.00" and "30" match exactly
    assert report["dabench"]["all_questions"]["accuracy_by_question"] == 1.0
    assert report["rates"]["passed"]["n"] == 2
    assert report["skipped"] == [{"id": "dabench-9", "file": "absent.csv", "why": "table missing"}]
    assert json.loads((out / "run.json").read_text())["skipped"] == report["skipped"]
    md = (out / "report.md").read_text()
    assert "table missing: 1: dabench-9 (absent.csv)" in md and "pre-execution catches" in md

    assert main([a for a in args if a != "--quiet"]) == 0  # resumed: no task runs again
    err = capsys.readouterr().err
    assert "resumed: 2 finished task(s) skipped, 2 of them passed" in err
    assert "resumed 2 finished task(s), 2 passed" in err  # the progress line counts them

    assert main(["eval", "compare", str(out), str(out), "-o", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare.md").exists()
    assert main(["eval", "report", str(out)]) == 0 and (out / "report.md").exists()


def test_eval_cli_lists_and_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--list", "--kind", "closed", "--tasks", "penguins*,churn-*"]) == 0
    listed = capsys.readouterr().out
    assert (
        "penguins-gentoo-mass" in listed
        and "churn-month-to-month" in listed
        and "churn-drivers" not in listed
    )
    assert main(["eval", "--suite", "dabench", "--list"]) == 2  # no --data-dir
    assert main(["eval", "--tasks", "no-such-task*", "--list"]) == 2
    assert main(["eval", "compare", str(tmp_path)]) == 2
    assert main(["eval", "frobnicate"]) == 2
