"""A headless run: data file in, finished notebook out.

What the CLI, evaluation and trajectory collection share: check the file, pick the pandas
reader, start a kernel of its own next to the notebook and hand the run to the
``Session`` with a notebook file as its sink and the load as its first, visible cell (so
the notebook re-runs on its own).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .agent import Budget, Event, RunFinished
from .agent.types import Message, Policy
from .errors import InputError
from .session import RunSpec, Session

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
    keep_failed_cells: bool = False
    """Keep failed cells a later fix superseded (by default the finished notebook drops them)."""
    prechecks: bool = True
    """Check each cell before it runs (syntax, the frame's columns; ``agent.precheck``)."""
    grounding_gate: bool = True
    """Send conclusions with numbers no output shows back to the model once."""
    context_tokens: int | None = None
    """Size observations and the history trim to this window (None: the policy's own, else 16k);
    a teacher's trajectories for a small-context model are collected at that model's size."""


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


def check_output_file(path: Path) -> Path:
    """Fail fast, with one clear line, on a notebook path that can't be written; return it
    absolute. A folder that does not exist yet is created and removed again, as a probe:
    only a real attempt tells a read-only or virtual file system (``/proc``) from a good one.
    """
    path = path.expanduser().absolute()
    if path.suffix != ".ipynb":
        raise InputError(f"the output must be an .ipynb file, got {path.name}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a notebook file")
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists() and not parent.is_symlink():
        missing.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: {parent} is not a folder")
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue  # made meanwhile by someone else: theirs to keep
            except OSError as exc:
                raise InputError(f"cannot create the folder {folder}: {exc.strerror or exc}") from None
            created.append(folder)
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        except OSError as exc:
            raise InputError(f"cannot write in {path.parent}: {exc.strerror or exc}") from None
        os.close(fd)
        os.unlink(probe)
    finally:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass  # something else put a file there meanwhile: leave it
    return path


def check_limits(budget: Budget, cell_timeout: float) -> None:
    """Refuse limits that would end a run before it starts (or never let a cell run)."""

    def seconds(value: float | None) -> bool:
        return value is None or (math.isfinite(value) and value > 0)

    if budget.max_steps < 1:
        raise InputError(f"--max-steps must be at least 1, got {budget.max_steps}")
    if budget.max_tokens is not None and budget.max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1, got {budget.max_tokens}")
    if not seconds(budget.max_seconds):
        raise InputError(f"--max-time must be a positive number of seconds, got {budget.max_seconds:g}")
    if not seconds(cell_timeout):
        raise InputError(f"--cell-timeout must be a positive number of seconds, got {cell_timeout:g}")


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


def run_analysis(
    config: RunConfig,
    policy: Policy,
    on_event: Callable[[Event], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    label: str | None = None,
) -> RunOutcome:
    """Run one whole analysis of a data file in a kernel of its own; the notebook on disk is
    valid after every step. ``label`` names the analyst in the header (default: the policy's name)."""
    from .kernel import KernelExecutor

    data = config.data.expanduser()
    check_data_file(data)
    check_limits(config.budget, config.cell_timeout)
    output = check_output_file(config.output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(
        variable=config.variable,
        question=config.question,
        budget=config.budget,
        source=data.name,
        subject=data.name,
        load_code=setup_source(data, output.parent, config.variable),
        keep_failed_cells=config.keep_failed_cells,
        prechecks=config.prechecks,
        grounding_gate=config.grounding_gate,
        context_tokens=config.context_tokens,
        workdir=data.resolve().parent,
        data_dir=os.path.relpath(data.resolve().parent, output.parent),
    )
    with KernelExecutor(
        cwd=output.parent, timeout=config.cell_timeout, max_output_bytes=config.max_output_bytes
    ) as executor:
        meta = {
            "question": config.question,
            "data": data.name,
            "policy": label or policy.name,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "version": __version__,
        }
        from .notebook import NotebookWriter  # nbformat: imported while the kernel started (cli)

        with NotebookWriter(output, spec.run_id, meta) as writer:  # a failure still saves it all
            session = Session(executor, writer, spec, on_event=on_event, should_stop=should_stop)
            outcome = session.run(policy, label)
    return RunOutcome(
        notebook=output, finished=outcome.finished, messages=outcome.messages, facts=outcome.facts
    )
