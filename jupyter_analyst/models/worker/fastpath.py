"""The CUDA fast path: which linear-attention kernels are bound, and the static decode cache.

Qwen3.5's Gated DeltaNet layers run on ``flash-linear-attention`` and ``causal-conv1d``
when those are installed; without them transformers silently falls back to reference
PyTorch loops that are several times slower. The worker reports which one it got, so a
slow GPU run says why instead of looking like a slow model.

A static cache (``transformers.StaticCache``) has fixed tensor addresses, which is what
``torch.compile`` needs to turn the decode step into CUDA graphs. The engine's prefix cache
keeps a snapshot of the cache after each prompt; for a static cache the snapshot is copied
*into* the working cache in place (``copy_into``), so the compiled decode step always sees
the same tensors and never recompiles between requests.
"""

from __future__ import annotations

import sys
from typing import Any

CACHE_MODES = ("dynamic", "static")

# transformers wraps each kernel entry point of the linear-attention layers in a decorator
# that binds the optional package's function, or the reference torch one; these are the
# names it binds in the Qwen3.5 / Qwen3-Next modelling modules, with the package behind each.
KERNEL_PACKAGES: dict[str, str] = {
    "causal_conv1d_fn": "causal-conv1d",
    "causal_conv1d_update": "causal-conv1d",
    "torch_chunk_gated_delta_rule": "flash-linear-attention",
    "torch_recurrent_gated_delta_rule": "flash-linear-attention",
}
INSTALL_HINT = "pip install --no-build-isolation 'jupyter-analyst[cuda]'"


def has_linear_attention(config: Any) -> bool:
    """Whether the (text) config has linear-attention layers, the ones the fast kernels serve."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    return "linear_attention" in (getattr(text, "layer_types", None) or [])


def _bound_is_fast(func: Any) -> bool | None:
    """Whether transformers bound an optional package's kernel to ``func``; None when unknown.

    Reads the decorator's closure (``is_new_implementation``): the only place that says what
    was bound, since the wrapper keeps the torch function's name either way.
    """
    code, cells = getattr(func, "__code__", None), getattr(func, "__closure__", None)
    if code is None or not cells:
        return None
    bound = dict(zip(code.co_freevars, cells, strict=False))
    cell = bound.get("is_new_implementation")
    try:
        return bool(cell.cell_contents) if cell is not None else None
    except ValueError:  # an empty cell
        return None


def kernel_report(model: Any) -> dict[str, Any]:
    """Which kernels the model's linear-attention layers run on, as JSON for /health and logs.

    ``fast`` is True only when every kernel is the package's and the model is on CUDA (the
    packages' Triton/CUDA kernels serve no other device); None for a model without linear
    attention, where there is nothing to speed up.
    """
    config = getattr(model, "config", None)
    if config is None or not has_linear_attention(config):
        return {"linear_attention": False, "fast": None, "kernels": {}}
    modules: set[str] = set()
    for sub in model.modules():
        name = type(sub).__name__
        if name.endswith("GatedDeltaNet") or name.endswith("LinearAttention"):
            modules.add(type(sub).__module__)
    kernels: dict[str, str] = {}
    for module_name in sorted(modules):
        module = sys.modules.get(module_name)
        for func_name, package in KERNEL_PACKAGES.items():
            func = getattr(module, func_name, None)
            if func is None:
                continue
            fast = _bound_is_fast(func)
            kernels[func_name] = package if fast else ("torch" if fast is False else "unknown")
    device = str(getattr(model, "device", "cpu"))
    all_fast = bool(kernels) and all(v not in ("torch", "unknown") for v in kernels.values())
    report: dict[str, Any] = {
        "linear_attention": True,
        "fast": all_fast and device.startswith("cuda"),
        "kernels": kernels,
        "device": device,
    }
    missing = sorted({KERNEL_PACKAGES[k] for k, v in kernels.items() if v == "torch"})
    if missing:
        report["missing"] = missing
        report["hint"] = INSTALL_HINT
    return report


def describe(report: dict[str, Any]) -> str:
    """One log line for a ``kernel_report``."""
    if not report.get("linear_attention"):
        return "linear-attention kernels: not used by this model"
    if report.get("fast"):
        return "linear-attention kernels: fast (" + ", ".join(sorted(set(report["kernels"].values()))) + ")"
    if report.get("missing"):
        return (
            f"linear-attention kernels: reference PyTorch ({', '.join(report['missing'])} not installed; "
            f"{report['hint']})"
        )
    device = report.get("device")
    return f"linear-attention kernels: installed, but the model is on {device} (fast on CUDA only)"


def new_cache(model: Any, mode: str, max_len: int) -> Any:
    """An empty cache of the model's layer layout: dynamic, or static of ``max_len`` tokens."""
    if mode == "static":
        from transformers import StaticCache

        return StaticCache(config=model.config, max_cache_len=max_len)
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def _copy_value(dst: Any, src: Any) -> Any:
    """``src`` copied over ``dst`` keeping ``dst``'s tensors (and their addresses) where they fit."""
    import torch

    if isinstance(src, torch.Tensor):
        if (
            isinstance(dst, torch.Tensor)
            and dst.shape == src.shape
            and dst.dtype == src.dtype
            and dst.device == src.device
        ):
            dst.copy_(src)
            return dst
        return src.clone()
    if isinstance(src, dict):
        old = dst if isinstance(dst, dict) else {}
        return {k: _copy_value(old.get(k), v) for k, v in src.items()}
    if isinstance(src, list | tuple):
        old_seq = list(dst) if isinstance(dst, list | tuple) and len(dst) == len(src) else [None] * len(src)
        return type(src)(_copy_value(d, s) for d, s in zip(old_seq, src, strict=True))
    return src  # ints, flags, devices, dtypes: immutable


def copy_into(dst: Any, src: Any) -> Any:
    """Make cache ``dst`` hold what ``src`` holds, in place where the tensors fit; return ``dst``.

    Both must be of the same layer layout (made by ``new_cache`` for one model). A tensor that
    doesn't exist yet in ``dst`` (a layer never initialised there) is cloned from ``src``.
    """
    if len(dst.layers) != len(src.layers):
        raise ValueError("caches of different layer layouts")
    for d_layer, s_layer in zip(dst.layers, src.layers, strict=True):
        current = vars(d_layer)
        for key, value in vars(s_layer).items():
            setattr(d_layer, key, _copy_value(current.get(key), value))
    return dst


def cache_length(cache: Any) -> int:
    """The most tokens ``cache`` can hold; 0 for a growing (dynamic) cache."""
    try:
        return int(cache.get_max_cache_shape() or 0)
    except (AttributeError, TypeError, ValueError):
        return 0
