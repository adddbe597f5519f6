"""GPU check: QLoRA steps at 4k and 8k tokens and decoding at 4k and 16k context on a Qwen3.5-9B-shaped model.

    python benchmarks/gpu_check.py [--lengths 4096 8192] [--decode-contexts 4096 16384] [--steps 3]
                                   [--json gpu_check.json] [--skip-train]

A benchmark, not a test (CI never needs it). The model is built from a config only, with
random weights (no download): Qwen3.5-9B's language model as published (see
``jupyter_analyst.training.memory.QWEN3_5_9B_TEXT_CONFIG``: hidden 4096, 32 layers = 8 × (3
Gated DeltaNet + 1 gated full attention), 16 heads / 4 KV heads of 256, intermediate 12288,
vocab 248,320, untied head). It is quantised to NF4 (double quant, bf16 compute) like
``jupyter analyst train`` loads it, gets an all-linear r=16 LoRA, and is trained with
gradient checkpointing and paged 8-bit AdamW through TRL's fused LM head (the same loss
SFTTrainer uses). Prints measured peak memory next to the estimate, and tokens per second.

Decoding is measured twice per context, as the worker can serve: a dynamic cache (the
default) and a static cache with ``torch.compile`` (the ``decode_cache = "static"``,
``compile = true`` profile settings): prefill tokens/s, decode tokens/s and peak memory.
The first line says whether the linear-attention layers run on the fast kernels
(``pip install --no-build-isolation '.[cuda]'``) or transformers' reference loops; figures
without them are not the model's real speed. ``--json`` writes everything for the README.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

RESULTS: dict[str, Any] = {"train": [], "decode": []}


def _build(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Qwen3_5TextConfig

    from jupyter_analyst.training.memory import QWEN3_5_9B_TEXT_CONFIG

    cfg = {k: v for k, v in QWEN3_5_9B_TEXT_CONFIG.items() if k != "model_type"}
    config = Qwen3_5TextConfig(**cfg, max_position_embeddings=262144)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    folder = args.workdir
    model.save_pretrained(folder)  # ~18 GB on disk: quantising needs a from_pretrained load
    del model
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return folder, quant, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")


def _load(folder: str, quant, lora=None):  # type: ignore[no-untyped-def]
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=quant, dtype=torch.bfloat16, device_map={"": 0}
    )
    if lora is None:
        return model
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(model)
    model = get_peft_model(model, lora)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.to(torch.bfloat16)
    return model


def train_check(folder: str, quant, lora, lengths: list[int], steps: int) -> None:  # type: ignore[no-untyped-def]
    import bitsandbytes as bnb
    import torch

    from jupyter_analyst.training.memory import (
        QWEN3_5_9B_TEXT_CONFIG,
        estimate_training_memory,
        shape_from_config,
    )

    shape = shape_from_config(QWEN3_5_9B_TEXT_CONFIG)
    model = _load(folder, quant, lora)  # fresh: nothing ran a no-grad forward on it (design.md §7)
    opt = bnb.optim.PagedAdamW8bit([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab = QWEN3_5_9B_TEXT_CONFIG["vocab_size"]
    for n in lengths:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        ids = torch.randint(0, vocab, (1, n), device="cuda")
        labels = ids.clone()
        labels[:, : n // 2] = -100  # half the tokens supervised, like assistant-only loss
        times = []
        for _ in range(steps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model(input_ids=ids, labels=labels, fused_lm_head=True)
            loss = -out.log_probs.sum() / (labels != -100).sum()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        best = min(times[1:] or times)
        peak = torch.cuda.max_memory_allocated() / 1e9
        est = estimate_training_memory(shape, n).total_gb
        print(
            f"QLoRA train  {n:>6} tokens: peak {peak:6.2f} GB allocated (estimate {est:5.2f} GB), "
            f"{best:6.2f} s/step, {n / best:8.0f} tokens/s, loss {loss.item():.3f}",
            flush=True,
        )
        RESULTS["train"].append(
            {
                "tokens": n,
                "peak_gb": round(peak, 2),
                "estimate_gb": round(est, 2),
                "tokens_per_s": round(n / best),
            }
        )
    del model, opt
    torch.cuda.empty_cache()


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _generate(model, ids, new_tokens: int, static: bool) -> float:  # type: ignore[no-untyped-def]
    kwargs: dict[str, Any] = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
    if static:
        kwargs["cache_implementation"] = "static"  # compiled on CUDA by generate itself
    else:
        kwargs["disable_compile"] = True
    _sync()
    t0 = time.perf_counter()
    model.generate(ids, **kwargs)
    _sync()
    return time.perf_counter() - t0


def measure_decode(model, contexts: list[int], new_tokens: int) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Prefill and decode speed per context, dynamic cache vs static cache + compile.

    Any device (a test runs it on a tiny model on the CPU, where nothing compiles); peak
    memory is measured on CUDA only.
    """
    import torch

    cuda = torch.cuda.is_available() and model.device.type == "cuda"
    vocab = model.config.get_text_config().vocab_size
    rows: list[dict[str, Any]] = []
    for context in contexts:
        ids = torch.randint(0, vocab, (1, context), device=model.device)
        for mode in ("dynamic", "static+compile"):
            static = mode != "dynamic"
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                warm = time.perf_counter()
                _generate(model, ids, new_tokens, static)  # the first static call compiles (minutes)
                first = time.perf_counter() - warm
                prefill = _generate(model, ids, 1, static)
                total = _generate(model, ids, new_tokens, static)
            decode = max(total - prefill, 1e-6)
            row: dict[str, Any] = {
                "context": context,
                "mode": mode,
                "prefill_tokens_per_s": round(context / prefill),
                "decode_tokens_per_s": round((new_tokens - 1) / decode, 1),
                "first_call_s": round(first, 1),
            }
            if cuda:
                row["peak_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
            rows.append(row)
            print(
                f"NF4 decode   {context:>6} context, {mode:<14}: peak {row.get('peak_gb', 0):6.2f} GB, "
                f"prefill {row['prefill_tokens_per_s']:8.0f} tokens/s, "
                f"decode {row['decode_tokens_per_s']:6.1f} tokens/s (first call {first:.1f} s)",
                flush=True,
            )
    base = {r["context"]: r["decode_tokens_per_s"] for r in rows if r["mode"] == "dynamic"}
    for r in rows:
        if r["mode"] != "dynamic" and base.get(r["context"]):
            ratio = r["decode_tokens_per_s"] / base[r["context"]]
            print(f"static+compile / dynamic decode at {r['context']}: {ratio:.2f}x", flush=True)
    return rows


def decode_check(folder: str, quant, contexts: list[int], new_tokens: int) -> None:  # type: ignore[no-untyped-def]
    from jupyter_analyst.models.worker.fastpath import describe, kernel_report

    model = _load(folder, quant).eval()
    report = kernel_report(model)
    RESULTS["kernels"] = report
    print(describe(report), flush=True)
    RESULTS["decode"] = measure_decode(model, contexts, new_tokens)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192], help="training sequence lengths")
    p.add_argument(
        "--decode-contexts",
        type=int,
        nargs="+",
        default=[4096, 16384],
        help="contexts for the decoding check",
    )
    p.add_argument("--skip-train", action="store_true", help="only the decoding check")
    p.add_argument("--json", type=Path, help="write the figures (and the kernel report) here as JSON")
    p.add_argument("--new-tokens", type=int, default=128, help="tokens decoded")
    p.add_argument("--steps", type=int, default=3, help="training steps per length (the first warms up)")
    p.add_argument("--workdir", default="/tmp/qwen3_5_9b_random", help="where the random model is saved")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed (pip install -e '.[train]')", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU here; this check needs one; nothing was run.",
            file=sys.stderr,
        )
        return 2
    import transformers

    print(f"gpu_check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    RESULTS.update(
        device=torch.cuda.get_device_name(0), torch=torch.__version__, transformers=transformers.__version__
    )
    folder, quant, lora = _build(args)
    try:
        if not args.skip_train:
            train_check(folder, quant, lora, args.lengths, args.steps)
        decode_check(folder, quant, args.decode_contexts, args.new_tokens)
    finally:
        if args.json:
            args.json.write_text(json.dumps(RESULTS, indent=2) + "\n", encoding="utf-8")
            print(f"figures -> {args.json}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
