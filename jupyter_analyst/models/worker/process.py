"""The worker process: command-line flags, start-up, the ready line and the exit codes.

``EmbeddedModel`` (models/host.py) reads the outcome: one JSON ready line on stdout, or
one ``[worker] error: ...`` line on stderr and a distinct exit code (2: no secret,
3: cannot load, 4: out of memory loading, 5: cannot listen).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

from ...errors import InputError
from .common import log
from .engine import Engine, is_oom
from .fastpath import describe, kernel_report
from .grammar import ToolCallConstraint, available, require
from .loading import load_model, model_name
from .server import WorkerServer

SECRET_ENV = "JUPYTER_ANALYST_WORKER_SECRET"
WATCH_STDIN_ENV = "JUPYTER_ANALYST_WORKER_WATCH_STDIN"
"""When "1", the worker exits as soon as its stdin closes, i.e. when its parent dies."""

DESCRIPTION = "The embedded model worker: transformers (+ peft, + bitsandbytes) behind an OpenAI API."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The worker's flags (``EmbeddedModel.command`` builds them)."""
    p = argparse.ArgumentParser(prog="python -m jupyter_analyst.models.worker", description=DESCRIPTION)
    p.add_argument("--model", required=True, help="base model: a local folder or a Hub id")
    p.add_argument("--adapter", default=None, help="optional peft (LoRA) adapter: folder or Hub id")
    p.add_argument(
        "--quantization",
        choices=["auto", "4bit", "8bit", "none"],
        default="auto",
        help="bitsandbytes quantisation; auto = 4bit on CUDA, none on CPU",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default="auto")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (reported on the ready line)")
    p.add_argument("--max-new-tokens", type=int, default=2048, help="cap on any request's max_tokens")
    p.add_argument("--served-model-name", default=None, help="id reported by /v1/models")
    p.add_argument(
        "--no-prefix-cache",
        dest="prefix_cache",
        action="store_false",
        help="recompute every prompt instead of reusing the previous request's cache",
    )
    p.add_argument(
        "--constrained",
        choices=["auto", "on", "off"],
        default="auto",
        help="enforce the tool-call grammar while decoding (llguidance); auto = on where it is installed",
    )
    p.add_argument(
        "--cache",
        choices=["dynamic", "static"],
        default="dynamic",
        help="decode cache: dynamic grows per token; static is preallocated (needed by --compile)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the decode step (CUDA, with --cache static); the first reply compiles",
    )
    p.add_argument(
        "--max-context",
        type=int,
        default=16384,
        help="longest prompt the static cache holds (plus --max-new-tokens); longer ones use a dynamic cache",
    )
    think = p.add_mutually_exclusive_group()
    think.add_argument("--enable-thinking", dest="enable_thinking", action="store_true")
    think.add_argument("--no-thinking", dest="enable_thinking", action="store_false")
    p.set_defaults(enable_thinking=False)
    return p.parse_args(argv)


def make_constraint(mode: str, engine: Engine) -> ToolCallConstraint | None:
    """The grammar constraint for ``--constrained`` (auto/on/off); "on" without the library raises."""
    if mode == "off" or (mode == "auto" and not available()):
        return None
    require()
    try:  # the logits' width: the LM head can be wider than the tokenizer's vocabulary
        vocab = int(engine.model.get_output_embeddings().weight.shape[0])
    except (AttributeError, TypeError, IndexError):
        vocab = len(engine.tokenizer)
    return ToolCallConstraint(engine.tokenizer, engine.eos, vocab)


def _watch_stdin() -> None:
    """Exit when the parent's end of our stdin closes, so no worker outlives its host."""
    try:
        while os.read(0, 1024):  # raw fd: no buffered-reader lock to trip interpreter shutdown
            pass
    except OSError:
        pass
    log("parent went away; exiting")
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    """Load, listen, print the ready line and serve until interrupted; return the exit code."""
    # Keep stdout for the ready line only: anything a library prints goes to stderr.
    ready_fd = os.dup(1)
    os.dup2(2, 1)
    args = parse_args(argv)
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        log(f"error: set {SECRET_ENV} to the bearer secret clients must send; refusing to start without one")
        return 2
    if os.environ.get(WATCH_STDIN_ENV) == "1":
        threading.Thread(target=_watch_stdin, name="watch-stdin", daemon=True).start()
    started = time.monotonic()
    try:
        tokenizer, model = load_model(args)
    except Exception as exc:  # noqa: BLE001 - every load failure becomes one clear line
        if is_oom(exc):
            log(f"error: out of memory loading {args.model}: {exc}")
            return 4
        log(
            f"error: cannot load model {args.model}"
            f"{' with adapter ' + args.adapter if args.adapter else ''}: "
            f"{'' if type(exc) in (RuntimeError, InputError) else type(exc).__name__ + ': '}{exc}"
        )
        return 3
    engine = Engine(
        tokenizer,
        model,
        model_name(args),
        args.max_new_tokens,
        args.enable_thinking,
        args.prefix_cache,
        cache_mode=args.cache,
        compile=args.compile,
        static_tokens=args.max_context + args.max_new_tokens,
    )
    kernels = kernel_report(model)
    engine.kernels = kernels
    log(describe(kernels))
    if args.compile and (args.cache != "static" or not str(model.device).startswith("cuda")):
        log("note: --compile takes effect only with --cache static on CUDA; decoding is not compiled")
    try:
        engine.constraint = make_constraint(args.constrained, engine)
    except RuntimeError as exc:
        log(f"error: {exc}")
        return 3
    log(f"constrained decoding {'on' if engine.constraint is not None else 'off'}")
    try:
        server = WorkerServer((args.host, args.port), engine, secret)
    except OSError as exc:
        log(f"error: cannot listen on {args.host}:{args.port}: {exc}")
        return 5
    port = server.server_address[1]
    log(f"ready in {time.monotonic() - started:.1f}s on http://{args.host}:{port}/v1 serving {engine.name}")
    ready = {"ready": True, "port": port, "model": engine.name, "kernels": kernels}
    ready["decode"] = engine.decode_info()
    os.write(ready_fd, (json.dumps(ready) + "\n").encode())
    os.close(ready_fd)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
