"""``jupyter analyst merge``: fold a LoRA adapter into its base for servers without LoRA support.

    jupyter analyst merge --model Qwen/Qwen3.5-9B --adapter adapters/analyst -o merged/ [--dtype bfloat16]

The base is loaded unquantised (merging into 4-bit weights would round the update away),
the adapter applied and merged, and the result saved with the base's tokenizer, ready for
``vllm serve merged/``, llama.cpp conversion or ``jupyter analyst run --model merged/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("merge", help="merge a LoRA adapter into its base model and save the result")
    p.add_argument("--model", required=True, help="base model: Hugging Face id or local folder")
    p.add_argument("--adapter", required=True, help="adapter folder (from `jupyter analyst train`)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for the merged model")
    p.add_argument(
        "--dtype",
        choices=["bfloat16", "float16", "float32"],
        default="bfloat16",
        help="dtype of the merged weights (default bfloat16)",
    )


def merge(model: str, adapter: str, output: Path, dtype: str = "bfloat16") -> Path:
    """Load base + adapter unquantised on CPU, merge, save model and tokenizer to ``output``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype), device_map="cpu")
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    output.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(output))
    AutoTokenizer.from_pretrained(model).save_pretrained(str(output))
    return output


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError

    if not (Path(args.adapter) / "adapter_config.json").exists():
        raise InputError(f"{args.adapter} holds no adapter_config.json")
    if args.output.exists() and any(args.output.iterdir()):
        raise InputError(f"{args.output} exists and is not empty")
    print(f"merging {args.adapter} into {args.model} ...", file=sys.stderr, flush=True)
    target = merge(args.model, args.adapter, args.output, args.dtype)
    print(f"wrote {target}", file=sys.stderr)
    return 0
