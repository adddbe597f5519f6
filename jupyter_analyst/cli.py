"""``jupyter analyst``: run an analysis headless, list profiles, serve a model, export.

Errors we expect (bad input, unreachable server, dead kernel) print one line and exit with
a code that says how the run ended; only a bug in our own code shows a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .errors import AnalystError
from .levers import add_lever_options, lever_settings

EXIT_OK = 0
EXIT_BUG = 1
EXIT_INPUT = 2
EXIT_BUDGET = 3
EXIT_KERNEL = 4
EXIT_MODEL = 5
EXIT_STOPPED = 130
EXIT_TERMINATED = 143
"""128 + SIGTERM: stopped by ``kill`` (a scheduler, a CI timeout) rather than Ctrl-C."""

EXIT_BY_REASON = {
    "final_answer": EXIT_OK,
    "max_steps": EXIT_BUDGET,
    "max_tokens": EXIT_BUDGET,
    "max_time": EXIT_BUDGET,
    "kernel_died": EXIT_KERNEL,
    "model_error": EXIT_MODEL,
    "stopped": EXIT_STOPPED,
}


COMMAND_MODULES = {
    "eval": "jupyter_analyst.eval.cli",
    "collect": "jupyter_analyst.training.collect",
    "import-trajectories": "jupyter_analyst.training.importer",
    "scratch": "jupyter_analyst.training.scratch",
    "train": "jupyter_analyst.training.train",
    "merge": "jupyter_analyst.training.merge",
}
"""Subcommands that live beside their feature: each module has ``add_parser(sub)`` and
``run(args) -> int`` and must import cheaply (heavy imports inside ``run``)."""


def _command_module(name: str) -> Any:
    import importlib

    return importlib.import_module(COMMAND_MODULES[name])


def build_parser() -> argparse.ArgumentParser:
    from .models.select import add_model_options

    parser = argparse.ArgumentParser(
        prog="jupyter analyst",
        description="A local LLM data analyst that writes and runs a Jupyter notebook.",
    )
    parser.add_argument("--version", action="version", version=f"jupyter-analyst {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="analyse a data file into a finished notebook")
    run.add_argument("data", type=Path, help="CSV, TSV, Parquet, Excel, JSON or JSON-lines file")
    run.add_argument("-q", "--question", help="what to find out (default: a general exploration)")
    run.add_argument("-o", "--output", type=Path, help="notebook to write (default: <data>_analysis.ipynb)")
    run.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    run.add_argument(
        "--max-steps", type=int, default=40, help="model turns before the run stops (default 40)"
    )
    run.add_argument("--max-tokens", type=int, help="total tokens before the run stops")
    run.add_argument("--max-time", type=float, help="seconds before the run stops")
    run.add_argument(
        "--cell-timeout", type=float, default=120.0, help="seconds per cell before it is interrupted"
    )
    run.add_argument("--baseline", action="store_true", help="use the rule-based baseline analyst (no model)")
    run.add_argument("--replay", type=Path, help="replay a saved script or trajectory instead of a model")
    run.add_argument("--quiet", action="store_true", help="print only the final line")
    add_lever_options(run)
    run.add_argument(
        "--save-trajectory",
        type=Path,
        metavar="FILE",
        help="append this run's conversation as a JSONL trajectory (for training)",
    )
    add_model_options(run)

    sub.add_parser("models", help="list model profiles, their memory estimates and the default here")

    serve = sub.add_parser("serve", help="serve a model on an OpenAI-compatible API (loopback only)")
    serve.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0 picks a free one)")
    add_model_options(serve)

    export = sub.add_parser("export", help="export a notebook as a report")
    export.add_argument("notebook", type=Path)
    export.add_argument("--to", choices=["html"], default="html")
    export.add_argument("-o", "--output", type=Path, help="file to write (default: next to the notebook)")
    for name in COMMAND_MODULES:
        try:
            module = _command_module(name)
        except ModuleNotFoundError as exc:  # a feature not in this build; real import bugs still raise
            if exc.name is None or not COMMAND_MODULES[name].startswith(exc.name):
                raise
            continue
        module.add_parser(sub)
    return parser


class Progress:
    """Live one-line-per-step display of a run on stderr."""

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.figures = 0
        self.sources: dict[str, str] = {}
        # On a terminal a status line shows the step being generated (a 9B model can take
        # a minute per step); in logs and pipes only finished steps are printed.
        self.live = not quiet and stream.isatty()
        self.step = 0
        self.generated = 0

    def say(self, text: str) -> None:
        if not self.quiet:
            print(("\r\033[K" if self.live else "") + text, file=self.stream, flush=True)

    def status(self, text: str) -> None:
        if self.live:
            print("\r\033[K" + text, end="", file=self.stream, flush=True)

    def on_text(self, piece: str) -> None:
        """Streaming callback: count what the model has written so far in this step."""
        self.generated += len(piece)
        self.status(f"  step {self.step:>2}  generating ({self.generated} characters)...")

    def __call__(self, event: object) -> None:
        from .agent import CellAdded, CellExecuted, CellsRemoved, ModelReplied, StepStarted

        if isinstance(event, CellsRemoved):
            n = len(event.cell_ids)
            cells = f"{n} failed cell{'s' if n != 1 else ''}"
            self.say(f"  tidy        {cells} a later cell fixed: removed from the notebook")

        if isinstance(event, StepStarted):
            self.step, self.generated = event.step, 0
            self.status(f"  step {event.step:>2}  thinking...")
        if isinstance(event, CellAdded) and event.cell_type == "code":
            self.status(f"  step {event.step:>2}  running a cell...")
        if isinstance(event, CellAdded):
            self.sources[event.cell_id] = event.source
        if isinstance(event, ModelReplied) and event.problem:
            what = "unreadable tool call" if "tried to call a tool" in event.problem else "no tool call"
            self.say(f"  step {event.step:>2}  {what} ({event.seconds:.1f}s): asked the model to continue")
        elif isinstance(event, CellAdded) and event.cell_type == "markdown" and event.role != "note":
            first = event.source.strip().splitlines()[0] if event.source.strip() else ""
            label = "conclusions" if event.role == "conclusions" else "markdown"
            self.say(f"  step {event.step:>2}  {label:<11} {first[:70]}")
        elif isinstance(event, CellExecuted):
            self.figures += sum(1 for f in event.result.facts if f.get("type") == "figure")
            lines = self.sources.get(event.cell_id, "").splitlines()
            first = next((ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")[
                :60
            ]
            status = {"ok": "ok", "error": "error", "timeout": "timeout", "dead": "kernel died"}[
                event.result.status
            ]
            if event.fixed_error:
                status += ", fixed"
            detail = (
                f"{event.result.error_name}: {event.result.error_value}"[:60]
                if not event.result.ok
                else first
            )
            self.say(
                f"  step {event.step:>2}  code        {status:<12} {event.result.duration:5.1f}s  {detail}"
            )


def _import_writer() -> None:
    """Import the notebook writer, and nbformat with it (~0.85 s, most of it jsonschema's
    format checkers), while the policy and the kernel start rather than before them."""
    try:
        from .notebook import writer  # noqa: F401
    except Exception:  # noqa: BLE001 - the run imports it again and reports a real failure
        pass


def cmd_run(args: argparse.Namespace, err: TextIO) -> int:
    from .agent import Budget
    from .errors import InputError
    from .models.select import build_policy, choice_from_args
    from .runner import (
        RunConfig,
        check_data_file,
        check_limits,
        check_output_file,
        default_output,
        run_analysis,
    )

    # Everything the user can get wrong is refused here, before any model loads.
    budget = Budget(args.max_steps, args.max_tokens, args.max_time)
    check_limits(budget, args.cell_timeout)
    check_data_file(args.data)
    output = check_output_file(args.output or default_output(args.data))
    if args.output and output.exists() and not args.overwrite:
        raise InputError(f"{args.output} already exists; pass --overwrite or choose another --output")
    progress = Progress(err, args.quiet)
    started = time.monotonic()
    threading.Thread(target=_import_writer, name="import-nbformat", daemon=True).start()
    with build_policy(choice_from_args(args), on_text=progress.on_text if progress.live else None) as handle:
        progress.say(f"jupyter-analyst: analysing {args.data.name} with {handle.label}")
        if handle.note:
            progress.say(f"  ({handle.note})")
        config = RunConfig(
            data=args.data,
            output=output,
            question=args.question,
            budget=budget,
            cell_timeout=args.cell_timeout,
            **lever_settings(args),
        )
        outcome = run_analysis(config, handle.policy, on_event=progress, label=handle.label)
        if args.save_trajectory:
            from .training.trajectory import save_trajectory

            why = save_trajectory(
                args.save_trajectory,
                outcome,
                meta={"source": "run", "policy": handle.label, "question": args.question},
            )
            progress.say(
                f"  trajectory {'not saved: ' + why if why else 'saved to ' + str(args.save_trajectory)}"
            )
    fin = outcome.finished
    fixed = f", {fin.errors_fixed} of {fin.errors} errors fixed" if fin.errors else ""
    if fin.cells_removed:
        fixed += f" ({fin.cells_removed} failed cell{'s' if fin.cells_removed != 1 else ''} removed)"
    how = (
        "finished with conclusions"
        if fin.reason.natural
        else f"ended without conclusions ({fin.reason.value})"
    )
    if fin.reason.value == "stopped" and _TERMINATED.is_set():
        detail = ": terminated (SIGTERM)"
    else:
        detail = f": {fin.detail}" if fin.detail and not fin.reason.natural else ""
    print(
        ("\r\033[K" if progress.live else "") + f"{how}{detail} after {fin.steps} steps, "
        f"{progress.figures} figure{'s' if progress.figures != 1 else ''}"
        f"{fixed}, "
        f"{time.monotonic() - started:.1f}s -> {outcome.notebook}",
        file=err,
    )
    return EXIT_BY_REASON[fin.reason.value]


def cmd_models(out: TextIO) -> int:
    from .models.profiles import load_profiles, pick_default

    profiles = load_profiles()
    default, why = pick_default(profiles)
    print(f"{'profile':<26} {'memory':>9}  description", file=out)
    for p in profiles.values():
        mem = "-"
        if p.kind == "embedded":
            device = "cuda" if p.device != "cpu" else "cpu"
            mem = f"{p.memory_gb(device):.1f} GB" + (" GPU" if device == "cuda" else " RAM")
        mark = "*" if p.name == default.name else " "
        print(f"{mark}{p.name:<25} {mem:>9}  {p.description}", file=out)
        if p.model:
            tools = "" if p.dialect == "notebook" else f"  (tools: the {p.dialect} dialect)"
            print(f"{'':<37}{p.model}" + (f" + {p.adapter}" if p.adapter else "") + tools, file=out)
    print(f"\n* default here: {default.name} ({why})", file=out)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    """Serve in the foreground until Ctrl-C; the API key is printed once."""
    from .models.host import EmbeddedModel
    from .models.profiles import get_profile, pick_default

    if args.model:
        model, adapter, quant, device = (
            args.model,
            args.adapter,
            args.quantization or "auto",
            args.device or "auto",
        )
    else:
        profile = get_profile(args.profile) if args.profile else pick_default()[0]
        if profile.kind != "embedded":
            from .errors import InputError

            raise InputError(
                f"profile {profile.name!r} has no model to serve; pick an embedded profile or --model"
            )
        model, adapter, quant, device = (
            profile.model,
            args.adapter or profile.adapter,
            profile.quantization,
            profile.device,
        )
    host = EmbeddedModel(
        model, adapter=adapter, quantization=quant, device=device, extra_args=["--port", str(args.port)]
    )
    print(f"loading {model}" + (f" + {adapter}" if adapter else "") + " ...", file=out, flush=True)
    host.start()
    try:
        print(f"serving {host.base_url}  (api key: {host.api_key})", file=out, flush=True)
        print(
            "use it with: jupyter analyst run DATA --base-url URL --api-key KEY ; Ctrl-C stops",
            file=out,
            flush=True,
        )
        while host.running:
            time.sleep(1)
        print("the model worker exited; see its log: " + str(host.log_path), file=out)
        return EXIT_MODEL
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        host.stop()


def cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    from .export import export_html

    target = export_html(args.notebook, args.output)
    print(f"wrote {target}", file=out)
    return EXIT_OK


_TERMINATED = threading.Event()


def _terminate_like_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM ends a command as Ctrl-C does: the run writes its stopped note, the kernel
    is shut down and its connection files removed (the default action would kill us on
    the spot and leave both behind). Later SIGTERMs are ignored so they can't cut that
    short; the shutdown never waits long, and SIGKILL still works."""
    if not _TERMINATED.is_set():
        _TERMINATED.set()
        raise KeyboardInterrupt


def _stoppable() -> None:
    """Make Ctrl-C / ``kill -INT`` stop us even when started with SIGINT ignored, and
    ``kill`` (SIGTERM) stop us the same way.

    A process started from a background shell or a CI runner inherits SIGINT ignored, and
    Python keeps it so: ``run`` would never write its stopped notebook (exit 130) and
    ``serve`` would never stop. Only for a real command-line start on the main thread, so
    an in-process ``main([...])`` leaves its host's handlers alone.
    """
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _terminate_like_ctrl_c)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        _stoppable()
    args = build_parser().parse_args(argv)
    code = _dispatch(args, sys.stderr)
    return EXIT_TERMINATED if code == EXIT_STOPPED and _TERMINATED.is_set() else code


def _dispatch(args: argparse.Namespace, err: TextIO) -> int:
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiets a kernel start-up warning
    try:
        if args.command == "run":
            return cmd_run(args, err)
        if args.command == "models":
            return cmd_models(sys.stdout)
        if args.command == "serve":
            return cmd_serve(args, err)
        if args.command == "export":
            return cmd_export(args, err)
        if args.command in COMMAND_MODULES:
            return int(_command_module(args.command).run(args))
    except AnalystError as exc:
        print(f"error: {exc}", file=err)
        from .errors import BackendError

        return EXIT_MODEL if isinstance(exc, BackendError) else EXIT_INPUT
    except KeyboardInterrupt:
        print("stopped (SIGTERM)" if _TERMINATED.is_set() else "stopped", file=err)
        return EXIT_STOPPED
    return EXIT_BUG


if __name__ == "__main__":
    raise SystemExit(main())
