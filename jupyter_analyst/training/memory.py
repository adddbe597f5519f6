"""Peak GPU memory of a LoRA/QLoRA run, estimated from the model's config before loading it.

The formula (per GPU, micro-batch ``b``, sequence length ``L``; bytes)::

    weights      = Σ decoder Linear params × q  +  other params (embeddings, lm_head, norms, conv) × 2
                   q = 0.5625 for NF4 4-bit (4 bits + double-quantised block scales), 2 for bf16
    lora         = LoRA params × (param + grad + 2 Adam states)
                   QLoRA: 2 + 2 + 2 (TRL keeps adapters in bf16; paged 8-bit AdamW states)
                   LoRA:  4 + 4 + 8 (fp32 adapters, fp32 AdamW)
    checkpoints  = layers × b·L × hidden × 2        (each decoder layer's bf16 input, kept by
                                                   gradient checkpointing)
    layer        = 2 × b·L × (Σ Linear outputs of the widest layer + 2·intermediate + 4·hidden) × 2
                   (one layer recomputed in backward: its activations and their gradients)
    lm head      = min(b·L, 4096) × 8192 × 4 × 2   (TRL's fused LM head: log-probs of supervised
                                                   tokens from fp32 tiles of 4096 tokens × a vocabulary
                                                   slice, forward and backward; no full logits)
    overhead     = 1.0 GB                           (CUDA context, allocator fragmentation)

Without the fused head the full logits would cost b·L × vocab × ~12 bytes (49 GB at 16k
tokens for a 248k vocabulary): that is why this pipeline relies on TRL >= 1.16's SFTTrainer.
It is an estimate, accurate to perhaps ±20%: ``benchmarks/gpu_check.py`` measures the
real peak on a GPU. Only shapes are needed, so it runs anywhere without torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NF4_BYTES = 0.5625
GB = 1e9

QWEN3_5_9B_TEXT_CONFIG: dict[str, Any] = {
    "model_type": "qwen3_5_text",
    "vocab_size": 248320,
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "attn_output_gate": True,
    "layer_types": (["linear_attention"] * 3 + ["full_attention"]) * 8,
    "linear_conv_kernel_dim": 4,
    "linear_key_head_dim": 128,
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 32,
    "linear_value_head_dim": 128,
    "tie_word_embeddings": False,
}
"""Qwen3.5-9B's language model (the ``text_config`` of its config.json, as published; the
vision tower is not loaded by ``AutoModelForCausalLM``). Used when the real config is not
on disk, and by ``benchmarks/gpu_check.py``."""

KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "Qwen/Qwen3.5-9B": QWEN3_5_9B_TEXT_CONFIG,
    "agentscope-ai/CoPaw-Flash-9B": QWEN3_5_9B_TEXT_CONFIG,
}


@dataclass
class Linear:
    name: str
    fan_in: int
    fan_out: int


@dataclass
class ModelShape:
    """The linear layers of each decoder layer, and the parameters outside them."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    layers: list[list[Linear]]
    other_params: int
    name: str = ""

    @property
    def linear_params(self) -> int:
        return sum(lin.fan_in * lin.fan_out for layer in self.layers for lin in layer)

    @property
    def total_params(self) -> int:
        return self.linear_params + self.other_params

    def lora_params(self, r: int, targets: str | list[str] = "all-linear") -> int:
        """Parameters of a rank-``r`` LoRA on ``targets`` (``all-linear`` or module-name suffixes)."""
        names = None if targets == "all-linear" else set(targets)
        return sum(
            r * (lin.fan_in + lin.fan_out)
            for layer in self.layers
            for lin in layer
            if names is None or lin.name in names
        )


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, **config["text_config"]} if isinstance(config.get("text_config"), dict) else config


def shape_from_config(config: dict[str, Any], name: str = "") -> ModelShape:
    """Linear shapes of a decoder-only config: dense (Llama/Qwen2/Qwen3) or hybrid Qwen3.5."""
    c = _text_config(config)
    h, inter, vocab = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    n = c["num_hidden_layers"]
    heads = c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or heads
    hd = c.get("head_dim") or h // heads
    types = c.get("layer_types") or ["full_attention"] * n
    mlp = [Linear("gate_proj", h, inter), Linear("up_proj", h, inter), Linear("down_proj", inter, h)]
    layers: list[list[Linear]] = []
    other = vocab * h * (1 if c.get("tie_word_embeddings") else 2) + h  # embeddings, lm_head, final norm
    for kind in types[:n]:
        if kind == "linear_attention":
            kh, kd = c["linear_num_key_heads"], c["linear_key_head_dim"]
            vh, vd = c["linear_num_value_heads"], c["linear_value_head_dim"]
            conv = 2 * kh * kd + vh * vd
            attn = [
                Linear("in_proj_qkv", h, conv),
                Linear("in_proj_z", h, vh * vd),
                Linear("in_proj_b", h, vh),
                Linear("in_proj_a", h, vh),
                Linear("out_proj", vh * vd, h),
            ]
            other += conv * c.get("linear_conv_kernel_dim", 4) + 2 * vh + vd  # conv1d, A_log, dt_bias, norm
        else:
            q_out = heads * hd * (2 if c.get("attn_output_gate") else 1)
            attn = [
                Linear("q_proj", h, q_out),
                Linear("k_proj", h, kv * hd),
                Linear("v_proj", h, kv * hd),
                Linear("o_proj", heads * hd, h),
            ]
            other += 2 * hd  # q/k norms
        other += 2 * h  # the layer's two RMSNorms
        layers.append(attn + mlp)
    return ModelShape(vocab, h, inter, layers, other, name)


def load_shape(model: str) -> ModelShape:
    """The shape of ``model``: a local folder's config.json, a cached Hub config, or a known one."""
    path = Path(model).expanduser()
    if (path / "config.json").exists():
        return shape_from_config(json.loads((path / "config.json").read_text()), model)
    try:  # a config already in the Hugging Face cache (never downloads here)
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
        if isinstance(cached, str):
            return shape_from_config(json.loads(Path(cached).read_text()), model)
    except Exception:  # noqa: BLE001 - no hub library or a malformed id: fall through
        pass
    if model in KNOWN_CONFIGS:
        return shape_from_config(KNOWN_CONFIGS[model], model)
    raise FileNotFoundError(f"no config.json for {model} on disk; download the model or pass a local folder")


@dataclass
class MemoryEstimate:
    """Each term of the formula in GB, and their sum."""

    terms: dict[str, float] = field(default_factory=dict)
    lora_params: int = 0
    total_params: int = 0

    @property
    def total_gb(self) -> float:
        return sum(self.terms.values())

    def lines(self) -> list[str]:
        width = max(len(k) for k in self.terms)
        rows = [f"  {k:<{width}}  {v:7.2f} GB" for k, v in self.terms.items()]
        return rows + [f"  {'peak':<{width}}  {self.total_gb:7.2f} GB"]


def estimate_training_memory(
    shape: ModelShape,
    seq_len: int,
    *,
    r: int = 16,
    targets: str | list[str] = "all-linear",
    quantized: bool = True,
    batch_size: int = 1,
    gradient_checkpointing: bool = True,
) -> MemoryEstimate:
    """Peak GPU memory of one training step (see the module docstring for the formula)."""
    tokens = batch_size * seq_len
    weights = shape.linear_params * (NF4_BYTES if quantized else 2.0) + shape.other_params * 2.0
    n_lora = shape.lora_params(r, targets)
    lora = n_lora * (6.0 if quantized else 16.0)
    widest = max((sum(lin.fan_out for lin in layer) for layer in shape.layers), default=0)
    per_layer = widest + 2 * shape.intermediate_size + 4 * shape.hidden_size
    if gradient_checkpointing:
        checkpoints = len(shape.layers) * tokens * shape.hidden_size * 2.0
        layer = 2 * tokens * per_layer * 2.0
    else:
        checkpoints = 0.0
        layer = len(shape.layers) * tokens * per_layer * 2.0
    logits = min(tokens, 4096) * min(8192, shape.vocab_size) * 4.0 * 2
    terms = {
        "base weights": weights / GB,
        "LoRA params+grads+optimizer": lora / GB,
        "activation checkpoints": checkpoints / GB,
        "one layer recomputed": layer / GB,
        "fused LM head tiles": logits / GB,
        "CUDA context, fragmentation": 1.0,
    }
    return MemoryEstimate({k: round(v, 3) for k, v in terms.items()}, n_lora, shape.total_params)


def describe(model: str, shape: ModelShape, seq_lens: list[int], **kwargs: Any) -> str:
    """A table of the estimate at several lengths (what ``train`` prints before it starts)."""
    ests = [estimate_training_memory(shape, n, **kwargs) for n in seq_lens]
    quant = "4-bit NF4 base (QLoRA)" if kwargs.get("quantized", True) else "bf16 base (LoRA)"
    head = (
        f"estimated peak GPU memory for {model}: {shape.total_params / 1e9:.2f} B params, {quant}, "
        f"LoRA r={kwargs.get('r', 16)} on {kwargs.get('targets', 'all-linear')} "
        f"({ests[0].lora_params / 1e6:.1f} M trainable), batch {kwargs.get('batch_size', 1)}"
    )
    names = list(ests[0].terms)
    width = max(len(k) for k in names)
    rows = [head, f"  {'tokens':<{width}}  " + "  ".join(f"{n:>9}" for n in seq_lens)]
    for k in names:
        rows.append(f"  {k:<{width}}  " + "  ".join(f"{e.terms[k]:8.2f}G" for e in ests))
    rows.append(f"  {'peak':<{width}}  " + "  ".join(f"{e.total_gb:8.2f}G" for e in ests))
    return "\n".join(rows)
