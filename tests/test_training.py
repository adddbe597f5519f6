"""Training pipeline pieces that need no training run: trajectories, import, templates, memory, config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from jupyter_analyst.agent.types import RunFinished, StopReason
from jupyter_analyst.training.trajectory import (
    TrajectoryFilter,
    TrajectoryWriter,
    make_record,
    read_trajectories,
    record_run,
    save_trajectory,
)


def _conversation(n: int = 0, final: bool = True, args_as_text: bool = True) -> list[dict]:
    code = {"code": f"print(df.shape)  # {n}"}
    msgs = [
        {"role": "system", "content": "You analyse data."},
        {"role": "user", "content": "Analyse df."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": f"call_{n}a",
                    "type": "function",
                    "function": {
                        "name": "add_and_execute_jupyter_code_cell",
                        "arguments": json.dumps(code) if args_as_text else code,
                    },
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": f"call_{n}a",
            "name": "add_and_execute_jupyter_code_cell",
            "content": "(100, 5)",
        },
    ]
    if final:
        msgs.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": f"call_{n}b",
                        "type": "function",
                        "function": {
                            "name": "final_answer",
                            "arguments": {"answer": "100 rows and 5 columns."},
                        },
                    }
                ],
            }
        )
    return msgs


def test_record_run_keeps_the_conversation_with_dict_arguments_and_verdict(tmp_path: Path) -> None:
    finished = RunFinished(StopReason.FINAL_ANSWER, "100 rows", 2, 50, 1.5, 0, 0)
    outcome = SimpleNamespace(messages=_conversation(), finished=finished, facts={"source": "data.csv"})
    rec = record_run(outcome, verdict={"passed": True, "task_id": "t"}, meta={"source": "test"})
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    call = rec["messages"][2]["tool_calls"][0]["function"]
    assert call["arguments"] == {"code": "print(df.shape)  # 0"}  # JSON text became a dict
    assert rec["meta"]["passed"] is True and rec["meta"]["stop_reason"] == "final_answer"
    assert rec["meta"]["finished"] and rec["meta"]["data"] == "data.csv"
    assert {t["function"]["name"] for t in rec["tools"]} >= {
        "add_and_execute_jupyter_code_cell",
        "final_answer",
    }
    path = tmp_path / "t.jsonl"
    assert save_trajectory(path, outcome) == ""
    assert save_trajectory(path, outcome) == "duplicate"
    assert len(list(read_trajectories(path))) == 1


def test_filters_success_duplicates_and_length(tmp_path: Path) -> None:
    writer = TrajectoryWriter(tmp_path / "t.jsonl", TrajectoryFilter(keep="passed", max_chars=500))
    assert writer.write(make_record(_conversation(1), verdict={"passed": True})) == ""
    # the same conversation with other (random) tool-call ids is a duplicate
    other_ids = _conversation(1)
    other_ids[2]["tool_calls"][0]["id"] = "xyz"
    assert writer.write(make_record(other_ids, verdict={"passed": True})) == "duplicate"
    assert writer.write(make_record(_conversation(2), verdict={"passed": False})) == "not judged successful"
    assert writer.write(make_record(_conversation(3))) == "no verdict (unjudged)"
    long = _conversation(4)
    long[3]["content"] = "x" * 1000
    assert writer.write(make_record(long, verdict={"passed": True})).startswith("longer than")
    finished = TrajectoryFilter(keep="finished")
    assert finished.reject(make_record(_conversation(5, final=False))) == "did not end with final_answer"
    # a resumed writer knows what the file holds
    again = TrajectoryWriter(tmp_path / "t.jsonl", TrajectoryFilter(keep="any"))
    assert again.write(make_record(_conversation(1))) == "duplicate"


def test_import_jsonl_and_parquet(tmp_path: Path) -> None:
    from jupyter_analyst.training.importer import import_file

    native = (
        "<tool_call>\n<function=final_answer>\n<parameter=answer>\nDone: 100 rows.\n</parameter>\n"
        "</function>\n</tool_call>"
    )
    rows = [
        {"messages": _conversation(1, args_as_text=True)},  # JSON-string arguments
        {"messages": json.dumps(_conversation(2, args_as_text=False))},  # messages as a JSON string
        {
            "messages": _conversation(3, final=False) + [{"role": "assistant", "content": native}]
        },  # native XML
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "web_search", "arguments": "{}"}}],
                },
            ]
        },  # someone else's tool
        {"messages": _conversation(4, final=False)},  # never finished
        {
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "final_answer", "arguments": "{not json"}}],
                },
            ]
        },
    ]
    src = tmp_path / "public.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    counts = import_file(src, TrajectoryWriter(out, TrajectoryFilter(keep="finished")))
    assert counts["imported"] == 3, counts
    recs = list(read_trajectories(out))
    last = recs[2]["messages"][-1]
    assert last["tool_calls"][0]["function"] == {
        "name": "final_answer",
        "arguments": {"answer": "Done: 100 rows."},
    }
    assert all(r["meta"]["source"] == "import:public.jsonl" for r in recs)

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {"messages": [json.dumps(_conversation(7)), json.dumps(_conversation(8))], "id": ["a", "b"]}
    )
    pq.write_table(table, tmp_path / "public.parquet")
    counts = import_file(
        tmp_path / "public.parquet", TrajectoryWriter(out, TrajectoryFilter(keep="finished"))
    )
    assert counts["imported"] == 2
    assert list(read_trajectories(out))[-1]["meta"]["original_id"] == "b"


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    from jupyter_analyst.testing.tiny_model import build_tokenizer

    return build_tokenizer()


def _trl_template(name: str) -> str:
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja").read_text()


@pytest.mark.parametrize("name", ["qwen3_5_nothink", "qwen3_5_think", "qwen3"])
def test_generation_markers_patch_qwen_templates(tokenizer, name: str) -> None:  # type: ignore[no-untyped-def]
    from jupyter_analyst.training.chat_template import add_generation_markers, verify_assistant_mask

    original = _trl_template(name)
    assert "{%- generation" not in original and "{% generation" not in original
    patched = add_generation_markers(original)
    report = verify_assistant_mask(tokenizer, patched, original)
    assert report.ok, report.problems
    # the decoded supervised text holds the assistant's calls and answers, and nothing else
    assert "CODEPROBE" in report.supervised and "ANSWERPROBE" in report.supervised
    assert "USERPROBE" not in report.supervised and "TOOLPROBE" not in report.supervised
    assert report.supervised.count("<|im_end|>") == 4  # two tool-call turns + two plain replies


def test_training_template_falls_back_to_trl_and_rejects_a_broken_mask(tokenizer) -> None:  # type: ignore[no-untyped-def]
    from jupyter_analyst.training.chat_template import training_template, verify_assistant_mask

    tok = tokenizer
    saved = tok.chat_template
    try:
        tok.chat_template = _trl_template("qwen2_5")  # no-tool replies go through the user branch
        template, how = training_template(tok)
        assert "TRL" in how and verify_assistant_mask(tok, template).ok
        # markers around the whole conversation supervise user text too: caught
        broken = "{% generation %}" + _trl_template("qwen3") + "{% endgeneration %}"
        assert not verify_assistant_mask(tok, broken).ok
    finally:
        tok.chat_template = saved


def test_memory_estimate_for_a_9b_base() -> None:
    from jupyter_analyst.training.memory import describe, estimate_training_memory, load_shape

    shape = load_shape("Qwen/Qwen3.5-9B")
    assert 8.9e9 < shape.total_params < 9.0e9  # 8,953,803,264 as transformers builds it
    peaks = [estimate_training_memory(shape, n).total_gb for n in (4096, 8192, 16384)]
    assert peaks == sorted(peaks) and 10 < peaks[0] < 14 and peaks[2] < 24
    full = estimate_training_memory(shape, 4096, quantized=False).total_gb
    assert full > peaks[0] + 9  # a bf16 base costs ~18 GB of weights
    assert "peak" in describe("Qwen/Qwen3.5-9B", shape, [4096, 8192])


def test_config_from_yaml_then_flags(tmp_path: Path) -> None:
    from jupyter_analyst.errors import InputError
    from jupyter_analyst.training.config import TrainConfig, add_dataclass_arguments, build_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: some/model\nlora_r: 64\nmax-length: 4096\ndata: one.jsonl\ngradient_checkpointing: false\n"
    )
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, TrainConfig)
    cfg = build_config(
        TrainConfig, parser.parse_args(["--lora-r", "8", "--target-modules", "q_proj,v_proj"]), recipe
    )
    assert (cfg.model, cfg.lora_r, cfg.max_length, cfg.data) == ("some/model", 8, 4096, ["one.jsonl"])
    assert cfg.gradient_checkpointing is False and cfg.targets() == ["q_proj", "v_proj"]
    recipe.write_text("lora_rank: 3\n")
    with pytest.raises(InputError, match="unknown option"):
        build_config(TrainConfig, parser.parse_args([]), recipe)


def test_cli_registers_the_training_commands() -> None:
    from jupyter_analyst.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["train", "--model", "m", "--data", "a.jsonl", "-o", "out", "--max-steps", "3"])
    assert (args.model, args.output_dir, args.max_steps) == ("m", "out", 3)
    assert parser.parse_args(["collect", "-o", "t.jsonl", "--baseline"]).keep == "passed"
    assert parser.parse_args(["import-trajectories", "a.parquet", "-o", "t.jsonl"]).keep == "finished"
    assert parser.parse_args(["merge", "--model", "m", "--adapter", "a", "-o", "x"]).dtype == "bfloat16"
