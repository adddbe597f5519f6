"""``jupyter analyst train`` under ``accelerate launch`` with two processes on the CPU (gloo).

The real launcher in a subprocess, as a user runs it, on a tiny local model: the data is
split between the processes (half the optimizer steps, every token counted once), only the
main process prints and writes, and the adapter it wrote loads with peft.

``--multi_gpu`` is what spawns the processes (through torchrun) even on a machine without a
GPU: ``accelerate launch --cpu --num_processes 2`` starts a single process (its CPU launcher
spreads only through mpirun), which ``train`` warns about. ``--device cpu`` then makes every
process train on the CPU with the gloo backend.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from jupyter_analyst.training.trajectory import TrajectoryFilter, TrajectoryWriter, make_record

pytestmark = [
    pytest.mark.timeout(400),
    pytest.mark.skipif(
        any(find_spec(m) is None for m in ("accelerate", "trl", "peft")),
        reason="needs the training extra",
    ),
]

SEQUENCES = 8
LAUNCH_TIMEOUT = 300


def _trajectory(n: int) -> dict:
    """One finished run; ``n`` is a single digit so that every sequence has the same length."""
    msgs: list[dict] = [
        {"role": "system", "content": "Analyse df."},
        {"role": "user", "content": f"Which group has the highest mean x? ({n})"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c0",
                    "type": "function",
                    "function": {"name": "final_answer", "arguments": {"answer": f"Group {n} is highest."}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c0", "name": "final_answer", "content": "ok"},
    ]
    return make_record(msgs, tools=[], meta={"source": "test"})


def _free_port() -> int:
    """A port nobody listens on now, so that parallel runs do not share a rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(argv: list[str], port: int, cwd: Path) -> tuple[int, str]:
    """Run ``argv`` in its own session with no stdin; kill the whole group (the launcher and
    its workers) if it hangs, so a stuck rendezvous cannot outlive the test."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ACCELERATE_")
        and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR")
    }
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"accelerate launch did not finish in {LAUNCH_TIMEOUT}s:\n{out[-4000:]}")
    return proc.returncode, out


def test_train_under_accelerate_launch_with_two_cpu_processes(tmp_path: Path) -> None:
    from jupyter_analyst.testing import build_tiny_model

    model = build_tiny_model(tmp_path / "qwen2", arch="qwen2")
    data = tmp_path / "t.jsonl"
    writer = TrajectoryWriter(data, TrajectoryFilter(keep="finished"))
    for n in range(SEQUENCES):
        assert writer.write(_trajectory(n)) == ""
    # a config file of our own: a user's default accelerate config must not change the launch
    config = tmp_path / "accelerate.yaml"
    config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_machines: 1\n"
        "num_processes: 2\nmixed_precision: 'no'\nuse_cpu: false\n"
    )
    out = tmp_path / "adapter"
    port = _free_port()
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    launch += ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "--main_process_port", str(port)]
    train = ["-m", "jupyter_analyst", "train", "--model", str(model), "--data", str(data), "-o", str(out)]
    train += ["--device", "cpu", "--num-train-epochs", "1", "--per-device-train-batch-size", "1"]
    train += ["--gradient-accumulation-steps", "2", "--max-length", "512", "--no-gradient-checkpointing"]
    train += ["--learning-rate", "1e-2", "--warmup-ratio", "0", "--lora-dropout", "0"]
    code, log = _launch([*launch, *train], port, tmp_path)
    assert code == 0, log[-4000:]
    assert "Traceback" not in log and "warning: one process" not in log, log[-4000:]

    # only the main process prints: each of our lines once
    starts = [line for line in log.splitlines() if line.startswith("jupyter-analyst train:")]
    assert len(starts) == 1, log[-4000:]
    assert "global batch 4 = 1 per device x 2 processes x 2 accumulation steps" in starts[0]
    ends = [line for line in log.splitlines() if line.startswith("trained ")]
    assert len(ends) == 1, log[-4000:]
    counted = re.search(rf"{SEQUENCES} sequences, (\d+)-(\d+) tokens", log)
    assert counted and counted[1] == counted[2], log[-4000:]

    # the data was split: 8 sequences / (1 x 2 processes x 2) = 2 optimizer steps (one process:
    # 4), and the tokens gathered from both processes count every sequence exactly once
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["processes"] == 2 and summary["global_batch"] == 4
    result = summary["result"]
    assert result["steps"] == 2 and result["examples"] == SEQUENCES
    assert result["tokens"] == SEQUENCES * int(counted[1])
    assert result["lora_tensors_changed"] == result["lora_tensors"] > 0
    assert f"trained 2 steps on {SEQUENCES} sequences" in ends[0]
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2"]

    # the adapter the main process wrote is a plain peft adapter with trained weights
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model))
    tuned = PeftModel.from_pretrained(base, str(out))
    lora_b = [p for n, p in tuned.named_parameters() if "lora_B" in n]
    assert lora_b and all(torch.count_nonzero(p) > 0 for p in lora_b)
