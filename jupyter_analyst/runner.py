"""A headless run: data file in, finished notebook out.

The runner is the glue the CLI, evaluation and trajectory collection share: it checks the
input, starts a kernel next to the notebook, writes the header and the cell that loads the
data (so the notebook re-runs on its own), computes the frame's facts in the kernel, drives
the loop and hands every event to the notebook writer and to the caller.
"""

from __future__ import annotations

import datetime as _dt
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .agent import AgentLoop, Budget, RunFinished, StopReason
from .agent.prompts import render_task
from .agent.types import CellAdded, Event, Message, Policy, StepStarted
from .errors import InputError
from .notebook import NotebookWriter

READERS: dict[str, str] = {
    ".csv": "pd.read_csv({path!r})",
    ".txt": "pd.read_csv({path!r}, sep=None, engine='python')",
    ".tsv": "pd.read_csv({path!r}, sep='\\t')",
    ".tab": "pd.read_csv({path!r}, sep='\\t')",
    ".parquet": "pd.read_parquet({path!r})",
    ".pq": "pd.read_parquet({path!r})",
    ".feather": "pd.read_feather({path!r})",
    ".xlsx": "pd.read_excel({path!r})",
    ".xls": "pd.read_excel({path!r})",
    ".json": "pd.read_json({path!r})",
    ".jsonl": "pd.read_json({path!r}, lines=True)",
    ".ndjson": "pd.read_json({path!r}, lines=True)",
}
"""pandas readers by suffix; a ``.gz``/``.zip``/... suffix after these is handled by pandas."""

COMPRESSIONS = {".gz", ".bz2", ".zip", ".xz", ".zst"}

STOP_NOTES = {
    StopReason.MAX_STEPS: "the step budget ran out before the analyst wrote its conclusions",
    StopReason.MAX_TOKENS: "the token budget ran out before the analyst wrote its conclusions",
    StopReason.MAX_TIME: "the time budget ran out before the analyst wrote its conclusions",
    StopReason.KERNEL_DIED: "the kernel died (out of memory, or the code ended the process)",
    StopReason.MODEL_ERROR: "the model backend failed",
    StopReason.STOPPED: "the run was stopped",
}


@dataclass
class RunConfig:
    """Everything one headless run needs besides the policy."""

    data: Path
    output: Path
    question: str | None = None
    budget: Budget = field(default_factory=Budget)
    cell_timeout: float = 120.0
    variable: str = "df"
    max_output_bytes: int = 1_000_000


@dataclass
class RunOutcome:
    notebook: Path
    finished: RunFinished
    messages: list[Message]
    facts: dict[str, Any]


def reader_for(path: Path) -> str:
    """The pandas call that loads ``path``, or an InputError naming what is supported."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in READERS:
        supported = ", ".join(sorted(READERS))
        raise InputError(f"{path.name}: unsupported file type {ext or '(none)'!r}; supported: {supported}")
    return READERS[ext]


def check_data_file(path: Path) -> None:
    """Fail fast, with one clear line, on inputs that can't be loaded at all."""
    if not path.exists():
        raise InputError(f"data file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a data file")
    reader_for(path)
    try:
        with path.open("rb") as fh:
            first = fh.read(1)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not first:
        raise InputError(f"{path} is empty: nothing to analyse")


def default_output(data: Path, directory: Path | None = None) -> Path:
    """``<stem>_analysis.ipynb`` in ``directory``, numbered so nothing is overwritten."""
    stem = data.name.split(".")[0] or "data"
    base = (directory or Path.cwd()) / f"{stem}_analysis.ipynb"
    candidate, n = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{stem}_analysis-{n}.ipynb")
        n += 1
    return candidate


def _relative(target: Path, start: Path) -> str:
    try:
        return os.path.relpath(target.resolve(), start.resolve())
    except ValueError:  # another drive on Windows
        return str(target.resolve())


def setup_source(data: Path, notebook_dir: Path, variable: str) -> str:
    """The first code cell: imports and the load, with a path relative to the notebook."""
    call = reader_for(data).format(path=_relative(data, notebook_dir))
    return f"import pandas as pd\n\n{variable} = {call}\n{variable}.shape"


def header_source(config: RunConfig, policy: Policy, facts: dict[str, Any], run_id: str) -> str:
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"# Analysis of `{config.data.name}`",
        "",
        f"**Question:** {config.question.strip()}"
        if config.question
        else "**Question:** general exploration",
        "",
        f"**Dataset:** `{config.data.name}`, {facts['rows']} rows x {facts['cols']} columns",
        "",
        f"**Analyst:** {policy.name}",
        "",
        f"*Written by jupyter-analyst {__version__} on {when}, run `{run_id}`. Cells tagged "
        "`jupyter-analyst` were written by the analyst; everything re-runs top to bottom.*",
    ]
    return "\n".join(lines)


def run_analysis(
    config: RunConfig,
    policy: Policy,
    on_event: Callable[[Event], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunOutcome:
    """Run one whole analysis; the notebook on disk is valid after every step."""
    from .kernel import KernelExecutor
    from .kernel.facts import frame_facts_code, parse_facts

    data = config.data.expanduser()
    check_data_file(data)
    output = config.output.expanduser().resolve()
    if output.suffix != ".ipynb":
        raise InputError(f"the output must be an .ipynb file, got {output.name}")
    run_id = uuid.uuid4().hex[:12]
    emit = on_event or (lambda event: None)
    setup = setup_source(data, output.parent, config.variable)
    output.parent.mkdir(parents=True, exist_ok=True)

    with KernelExecutor(
        cwd=output.parent, timeout=config.cell_timeout, max_output_bytes=config.max_output_bytes
    ) as executor:
        loaded = executor.execute(setup)
        if not loaded.ok:
            why = f"{loaded.error_name}: {loaded.error_value}".strip(": ") or loaded.status
            if loaded.status == "dead":
                why = "the kernel died while loading it (is the file too large for memory?)"
            raise InputError(f"could not load {data.name}: {why.splitlines()[0] if why else why}")
        facts = parse_facts(executor.run_silent(frame_facts_code(config.variable)))
        facts["source"] = data.name
        if not facts["rows"] or not facts["cols"]:
            raise InputError(
                f"{data.name} loaded as an empty table ({facts['rows']} rows x {facts['cols']} columns)"
            )

        writer = NotebookWriter(
            output,
            run_id,
            {
                "question": config.question,
                "data": data.name,
                "policy": policy.name,
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "version": __version__,
            },
        )
        writer.add_cell("markdown", header_source(config, policy, facts, run_id), "header", 0, "header")
        writer.add_cell("code", setup, "setup", 0, "setup")
        writer.set_result("setup", loaded)
        writer.save()

        loop = AgentLoop(policy, executor, config.budget, should_stop=should_stop)
        finished: RunFinished | None = None
        step = 0
        try:
            for event in loop.run(render_task(facts, config.question)):
                writer.handle(event)
                emit(event)
                if isinstance(event, StepStarted):
                    step = event.step
                if isinstance(event, RunFinished):
                    finished = event
        except KeyboardInterrupt:
            finished = RunFinished(
                StopReason.STOPPED, None, step, 0, 0.0, 0, 0, "interrupted from the keyboard"
            )
            writer.handle(finished)
            emit(finished)
        assert finished is not None
        if finished.reason is not StopReason.FINAL_ANSWER:
            note = f"*Run ended without conclusions: {STOP_NOTES[finished.reason]}.*"
            if finished.detail and finished.reason is StopReason.MODEL_ERROR:
                note += f"\n\n`{finished.detail}`"
            event = CellAdded(finished.steps, "stop-note", "markdown", note, "note")
            writer.handle(event)
    return RunOutcome(notebook=output, finished=finished, messages=loop.messages, facts=facts)
