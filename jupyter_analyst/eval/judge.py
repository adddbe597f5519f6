"""The judge: did a run finish on its own, re-run, chart, answer right and state real numbers?

Completion alone says little (a model can end every run with a confident, made-up
report), so each run is checked on independent axes, each with its own rate:

* ``natural``: the run ended on ``final_answer`` within its budget;
* ``reproducible``: the saved notebook re-runs top to bottom in a fresh kernel (nbclient)
  with no cell raising (a run that executed no analysis cell has nothing to reproduce and
  counts as not reproducible); ``rerun_consistent`` is the weaker check that no cell which ran
  cleanly during the run fails on the re-run (failed-then-fixed cells stay in the notebook);
* ``has_figures``: at least one figure was drawn;
* ``answers_correct`` (closed-form tasks): every ``@name[value]`` matches the reference
  within its tolerance (built-in) or by DABench's rule;
* ``grounded``: every number the conclusions state appears in some cell output or in the
  data facts the model was given, and every text answer in some output (the rule is in
  ``agent.grounding``); ``None`` (n/a) when the conclusions state nothing checkable.

A run ``passed`` when it is natural and reproducible, and in addition answered correctly
and was not ungrounded (closed tasks: n/a is no failure, the answers are scored on their
own) or was grounded and drew a figure (open tasks: an analysis must state figures). The
judge reads the run's event dicts (``event_to_dict``), so saved records can be judged
again without re-running. The verdict also carries the loop's own counters (pre-execution
catches, grounding-gate returns, malformed calls, cells removed by tidy) for the report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from ..agent.grounding import Evidence, cell_outputs, check_grounding
from ..agent.types import CellExecuted, Event, RunFinished, StopReason
from .answers import extract_answers, extract_dabench_answers, score_answer, score_dabench
from .tasks import EvalTask

METRICS = (
    "natural",
    "reproducible",
    "rerun_consistent",
    "has_figures",
    "answers_correct",
    "grounded",
    "passed",
)
"""The boolean checks every report shows as rates (``answers_correct`` over closed tasks only)."""


@dataclass
class Rerun:
    """Outcome of re-executing a notebook in a fresh kernel."""

    ok: bool
    consistent: bool
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    detail: str = ""


def _error_cells(nb: Any) -> set[str]:
    return {
        c.get("id", str(i))
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", []))
    }


def rerun_notebook(path: Path, timeout: float = 120.0, startup_timeout: float = 60.0) -> Rerun:
    """Execute a copy of ``path`` top to bottom (cwd = its folder); the file is not changed."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    from ..kernel.executor import kernel_environment

    nb = nbformat.read(str(path), as_version=4)
    before = _error_cells(nb)
    ipc = tempfile.mkdtemp(prefix="ja-rerun-")
    km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(ipc, "k"))
    km.shutdown_wait_time = 2.0
    client = NotebookClient(
        nb,
        km=km,
        timeout=int(timeout),
        startup_timeout=int(startup_timeout),
        allow_errors=True,
        interrupt_on_timeout=True,
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.monotonic()
    detail = ""
    try:
        client.execute(env=kernel_environment())  # no credentials in the re-run kernel either
    except Exception as exc:  # a dead kernel or a failed start: the notebook did not re-run
        detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    finally:
        try:
            if km.has_kernel:  # nbclient leaves a kernel it did not create running
                km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001 - best effort: the process may be gone already
            pass
        shutil.rmtree(ipc, ignore_errors=True)
    errors = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                errors.append(
                    {
                        "cell": i,
                        "cell_id": cell.get("id", str(i)),
                        "ename": out.get("ename", ""),
                        "evalue": str(out.get("evalue", ""))[:300],
                    }
                )
                break
    new = [e for e in errors if e["cell_id"] not in before]
    ok = not errors and not detail
    return Rerun(ok, not new and not detail, errors, round(time.monotonic() - start, 3), detail)


@dataclass
class Verdict:
    """Everything the judge decided about one run (JSON-safe via :meth:`to_dict`)."""

    task_id: str
    kind: str
    stop_reason: str
    natural: bool
    steps: int
    tokens: int
    seconds: float
    errors: int
    errors_fixed: int
    cells: int
    cells_ok: int
    figures: int
    has_figures: bool
    reproducible: bool | None
    rerun_consistent: bool | None
    rerun_errors: list[dict[str, Any]]
    rerun_seconds: float
    answers: dict[str, dict[str, Any]]
    answers_correct: bool | None
    claims: int
    claims_supported: int
    unsupported: list[str]
    grounded: bool | None
    """None: n/a, the conclusions state nothing checkable (no failure on a closed task)."""
    passed: bool
    detail: str = ""
    text_claims: int = 0
    """Text answers (``@species[Adelie]``) among ``claims``, looked for as words in the outputs."""
    answered: bool = False
    """The run ended with a non-empty final answer (DABench drops the others from its rates)."""
    prechecks: int = 0
    grounding_returns: int = 0
    malformed_calls: int = 0
    cells_removed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finished(events: Sequence[Event]) -> RunFinished | None:
    return next((e for e in reversed(events) if isinstance(e, RunFinished)), None)


def read_answers(task: EvalTask, answer: str | None) -> dict[str, str]:
    """The ``@name[value]`` answers of a final answer, read by the task's own rule."""
    return (extract_dabench_answers if task.scoring == "dabench" else extract_answers)(answer)


def score_answers(
    task: EvalTask, expected: Mapping[str, Any], answer: str | None
) -> tuple[dict[str, dict[str, Any]], bool | None]:
    """Per sub-answer ``{expected, got, ok}`` and whether all are right (None for open tasks)."""
    if task.kind != "closed":
        return {}, None
    got = read_answers(task, answer)
    if task.scoring == "dabench":
        ok = score_dabench({k: str(v) for k, v in expected.items()}, got)
        rows = {k: {"expected": v, "got": got.get(k), "ok": ok[k]} for k, v in expected.items()}
    else:
        specs = {a.name: a for a in task.answers}
        rows = {
            k: {
                "expected": v,
                "got": got.get(k),
                "ok": score_answer(specs[k], v, got.get(k)),
                "tolerance": specs[k].tolerance,
            }
            for k, v in expected.items()
        }
    return rows, bool(rows) and all(r["ok"] for r in rows.values())


def judge_run(
    task: EvalTask,
    events: Sequence[Event],
    notebook: Path | None,
    expected: Mapping[str, Any] | None = None,
    *,
    rerun: bool = True,
    cell_timeout: float = 120.0,
    facts: str | None = None,
) -> Verdict:
    """Judge one finished run from its events and its saved notebook.

    A stored record's event dicts go through ``agent.wire.event_from_dict`` first.
    ``facts`` is the data facts block the model was given (``prompts.split_task``); its
    numbers count as evidence, as they do for the loop's grounding gate.
    """
    fin = _finished(events)
    stop_reason = fin.reason.value if fin is not None else "missing"
    if fin is None:
        fin = RunFinished(StopReason.STOPPED, None, 0, 0, 0.0, 0, 0, "the run produced no run_finished event")
    natural = stop_reason == StopReason.FINAL_ANSWER.value
    answer = fin.answer if natural else None
    executed = [e for e in events if isinstance(e, CellExecuted)]
    figures = sum(1 for e in executed for f in e.result.facts if f.get("type") == "figure")

    nb = None
    if notebook is not None and Path(notebook).exists():
        nb = nbformat.read(str(notebook), as_version=4)
        if not figures:  # events may come from an older record: count images in the notebook
            figures = sum(
                1
                for c in nb.cells
                if c.cell_type == "code"
                for o in c.get("outputs", [])
                if "image/png" in o.get("data", {})
            )
    reproducible = consistent = None
    rerun_errors: list[dict[str, Any]] = []
    rerun_seconds = 0.0
    detail = fin.detail
    if rerun and nb is not None and notebook is not None and not executed:
        reproducible = consistent = False  # only the setup cell: there is no analysis to reproduce
    elif rerun and nb is not None and notebook is not None:
        result = rerun_notebook(Path(notebook), timeout=cell_timeout)
        reproducible, consistent = result.ok, result.consistent
        rerun_errors, rerun_seconds = result.errors[:10], result.seconds
        if result.detail:
            detail = (detail + "; " if detail else "") + f"re-run: {result.detail}"

    answers, correct = score_answers(task, expected or {}, answer)
    grounded: bool | None = False  # a run without conclusions grounds nothing
    claims = supported = text_claims = 0
    unsupported: list[str] = []
    if natural and answer:
        evidence = Evidence.from_cells(cell_outputs(nb) if nb is not None else [], [facts] if facts else [])
        g = check_grounding(answer, evidence, task.prompt, answers=read_answers(task, answer))
        claims, supported, unsupported, text_claims = g.claims, g.supported, g.unsupported[:20], g.text_claims
        grounded = g.grounded
        if grounded is None and task.kind != "closed":
            grounded = False  # an open analysis must state figures

    if task.kind == "closed":
        passed = natural and bool(reproducible) and grounded is not False and bool(correct)
    else:
        passed = natural and bool(reproducible) and grounded is True and figures > 0
    return Verdict(
        task_id=task.id,
        kind=task.kind,
        stop_reason=stop_reason,
        natural=natural,
        steps=fin.steps,
        tokens=fin.tokens,
        seconds=fin.seconds,
        errors=fin.errors,
        errors_fixed=fin.errors_fixed,
        cells=len(executed),
        cells_ok=sum(1 for e in executed if e.result.ok),
        figures=figures,
        has_figures=figures > 0,
        reproducible=reproducible,
        rerun_consistent=consistent,
        rerun_errors=rerun_errors,
        rerun_seconds=rerun_seconds,
        answers=answers,
        answers_correct=correct,
        claims=claims,
        claims_supported=supported,
        unsupported=unsupported,
        grounded=grounded,
        passed=passed,
        detail=detail,
        text_claims=text_claims,
        answered=natural and bool((answer or "").strip()),
        prechecks=fin.prechecks,
        grounding_returns=fin.grounding_returns,
        malformed_calls=fin.malformed_calls,
        cells_removed=fin.cells_removed,
    )
