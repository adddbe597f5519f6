"""Named model profiles, their memory estimates, and the default for this machine.

A profile says which base model and adapter to load and how (quantisation, context,
generation settings). Users add their own in ``jupyter_analyst_profiles.toml`` in a Jupyter
config directory (or the file named by ``JUPYTER_ANALYST_PROFILES``). The default is chosen
by what can actually serve here: a 9B 4-bit model on a GPU with room for it, a small model
whose weights are already on disk on a CPU, else the rule-based baseline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import tomllib

from ..errors import InputError

BYTES_PER_PARAM = {"4bit": 0.5625, "8bit": 1.0625, "none": 2.0}
"""NF4 with double quantisation costs ~4.5 bits a weight; unquantised means bf16."""


@dataclass(frozen=True)
class Profile:
    """How to get a model that can drive the analyst."""

    name: str
    description: str
    kind: Literal["embedded", "openai", "baseline"] = "embedded"
    model: str | None = None
    adapter: str | None = None
    quantization: Literal["4bit", "8bit", "none", "auto"] = "auto"
    device: Literal["auto", "cuda", "cpu"] = "auto"
    base_url: str | None = None
    api_key_env: str | None = None
    context_length: int = 16384
    """The window in tokens: sizes the memory estimate, and a window under 16k shrinks the
    loop's observations and history trim (``agent.loop.context_sizes``)."""
    temperature: float = 0.2
    max_new_tokens: int = 1536
    enable_thinking: bool = False
    constrained: bool | None = None
    """Enforce the tool-call grammar while decoding (embedded only); None: where llguidance is installed."""
    decode_cache: Literal["dynamic", "static"] = "dynamic"
    """The worker's decode cache (embedded only): "static" preallocates ``context_length`` plus
    ``max_new_tokens`` and is what ``compile`` needs."""
    compile: bool = False
    """``torch.compile`` the decode step into CUDA graphs (embedded, CUDA, static cache only)."""
    dialect: Literal["notebook", "copaw"] = "notebook"
    """The tools and call format the model (its adapter) was trained on (``agent.dialect``)."""
    # Size facts used only for the memory estimate.
    params_b: float = 0.0
    embedding_params_b: float = 0.0
    kv_bytes_per_token: int = 0
    source: str = "built-in"
    extra: dict[str, Any] = field(default_factory=dict)

    def effective_quantization(self, device: str) -> str:
        if self.quantization != "auto":
            return self.quantization
        return "4bit" if device == "cuda" else "none"

    def memory_gb(self, device: str = "cuda", context: int | None = None) -> float:
        """Rough peak memory to serve: weights + KV cache at full context + ~1 GB working set.

        Embeddings and the LM head stay in 16-bit under bitsandbytes, so they are counted
        apart from the quantised body.
        """
        if self.kind != "embedded" or not self.params_b:
            return 0.0
        quant = self.effective_quantization(device)
        body = (self.params_b - self.embedding_params_b) * 1e9 * BYTES_PER_PARAM[quant]
        embed = self.embedding_params_b * 1e9 * 2.0
        if device == "cpu" and quant == "none":
            body, embed = body * 2, embed * 2  # float32 on CPU
        kv = self.kv_bytes_per_token * (context or self.context_length)
        return round((body + embed + kv) / 1e9 + 1.0, 1)


BUILTIN_PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="qwen3.5-9b-4bit",
            description="Qwen3.5-9B in 4-bit NF4 on a CUDA GPU (fits a 12 GB card)",
            model="Qwen/Qwen3.5-9B",
            quantization="4bit",
            device="cuda",
            params_b=9.0,
            embedding_params_b=2.0,
            kv_bytes_per_token=32 * 1024,
        ),
        Profile(
            name="copaw-flash-9b-analyst",
            description="The original experiment: CoPaw-Flash-9B + its DataAnalyst LoRA, 4-bit, CUDA",
            model="agentscope-ai/CoPaw-Flash-9B",
            adapter="yash1101/CoPaw-Flash-9B-DataAnalyst-LoRA",
            dialect="copaw",  # trained on a terminal agent's tools, not ours
            quantization="4bit",
            device="cuda",
            params_b=9.0,
            embedding_params_b=2.0,
            kv_bytes_per_token=32 * 1024,
        ),
        Profile(
            name="qwen2.5-1.5b-cpu",
            description="Qwen2.5-1.5B-Instruct unquantised: small enough to serve on a CPU (slowly)",
            model="Qwen/Qwen2.5-1.5B-Instruct",
            quantization="none",
            device="cpu",
            context_length=16384,
            params_b=1.5,
            embedding_params_b=0.23,
            kv_bytes_per_token=28 * 2 * 2 * 128 * 2,
        ),
        Profile(
            name="baseline",
            description="Rule-based baseline analyst: no language model, runs anywhere",
            kind="baseline",
        ),
    )
}


def profiles_file() -> Path:
    """Where user profiles live: $JUPYTER_ANALYST_PROFILES or the Jupyter config dir."""
    env = os.environ.get("JUPYTER_ANALYST_PROFILES")
    if env:
        return Path(env)
    from jupyter_core.paths import jupyter_config_dir

    return Path(jupyter_config_dir()) / "jupyter_analyst_profiles.toml"


def load_profiles(path: Path | None = None) -> dict[str, Profile]:
    """Built-in profiles plus the user's (``[profiles.NAME]`` tables); user entries win."""
    result = dict(BUILTIN_PROFILES)
    path = path or profiles_file()
    if not path.exists():
        return result
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read profiles file {path}: {exc}") from None
    known = {f.name for f in fields(Profile)}
    for name, table in (data.get("profiles") or {}).items():
        if not isinstance(table, dict):
            raise InputError(f"{path}: [profiles.{name}] must be a table")
        unknown = set(table) - known - {"inherits"}
        if unknown:
            raise InputError(f"{path}: [profiles.{name}] has unknown keys: {', '.join(sorted(unknown))}")
        parent = table.get("inherits")
        if parent is not None and parent not in result:
            raise InputError(f"{path}: [profiles.{name}] inherits unknown profile {parent!r}")
        base = result.get(parent) if parent else None
        values = {k: v for k, v in table.items() if k != "inherits"}
        values.update(name=name, source=str(path))
        if base is None:
            values.setdefault("description", f"user profile {name}")
        try:
            result[name] = replace(base, **values) if base else Profile(**values)
        except TypeError as exc:
            raise InputError(f"{path}: [profiles.{name}]: {exc}") from None
    return result


def get_profile(name: str, profiles: dict[str, Profile] | None = None) -> Profile:
    profiles = profiles or load_profiles()
    try:
        return profiles[name]
    except KeyError:
        raise InputError(f"unknown profile {name!r}; known: {', '.join(sorted(profiles))}") from None


@dataclass
class Machine:
    """What the default choice looks at."""

    gpu_name: str | None = None
    gpu_free_gb: float = 0.0
    has_torch: bool = False


def probe_machine() -> Machine:
    """Find a CUDA GPU without importing torch in this process (nvidia-smi, then torch)."""
    from importlib.util import find_spec

    machine = Machine(has_torch=find_spec("torch") is not None and find_spec("transformers") is not None)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = (
                subprocess.run(
                    [smi, "--query-gpu=name,memory.free", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=True,
                )
                .stdout.strip()
                .splitlines()
            )
            if out:
                name, free = out[0].rsplit(",", 1)
                machine.gpu_name, machine.gpu_free_gb = name.strip(), float(free) / 1024
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return machine


def weights_on_disk(model: str) -> bool:
    """True when ``model`` is a local folder or already in the Hugging Face cache."""
    if Path(model).expanduser().is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(model, "config.json")
    return isinstance(found, str)


def model_context(model: str, default: int = 16384) -> int:
    """The window to size a run for ``model``: a local folder's ``max_position_embeddings``
    when smaller than ``default`` (a model trained from scratch at 4k-8k), else ``default``."""
    import json

    config = Path(model).expanduser() / "config.json"
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return default
    return value if isinstance(value, int) and 0 < value < default else default


def pick_default(
    profiles: dict[str, Profile] | None = None, machine: Machine | None = None
) -> tuple[Profile, str]:
    """The profile that can serve here, and a sentence saying why it was picked."""
    profiles = profiles or load_profiles()
    machine = machine or probe_machine()
    if machine.has_torch and machine.gpu_name:
        p = profiles["qwen3.5-9b-4bit"]
        need = p.memory_gb("cuda")
        if machine.gpu_free_gb >= need:
            return p, f"{machine.gpu_name} has {machine.gpu_free_gb:.1f} GB free (needs ~{need} GB)"
    if machine.has_torch:
        for p in profiles.values():
            if p.kind == "embedded" and p.device == "cpu" and p.model and weights_on_disk(p.model):
                return p, f"no usable GPU; {p.model} is already on disk"
    why = "no GPU with room for a 9B model" if not machine.gpu_name else "the GPU has too little free memory"
    if not machine.has_torch:
        why = "the model extras (torch, transformers) are not installed"
    return profiles["baseline"], f"{why} and no small model is on disk, so no language model can serve here"
