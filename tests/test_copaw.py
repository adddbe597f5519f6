"""The CoPaw dialect: its command policy and file tools, and a replay in its documented format
driving the headless CLI to a finished notebook that re-runs and that the judge scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from copaw_replay import MEAN_BILL, REPORT, copaw_replay

from jupyter_analyst.agent import copaw
from jupyter_analyst.agent.dialect import CopawDialect, make_dialect
from jupyter_analyst.agent.types import AssistantTurn, CellResult
from jupyter_analyst.notebook import META_KEY


def test_bash_commands_go_through_the_command_policy() -> None:
    ws = copaw.Workspace()
    ws.write("/ws/analysis/a.py", "print(1)")
    run = copaw.bash_action("/usr/bin/python3 /ws/analysis/a.py", ws)
    assert (run.kind, run.code, run.script) == ("run", "print(1)", "ws/analysis/a.py")
    assert copaw.bash_action("cd /ws/analysis && python a.py", ws).code == "print(1)"  # by its name
    assert copaw.bash_action("python -c 'print(2)'", ws).code == "print(2)"
    args = copaw.bash_action("python /ws/analysis/a.py --top 5", ws)
    assert args.code.startswith("import sys\nsys.argv = ['/ws/analysis/a.py', '--top', '5']\n")
    assert copaw.bash_action('python -c "print(3 > 2)"', ws).code == "print(3 > 2)"  # not a redirect
    piped = copaw.bash_action("python /ws/analysis/a.py 2>&1 | head -50", ws)
    assert (piped.kind, piped.code) == ("run", "print(1)")  # the loop shortens outputs itself
    heredoc = copaw.bash_action("python3 << 'EOF'\nimport pandas as pd\nprint(1 | 2)\nEOF", ws)
    assert (heredoc.kind, heredoc.code) == ("run", "import pandas as pd\nprint(1 | 2)")
    assert copaw.bash_action("python a.py | sort", ws).kind == "refuse"
    missing = copaw.bash_action("python nope.py", ws)
    assert missing.kind == "error" and "can't open file 'nope.py'" in missing.text
    assert copaw.bash_action("ls -la data | head -5", ws) == copaw.BashAction(
        "shell", code="!ls -la data | head -5"
    )
    for command, why in [
        ("pip install scipy", "installing packages"),
        ("python -m pip install scipy", "installing packages"),
        ("conda install -y statsmodels", "installing packages"),
        ("rm -rf data", "deleting"),
        ("ls && rm a.csv", "deleting"),
        ("curl http://example.org", "network"),
        ("cat data.csv > copy.csv", "not allowed"),
        ("bash -c 'ls'", "`bash` is not allowed"),
    ]:
        action = copaw.bash_action(command, ws)
        assert action.kind == "refuse" and why in action.text, (command, action)


def test_write_and_edit_keep_the_scripts_as_the_collector_answered() -> None:
    ws = copaw.Workspace()
    assert ws.write("a.py", "x = 1\nx = 1\n") == "Successfully wrote to a.py"
    assert ws.edit("./a.py", "x = 1", "x = 2") == ("Successfully edited ./a.py", True)
    assert ws.files["a.py"] == "x = 2\nx = 1\n"  # the first occurrence, as String.replace did
    assert ws.edit("a.py", "nothing", "y") == ("Error: old_string not found in file", False)
    said, changed = ws.edit("b.py", "x", "y")
    assert not changed and said.startswith("Error editing file: ENOENT")


def test_read_glob_grep_answer_like_the_collector_and_stay_in_the_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.csv").write_text("\n".join(f"row{i},{i}" for i in range(150)), encoding="utf-8")
    for i in range(60):
        (tmp_path / "data" / f"f{i:02d}.txt").write_text(f"needle {i}\n", encoding="utf-8")
    text = copaw.read(tmp_path, "data/big.csv")
    lines = text.splitlines()
    assert lines[0] == "1\trow0,0" and lines[99] == "100\trow99,99" and lines[-1] == "... (50 more lines)"
    assert copaw.read(tmp_path, "../secret").startswith("Error reading file: ../secret is outside")
    assert copaw.read(tmp_path, "none.csv").startswith("Error reading file:")
    assert len(copaw.glob(tmp_path, "data/*.txt").splitlines()) == 50
    assert copaw.glob(tmp_path, "*.parquet") == "No files found"
    assert copaw.glob(tmp_path, str(tmp_path / "data" / "big.csv")) == "data/big.csv"
    hits = copaw.grep(tmp_path, "needle 1[0-9]", "data").splitlines()
    assert hits[0] == "data/f10.txt:1:needle 10" and len(hits) == 10
    assert len(copaw.grep(tmp_path, "needle").splitlines()) == 50
    assert copaw.grep(tmp_path, "x", "/etc") == "No matches found"


def test_a_failed_cell_reads_like_the_failed_process() -> None:
    result = CellResult(
        status="error",
        outputs=[{"output_type": "stream", "name": "stdout", "text": "(344, 8)\n"}],
        error_name="KeyError",
        error_value="'bill_len'",
        traceback=[
            "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
            "\x1b[0;31mKeyError\x1b[0m                                  Traceback (most recent call last)",
            "Cell \x1b[0;32mIn[3], line 5\x1b[0m\n      3 data = 1\n----> 5 print(data['bill_len'])\n",
            "File \x1b[0;32m/lib/pandas/base.py:3823\x1b[0m, in "
            "\x1b[0;36mIndex.get_loc\x1b[0;34m(self, key)\x1b[0m\n-> 3823     raise KeyError(key) from err\n",
            "\x1b[0;31mKeyError\x1b[0m: 'bill_len'",
        ],
    )
    assert copaw.process_output(result, "python a.py", 2000, "analysis/a.py") == (
        "Error: Command failed: python a.py\n(344, 8)\nTraceback (most recent call last):\n"
        "  File \"analysis/a.py\", line 5, in <module>\n    print(data['bill_len'])\n"
        '  File "/lib/pandas/base.py", line 3823, in Index.get_loc\n    raise KeyError(key) from err\n'
        "KeyError: 'bill_len'"
    )
    ok = CellResult(status="ok", outputs=[{"output_type": "stream", "name": "stdout", "text": "42\n"}])
    assert copaw.process_output(ok, "python a.py", 2000) == "42\n"


def test_a_reply_without_a_call_ends_the_run_only_after_an_action(tmp_path: Path) -> None:
    dialect = make_dialect("copaw", tmp_path, "df")
    assert isinstance(dialect, CopawDialect)
    first = dialect.decode(AssistantTurn(content="I will analyse it."), acted=False)
    assert not first.actions and "use the tools" in first.problem
    done = dialect.decode(AssistantTurn(content="<think>ok</think>The mean is 3."), acted=True)
    assert done.final and done.actions[0].call is not None
    assert done.actions[0].call.arguments == {"answer": "The mean is 3."}
    bad = dialect.decode(
        AssistantTurn(content='<tool_call>\n{"name": "Bash", "arguments": {oops}\n</tool_call>'), True
    )
    assert not bad.actions and copaw.CALL_FORMAT in bad.problem
    with pytest.raises(ValueError, match="unknown tool dialect"):
        make_dialect("klingon")
    prompt = dialect.opening("ours", "TASK")
    assert [m["role"] for m in prompt] == ["system", "user"] and prompt[1]["content"] == "TASK"
    assert "Tool call format (use this EXACT format)" in prompt[0]["content"]
    assert "already loaded in that session as `df`" in prompt[0]["content"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "jupyter_analyst", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def penguins_folder(tmp_path: Path) -> Path:
    import palmerpenguins

    palmerpenguins.load_penguins().to_csv(tmp_path / "penguins.csv", index=False)
    (tmp_path / "replay.json").write_text(json.dumps(copaw_replay()), encoding="utf-8")
    return tmp_path


def test_a_copaw_replay_drives_the_headless_cli_to_a_notebook_that_reruns(penguins_folder: Path) -> None:
    done = _cli(
        "run", "penguins.csv", "--replay", "replay.json", "-q", "What is the average bill length?",
        "-o", "out.ipynb", cwd=penguins_folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "finished with conclusions" in done.stderr
    nb = nbformat.read(penguins_folder / "out.ipynb", as_version=4)
    roles = [(c.cell_type, (c.metadata.get(META_KEY) or {}).get("role")) for c in nb.cells]
    assert roles == [
        ("markdown", "header"),
        ("code", "setup"),
        ("code", "code"),  # the dialect's own: the scripts' workspace, their saved charts shown
        ("code", "code"),  # the patched script: the failed first run was removed by tidy
        ("code", "code"),  # !head -3 penguins.csv
        ("markdown", "markdown"),  # the report the model wrote
        ("markdown", "conclusions"),
    ], roles
    assert nb.cells[2].source == copaw.SCRIPTS_CELL
    script = nb.cells[3].source
    assert "data['bill_length_mm']" in script and "bill_len'" not in script
    assert "".join(o.get("text", "") for o in nb.cells[3].outputs).split() == ["(344,", "8)", MEAN_BILL]
    images = [o for o in nb.cells[3].outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1  # saved twice (png, pdf) and closed by the script: shown once
    assert (penguins_folder / "analysis" / "depth_vs_flipper.pdf").exists()
    assert nb.cells[4].source == "!head -3 penguins.csv"
    assert nb.cells[5].source == REPORT
    assert MEAN_BILL in nb.cells[6].source
    assert not any("pip" in c.source for c in nb.cells)  # the refused install left no cell
    # The notebook re-runs top to bottom on its own, in a fresh kernel.
    from nbclient import NotebookClient

    rerun = nbformat.read(penguins_folder / "out.ipynb", as_version=4)
    NotebookClient(rerun, timeout=120, resources={"metadata": {"path": str(penguins_folder)}}).execute()
    assert MEAN_BILL in "".join(o.get("text", "") for o in rerun.cells[3].outputs)
    assert len([o for o in rerun.cells[3].outputs if "image/png" in o.get("data", {})]) == 1


def test_the_judge_scores_a_copaw_run_like_any_other(penguins_folder: Path) -> None:
    from jupyter_analyst.eval.answers import AnswerSpec
    from jupyter_analyst.eval.harness import task_facts
    from jupyter_analyst.eval.judge import judge_run
    from jupyter_analyst.eval.tasks import EvalTask
    from jupyter_analyst.models.scripted import load_replay
    from jupyter_analyst.runner import RunConfig, run_analysis

    task = EvalTask(
        "copaw-bill",
        "penguins",
        "What is the average bill length of the penguins?",
        kind="closed",
        answers=(AnswerSpec("mean_bill", "the mean bill length in mm"),),
    )
    events: list = []
    policy = load_replay(penguins_folder / "replay.json")
    assert policy.dialect == "copaw"
    outcome = run_analysis(
        RunConfig(
            data=penguins_folder / "penguins.csv",
            output=penguins_folder / "judged.ipynb",
            question=task.prompt,
        ),
        policy,
        on_event=events.append,
    )
    assert outcome.finished.answer is not None and MEAN_BILL in outcome.finished.answer
    expected = {"mean_bill": 43.92193}
    verdict = judge_run(
        task, events, penguins_folder / "judged.ipynb", expected, facts=task_facts(outcome.messages)
    )
    assert verdict.reproducible is True and verdict.grounded is True, verdict
    assert verdict.answers_correct is True and verdict.natural is True
    assert verdict.passed is True, verdict.detail
    # The sidebar shows the reply's prose; the history keeps the calls as the model wrote them.
    from jupyter_analyst.agent import ModelReplied

    shown = [e.turn.content for e in events if isinstance(e, ModelReplied)]
    assert shown[0] == "Let me first see what files are available."
    assert not any("<tool_call>" in t for t in shown)
    assert outcome.messages[2]["content"].endswith('"arguments": {"pattern": "*.csv"}}\n</tool_call>')
    # What the model saw is its own format: results in <tool_response> user turns.
    responses = [m["content"] for m in outcome.messages if m["role"] == "user"][1:]
    assert all(r.startswith("<tool_response>\n") for r in responses)
    assert "Successfully edited analysis/explore.py\n---\n(344, 8)\n43.92" in responses[3]
    assert "Error: refused by the notebook's command policy: installing packages" in responses[4]


def test_collect_with_a_copaw_analyst_writes_records_of_that_dialect(penguins_folder: Path) -> None:
    """A collected CoPaw-dialect run is recorded as that model saw it (no tools list, its own
    turns), marked with its dialect, and train's default filter keeps it: it ended by itself."""
    from jupyter_analyst.training.data import load_rows
    from jupyter_analyst.training.trajectory import TrajectoryFilter, read_trajectories

    done = _cli(
        "collect", "-o", "traj.jsonl", "--tasks", "penguins-explore", "--replay", "replay.json",
        "--keep", "finished", "--no-rerun", "--quiet", cwd=penguins_folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (record,) = read_trajectories(penguins_folder / "traj.jsonl")
    assert record["meta"]["dialect"] == "copaw" and record["tools"] == []
    roles = [m["role"] for m in record["messages"]]
    assert roles[:2] == ["system", "user"] and "tool" not in roles
    assert record["meta"]["finished"] is True  # a reply with no call: the dialect's own ending
    last = record["messages"][-1]
    assert last["role"] == "assistant" and "<tool_call>" not in last["content"]
    rows, summary = load_rows([penguins_folder / "traj.jsonl"], TrajectoryFilter(keep="finished"))
    assert summary.kept == 1, summary.line()
