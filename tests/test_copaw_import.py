"""``import-trajectories`` on the CoPaw collector's trajectories, built from its documented format:
``{"messages"}``, the question first and the system prompt second, JSON calls inside
``<tool_call>`` in the assistant's text, each turn's results in one ``<tool_response>`` user
turn joined by ``---``, and an episode's end a reply with no call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_analyst.agent import copaw
from jupyter_analyst.agent.prompts import SYSTEM_PROMPT
from jupyter_analyst.training.copaw_import import FINAL_OK, MARKDOWN_OK, convert, keep
from jupyter_analyst.training.data import load_rows, token_counts
from jupyter_analyst.training.trajectory import TrajectoryFilter, read_trajectories

DATA = "/data/penguins.csv"
SCRIPT = (
    f"import pandas as pd\n\ndata = pd.read_csv('{DATA}')\n"
    "print(data.shape)\nprint(data['bill_len'].mean())\n"
)
FIXED = SCRIPT.replace("data['bill_len']", "data['bill_length_mm']")
FAILED = (
    "Error: Command failed: /env/bin/python /ws/explore.py\nTraceback (most recent call last):\n"
    "  File \"/ws/explore.py\", line 5, in <module>\nKeyError: 'bill_len'"
)
FIXED_OUT = "(344, 2)\n---\n43.92"  # a line of the output that reads like the joiner
HEAD = "species,bill_length_mm\nAdelie,39.1\nAdelie,39.5"
REPORT = "# Penguin bills\n\nThe average bill length is **43.92 mm**."
ANSWER = "The average bill length is 43.92 mm over 344 penguins."
COLLECTOR_PROMPT = copaw.system_prompt("/data", "/ws")


def call(name: str, **arguments: str) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def trajectory(
    turns: list[tuple[str, list[str]]], final: str | None = ANSWER, **extra: Any
) -> dict[str, Any]:
    """The question, the system prompt, (assistant text, its results) turns, the final reply."""
    messages = [
        {
            "role": "user",
            "content": extra.get("question", "What is the average bill length of the penguins?"),
        },
        {"role": "system", "content": COLLECTOR_PROMPT},
    ]
    for text, results in turns:
        messages.append({"role": "assistant", "content": text})
        messages.append({"role": "user", "content": copaw.tool_response(results)})
    if final is not None:
        messages.append({"role": "assistant", "content": final})
    messages += extra.get("after", [])
    return {"messages": messages}


def good() -> dict[str, Any]:
    """Glob, Read, Write+Bash (a KeyError), Edit+Bash (fixed), a refused install, a listing
    command, a markdown report, the final reply; then a follow-up question."""
    followup = [
        {"role": "user", "content": "And the longest bill?"},
        {"role": "assistant", "content": call("Bash", command="python /ws/explore.py")},
        {"role": "user", "content": copaw.tool_response(["59.6"])},
        {"role": "assistant", "content": "The longest bill is 59.6 mm."},
    ]
    return trajectory(
        [
            ("Let me see the files.\n\n" + call("Glob", pattern="/data/*.csv"), [DATA]),
            (
                "Let me read it.\n\n" + call("Read", file_path=DATA),
                ["1\tspecies,bill_length_mm\n2\tAdelie,39.1"],
            ),
            (
                "Let me write a script and run it.\n\n"
                + call("Write", file_path="/ws/explore.py", content=SCRIPT)
                + "\n\n"
                + call("Bash", command="/env/bin/python /ws/explore.py"),
                ["Successfully wrote to /ws/explore.py", FAILED],
            ),
            (
                "<think>The column has another name.</think>Let me fix the column.\n\n"
                + call(
                    "Edit",
                    file_path="/ws/explore.py",
                    old_string="data['bill_len']",
                    new_string="data['bill_length_mm']",
                )
                + call("Bash", command="cd /ws && python3 explore.py"),
                ["Successfully edited /ws/explore.py", FIXED_OUT],
            ),
            (
                "Let me install scipy.\n\n" + call("Bash", command="pip install scipy"),
                ["Successfully installed scipy"],
            ),
            ("Let me look at the first rows.\n\n" + call("Bash", command=f"head -3 {DATA}"), [HEAD]),
            (
                "Let me write the report.\n\n" + call("Write", file_path="/ws/report.md", content=REPORT),
                ["Successfully wrote to /ws/report.md"],
            ),
        ],
        "<think>All done.</think>" + ANSWER,
        after=followup,
    )


def write_and_run(command: str) -> tuple[str, list[str]]:
    return (
        call("Write", file_path="/ws/a.py", content="print(1)") + call("Bash", command=command),
        ["Successfully wrote to /ws/a.py", "1"],
    )


BROKEN: dict[str, dict[str, Any]] = {
    "no tool call at all": trajectory([], "I can't see any data."),
    "a call to an unknown tool (WebSearch)": trajectory([(call("WebSearch", query="penguins"), ["..."])]),
    "unparseable call JSON": trajectory(
        [('<tool_call>\n{"name": "Bash", "arguments": {"command": \n</tool_call>', ["Error"])]
    ),
    "results don't align with calls": trajectory(
        [(call("Bash", command="ls /data") + call("Bash", command="ls /ws"), ["penguins.csv"])]
    ),
    "no final reply": trajectory([write_and_run("python /ws/a.py")], None),
    "a run of a script never written": trajectory([(call("Bash", command="python /ws/gone.py"), ["1"])]),
    "nothing left after conversion (no code cell)": trajectory([(call("Read", file_path=DATA), ["1\tx"])]),
    "a python run the command policy refuses (pipe, redirect or chain)": trajectory(
        [write_and_run("python /ws/a.py | sort")]  # (into head/tail it runs: the loop trims output)
    ),
    "a python heredoc (the command policy runs only script files)": trajectory(
        [(call("Bash", command="python3 << 'EOF'\nprint(1)"), ["1"])]  # never closed (a closed one runs)
    ),
}


def notebook_row() -> dict[str, Any]:
    """A trajectory already in our tools (OpenAI calls): auto-detection leaves it to the old path."""
    code = {
        "id": "c1",
        "type": "function",
        "function": {"name": "add_and_execute_jupyter_code_cell", "arguments": {"code": "print(df.shape)"}},
    }
    final = {
        "id": "c2",
        "type": "function",
        "function": {"name": "final_answer", "arguments": {"answer": "100 rows."}},
    }
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "Task: how many rows?"},
            {"role": "assistant", "content": "", "tool_calls": [code]},
            {"role": "tool", "tool_call_id": "c1", "name": code["function"]["name"], "content": "(100, 5)"},
            {"role": "assistant", "content": "", "tool_calls": [final]},
        ]
    }


def test_convert_maps_calls_to_cells() -> None:
    conv = convert(good()["messages"])
    assert conv.messages is not None, conv.why
    msgs = conv.messages
    assert msgs[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert msgs[1] == {"role": "user", "content": "Task: What is the average bill length of the penguins?"}
    steps = [(m["content"], m["tool_calls"][0]["function"]) for m in msgs if m["role"] == "assistant"]
    observed = [m["content"] for m in msgs if m["role"] == "tool"]
    assert steps == [
        (
            "Let me write a script and run it.",
            {"name": "add_and_execute_jupyter_code_cell", "arguments": {"code": SCRIPT}},
        ),
        (
            "Let me fix the column.",
            {"name": "add_and_execute_jupyter_code_cell", "arguments": {"code": FIXED}},
        ),
        (
            "Let me look at the first rows.",
            {"name": "add_and_execute_jupyter_code_cell", "arguments": {"code": f"!head -3 {DATA}"}},
        ),
        ("Let me write the report.", {"name": "add_markdown_cell", "arguments": {"text": REPORT}}),
        ("", {"name": "final_answer", "arguments": {"answer": ANSWER}}),
    ]
    assert observed == [FAILED, FIXED_OUT, HEAD, MARKDOWN_OK, FINAL_OK]
    assert conv.followups == 1 and conv.meta["data_paths"] == [DATA] and conv.meta["data"] == "penguins.csv"
    assert dict(conv.unstepped) == {
        "Glob": 1,
        "Read": 1,
        "Edit (in the next run's code)": 1,
        "refused Bash (install)": 1,
        "Write (in its run's code)": 1,
    }


@pytest.mark.parametrize("why", list(BROKEN))
def test_convert_says_why_not(why: str) -> None:
    conv = convert(BROKEN[why]["messages"])
    assert (conv.messages, conv.why) == (None, why)


def test_a_multiline_question_is_quoted_as_render_task_does() -> None:
    conv = convert(
        trajectory([write_and_run("python /ws/a.py")], question="Average bill?\nPer species.")["messages"]
    )
    assert conv.messages is not None and conv.messages[1]["content"] == "Task: Average bill?\n> Per species."


def test_keep_moves_the_system_prompt_first_and_changes_nothing_else() -> None:
    raw = good()["messages"]
    kept = keep(raw)
    assert kept.messages == [raw[1], raw[0], *raw[2:]] and kept.meta["dialect"] == "copaw"
    assert keep(BROKEN["no final reply"]["messages"]).why == "no final reply"
    assert keep(BROKEN["no final reply"]["messages"], require_final=False).messages is not None


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "jupyter_analyst", "import-trajectories", *args],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("copaw") / "copaw.jsonl"
    rows = [good(), *BROKEN.values(), notebook_row()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cli_converts_and_reports(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    done = _run(str(source), "-o", str(out))
    print(done.stderr)
    report = done.stderr
    assert f"copaw: {1 + len(BROKEN)} read, 1 converted cleanly, {len(BROKEN)} rejected" in report
    for why in BROKEN:
        assert f"rejected 1: {why}" in report
    # every call of every row, the follow-up's too (unreadable blocks are not counted)
    assert "copaw calls: Bash 11, Read 2, Write 4, Edit 1, Glob 1, Grep 0, WebSearch 1" in report
    assert "follow-up questions not converted (first episode only): 1" in report
    assert "wrote 2 trajectories" in report
    records = list(read_trajectories(out))
    converted = next(r for r in records if r["meta"].get("converted_from") == "copaw")
    assert converted["messages"] == convert(good()["messages"]).messages
    assert converted["meta"]["finished"] and converted["meta"]["source"] == "import:copaw.jsonl"
    assert {t["function"]["name"] for t in converted["tools"]} == {
        "add_and_execute_jupyter_code_cell", "add_markdown_cell", "final_answer",
    }  # fmt: skip
    # what `jupyter analyst train` reads: the default filter (finished) keeps both
    rows, summary = load_rows([out], TrajectoryFilter(keep="finished"))
    assert summary.kept == 2 and not summary.dropped, summary.line()


def test_cli_keeps_the_dialect(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "kept.jsonl"
    done = _run(str(source), "-o", str(out), "--keep-dialect")
    print(done.stderr)
    # kept: anything whose calls read and name the six tools, and that ends with a reply
    rejected = (
        "no tool call at all",
        "a call to an unknown tool (WebSearch)",
        "unparseable call JSON",
        "no final reply",
    )
    assert (
        f"copaw: {1 + len(BROKEN)} read, {1 + len(BROKEN) - 4} kept in the copaw dialect, 4 rejected"
        in done.stderr
    )
    assert all(f"rejected 1: {why}" in done.stderr for why in rejected)
    records = [r for r in read_trajectories(out) if r["meta"].get("dialect") == "copaw"]
    raw = good()["messages"]
    first = next(r for r in records if r["meta"]["followups"] == 1)
    assert first["messages"] == [raw[1], raw[0], *raw[2:]] and first["tools"] == []
    # train's default filter (finished) reads the record's dialect: a copaw record ends with a
    # reply, never final_answer, and is kept; one whose last reply still calls a tool is not
    for filters in (TrajectoryFilter(keep="any"), TrajectoryFilter(keep="finished")):
        _, summary = load_rows([out], filters)
        assert summary.kept == len(records) + 1, summary.line()


def test_both_forms_tokenize_with_an_assistant_mask(source: Path, tmp_path: Path) -> None:
    """The trainer's own tokenization (template, tools, mask) on converted and kept rows, with
    the tiny model's Qwen3.5-style template and TRL's Qwen3.5 template (given generation
    markers): the kept rows' system prompt is first, as Qwen3.5 requires."""
    import trl

    from jupyter_analyst.testing.tiny_model import build_tokenizer
    from jupyter_analyst.training.chat_template import add_generation_markers

    tokenizer = build_tokenizer()
    qwen35 = add_generation_markers(
        (Path(trl.__file__).parent / "chat_templates" / "qwen3_5_think.jinja").read_text()
    )
    for flag in ([], ["--keep-dialect"]):
        out = tmp_path / f"rows{len(flag)}.jsonl"
        _run(str(source), "-o", str(out), *flag)
        rows, _ = load_rows([out], TrajectoryFilter(keep="any"))
        for template in (tokenizer.chat_template, qwen35):
            counts = token_counts(tokenizer, rows, template)
            assert all(c.first_supervised is not None for c in counts), flag
