"""A tiny analyst from scratch, end to end on real baseline trajectories (offline, small):
`scratch` makes a tokenizer + random decoder that speak the real Qwen3.5 format, `train` trains
every parameter of it (loss goes down, tokens/s reported), and the worker serves the trained
folder through the real loop to a valid notebook, with and without the tool-call grammar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_analyst.training.scratch import MARKER_FILE, TOOL_TAGS, Size

pytestmark = pytest.mark.timeout(600)

CONTEXT = 2048
SHAPE = Size(hidden=64, layers=2, heads=2, kv_heads=1, intermediate=128)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trajectories(baseline_trajectories: Path) -> Path:
    """Two real trajectories of the baseline analyst, written by `collect` (conftest)."""
    return baseline_trajectories


@pytest.fixture(scope="module")
def scratch(trajectories: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jupyter_analyst.training.scratch import build_scratch_model

    out = tmp_path_factory.mktemp("scratch") / "tiny"
    return build_scratch_model([trajectories], out, vocab_size=1024, size=SHAPE, context=CONTEXT, seed=0)


@pytest.fixture(scope="module")
def trained(scratch: Path, trajectories: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`jupyter analyst train` on the scratch folder, from the CLI (full-parameter by itself)."""
    import contextlib
    import io

    from jupyter_analyst.cli import main

    out = tmp_path_factory.mktemp("scratch-trained") / "tuned"
    argv = ["train", "--model", str(scratch), "--data", str(trajectories), "-o", str(out)]
    argv += ["--max-steps", "8", "--learning-rate", "5e-3", "--warmup-ratio", "0", "--device", "cpu"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(argv) == 0
    return out, err.getvalue()


def test_scratch_folder_speaks_the_real_format(scratch: Path, trajectories: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    from jupyter_analyst.testing.tiny_model import SPECIAL_TOKENS, TAG_TOKENS
    from jupyter_analyst.training.chat_template import training_template
    from jupyter_analyst.training.scratch import chat_template

    tok = AutoTokenizer.from_pretrained(scratch)
    assert tok.chat_template == chat_template()  # Qwen3.5's own template, byte for byte
    for tag in [*SPECIAL_TOKENS, *TAG_TOKENS, *TOOL_TAGS]:
        assert tok.tokenize(tag) == [tag], tag  # one token each
    special = {t.content: t.special for t in tok.added_tokens_decoder.values()}
    assert all(special[t] for t in SPECIAL_TOKENS)
    assert not any(special[t] for t in [*TAG_TOKENS, *TOOL_TAGS])  # tags survive decoding
    call = "<tool_call>\n<function=final_answer>\n<parameter=answer>\nDone.\n</parameter>\n"
    call += "</function>\n</tool_call>"
    assert tok.decode(tok.encode(call), skip_special_tokens=True) == call
    # the trainer's marked template renders the same text and masks only the assistant
    template, how = training_template(tok)
    assert "generation markers added" in how
    rec = json.loads(trajectories.read_text().splitlines()[0])
    assert "<tool_call>\n<function=" in tok.apply_chat_template(
        rec["messages"], tools=rec["tools"], tokenize=False
    )
    config = AutoConfig.from_pretrained(scratch)
    assert config.max_position_embeddings == CONTEXT and config.model_type == "llama"
    info = json.loads((scratch / MARKER_FILE).read_text())
    assert info["context"] == CONTEXT and info["trajectories"] == 2 and info["parameters"] > 0


def test_full_training_lowers_the_loss_and_writes_a_whole_model(trained: tuple[Path, str]) -> None:
    out, log = trained
    assert "full-parameter training: a model made by `jupyter analyst scratch`" in log
    assert "tokens/s" in log
    summary = json.loads((out / "training_summary.json").read_text())
    result = summary["result"]
    assert result["method"] == "full" and result["steps"] == 8
    assert result["lora_tensors_changed"] == result["lora_tensors"] > 0  # every parameter tensor moved
    assert result["tokens"] >= 8 * 1000 and result["tokens_per_second"] > 0
    losses = result["losses"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    assert summary["config"]["max_length"] == CONTEXT  # the model's own context by default
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    info = json.loads((out / MARKER_FILE).read_text())
    assert info["training"][-1]["steps"] == 8  # still a scratch model: a second train is full too
    from transformers import AutoTokenizer

    from jupyter_analyst.training.scratch import chat_template

    assert AutoTokenizer.from_pretrained(out).chat_template == chat_template()  # not the marked copy


def test_trained_model_drives_the_real_loop_to_a_valid_notebook(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    """What `jupyter analyst run penguins.csv --model DIR --max-steps 2` does, through the host API."""
    import nbformat

    from jupyter_analyst.agent.loop import Budget
    from jupyter_analyst.models.select import PolicyChoice, build_policy
    from jupyter_analyst.runner import RunConfig, run_analysis

    out = tmp_path / "penguins.ipynb"
    choice = PolicyChoice(model=str(trained[0]), device="cpu", max_new_tokens=48)
    with build_policy(choice) as handle:
        assert getattr(handle.policy, "context_tokens", None) == CONTEXT  # the folder's window sizes the run
        config = RunConfig(data=ROOT / "examples" / "penguins.csv", output=out, budget=Budget(max_steps=2))
        outcome = run_analysis(config, handle.policy, label=handle.label)
    assert outcome.finished.steps == 2
    nb = nbformat.read(out, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].source.startswith("# Analysis of `penguins.csv`")
    assert str(trained[0]) in nb.cells[0].source  # the header names the model that wrote it


def test_constrained_decoding_with_the_scratch_tokenizer(trained: tuple[Path, str]) -> None:
    pytest.importorskip("llguidance")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jupyter_analyst.agent.prompts import SYSTEM_PROMPT
    from jupyter_analyst.agent.tools import TOOLS
    from jupyter_analyst.models.worker.engine import Engine
    from jupyter_analyst.models.worker.grammar import reply_problem, token_tags
    from jupyter_analyst.models.worker.process import make_constraint

    tok = AutoTokenizer.from_pretrained(trained[0])
    tags = token_tags(tok)
    assert set(tags) == {"<tool_call>", "</tool_call>", "<think>", "</think>", *TOOL_TAGS}
    assert tags["<function="].startswith("<[") and tags["</function>"] == "</function>"
    model = AutoModelForCausalLM.from_pretrained(trained[0]).eval()
    engine = Engine(tok, model, "scratch", 48, enable_thinking=False, prefix_cache=False)
    engine.constraint = make_constraint("on", engine)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": "Task: which island has the heaviest penguins?\n\nDataFrame `df`: 344 rows",
        },
    ]
    for seed in range(3):
        body = {"messages": messages, "tools": TOOLS, "temperature": 1.0, "seed": seed, "max_tokens": 48}
        reply = engine.complete(body)
        message = reply["choices"][0]["message"]
        assert message.get("tool_calls"), message  # a call the loop can act on, every time
        assert reply_problem(_as_text(message)) == "", message


def _as_text(message: dict[str, Any]) -> str:
    """The reply re-rendered in the XML call form (what ``reply_problem`` reads)."""
    parts = []
    for call in message["tool_calls"]:
        args = json.loads(call["function"]["arguments"])
        params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
        parts.append(f"<tool_call>\n<function={call['function']['name']}>\n{params}</function>\n</tool_call>")
    return "\n".join(parts)


def test_context_sizes_follow_the_model_window(scratch: Path, tmp_path: Path) -> None:
    from jupyter_analyst.agent.loop import DEFAULT_CONTEXT_CHARS, context_sizes
    from jupyter_analyst.agent.observe import DEFAULT_LIMIT
    from jupyter_analyst.models.profiles import model_context

    assert context_sizes(None) == context_sizes(16384) == (DEFAULT_LIMIT, DEFAULT_CONTEXT_CHARS)
    small_obs, small_chars = context_sizes(4096)
    assert small_obs < DEFAULT_LIMIT and small_chars < DEFAULT_CONTEXT_CHARS
    assert small_chars / 3 < 4096  # the history fits the window at 3 characters a token
    assert context_sizes(2048) < context_sizes(4096)
    assert model_context(str(scratch)) == CONTEXT
    assert model_context(str(tmp_path)) == 16384  # no config: the 16k default
    assert model_context("Qwen/Qwen3.5-9B") == 16384
