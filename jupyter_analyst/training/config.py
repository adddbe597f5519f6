"""Training configuration: a dataclass, filled from its defaults, a YAML file, then CLI flags.

TRL scripts work this way (``--config recipe.yaml`` plus overrides on the command line), so
a recipe is one reviewable file and an experiment is one changed flag. The parser is built
from the dataclass fields with plain argparse, so registering the subcommand stays cheap.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..errors import InputError

T = TypeVar("T")


@dataclass
class TrainConfig:
    """One training run. Every field is also a ``--flag`` (underscores become dashes).

    Fields left ``None`` take the method's default (``resolved``): LoRA on a real base and
    full-parameter training of a tiny model made from scratch want different learning rates,
    batches and lengths.
    """

    model: str = field(default="", metadata={"help": "base model: Hugging Face id or local folder"})
    method: Literal["auto", "lora", "full"] = field(
        default="auto",
        metadata={
            "help": "lora: train an adapter (real bases); full: train every parameter; auto: full for a "
            "folder made by `jupyter analyst scratch`, else lora"
        },
    )
    data: list[str] = field(default_factory=list, metadata={"help": "trajectory JSONL files"})
    output_dir: str = field(
        default="adapter",
        metadata={"help": "where the adapter is written (checkpoints in OUTPUT_DIR/checkpoints)"},
    )
    keep: Literal["passed", "finished", "any"] = field(
        default="finished",
        metadata={"help": "which trajectories to train on: judged passed, ended with final_answer, or all"},
    )
    max_chars: int = field(
        default=400_000, metadata={"help": "drop trajectories longer than this (characters)"}
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "tokens per training sequence (default 8192; full: the model's context)"},
    )
    overlong: Literal["truncate", "drop"] = field(
        default="truncate", metadata={"help": "what to do with trajectories longer than --max-length"}
    )
    quantization: Literal["auto", "4bit", "none"] = field(
        default="auto", metadata={"help": "4bit = QLoRA (NF4 base); auto = 4bit on CUDA, none on CPU"}
    )
    device: Literal["auto", "cuda", "cpu"] = field(default="auto", metadata={"help": "where to train"})
    lora_r: int = field(
        default=16, metadata={"help": "LoRA rank (vLLM serves up to --max-lora-rank, default 16)"}
    )
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    target_modules: str = field(
        default="all-linear",
        metadata={"help": "'all-linear' or comma-separated module names, e.g. q_proj,k_proj,v_proj,o_proj"},
    )
    learning_rate: float | None = field(
        default=None, metadata={"help": "peak learning rate (default 2e-4; full: 2e-3)"}
    )
    num_train_epochs: float | None = field(
        default=None, metadata={"help": "passes over the data (default 2; full: 20)"}
    )
    max_steps: int = field(default=-1, metadata={"help": "optimizer steps (overrides epochs when > 0)"})
    per_device_train_batch_size: int = field(default=1, metadata={"help": "sequences per micro-batch"})
    gradient_accumulation_steps: int | None = field(
        default=None, metadata={"help": "micro-batches per optimizer step (default 8; full: 1)"}
    )
    warmup_ratio: float = field(default=0.03, metadata={"help": "fraction of steps spent warming up"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "learning-rate schedule"})
    weight_decay: float = field(default=0.0, metadata={"help": "weight decay"})
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "recompute activations in backward (default on; full: off)"}
    )
    max_minutes: float = field(
        default=0.0,
        metadata={
            "help": "stop training after this many minutes and save (0: no limit); the schedule is "
            "planned for the epochs, so pair it with --lr-scheduler-type constant_with_warmup"
        },
    )
    optim: str = field(
        default="auto",
        metadata={"help": "optimizer; auto = paged_adamw_8bit for QLoRA on CUDA, else adamw_torch"},
    )
    logging_steps: int = field(default=1, metadata={"help": "log the loss every N steps"})
    save_steps: int = field(default=100, metadata={"help": "checkpoint every N steps"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept"})
    seed: int = field(default=42, metadata={"help": "random seed"})
    resume: str = field(
        default="",
        metadata={
            "help": "resume from a checkpoint: 'latest' (in OUTPUT_DIR/checkpoints) or a checkpoint folder"
        },
    )
    estimate_only: bool = field(
        default=False, metadata={"help": "print the memory estimate and the data summary, then exit"}
    )

    def resolved(self, method: Literal["lora", "full"], context: int | None = None) -> TrainConfig:
        """A copy with ``method`` set and every ``None`` field at that method's default;
        ``context`` (the model's window) is the full method's default ``max_length``."""
        defaults = FULL_DEFAULTS if method == "full" else LORA_DEFAULTS
        values: dict[str, Any] = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if self.max_length is None:
            values["max_length"] = context if method == "full" and context else 8192
        return dataclasses.replace(self, method=method, **values)

    def targets(self) -> str | list[str]:
        t = self.target_modules.strip()
        return t if t == "all-linear" else [x.strip() for x in t.split(",") if x.strip()]


LORA_DEFAULTS: dict[str, Any] = {
    "learning_rate": 2e-4,
    "num_train_epochs": 2.0,
    "gradient_accumulation_steps": 8,
    "gradient_checkpointing": True,
}
FULL_DEFAULTS: dict[str, Any] = {
    "learning_rate": 2e-3,
    "num_train_epochs": 20.0,
    "gradient_accumulation_steps": 1,
    "gradient_checkpointing": False,
}
"""A model of a few million parameters from random weights learns fast at a high rate, one
sequence a step, many passes; activations are small, so recomputing them only costs time."""


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(inner type, is_list) of an annotation such as ``list[str]`` or ``int | None``."""
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return typing.get_args(tp)[0], True
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _unwrap(args[0])
    return tp, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per field; defaults are suppressed so only what the user typed overrides YAML."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, is_list = _unwrap(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": argparse.SUPPRESS,
            "help": f.metadata.get("help"),
        }
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if typing.get_origin(tp) is Literal:
            kwargs["choices"] = list(typing.get_args(tp))
            tp = type(kwargs["choices"][0])
        if is_list:
            kwargs["nargs"] = "+"
        parser.add_argument(flag, type=tp, **kwargs)


def build_config(cls: type[T], args: argparse.Namespace, yaml_path: str | Path | None = None) -> T:
    """Defaults < YAML file < CLI flags. Unknown YAML keys are an ``InputError``."""
    values: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if yaml_path:
        import yaml

        path = Path(yaml_path)
        if not path.exists():
            raise InputError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise InputError(f"{path} must hold a mapping of option: value")
        loaded = {str(k).replace("-", "_"): v for k, v in loaded.items()}
        unknown = sorted(set(loaded) - names)
        if unknown:
            raise InputError(f"{path}: unknown option(s) {', '.join(unknown)}")
        values.update(loaded)
    values.update({k: v for k, v in vars(args).items() if k in names})
    hints = typing.get_type_hints(cls)
    for name, value in list(values.items()):
        tp, is_list = _unwrap(hints[name])
        if is_list and isinstance(value, str):
            values[name] = [value]
        if typing.get_origin(tp) is Literal and value not in typing.get_args(tp) and not is_list:
            raise InputError(
                f"{name} must be one of {', '.join(map(str, typing.get_args(tp)))}, not {value!r}"
            )
    return cls(**values)
