"""Load a LoRA adapter onto the base layout it was trained on, and prove it applied.

peft matches an adapter to a model by module *names*. A multimodal checkpoint such as
Qwen3.5 or CoPaw-Flash (``Qwen3_5ForConditionalGeneration``) names its text layers
``model.language_model.layers.N``; transformers also loads it as a text-only causal LM,
renaming the weights to ``model.layers.N``. An adapter trained on one layout and loaded
onto the other gets fresh LoRA modules (their B matrices zero), none of its tensors load,
and peft only warns: the model then serves as the bare base. So we read the layout from the
adapter file, load the base with the class that has it, and check after loading that every
LoRA tensor of the file is in the model with the file's values.

torch, transformers, peft and huggingface_hub are imported inside the functions, so
importing this module stays cheap (training and the worker's flag parsing import it).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

PEFT_PREFIX = "base_model.model."
"""What peft puts before the model's own parameter names when it saves an adapter."""

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")

_LAYERS = re.compile(r"^((?:.*\.)?layers\.)\d+(?:\.|$)")
"""The module path up to a decoder layer's index: ``model.language_model.layers.`` of
``model.language_model.layers.3.mlp.up_proj``."""


@dataclass(frozen=True)
class AdapterLayout:
    """What an adapter file says about the model it was trained on."""

    source: str
    """The folder or Hub id, as given (what ``PeftModel.from_pretrained`` is passed)."""
    weights: Path
    """The local weights file (the Hub's cached copy for an id)."""
    tensor_names: tuple[str, ...]
    """The names as saved (``base_model.model.`` + the module path + ``.lora_A.weight``...)."""
    prefix: str
    """The decoder layers' path in the trained model, e.g. ``model.language_model.layers.``
    or ``model.layers.``; empty when the names hold no layer index."""
    target_modules: tuple[str, ...] | str | None
    base_model: str | None
    """``base_model_name_or_path`` from ``adapter_config.json``."""

    @property
    def language_model(self) -> bool:
        """Whether it was trained on a multimodal model's text tower (``...language_model...``)."""
        return "language_model." in self.prefix

    @property
    def lora_names(self) -> tuple[str, ...]:
        """The LoRA tensors proper: what must find a module (base weights saved beside them,
        e.g. resized embeddings, load into the base and are not checked)."""
        return tuple(n for n in self.tensor_names if ".lora_" in n)


def _strip(name: str) -> str:
    return name.removeprefix(PEFT_PREFIX)


def layer_prefix(names: Any) -> str:
    """The most common decoder-layer path among module or tensor ``names`` ("" when none)."""
    found = Counter(m.group(1) for m in (_LAYERS.match(_strip(n)) for n in names) if m)
    return found.most_common(1)[0][0] if found else ""


def _adapter_files(ref: str) -> tuple[Path, Path]:
    """(adapter_config.json, weights file) of a local folder or a Hub id (cached or downloaded)."""
    folder = Path(ref).expanduser()
    if folder.is_dir():
        config = folder / "adapter_config.json"
        weights = next((folder / w for w in WEIGHT_FILES if (folder / w).is_file()), None)
        if not config.is_file() or weights is None:
            raise InputError(f"{ref} is not a peft adapter folder (no adapter_config.json + adapter_model.*)")
        return config, weights
    from huggingface_hub import hf_hub_download

    config = Path(hf_hub_download(ref, "adapter_config.json"))
    first: Exception | None = None
    for name in WEIGHT_FILES:
        try:
            return config, Path(hf_hub_download(ref, name))
        except Exception as exc:  # noqa: BLE001 - try the older .bin before giving up
            first = first or exc
    raise InputError(f"the adapter {ref} has no adapter_model.safetensors or .bin: {first}")


def _tensor_names(weights: Path) -> list[str]:
    """The names in an adapter weights file, without reading a .safetensors file's tensors."""
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            return list(handle.keys())
    import torch

    return list(torch.load(str(weights), map_location="cpu", weights_only=True, mmap=True))


def adapter_layout(ref: str | Path) -> AdapterLayout:
    """Read an adapter's config and tensor names (folder or Hub id): the layout it expects."""
    config_file, weights = _adapter_files(str(ref))
    config = json.loads(config_file.read_text())
    names = _tensor_names(weights)
    targets = config.get("target_modules")
    return AdapterLayout(
        source=str(ref),
        weights=weights,
        tensor_names=tuple(names),
        prefix=layer_prefix(names),
        target_modules=tuple(targets) if isinstance(targets, list) else targets,
        base_model=config.get("base_model_name_or_path"),
    )


def _named_class(config: Any) -> Any:
    """The class a multimodal config's ``architectures`` names, else the image-text Auto class."""
    import transformers

    for name in getattr(config, "architectures", None) or []:
        try:
            cls = getattr(transformers, name, None)
        except (ImportError, RuntimeError):  # a lazy import of a class whose extras are missing
            cls = None
        if cls is not None and not name.endswith("ForCausalLM"):
            return cls
    return transformers.AutoModelForImageTextToText


def base_class_for(model_ref: str | Path, layout: AdapterLayout | None) -> Any:
    """The transformers class to load ``model_ref`` with so its module names match ``layout``.

    A multimodal checkpoint with an adapter trained on its text tower under
    ``language_model.`` loads whole, with its own class; everything else loads as a text-only
    causal LM (for a Qwen3.5 multimodal checkpoint transformers then builds
    ``Qwen3_5ForCausalLM`` from the text config and renames ``model.language_model.*`` to
    ``model.*``, which is the layout of an adapter trained that way).
    """
    from transformers import AutoModelForCausalLM

    if layout is None or not layout.language_model:
        return AutoModelForCausalLM
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_ref))
    if config.get_text_config(decoder=True) is config:  # text-only: no other layout to offer
        return AutoModelForCausalLM
    return _named_class(config)


def _base_of(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _mismatch(layout: AdapterLayout, model: Any, summary: str) -> InputError:
    """The one-line error: what failed, examples, and the two layouts side by side."""
    base = _base_of(model)
    model_prefix = layer_prefix(name for name, _ in base.named_modules())
    ours = f"{model_prefix}*" if model_prefix else "without numbered layers"
    theirs = f"{layout.prefix}*" if layout.prefix else "without numbered layers"
    if layout.prefix != model_prefix:
        cause = (
            f"the adapter was trained on a model whose modules are named {theirs}, but the base was "
            f"loaded as {type(base).__name__}, whose modules are {ours}"
        )
    else:
        cause = (
            f"the layouts match ({ours}), so the adapter was probably trained on another "
            f"architecture or size than this {type(base).__name__}"
        )
    return InputError(f"the adapter {layout.source} does not fit the base: {summary}; {cause}")


def check_adapter_applied(model: Any, layout: AdapterLayout, adapter_name: str = "default") -> int:
    """Raise ``InputError`` unless every LoRA tensor of the adapter file is in ``model`` (a
    ``PeftModel``) under its saved name and holds the file's values; return how many.

    peft creates LoRA modules from ``target_modules`` and then loads what matches, warning
    (not failing) about the rest; missing tensors leave B at zero and the adapter inert.
    """
    import torch
    from peft import get_peft_model_state_dict

    wanted = layout.lora_names
    if not wanted:
        raise InputError(f"the adapter {layout.source} holds no LoRA tensors ({layout.weights.name})")
    # peft's saved form of what the model holds: the same names as the file when they match.
    held = get_peft_model_state_dict(model, adapter_name=adapter_name, save_embedding_layers=False)
    missing = [n for n in wanted if n not in held]
    differ: list[str] = []
    present = [n for n in wanted if n in held]
    for name, expected in _read_tensors(layout.weights, present):
        actual = held[name]
        expected = expected.to(device=actual.device, dtype=actual.dtype)
        if expected.shape != actual.shape or not torch.allclose(expected, actual, rtol=1e-3, atol=1e-6):
            differ.append(name)
    if not missing and not differ:
        return len(wanted)
    matched = len(wanted) - len(missing) - len(differ)
    parts = [f"{matched} of {len(wanted)} LoRA tensors found their module"]
    if missing:
        # One tensor per module: lora_A and lora_B of one layer say the same thing twice.
        per_module: dict[str, str] = {}
        for name in missing:
            per_module.setdefault(re.sub(r"\.lora_[^.]+(\..*)?$", "", name), name)
        examples = ", ".join(_strip(n) for n in list(per_module.values())[:3])
        parts.append(f"{len(missing)} found none (e.g. {examples})")
    if differ:
        parts.append(f"{len(differ)} found one but hold other values (e.g. {_strip(differ[0])})")
    raise _mismatch(layout, model, ", ".join(parts))


def _read_tensors(weights: Path, names: list[str]) -> Iterator[tuple[str, Any]]:
    """Yield (name, tensor) for ``names`` one at a time (a big adapter never sits in memory twice)."""
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            for name in names:
                yield name, handle.get_tensor(name)
        return
    import torch

    state = torch.load(str(weights), map_location="cpu", weights_only=True, mmap=True)
    for name in names:
        yield name, state[name]


def apply_adapter(model: Any, layout: AdapterLayout, is_trainable: bool = False) -> Any:
    """``PeftModel.from_pretrained`` + ``check_adapter_applied``: the adapted model, or an
    ``InputError`` that names the layouts when the adapter does not fit."""
    import warnings

    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            # A list of every key that missed, as one huge line: the check below says it better.
            warnings.filterwarnings("ignore", message="Found missing adapter keys")
            adapted = PeftModel.from_pretrained(model, layout.source, is_trainable=is_trainable)
    except ValueError as exc:
        # A regex ``target_modules`` written for the other layout matches nothing at all.
        matched_nothing = type(exc).__name__ == "NoMatchingPeftModuleError" or "not found in the base" in str(
            exc
        )
        if not matched_nothing:
            raise
        raise _mismatch(layout, model, f"its target modules matched nothing ({exc})") from None
    check_adapter_applied(adapted, layout)
    return adapted
