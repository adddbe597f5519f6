"""``jupyter analyst train``: LoRA/QLoRA (or full-parameter) training on trajectories with TRL.

    jupyter analyst train --model Qwen/Qwen3.5-9B --data traj.jsonl -o adapters/analyst [--config recipe.yaml]
    jupyter analyst train --model models/tiny --data traj.jsonl -o models/tiny-tuned   # a scratch model: full

* Assistant-only loss: the chat template gets verified ``{% generation %}`` markers
  (``chat_template.training_template``); TRL masks everything else.
* QLoRA on CUDA: NF4 base with double quantisation and bf16 compute, gradient
  checkpointing, paged 8-bit AdamW. On CPU the base stays full precision (fp32) unless
  ``--quantization 4bit`` is asked for.
* The model is loaded fresh right before training and nothing runs a no-grad forward on it
  first: a 4-bit model that has done so gets its weights repacked and then silently stops
  gradients (design.md §7). The ``gemv_4bit ... autograd kernel was not registered``
  warning is turned into an error.
* The adapter written to ``--output-dir`` is a plain peft adapter (adapter_config.json +
  adapter_model.safetensors) that the embedded host (``--adapter``) and vLLM
  (``--enable-lora``) load; keys vLLM rejects (``modules_to_save``, DoRA, biases) are never set.
* ``--method full`` (automatic for a folder made by ``jupyter analyst scratch``) trains every
  parameter of a tiny model and writes a whole model folder (weights, the original tokenizer
  and template, ``scratch.json``) that ``--model DIR`` serves with no adapter. Same data path,
  same assistant-only loss; trained tokens per second are measured and reported.
* Under ``accelerate launch --num_processes N`` (data parallel, one process per GPU) each process
  loads its own copy of the base (4-bit too) on its own GPU and trains on its share of the
  batches; only the main process prints and writes the output folder. The start line gives the
  global batch: per device x processes x accumulation steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .config import TrainConfig, add_dataclass_arguments, build_config

if TYPE_CHECKING:
    from .data import TokenCount

SUMMARY_FILE = "training_summary.json"
GEMV_WARNING = r".*autograd kernel was not registered.*"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "train",
        help="train a LoRA/QLoRA adapter on trajectories (TRL SFTTrainer, assistant-only loss)",
        description="Fine-tune a LoRA adapter on trajectory JSONL files. Options come from --config YAML "
        "and are overridden by flags. Prints a peak GPU memory estimate before it starts.",
    )
    p.add_argument("--config", help="YAML file with any of the options below")
    p.add_argument("-o", dest="output_dir", default=argparse.SUPPRESS, help="same as --output-dir")
    add_dataclass_arguments(p, TrainConfig)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError

    config = build_config(TrainConfig, args, getattr(args, "config", None))
    if not config.model:
        raise InputError("train needs --model (a Hugging Face id or a local folder)")
    if not config.data and not config.estimate_only:
        raise InputError("train needs --data (one or more trajectory JSONL files)")
    result = train(config, log=lambda s: print(s, file=sys.stderr, flush=True))
    return 0 if result is None or result.steps > 0 else 1


@dataclass
class TrainResult:
    """What a run did: losses, time, where the adapter is, and the supervised-text sample."""

    output_dir: str
    steps: int = 0
    seconds: float = 0.0
    first_loss: float | None = None
    last_loss: float | None = None
    losses: list[float] = field(default_factory=list)
    examples: int = 0
    template: str = ""
    lora_tensors_changed: int = 0
    lora_tensors: int = 0
    """Trained tensors that moved, of all trained ones (LoRA's, or every parameter when full)."""
    method: str = "lora"
    tokens: int = 0
    """Tokens the model was trained on (forward and backward), padding excluded."""
    tokens_per_second: float = 0.0
    cpu_seconds: float = 0.0
    """CPU time the process spent training: tokens / cpu_seconds is the speed on a shared machine."""
    sample: str = ""
    model: Any = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.steps > 0 and self.lora_tensors_changed == self.lora_tensors


def _accelerate_cpu() -> bool:
    """Whether ``accelerate launch --cpu`` started us (it sets ``ACCELERATE_USE_CPU``)."""
    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")


def resolve_device(config: TrainConfig) -> tuple[str, str]:
    """(device, quantization) actually used, read as the model worker reads them.

    ``accelerate launch --cpu`` (``ACCELERATE_USE_CPU``) makes ``TrainingArguments`` train on the
    CPU whatever we ask, so ``--device auto`` follows it rather than loading the base on a GPU.
    """
    from ..errors import InputError
    from ..models.worker.loading import resolve_device as resolve

    device = config.device
    if _accelerate_cpu():
        if device == "cuda":
            raise InputError("accelerate launch --cpu trains on the CPU: drop --device cuda")
        device = "cpu"
    return resolve(device, config.quantization)


def process_state(device: str) -> Any:
    """This process's place in a launched job (``accelerate launch``, ``torchrun``): accelerate's
    ``PartialState``, set up exactly as ``TrainingArguments`` will set it up (``cpu`` for a CPU run,
    gloo), so the rank is known before anything is printed, loaded or written. Without a
    launcher it is one process of one, rank 0, and changes nothing."""
    from accelerate import PartialState

    return PartialState(cpu=device == "cpu")


def launch_note(state: Any) -> str:
    """A warning when ``accelerate launch --cpu --num_processes N`` started a single process.

    Its CPU launcher runs more processes only through ``mpirun``: without a hostfile it starts
    one, setting ``MASTER_PORT`` as if there were N, and the run would silently train alone.
    """
    if state.num_processes > 1 or "MASTER_PORT" not in os.environ or not _accelerate_cpu():
        return ""
    return (
        "warning: one process: `accelerate launch --cpu` starts a single process whatever "
        "--num_processes says (more only through mpirun); for N CPU processes on this machine use "
        "`accelerate launch --multi_gpu --num_processes N -m jupyter_analyst train ... --device cpu`"
    )


def global_batch(config: TrainConfig, processes: int) -> int:
    """Sequences per optimizer step: in data parallel each process takes its own micro-batches,
    so a launched job's step sees ``processes`` times the batch a single process's would."""
    return config.per_device_train_batch_size * processes * (config.gradient_accumulation_steps or 1)


def batch_phrase(config: TrainConfig, processes: int) -> str:
    """The start line's batch: the global figure and the product it comes from."""
    steps = config.gradient_accumulation_steps or 1
    return (
        f"global batch {global_batch(config, processes)} = {config.per_device_train_batch_size} per "
        f"device x {processes} process{'es' if processes != 1 else ''} x {steps} accumulation "
        f"step{'s' if steps != 1 else ''}"
    )


def print_estimate(config: TrainConfig, quant: str, log: Any) -> None:
    """The peak-memory estimate for this base at this length (and at 4k/8k/16k for comparison)."""
    from .memory import describe, load_shape

    try:
        shape = load_shape(config.model)
    except FileNotFoundError as exc:
        log(f"(no memory estimate: {exc})")
        return
    lengths = sorted({config.max_length or 8192, 4096, 8192, 16384})
    # On a CPU-only machine (auto -> full precision here) show what the GPU run would need: QLoRA.
    quantized = quant == "4bit" or config.quantization == "auto"
    log(
        describe(
            config.model,
            shape,
            lengths,
            r=config.lora_r,
            targets=config.targets(),
            quantized=quantized,
            batch_size=config.per_device_train_batch_size,
            gradient_checkpointing=config.gradient_checkpointing,
        )
    )


def load_base(config: TrainConfig, device: str, quant: str, local_rank: int = 0) -> Any:
    """A freshly loaded base model (never run before training: see the module docstring).

    On CUDA it goes whole onto GPU ``local_rank``, this process's GPU in a launched job: a 4-bit
    base cannot be moved after loading, and DDP needs each process's copy on its own device.
    """
    from transformers import AutoModelForCausalLM

    from ..models.worker.loading import load_kwargs

    kwargs = load_kwargs(device, quant)
    if device == "cuda":
        kwargs["device_map"] = {"": local_rank}
    model = AutoModelForCausalLM.from_pretrained(config.model, **kwargs)
    model.config.use_cache = False
    return model


def _latest_checkpoint(folder: Path) -> str | None:
    ckpts = sorted(
        folder.glob("checkpoint-*"),
        key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
    )
    return str(ckpts[-1]) if ckpts else None


def clean_adapter_config(folder: Path, base: str) -> dict[str, Any]:
    """Make ``adapter_config.json`` plain peft LoRA that vLLM accepts, naming the base model."""
    path = folder / "adapter_config.json"
    cfg = json.loads(path.read_text())
    cfg["base_model_name_or_path"] = base
    cfg["modules_to_save"] = None
    cfg["use_dora"] = False
    cfg["bias"] = "none"
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    return cfg


def resolve_method(config: TrainConfig) -> tuple[TrainConfig, str]:
    """``config`` resolved for its method (``auto``: full for a scratch folder, else LoRA) and
    a phrase saying why, for the log."""
    from ..errors import InputError
    from ..models.profiles import model_context
    from .scratch import scratch_info

    info = scratch_info(config.model)
    method: Literal["lora", "full"]
    if config.method == "auto":
        method = "full" if info else "lora"
        why = "a model made by `jupyter analyst scratch`" if info else "a pretrained base"
    else:
        method, why = config.method, f"--method {config.method}"
    if method == "full" and config.quantization == "4bit":
        raise InputError("--method full trains full-precision weights; drop --quantization 4bit")
    unknown = 1 << 30  # a hub id or a config without max_position_embeddings
    context = model_context(config.model, default=unknown) if method == "full" else unknown
    return config.resolved(method, context if context < unknown else None), why


def train(config: TrainConfig, log: Any = print) -> TrainResult | None:
    """Run one training job; ``None`` when only the estimate was asked for.

    In a launched job every process runs this; only the main one calls ``log``.
    """
    from ..errors import InputError
    from .chat_template import TemplateError, supervised_text, training_template
    from .data import load_rows, to_dataset, token_counts
    from .trajectory import TrajectoryFilter

    config, why = resolve_method(config)
    assert config.max_length is not None
    device, quant = resolve_device(config)
    state = process_state(device)
    if not state.is_main_process:
        log = _quiet_replica()
    if config.method == "full":
        quant = "none"
        how_trained = "full-parameter training"
    else:
        how_trained = "QLoRA, 4-bit NF4 base" if quant == "4bit" else "LoRA, full-precision base"
    log(
        f"jupyter-analyst train: {config.model} on {device} ({how_trained}: {why}); "
        f"{batch_phrase(config, state.num_processes)}"
    )
    note = launch_note(state)
    if note:
        log(note)
    if config.method == "lora":
        print_estimate(config, quant, log)
    rows, summary = load_rows(config.data, TrajectoryFilter(keep=config.keep, max_chars=config.max_chars))
    log(summary.line())
    if config.estimate_only:
        return None
    if not rows:
        raise InputError("no trajectory is left to train on (see the filters above: --keep, --max-chars)")

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.model)
    try:
        template, how = training_template(tokenizer)
    except TemplateError as exc:
        raise InputError(str(exc)) from None
    tokenizer.chat_template = template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    counts = token_counts(tokenizer, rows, template)
    lengths = [c.length for c in counts]
    over = sum(n > config.max_length for n in lengths)
    log(
        f"chat template: {how}; {len(rows)} sequences, {min(lengths)}-{max(lengths)} tokens, "
        f"{over} over --max-length {config.max_length} "
        f"({'dropped' if config.overlong == 'drop' else 'truncated'})"
    )
    rows, note = select_trainable(rows, counts, config.max_length, config.overlong)
    if note:
        log(note)
    return _fit(config, device, quant, tokenizer, to_dataset(rows), how, log, supervised_text, state)


def _quiet_replica() -> Any:
    """The log of a process other than the main one: silent, and without the progress bars
    (weights, dataset maps) that every process would otherwise draw once more."""
    from datasets import disable_progress_bars
    from transformers.utils.logging import disable_progress_bar

    disable_progress_bars()
    disable_progress_bar()
    return lambda s: None


def select_trainable(
    rows: list[dict[str, Any]], counts: list[TokenCount], max_length: int, overlong: str
) -> tuple[list[dict[str, Any]], str]:
    """The rows that still have an assistant token once cut to ``max_length``, and a note on the rest.

    TRL keeps the start of each sequence and silently drops those left with nothing to learn;
    when that is all of them, it crashes later with an ``IndexError``. Deciding here lets the
    error name the ``--max-length`` that would work. Raises ``InputError`` (one line) when no
    row is left; the note (empty when nothing was dropped) says how many were dropped and why.
    """
    from ..errors import InputError

    n = len(rows)
    starts = sorted(c.min_length for c in counts if c.min_length is not None)
    if not starts:
        raise InputError(f"none of the {n} trajectories has an assistant token to train on")
    if overlong == "drop":
        keep = [c.min_length is not None and c.length <= max_length for c in counts]
        shortest = min(c.length for c in counts if c.min_length is not None)
        if not any(keep):
            alternative = (
                f"or --overlong truncate to train on their first {max_length} tokens"
                if starts[0] <= max_length
                else f"--overlong truncate would need --max-length {starts[0]} or more"
            )
            raise InputError(
                f"--max-length {max_length} with --overlong drop drops all {n} trajectories: the shortest "
                f"is {shortest} tokens long, so use --max-length {shortest} or more ({alternative})"
            )
        why = f"longer than --max-length {max_length}"
    else:
        keep = [c.trains_at(max_length) for c in counts]
        if not any(keep):
            prompts = f"{starts[0] - 1}" if len(starts) == 1 else f"{starts[0] - 1}-{starts[-1] - 1}"
            every = f", {starts[-1]} keeps part of every trajectory" if starts[-1] > starts[0] else ""
            raise InputError(
                f"--max-length {max_length} leaves no assistant token to train on in "
                f"{'the one trajectory' if n == 1 else f'any of the {n} trajectories'}, so nothing would "
                f"be trained: the prompt (system, tools, task) before the first assistant token is "
                f"{prompts} tokens long; --max-length {starts[0]} is the smallest that trains on anything "
                f"(it keeps the first assistant token of the trajectory with the shortest prompt){every}"
            )
        why = f"with no assistant token in the first {max_length} tokens"
    kept = [row for row, k in zip(rows, keep, strict=True) if k]
    if len(kept) == n:
        return kept, ""
    no_assistant = sum(c.min_length is None for c in counts)
    dropped = n - len(kept) - no_assistant
    parts = [f"{dropped} {why}"] if dropped else []
    if no_assistant:
        parts.append(f"{no_assistant} with no assistant turn at all")
    hint = ""
    if dropped and overlong != "drop":
        hint = f"; --max-length {starts[-1]} keeps part of every trajectory"
    return kept, f"training on {len(kept)} of {n} trajectories, dropped {' and '.join(parts)}{hint}"


def _time_limit(minutes: float, processes: Any) -> Any:
    """A callback that ends training cleanly (the model is still saved) after ``minutes``.

    In a launched job the main process's clock decides for all (a broadcast each step): a
    process that stopped alone would leave the others waiting in DDP's gradient all-reduce.
    """
    from transformers import TrainerCallback

    class _Deadline(TrainerCallback):
        def __init__(self) -> None:
            self.deadline = time.monotonic() + minutes * 60

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            stop = time.monotonic() >= self.deadline
            if processes.num_processes > 1:
                import torch
                from accelerate.utils import broadcast

                stop = bool(broadcast(torch.tensor([int(stop)], device=processes.device)).item())
            if stop:
                control.should_training_stop = True
            return control

    return _Deadline()


def _save_full(trainer: Any, config: TrainConfig, out: Path, result: TrainResult) -> None:
    """The whole trained model as a folder ``--model DIR`` serves: weights, the tokenizer with its
    original template (training used a marked copy), and ``scratch.json`` updated with the run."""
    from transformers import AutoTokenizer

    from .scratch import MARKER_FILE, scratch_info

    model = trainer.model
    model.config.use_cache = True  # turned off for training only
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(config.model).save_pretrained(str(out))
    info = scratch_info(config.model)
    if info is not None:
        run = {"from": config.model, "steps": result.steps, "tokens": result.tokens}
        runs = [*info.get("training", []), run]
        (out / MARKER_FILE).write_text(json.dumps({**info, "training": runs}, indent=2))


def _fit(
    config: TrainConfig,
    device: str,
    quant: str,
    tokenizer: Any,
    dataset: Any,
    how: str,
    log: Any,
    supervised_text: Any,
    processes: Any,
) -> TrainResult:
    """Train, then (main process only) write the adapter or model and the summary; the other
    processes wait at a barrier so that none exits while the output is still being written."""
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    full = config.method == "full"
    out = Path(config.output_dir)
    ckpt_dir = out / "checkpoints"
    resume: str | None = None
    if config.resume:
        resume = _latest_checkpoint(ckpt_dir) if config.resume == "latest" else config.resume
        if resume is None:
            log(f"no checkpoint in {ckpt_dir}: starting from scratch")
    optim = config.optim
    if optim == "auto":
        optim = "paged_adamw_8bit" if (quant == "4bit" and device == "cuda") else "adamw_torch"
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    args = SFTConfig(
        output_dir=str(ckpt_dir),
        assistant_only_loss=True,
        max_length=config.max_length,
        truncation_mode="keep_start",  # what select_trainable assumes
        packing=False,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,  # type: ignore[arg-type]  # resolved
        learning_rate=config.learning_rate,  # type: ignore[arg-type]
        num_train_epochs=config.num_train_epochs,  # type: ignore[arg-type]
        max_steps=config.max_steps,
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type=config.lr_scheduler_type,
        weight_decay=config.weight_decay,
        gradient_checkpointing=bool(config.gradient_checkpointing),
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        optim=optim,
        bf16=bf16,
        fp16=device == "cuda" and not bf16,
        use_cpu=device == "cpu",
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        report_to="none",
        dataloader_num_workers=0,
        dataset_num_proc=None,
        disable_tqdm=not sys.stderr.isatty(),
        include_num_input_tokens_seen="non_padding",
    )
    lora = None
    if not full:
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.targets(),
            bias="none",
            task_type="CAUSAL_LM",
        )
    model = load_base(config, device, quant, processes.local_process_index)
    callbacks = [_time_limit(config.max_minutes, processes)] if config.max_minutes > 0 else None
    started, cpu_started = time.monotonic(), time.process_time()
    with warnings.catch_warnings():
        # A repacked 4-bit base trains silently wrong; make its warning fatal (design.md §7).
        warnings.filterwarnings("error", message=GEMV_WARNING)
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=callbacks,
        )
        example = trainer.train_dataset[0]  # type: ignore[index]  # a map-style Dataset here
        sample = supervised_text(tokenizer, example["input_ids"], [int(x != -100) for x in example["labels"]])
        initial = {
            n: p.detach().clone()
            for n, p in trainer.model.named_parameters()  # type: ignore[union-attr]
            if (p.requires_grad if full else "lora_" in n)
        }
        trainer.train(resume_from_checkpoint=resume)
    seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
    trained: Any = trainer.model  # the PeftModel SFTTrainer wrapped around the base, or the model itself
    changed = sum(
        int(not torch.equal(initial[n].to(p.device), p.detach()))
        for n, p in trained.named_parameters()
        if n in initial
    )
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    result = TrainResult(
        output_dir=str(out),
        steps=int(trainer.state.global_step),
        seconds=round(seconds, 1),
        first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None,
        losses=losses,
        examples=len(dataset),
        template=how,
        lora_tensors_changed=changed,
        lora_tensors=len(initial),
        method=config.method,
        tokens=tokens,
        tokens_per_second=round(tokens / seconds, 1) if seconds > 0 else 0.0,
        cpu_seconds=round(cpu_seconds, 1),
        sample=sample,
    )
    result.model = trainer.model  # not a field: in-process callers (tests) inspect the trained weights
    if processes.is_main_process:
        _write_outputs(trainer, config, out, result, device, quant, optim, processes.num_processes)
    processes.wait_for_everyone()
    loss_text = f"loss {result.first_loss:.3f} -> {result.last_loss:.3f}" if losses else "no loss logged"
    what = "parameter tensors" if full else "LoRA tensors"
    log(
        f"trained {result.steps} steps on {result.examples} sequences in {result.seconds:.0f}s "
        f"({tokens} tokens, {result.tokens_per_second:.0f} tokens/s), {loss_text}; "
        f"{changed}/{len(initial)} {what} changed -> {out}"
    )
    if changed != len(initial):
        log(f"warning: some {what} did not change: gradients did not reach every trained layer")
    return result


def _write_outputs(
    trainer: Any,
    config: TrainConfig,
    out: Path,
    result: TrainResult,
    device: str,
    quant: str,
    optim: str,
    processes: int,
) -> None:
    """The adapter (or whole model) and ``training_summary.json``: the main process's job only."""
    import torch

    full = config.method == "full"
    trained: Any = trainer.model
    out.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if full:
        _save_full(trainer, config, out, result)
        extra["parameters"] = sum(p.numel() for p in trained.parameters())
    else:
        trained.save_pretrained(str(out))
        extra["target_modules"] = clean_adapter_config(out, config.model).get("target_modules")
    (out / SUMMARY_FILE).write_text(
        json.dumps(
            {
                "result": {k: v for k, v in vars(result).items() if k not in ("sample", "model")},
                "config": asdict(config),
                "device": device,
                "quantization": quant,
                "optim": optim,
                "processes": processes,
                "global_batch": global_batch(config, processes),
                **extra,
                "torch_threads": torch.get_num_threads(),
                "pid": os.getpid(),
            },
            indent=2,
            default=str,
        )
    )
