"""Loading: read the device/quantisation flags, load tokenizer + model (+ adapter), name it.

torch, transformers and peft are imported inside the functions so that importing this
module (training does, for ``resolve_device``) stays cheap until a model is really loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ...errors import InputError
from .common import log


def _display_name(ref: str) -> str:
    path = Path(ref)
    return path.name if path.exists() and path.name else ref


def model_name(args: argparse.Namespace) -> str:
    """The id served by ``/v1/models``: the flag if given, else base (+ adapter) folder names."""
    if args.served_model_name:
        return args.served_model_name
    name = _display_name(args.model)
    return f"{name}+{_display_name(args.adapter)}" if args.adapter else name


def resolve_device(device: str, quantization: str) -> tuple[str, str]:
    """(device, quantization) to use: "auto" means CUDA in 4-bit when there is a GPU, else CPU
    unquantised. Shared by serving and training so both read the flags the same way."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but torch sees no CUDA device")
    if quantization == "auto":
        quantization = "4bit" if device == "cuda" else "none"
    return device, quantization


def load_kwargs(device: str, quantization: str, dtype: Any = None) -> dict[str, Any]:
    """``from_pretrained`` keywords for a resolved device and quantisation, shared by serving
    and training: 16-bit on CUDA (bf16 where supported), fp32 on CPU, NF4 4-bit with double
    quantisation and compute in that dtype, or 8-bit."""
    import torch

    if dtype is None:
        if device == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype, "device_map": {"": 0} if device == "cuda" else "cpu"}
    if quantization in ("4bit", "8bit"):
        from transformers import BitsAndBytesConfig

        if quantization == "4bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=dtype,
                bnb_4bit_use_double_quant=True,
            )
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    return kwargs


def load_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """Load tokenizer and model as asked; raise with a readable message on failure.

    With an adapter, the base is loaded with the class whose module names the adapter was
    trained on (a multimodal checkpoint whole, or its text tower alone), and the adapter is
    checked to have applied in full: peft itself only warns when its tensors find no module.
    """
    import torch
    from transformers import AutoTokenizer

    from ..adapters import adapter_layout, apply_adapter, base_class_for

    device, quant = resolve_device(args.device, args.quantization)
    kwargs = load_kwargs(device, quant, None if args.dtype == "auto" else getattr(torch, args.dtype))
    dtype = kwargs["dtype"]
    for what, ref in (("model", args.model), ("adapter", args.adapter)):
        if ref and ref.startswith(("/", "./", "../", "~")) and not Path(ref).expanduser().exists():
            raise RuntimeError(f"no {what} folder at {ref}")
    layout = adapter_layout(args.adapter) if args.adapter else None  # fail early on a bad adapter
    log(f"loading {args.model} on {device} ({quant}, {str(dtype).removeprefix('torch.')})")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if not getattr(tokenizer, "chat_template", None):
        raise RuntimeError(f"the tokenizer of {args.model} has no chat template; use a chat/instruct model")
    model_class = base_class_for(args.model, layout)
    if layout is not None and layout.language_model:
        log(f"loading as {model_class.__name__}: the adapter's modules are {layout.prefix}*")
    model: Any = model_class.from_pretrained(args.model, **kwargs)
    if layout is not None:
        log(f"loading adapter {args.adapter}")
        model = apply_adapter(model, layout)
        log(f"adapter applied: all {len(layout.lora_names)} LoRA tensors found their module")
    model.eval()
    return tokenizer, model
