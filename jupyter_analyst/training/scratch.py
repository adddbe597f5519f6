"""A tiny analyst model from scratch: a tokenizer trained on trajectories and a small decoder.

    jupyter analyst scratch --data traj.jsonl -o models/tiny [--size s --context 4096 --vocab-size 4096]
    jupyter analyst train --model models/tiny --data traj.jsonl -o models/tiny-tuned   # full-parameter

No downloadable weights are needed: the byte-level BPE (``testing.tiny_model.train_tokenizer``,
Qwen3.5's pre-tokenizer) learns its merges from the trajectories rendered exactly as the
trainer and the worker render them, and the weights start random. What makes it an analyst
of this product and not a toy is the format, which is the real one:

* the chat template is Qwen3.5's own (the one Qwen3.5-9B ships, bundled with TRL), so the
  loop, the embedded worker (``--model DIR``) and ``train`` render prompts identically;
* the control tokens (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``) are special, and
  every tag of the tool-call form (``<tool_call>``, ``<function=``, ``<parameter=``, their
  closers, ``<think>``, ``<tool_response>``) is one added token, so the model emits a tag in
  one step and the constrained-decoding grammar (``models/worker/grammar.py``) names them
  as tokens.

The decoder is a Llama-shaped model with full attention (``SIZES``; measured on 2 CPU
cores, see ``ARCHS``): Qwen3.5's linear-attention layers have no fast CPU kernels. Its
``max_position_embeddings`` is the context it is trained at; ``model_context`` reads it
back so the run sizes prompts and observations to it (``models/select.py``). A ``scratch.json``
in the folder marks it as made here: ``train`` then trains every parameter instead of LoRA.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MARKER_FILE = "scratch.json"
"""Written into a folder made here; ``train`` reads it to pick full-parameter training."""

TEMPLATE_FILE = "qwen3_5_think.jinja"
"""Qwen3.5's original template as Qwen3.5-4B and larger ship it (TRL bundles the originals)."""

TOOL_TAGS = ("<function=", "</function>", "<parameter=", "</parameter>")
"""The tool-call tags besides ``tiny_model.TAG_TOKENS``; one added token each here."""


@dataclass(frozen=True)
class Size:
    """The decoder's shape (head_dim = hidden / heads)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int


SIZES: dict[str, Size] = {
    "xs": Size(hidden=128, layers=4, heads=4, kv_heads=2, intermediate=384),
    "s": Size(hidden=256, layers=4, heads=4, kv_heads=2, intermediate=768),
    "m": Size(hidden=384, layers=6, heads=6, kv_heads=2, intermediate=1024),
}
"""Named sizes: xs for tests, s the default for 2 CPU cores, m when there is more time."""

ARCHS = ("llama", "qwen2", "qwen3")
"""Full-attention decoders that load through ``AutoModelForCausalLM``."""


def chat_template() -> str:
    """The real Qwen3.5 chat template text (raises ``InputError`` when TRL is missing)."""
    from ..errors import InputError

    try:
        import trl
    except ImportError:
        raise InputError(
            "a model from scratch needs the training extras: pip install 'jupyter-analyst[train]'"
        ) from None
    path = Path(trl.__file__).parent / "chat_templates" / TEMPLATE_FILE
    if not path.exists():
        raise InputError(f"this TRL ({trl.__version__}) does not bundle {TEMPLATE_FILE}; install trl>=1.16")
    return path.read_text(encoding="utf-8")


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every trajectory in ``paths`` (no filter: the tokenizer should know all the text seen)."""
    from ..errors import InputError
    from .trajectory import BadTrajectory, normalize_messages, read_trajectories

    records = []
    for path in paths:
        if not Path(path).exists():
            raise InputError(f"trajectory file not found: {path}")
        for rec in read_trajectories(path):
            try:
                records.append({**rec, "messages": normalize_messages(rec["messages"])})
            except (BadTrajectory, KeyError):
                continue
    if not records:
        raise InputError("no trajectory to build a tokenizer from (the files are empty or malformed)")
    return records


def rendered_texts(records: Sequence[dict[str, Any]], template: str) -> Iterator[str]:
    """Each trajectory as the trainer and the worker render it (tools in the system turn)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    for rec in records:
        rendered: Any = render_jinja_template(  # (texts, generation spans), whatever the hint says
            conversations=[rec["messages"]],
            tools=rec.get("tools") or None,
            chat_template=template,
            enable_thinking=False,
        )
        yield rendered[0][0]


def build_tokenizer(texts: Iterable[str], vocab_size: int, template: str, context: int) -> Any:
    """The BPE trained on ``texts`` with every control and tag token (see the module doc)."""
    from ..testing.tiny_model import TAG_TOKENS, train_tokenizer

    return train_tokenizer(
        texts, vocab_size, tags=[*TAG_TOKENS, *TOOL_TAGS], chat_template=template, model_max_length=context
    )


def build_config(arch: str, size: Size, vocab: int, context: int, eos_id: int, pad_id: int) -> Any:
    """A transformers config for ``arch`` at ``size`` (tied embeddings: the vocabulary is small)."""
    from transformers import AutoConfig

    if arch not in ARCHS:
        from ..errors import InputError

        raise InputError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHS)}")
    if size.hidden % size.heads or size.heads % size.kv_heads:
        raise ValueError(f"{size}: hidden must divide by heads and heads by kv_heads")
    return AutoConfig.for_model(
        arch,
        vocab_size=vocab,
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        head_dim=size.hidden // size.heads,
        max_position_embeddings=context,
        tie_word_embeddings=True,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
        use_cache=True,
    )


def build_scratch_model(
    trajectories: Sequence[str | Path],
    out: str | Path,
    *,
    vocab_size: int = 4096,
    size: str | Size = "s",
    context: int = 4096,
    seed: int = 0,
    arch: str = "llama",
) -> Path:
    """Write a tokenizer trained on ``trajectories`` and a random ``arch`` decoder to ``out``.

    The folder loads with ``AutoTokenizer``/``AutoModelForCausalLM`` offline, serves with
    ``jupyter analyst run data.csv --model OUT`` and trains (every parameter) with
    ``jupyter analyst train --model OUT``.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from ..errors import InputError

    shape = SIZES[size] if isinstance(size, str) and size in SIZES else size
    if not isinstance(shape, Size):
        raise InputError(f"unknown size {size!r}; use one of {', '.join(SIZES)}")
    if context < 256:
        raise InputError(f"--context {context} is too small to hold even the system prompt")
    out = Path(out)
    records = load_records(trajectories)
    template = chat_template()
    tokenizer = build_tokenizer(rendered_texts(records, template), vocab_size, template, context)
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    vocab = (len(tokenizer) + 63) // 64 * 64  # a round embedding size is faster on CPU
    config = build_config(arch, shape, vocab, context, eos_id, pad_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=False
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    marker = {
        "made_by": "jupyter analyst scratch",
        "arch": arch,
        "size": size if isinstance(size, str) else "custom",
        "shape": asdict(shape),
        "context": context,
        "vocab_size": vocab,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trajectories": len(records),
        "template": TEMPLATE_FILE,
        "seed": seed,
    }
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2))
    return out


def scratch_info(folder: str | Path) -> dict[str, Any] | None:
    """What ``scratch.json`` says about a model folder; ``None`` when it was not made here."""
    path = Path(folder).expanduser() / MARKER_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "scratch",
        help="make a tiny model from scratch: a tokenizer trained on trajectories + a random decoder",
        description="Train a byte-level BPE on trajectory JSONL files (rendered with the real Qwen3.5 chat "
        "template, tool-call tags as single tokens) and write it with a randomly initialised decoder. "
        "Train it with `jupyter analyst train --model DIR` (every parameter), serve it with --model DIR.",
    )
    p.add_argument("--data", nargs="+", required=True, help="trajectory JSONL files")
    p.add_argument("-o", "--output-dir", required=True, help="the model folder to write")
    p.add_argument("--size", choices=list(SIZES), default="s", help="decoder size (default s)")
    p.add_argument("--arch", choices=list(ARCHS), default="llama", help="architecture (default llama)")
    p.add_argument("--context", type=int, default=4096, help="context length in tokens (default 4096)")
    p.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary size (default 4096)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the initial weights")


def run(args: argparse.Namespace) -> int:
    out = build_scratch_model(
        args.data,
        args.output_dir,
        vocab_size=args.vocab_size,
        size=args.size,
        context=args.context,
        seed=args.seed,
        arch=args.arch,
    )
    info = scratch_info(out) or {}
    print(
        f"jupyter-analyst scratch: {info.get('arch')} {info.get('size')} "
        f"({info.get('parameters', 0) / 1e6:.1f}M parameters, vocabulary {info.get('vocab_size')}, "
        f"context {info.get('context')}) from {info.get('trajectories')} trajectories -> {out}",
        file=sys.stderr,
    )
    return 0
