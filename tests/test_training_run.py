"""Training runs on a tiny local model: what changed, what was supervised, that the adapter serves,
QLoRA on CPU, and the whole collect -> train -> eval pipeline from the CLI (offline, small)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_analyst.training.data import TokenCount
from jupyter_analyst.training.trajectory import TrajectoryFilter, TrajectoryWriter, make_record

pytestmark = pytest.mark.timeout(600)


def _trajectory(n: int) -> dict:
    calls = [
        ("add_and_execute_jupyter_code_cell", {"code": f"df.groupby('g').x.mean()  # {n}"}),
        ("final_answer", {"answer": f"Group a has the highest mean x ({n}.5)."}),
    ]
    msgs: list[dict] = [
        {"role": "system", "content": "SYSTEMTEXT analyse df."},
        {"role": "user", "content": f"USERTEXT question {n}"},
    ]
    for i, (name, args) in enumerate(calls):
        msgs.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": args}}
                ],
            }
        )
        msgs.append(
            {"role": "tool", "tool_call_id": f"c{i}", "name": name, "content": f"TOOLTEXT result {n}"}
        )
    return make_record(msgs, tools=[], meta={"source": "test"})


@pytest.fixture(scope="module")
def tiny_qwen2(tiny_qwen2_dir: Path) -> Path:
    return tiny_qwen2_dir


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("traj") / "t.jsonl"
    writer = TrajectoryWriter(path, TrajectoryFilter(keep="finished"))
    for n in range(3):
        assert writer.write(_trajectory(n)) == ""
    return path


@pytest.fixture(scope="module")
def trained(tiny_qwen2: Path, trajectories: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from jupyter_analyst.training.config import TrainConfig
    from jupyter_analyst.training.train import train

    out = tmp_path_factory.mktemp("adapter") / "lora"
    config = TrainConfig(
        model=str(tiny_qwen2),
        data=[str(trajectories)],
        output_dir=str(out),
        max_steps=16,
        gradient_accumulation_steps=1,
        learning_rate=1e-1,
        lora_dropout=0.0,
        warmup_ratio=0.0,
        max_length=512,
        gradient_checkpointing=False,
        device="cpu",
        save_steps=8,
    )
    return train(config, log=lambda s: None)


def test_loss_goes_down_and_every_lora_tensor_moves(trained) -> None:  # type: ignore[no-untyped-def]
    assert trained.steps == 16 and trained.ok
    first, last = sum(trained.losses[:3]) / 3, sum(trained.losses[-3:]) / 3
    # a random tiny model's logits start near uniform (ln 1216 = 7.1) and its frozen lm_head caps how
    # peaked they can get, so the drop is modest but steady
    assert last < first - 0.15, trained.losses


def test_only_adapter_weights_changed(trained, tiny_qwen2: Path) -> None:  # type: ignore[no-untyped-def]
    import torch
    from safetensors.torch import load_file

    original = load_file(str(tiny_qwen2 / "model.safetensors"))
    base = trained.model.get_base_model()
    checked = 0
    for name, param in base.named_parameters():
        if "lora_" in name:
            continue
        key = name.replace(".base_layer.", ".")
        if key not in original and key == "lm_head.weight":
            continue
        assert not param.requires_grad, name
        assert torch.equal(param.detach().cpu(), original[key]), f"{name} changed"
        checked += 1
    assert checked == len(original)
    files = sorted(p.name for p in Path(trained.output_dir).iterdir() if p.is_file())
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(files)
    cfg = json.loads((Path(trained.output_dir) / "adapter_config.json").read_text())
    assert cfg["modules_to_save"] is None and cfg["use_dora"] is False and cfg["bias"] == "none"
    assert cfg["base_model_name_or_path"] == str(tiny_qwen2)
    keys = load_file(str(Path(trained.output_dir) / "adapter_model.safetensors"))
    assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys)


def test_only_assistant_tokens_were_supervised(trained) -> None:  # type: ignore[no-untyped-def]
    sample = trained.sample  # the first training example's supervised tokens, decoded
    assert "<function=add_and_execute_jupyter_code_cell>" in sample and "Group a has the highest" in sample
    assert sample.count("<|im_end|>") == 2
    for text in ("SYSTEMTEXT", "USERTEXT", "TOOLTEXT", "<|im_start|>"):
        assert text not in sample


def test_adapter_loads_in_the_embedded_host_and_changes_generations(trained, tiny_qwen2: Path) -> None:  # type: ignore[no-untyped-def]
    from jupyter_analyst.models.host import EmbeddedModel

    messages = [
        {"role": "system", "content": "SYSTEMTEXT analyse df."},
        {"role": "user", "content": "USERTEXT question 1"},
    ]
    replies = []
    for adapter in (None, trained.output_dir):
        host = EmbeddedModel(
            tiny_qwen2,
            adapter=adapter,
            device="cpu",
            quantization="none",
            max_new_tokens=24,
            startup_timeout=240,
        )
        host.start()
        try:
            turn = host.policy(temperature=0.0)(messages, [])
            replies.append((turn.content, [(c.name, c.arguments) for c in turn.tool_calls]))
        finally:
            host.stop()
    assert replies[0] != replies[1]


def test_qlora_4bit_base_trains_on_cpu(tiny_qwen2: Path, trajectories: Path, tmp_path: Path) -> None:
    from jupyter_analyst.training.config import TrainConfig
    from jupyter_analyst.training.train import train

    config = TrainConfig(
        model=str(tiny_qwen2),
        data=[str(trajectories)],
        output_dir=str(tmp_path / "q"),
        quantization="4bit",
        device="cpu",
        max_steps=3,
        gradient_accumulation_steps=1,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        max_length=512,
        gradient_checkpointing=True,
    )
    result = train(config, log=lambda s: None)  # the gemv_4bit warning would raise here
    assert result is not None
    assert result.model.get_base_model().is_loaded_in_4bit
    # B moves on step 1, A only once B is non-zero: every tensor moved, so gradients reached every layer
    assert result.ok, f"{result.lora_tensors_changed}/{result.lora_tensors} LoRA tensors changed"
    assert (tmp_path / "q" / "adapter_model.safetensors").exists()


def test_collect_train_evaluate_from_the_cli(
    tiny_qwen2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_analyst.cli import main

    monkeypatch.setenv("JUPYTER_ANALYST_DATA_CACHE", str(tmp_path / "cache"))
    traj = tmp_path / "traj.jsonl"
    tasks = ["tips-percent", "airquality-ozone"]
    assert (
        main(
            [
                "collect",
                "-o",
                str(traj),
                "--baseline",
                "--tasks",
                *tasks,
                "--no-rerun",
                "--keep",
                "finished",
                "--quiet",
            ]
        )
        == 0
    )
    recs = [json.loads(line) for line in traj.read_text().splitlines()]
    assert {r["meta"]["task_id"] for r in recs} == set(tasks)
    assert all(r["meta"]["verdict"]["natural"] for r in recs)
    # resumable: nothing left to do, nothing written twice
    assert (
        main(
            [
                "collect",
                "-o",
                str(traj),
                "--baseline",
                "--tasks",
                *tasks,
                "--no-rerun",
                "--keep",
                "finished",
                "--quiet",
            ]
        )
        == 0
    )
    assert len(traj.read_text().splitlines()) == len(recs)

    adapter = tmp_path / "adapter"
    assert (
        main(
            [
                "train",
                "--model",
                str(tiny_qwen2),
                "--data",
                str(traj),
                "-o",
                str(adapter),
                "--max-steps",
                "2",
                "--gradient-accumulation-steps",
                "1",
                "--max-length",
                "4096",
                "--no-gradient-checkpointing",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (adapter / "adapter_config.json").exists()

    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_qwen2),
                "--adapter",
                str(adapter),
                "--device",
                "cpu",
                "--quantization",
                "none",
                "--tasks",
                tasks[0],
                "--max-steps",
                "2",
                "--max-new-tokens",
                "16",
                "--no-rerun",
                "--quiet",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads((out / "results.jsonl").read_text().splitlines()[-1])
    assert record["task_id"] == tasks[0] and "verdict" in record, record.get("harness_error")


def _train_cli(model: Path, data: Path, out: Path, max_length: int, *extra: str) -> int:
    from jupyter_analyst.cli import main

    argv = ["train", "--model", str(model), "--data", str(data), "-o", str(out), "--device", "cpu"]
    argv += ["--max-length", str(max_length), "--max-steps", "1", "--gradient-accumulation-steps", "1"]
    return main([*argv, "--no-gradient-checkpointing", *extra])


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_train_cli_with_max_length_shorter_than_every_prompt_names_the_length_that_works(
    tiny_qwen2: Path, baseline_trajectories: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Used to crash inside TRL (``IndexError: Invalid key: 0 is out of bounds for size 0``)."""
    import re

    assert _train_cli(tiny_qwen2, baseline_trajectories, tmp_path / "a", 256) == 2
    line = _error_line(capsys.readouterr().err)
    assert "--max-length 256 leaves no assistant token to train on in any of the 2 trajectories" in line
    m = re.search(
        r"--max-length (\d+) is the smallest that trains on anything.*, (\d+) keeps part of every", line
    )
    assert m, line
    smallest, every = int(m[1]), int(m[2])
    assert 256 < smallest < every
    assert not (tmp_path / "a").exists()
    # the number is tight: one token less still leaves nothing to train on ...
    assert _train_cli(tiny_qwen2, baseline_trajectories, tmp_path / "b", smallest - 1) == 2
    assert f"--max-length {smallest} is the smallest" in _error_line(capsys.readouterr().err)
    # ... and at that length TRL keeps (and trains on) the one trajectory whose first assistant token fits
    assert _train_cli(tiny_qwen2, baseline_trajectories, tmp_path / "c", smallest) == 0
    err = capsys.readouterr().err
    assert (
        f"training on 1 of 2 trajectories, dropped 1 with no assistant token in the first {smallest} tokens; "
        f"--max-length {every} keeps part of every trajectory"
    ) in err, err
    summary = json.loads((tmp_path / "c" / "training_summary.json").read_text())
    assert summary["result"]["examples"] == 1 and summary["result"]["steps"] == 1


def test_train_cli_overlong_drop_that_drops_everything_names_the_shortest_trajectory(
    tiny_qwen2: Path, baseline_trajectories: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train_cli(tiny_qwen2, baseline_trajectories, tmp_path / "a", 4096, "--overlong", "drop") == 2
    line = _error_line(capsys.readouterr().err)
    assert "--max-length 4096 with --overlong drop drops all 2 trajectories: the shortest is" in line
    assert "or --overlong truncate to train on their first 4096 tokens" in line


def _counts(*pairs: tuple[int, int | None]) -> list[TokenCount]:

    return [TokenCount(length, first) for length, first in pairs]


def test_select_trainable_keeps_rows_whose_first_assistant_token_fits() -> None:
    from jupyter_analyst.errors import InputError
    from jupyter_analyst.training.train import select_trainable

    rows = [{"i": 0}, {"i": 1}, {"i": 2}]
    counts = _counts((900, 500), (700, 300), (50, None))
    kept, note = select_trainable(rows, counts, 301, "truncate")  # index 300 is the 301st token
    assert kept == [{"i": 1}]
    assert note == (
        "training on 1 of 3 trajectories, dropped 1 with no assistant token in the first 301 tokens "
        "and 1 with no assistant turn at all; --max-length 501 keeps part of every trajectory"
    )
    assert select_trainable(rows[:2], counts[:2], 501, "truncate") == (rows[:2], "")
    with pytest.raises(InputError) as exc:
        select_trainable(rows, counts, 300, "truncate")
    assert str(exc.value) == (
        "--max-length 300 leaves no assistant token to train on in any of the 3 trajectories, so nothing "
        "would be trained: the prompt (system, tools, task) before the first assistant token is 300-500 "
        "tokens long; --max-length 301 is the smallest that trains on anything (it keeps the first "
        "assistant token of the trajectory with the shortest prompt), 501 keeps part of every trajectory"
    )
    with pytest.raises(
        InputError, match=r"in the one trajectory, .* is 500 tokens long; --max-length 501 is "
    ):
        select_trainable(rows[:1], counts[:1], 100, "truncate")
    with pytest.raises(InputError, match="none of the 1 trajectories has an assistant token"):
        select_trainable(rows[2:], counts[2:], 100, "truncate")


def test_select_trainable_with_overlong_drop() -> None:
    from jupyter_analyst.errors import InputError
    from jupyter_analyst.training.train import select_trainable

    rows = [{"i": 0}, {"i": 1}]
    counts = _counts((900, 500), (700, 300))
    assert select_trainable(rows, counts, 800, "drop") == (
        [{"i": 1}],
        "training on 1 of 2 trajectories, dropped 1 longer than --max-length 800",
    )
    with pytest.raises(
        InputError, match=r"the shortest is 700 tokens long, so use --max-length 700 or more \(or"
    ):
        select_trainable(rows, counts, 600, "drop")
    with pytest.raises(InputError, match=r"\(--overlong truncate would need --max-length 301 or more\)$"):
        select_trainable(rows, counts, 200, "drop")
