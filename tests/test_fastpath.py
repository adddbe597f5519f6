"""The CUDA fast path's CPU-checkable parts: the kernel report, the static cache, the flags.

The speed itself needs a GPU (``benchmarks/gpu_check.py``); here we check that the static
cache gives the very tokens the dynamic one gives, keeps its tensors in place across
requests (what a compiled decode step needs), falls back when a prompt won't fit, and that
the worker and its host say which linear-attention kernels are bound.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import httpx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from jupyter_analyst.models import EmbeddedModel  # noqa: E402
from jupyter_analyst.models.profiles import load_profiles  # noqa: E402
from jupyter_analyst.models.worker.engine import Engine  # noqa: E402
from jupyter_analyst.models.worker.fastpath import (  # noqa: E402
    _bound_is_fast,
    copy_into,
    describe,
    kernel_report,
    new_cache,
)

SYSTEM = [{"role": "system", "content": "You analyse data."}, {"role": "user", "content": "Look at df."}]


def _load(folder: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[Any, Any]:
    return _load(tiny_model_dir)


def _run(engine: Engine, steps: int = 4) -> list[tuple[str, int, int]]:
    """A run's conversation: each step appends the reply's stand-in and a tool result."""
    messages: list[dict[str, Any]] = list(SYSTEM)
    seen = []
    for i in range(steps):
        reply = engine.complete({"messages": messages, "temperature": 0, "max_tokens": 12})
        usage = reply["usage"]
        seen.append(
            (
                reply["choices"][0]["message"].get("content") or "",
                usage["prompt_tokens_details"]["cached_tokens"],
                usage["completion_tokens"],
            )
        )
        messages += [
            {"role": "assistant", "content": f"step {i}"},
            {"role": "tool", "content": f"mean of column {i}: 3.{i}"},
        ]
    return seen


def _addresses(cache: Any) -> list[int]:
    out = []
    for layer in cache.layers:
        for value in vars(layer).values():
            tensors = value.values() if isinstance(value, dict) else [value]
            out += [t.data_ptr() for t in tensors if isinstance(t, torch.Tensor) and t.numel() > 1]
    return out


def test_static_cache_gives_the_dynamic_caches_tokens_and_keeps_its_tensors(tiny: tuple[Any, Any]) -> None:
    tok, model = tiny
    dynamic = _run(Engine(tok, model, "t", 12, False, True))
    engine = Engine(tok, model, "t", 12, False, True, cache_mode="static", static_tokens=512)
    first = engine.complete({"messages": SYSTEM, "temperature": 0, "max_tokens": 12})
    assert first["usage"]["completion_tokens"] > 0
    before = _addresses(engine._work)
    static = _run(engine)
    assert [(text, n) for text, _, n in static] == [(text, n) for text, _, n in dynamic]
    # The first step hits too: the priming request above had the same prompt.
    assert [hit for _, hit, _ in static][1:] == [hit for _, hit, _ in dynamic][1:]
    assert all(hit > 0 for _, hit, _ in static[1:]), "every appended step reuses the prefix"
    assert before and _addresses(engine._work) == before, "the static cache is refilled in place"
    assert engine.static_misses == 0
    assert engine.decode_info() == {
        "cache": "static",
        "prefix_cache": True,
        "static_tokens": 512,
        "compile": False,
        "static_misses": 0,
    }


def test_a_prompt_too_long_for_the_static_cache_uses_a_dynamic_one(tiny: tuple[Any, Any]) -> None:
    tok, model = tiny
    want = Engine(tok, model, "t", 12, False, False).complete({"messages": SYSTEM, "temperature": 0})
    engine = Engine(tok, model, "t", 12, False, True, cache_mode="static", static_tokens=16)
    got = engine.complete({"messages": SYSTEM, "temperature": 0})
    assert got["choices"] == want["choices"]
    assert engine.static_misses == 1
    # No prefix cache: the static cache still serves, empty each time.
    plain = Engine(tok, model, "t", 12, False, False, cache_mode="static", static_tokens=512)
    assert plain.complete({"messages": SYSTEM, "temperature": 0})["choices"] == want["choices"]
    assert plain.complete({"messages": SYSTEM, "temperature": 0})["choices"] == want["choices"]


def test_copy_into_refuses_another_layout(tiny: tuple[Any, Any], tiny_qwen2_dir: Path) -> None:
    _, model = tiny
    _, other = _load(tiny_qwen2_dir)
    a = new_cache(model, "static", 32)
    b = new_cache(other, "dynamic", 0)
    b.layers = b.layers[:2]
    with pytest.raises(ValueError, match="layouts"):
        copy_into(a, b)


def test_kernel_report_names_the_reference_kernels_and_the_fix(
    tiny: tuple[Any, Any], tiny_qwen2_dir: Path
) -> None:
    _, model = tiny
    report = kernel_report(model)
    assert report["linear_attention"] is True
    assert report["fast"] is False
    assert set(report["kernels"]) >= {"causal_conv1d_fn", "torch_chunk_gated_delta_rule"}
    installed = {
        name for name in ("fla", "causal_conv1d") if __import__("importlib").util.find_spec(name) is not None
    }
    if not installed:  # the CPU machines of CI: neither package
        assert set(report["kernels"].values()) == {"torch"}
        assert report["missing"] == ["causal-conv1d", "flash-linear-attention"]
        assert "jupyter-analyst[cuda]" in describe(report)
    _, plain = _load(tiny_qwen2_dir)
    assert kernel_report(plain) == {"linear_attention": False, "fast": None, "kernels": {}}
    assert describe(kernel_report(plain)) == "linear-attention kernels: not used by this model"


def test_bound_kernel_detection_reads_transformers_own_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decorator transformers puts on the kernels binds a package's function when it
    imports; our report must see the difference (a stand-in package here)."""
    from transformers.integrations.hub_kernels import use_kernel_func_from_hub_with_fallback

    def reference(x: Any, weight: Any = None) -> Any:
        return x

    missing = use_kernel_func_from_hub_with_fallback("causal_conv1d_fn", "no_such_kernel_package")(reference)
    assert _bound_is_fast(missing) is False
    fake = types.ModuleType("fake_kernel_package")
    fake.causal_conv1d_fn = lambda x, weight=None: x  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_kernel_package", fake)
    bound = use_kernel_func_from_hub_with_fallback("causal_conv1d_fn", "fake_kernel_package")(reference)
    assert _bound_is_fast(bound) is True
    assert _bound_is_fast(len) is None


def test_profile_flags_reach_the_worker_and_it_reports_them(tiny_model_dir: Path, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        '[profiles.fast]\ninherits = "qwen3.5-9b-4bit"\ndecode_cache = "static"\ncompile = true\n'
        "context_length = 8192\n",
        encoding="utf-8",
    )
    fast = load_profiles(profiles)["fast"]
    assert (fast.decode_cache, fast.compile, fast.context_length) == ("static", True, 8192)
    host = EmbeddedModel(
        tiny_model_dir,
        device="cpu",
        max_new_tokens=16,
        startup_timeout=240,
        cache=fast.decode_cache,
        compile=fast.compile,
        max_context=1024,
    )
    command = host.command()
    assert command[command.index("--cache") + 1] == "static" and "--compile" in command
    host.start()
    try:
        assert host.kernels["linear_attention"] is True and host.kernels["fast"] is False
        health = httpx.get(
            host.base_url.removesuffix("/v1") + "/health",
            headers={"Authorization": f"Bearer {host.api_key}"},
            timeout=30,
        ).json()
        assert health["decode"]["cache"] == "static"
        assert health["decode"]["static_tokens"] == 1024 + 16
        assert health["decode"]["compile"] is False  # CPU: nothing to compile for
        assert health["kernels"] == host.kernels
        reply = httpx.post(
            host.base_url + "/chat/completions",
            json={"messages": SYSTEM, "max_tokens": 4, "temperature": 0},
            headers={"Authorization": f"Bearer {host.api_key}"},
            timeout=120,
        )
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] > 0
        log = host.log_path.read_text(encoding="utf-8") if host.log_path else ""
        assert "linear-attention kernels: reference PyTorch" in log
        assert "--compile takes effect only with --cache static on CUDA" in log
    finally:
        host.stop()
    with pytest.raises(ValueError, match="cache must be"):
        EmbeddedModel(tiny_model_dir, cache="paged")


def test_gpu_check_decode_measure_runs_on_any_device(tiny: tuple[Any, Any]) -> None:
    """The GPU check's decoding part, on the tiny model on the CPU: the code a GPU task runs
    must not fail there for a reason a CPU could have shown."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    assert spec is not None and spec.loader is not None
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    rows = gpu_check.measure_decode(tiny[1], [24], 4)
    assert [r["mode"] for r in rows] == ["dynamic", "static+compile"]
    assert all(r["prefill_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0 for r in rows)
