"""A LoRA loads onto the module layout it was trained on, or the load fails saying why.

The tiny multimodal base has the real Qwen3.5 / CoPaw-Flash checkpoint's layout
(``Qwen3_5ForConditionalGeneration``, text layers ``model.language_model.layers.N``); its
LoRA is saved with those names, as the CoPaw-Flash DataAnalyst LoRA is. Loaded text-only,
peft would create the LoRA modules, load none of the tensors and only warn.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from jupyter_analyst.errors import BackendError, InputError
from jupyter_analyst.models import EmbeddedModel
from jupyter_analyst.models.adapters import adapter_layout, base_class_for, check_adapter_applied
from jupyter_analyst.models.worker.loading import load_model

USER = [{"role": "user", "content": "Analyse the dataframe df."}]
BODY: dict[str, Any] = {"messages": USER, "max_tokens": 10, "temperature": 0}
LM_LAYERS = "model.language_model.layers."


@pytest.fixture(scope="module")
def tiny_vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jupyter_analyst.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-vl") / "qwen3_5_vl", arch="qwen3_5_vl")


@pytest.fixture(scope="module")
def tiny_vl_lora(tiny_vl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jupyter_analyst.testing import build_tiny_lora

    return build_tiny_lora(tiny_vl_dir, tmp_path_factory.mktemp("tiny-vl-lora") / "lora")


@pytest.fixture(scope="module")
def relabelled_lora(tiny_adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The text-only tiny model's LoRA with its names moved under ``model.language_model.``:
    an adapter for the multimodal layout offered to a base that has no such modules."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("relabelled") / "lora"
    out.mkdir()
    shutil.copy(tiny_adapter_dir / "adapter_config.json", out / "adapter_config.json")
    tensors = load_file(str(tiny_adapter_dir / "adapter_model.safetensors"))
    renamed = {k.replace(".model.layers.", f".{LM_LAYERS}"): v for k, v in tensors.items()}
    save_file(renamed, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    return out


def _args(model: Path, adapter: Path | None = None) -> argparse.Namespace:
    from jupyter_analyst.models.worker.process import parse_args

    return parse_args(
        ["--model", str(model), "--device", "cpu"] + (["--adapter", str(adapter)] if adapter else [])
    )


def _answer(tokenizer: Any, model: Any, cache: str = "dynamic") -> str:
    """Greedy reply through the worker's engine, asked twice so the second hits the prefix cache."""
    from jupyter_analyst.models.worker.engine import Engine

    engine = Engine(tokenizer, model, "t", 10, False, cache_mode=cache, static_tokens=256)
    first = engine.complete(BODY)["choices"][0]["message"]
    again = engine.complete({**BODY, "messages": [*USER, {"role": "assistant", "content": "ok"}, *USER]})
    assert again["choices"][0]["message"]  # a prefix-cache hit on this layout works too
    return json.dumps(first)


def test_layouts_are_read_from_the_adapter_files(
    tiny_vl_dir: Path, tiny_vl_lora: Path, tiny_model_dir: Path, tiny_adapter_dir: Path
) -> None:
    from transformers import AutoModelForCausalLM, Qwen3_5ForConditionalGeneration

    multimodal, text = adapter_layout(tiny_vl_lora), adapter_layout(tiny_adapter_dir)
    assert (multimodal.prefix, multimodal.language_model) == (LM_LAYERS, True)
    assert multimodal.base_model == str(tiny_vl_dir) and "q_proj" in (multimodal.target_modules or ())
    assert all(n.startswith(f"base_model.model.{LM_LAYERS}") for n in multimodal.lora_names)
    assert (text.prefix, text.language_model) == ("model.layers.", False)
    assert json.loads((tiny_vl_dir / "config.json").read_text())["architectures"] == [
        "Qwen3_5ForConditionalGeneration"
    ]
    assert base_class_for(tiny_vl_dir, multimodal) is Qwen3_5ForConditionalGeneration
    assert base_class_for(tiny_vl_dir, text) is AutoModelForCausalLM  # text tower alone: model.layers.N
    assert base_class_for(tiny_model_dir, multimodal) is AutoModelForCausalLM  # nothing else to offer
    assert base_class_for(tiny_vl_dir, None) is AutoModelForCausalLM


def test_multimodal_lora_loads_as_trained_and_changes_greedy_generation(
    tiny_vl_dir: Path, tiny_vl_lora: Path
) -> None:
    from transformers import Qwen3_5ForConditionalGeneration

    tokenizer, model = load_model(_args(tiny_vl_dir, tiny_vl_lora))
    assert isinstance(model.get_base_model(), Qwen3_5ForConditionalGeneration)
    assert check_adapter_applied(model, adapter_layout(tiny_vl_lora)) == 62
    adapted = _answer(tokenizer, model)
    assert _answer(tokenizer, model, cache="static") == adapted  # StaticCache from the composite config
    with model.disable_adapter():
        bare = _answer(tokenizer, model)
    plain_tokenizer, plain = load_model(_args(tiny_vl_dir))  # no adapter: the text tower alone
    assert type(plain).__name__ == "Qwen3_5ForCausalLM"
    assert _answer(plain_tokenizer, plain) == bare  # same weights, same answer on either layout
    assert adapted != bare  # greedy is deterministic, so the difference is the adapter


def test_text_only_load_of_a_multimodal_lora_is_caught(tiny_vl_dir: Path, tiny_vl_lora: Path) -> None:
    """The old loading path (AutoModelForCausalLM + PeftModel) applied nothing, silently."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_vl_dir)
    with pytest.warns(UserWarning, match="missing adapter keys"):  # all peft says about it
        model = PeftModel.from_pretrained(base, str(tiny_vl_lora))
    with pytest.raises(InputError) as info:
        check_adapter_applied(model, adapter_layout(tiny_vl_lora))
    message = str(info.value)
    assert "0 of 62 LoRA tensors found their module, 62 found none" in message
    assert f"e.g. {LM_LAYERS}0.linear_attn." in message
    assert f"trained on a model whose modules are named {LM_LAYERS}*" in message
    assert "loaded as Qwen3_5ForCausalLM, whose modules are model.layers.*" in message


def test_text_layout_lora_on_a_multimodal_base_loads_text_only(tiny_vl_dir: Path, tmp_path: Path) -> None:
    from jupyter_analyst.testing import build_tiny_lora

    lora = build_tiny_lora(tiny_vl_dir, tmp_path / "text-lora", text_only=True)
    _, model = load_model(_args(tiny_vl_dir, lora))
    assert type(model.get_base_model()).__name__ == "Qwen3_5ForCausalLM"


def test_mismatched_adapter_fails_to_load_naming_both_layouts(
    tiny_model_dir: Path, relabelled_lora: Path
) -> None:
    with pytest.raises(InputError) as info:
        load_model(_args(tiny_model_dir, relabelled_lora))
    message = str(info.value)
    assert "\n" not in message and "does not fit the base" in message
    assert "0 of 62 LoRA tensors found their module" in message
    assert f"modules are named {LM_LAYERS}*" in message and "whose modules are model.layers.*" in message


def test_regex_targets_for_the_other_layout_fail_the_same_way(
    tiny_model_dir: Path, relabelled_lora: Path, tmp_path: Path
) -> None:
    lora = shutil.copytree(relabelled_lora, tmp_path / "regex-lora")
    config = json.loads((lora / "adapter_config.json").read_text())
    config["target_modules"] = r".*\.language_model\..*\.(q_proj|v_proj)"
    (lora / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(
        InputError, match=r"target modules matched nothing.*modules are named model\.language"
    ):
        load_model(_args(tiny_model_dir, lora))


@pytest.fixture(scope="module")
def vl_workers(
    tiny_vl_dir: Path, tiny_vl_lora: Path, tiny_model_dir: Path, relabelled_lora: Path
) -> Iterator[dict[str, Any]]:
    """Two workers started in parallel: the multimodal base + its LoRA, and a mismatch."""
    hosts = {
        "vl": EmbeddedModel(
            tiny_vl_dir, adapter=tiny_vl_lora, device="cpu", max_new_tokens=12, startup_timeout=240
        ),
        "bad": EmbeddedModel(tiny_model_dir, adapter=relabelled_lora, device="cpu", startup_timeout=240),
    }

    def start(host: EmbeddedModel) -> BaseException | None:
        try:
            host.start()
        except BackendError as exc:
            return exc
        return None

    try:
        with ThreadPoolExecutor(len(hosts)) as pool:
            outcomes = dict(zip(hosts, pool.map(start, hosts.values()), strict=True))
        yield {"hosts": hosts, "outcomes": outcomes}
    finally:
        for host in hosts.values():
            host.stop()
            if host.log_path is not None:
                host.log_path.unlink(missing_ok=True)


def test_worker_serves_the_multimodal_base_with_its_lora(vl_workers: dict[str, Any]) -> None:
    host = vl_workers["hosts"]["vl"]
    assert vl_workers["outcomes"]["vl"] is None and host.running
    reply = httpx.post(
        host.base_url + "/chat/completions",
        json=BODY,
        headers={"Authorization": f"Bearer {host.api_key}"},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["role"] == "assistant"
    assert host.model_name.endswith("+lora")


def test_worker_with_a_mismatched_adapter_fails_to_start(vl_workers: dict[str, Any]) -> None:
    error = vl_workers["outcomes"]["bad"]
    assert isinstance(error, BackendError)
    message = str(error)
    assert "\n" not in message and "(exit code 3)" in message
    assert "does not fit the base: 0 of 62 LoRA tensors found their module" in message
    assert f"modules are named {LM_LAYERS}*" in message
    assert not vl_workers["hosts"]["bad"].running


def test_extra_or_altered_tensors_are_counted(tiny_vl_dir: Path, tiny_vl_lora: Path, tmp_path: Path) -> None:
    """A partial fit says how much fitted; equal layouts point at another architecture or size."""
    import torch
    from safetensors.torch import load_file, save_file

    lora = shutil.copytree(tiny_vl_lora, tmp_path / "bigger")
    tensors = load_file(str(lora / "adapter_model.safetensors"))
    extra = {
        k.replace(".layers.3.", ".layers.9."): v.clone()
        for k, v in tensors.items()
        if ".layers.3.mlp.up_proj" in k
    }
    save_file({**tensors, **extra}, str(lora / "adapter_model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(InputError) as info:
        load_model(_args(tiny_vl_dir, lora))
    message = str(info.value)
    assert "62 of 64 LoRA tensors found their module, 2 found none" in message
    assert f"e.g. {LM_LAYERS}9.mlp.up_proj.lora_A.weight" in message
    assert f"the layouts match ({LM_LAYERS}*), so the adapter was probably trained on another" in message

    _, model = load_model(_args(tiny_vl_dir, tiny_vl_lora))
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n).add_(1.0)
    with pytest.raises(
        InputError, match="61 of 62 LoRA tensors found their module, 1 found one but hold other"
    ):
        check_adapter_applied(model, adapter_layout(tiny_vl_lora))
