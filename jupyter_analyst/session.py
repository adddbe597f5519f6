"""One run of the analyst, whichever shell starts it.

The CLI, evaluation, the ``%analyst`` magic and the server's run manager differ only in
where cells go (a notebook file, the live shared document) and where code runs (a kernel
we start, the notebook's own kernel, this IPython shell). Everything else happens here,
once: prepare the kernel, read the frame's facts, refuse inputs that can't be analysed,
render the task, drive ``AgentLoop``, hand every event to the notebook sink and the
caller, and end a run without conclusions with one note cell that says why.

The user's namespace is theirs: the names bound when the run begins are handed to the loop
as protected, and it refuses (without running) any cell that would rebind one of them
(``agent.names``); ``RunFinished.created`` lists the names the run added instead.

Failures follow one rule: a *refusal* (``InputError`` before any cell was written) leaves
the notebook untouched and raises; a run that ends for a known reason (a budget, a stop,
the model backend, a dead kernel) gets a note and a ``RunFinished`` with what it really
spent; any other failure gets a note and raises.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import __version__
from .agent import AgentLoop, Budget, CellAdded, CellExecuted, CellsRemoved, Event, RunFinished, StopReason
from .agent.dialect import make_dialect
from .agent.followup import EarlierRun, render_earlier
from .agent.loop import context_sizes
from .agent.precheck import known_frames
from .agent.prompts import render_task
from .agent.tidy import superseded
from .agent.types import CellResult, Message, Policy, stop_note
from .errors import AnalystError, BackendError, InputError, KernelError
from .kernel.channel import OutputListener
from .kernel.facts import USER_NAMES_CODE, frame_facts_code, parse_facts, parse_user_names
from .notebook.markdown import code_span, escape_markdown


class NotebookSink(Protocol):
    """Where a run's cells go: ``NotebookWriter`` (a file) or the server's live document."""

    def handle(self, event: Event) -> None:
        """Apply one event: add a cell, fill in its result, record the end."""
        ...

    def show_outputs(self, cell_id: str, outputs: list[dict[str, Any]]) -> None:
        """Outputs of a cell still running (live views show them; a file may ignore them)."""
        ...


class SessionExecutor(Protocol):
    """What the session needs of an executor of the ``kernel`` family."""

    on_output: OutputListener | None

    @property
    def stopped(self) -> bool: ...

    def stop(self) -> None: ...

    def prepare(self, *, background: bool = False) -> None: ...

    def release(self) -> None: ...

    def run_silent(self, code: str, timeout: float | None = None) -> str: ...

    def execute(self, code: str, cell_id: str) -> CellResult: ...


@dataclass
class RunSpec:
    """What to analyse and how; the shell fills in what it knows."""

    variable: str = "df"
    question: str | None = None
    budget: Budget = field(default_factory=Budget)
    source: str = ""
    """Where the frame came from, for the task message (a file name, a notebook variable)."""
    subject: str | None = None
    """Header title, e.g. ``penguins.csv``; None writes no header (the user's own notebook)."""
    load_code: str | None = None
    """A visible first cell that loads the data, so the notebook re-runs on its own."""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    facts_timeout: float | None = None
    """Seconds for the silent facts code (None: the executor's cell timeout)."""
    prechecks: bool = True
    """Check each cell before it runs (syntax, the frame's columns); see ``agent.loop``."""
    grounding_gate: bool = True
    """Send a ``final_answer`` with numbers no output shows back to the model once."""
    keep_failed_cells: bool = False
    """Keep failed cells a later fix superseded (by default the run's end removes them from
    the notebook, see ``agent.tidy``; its events keep them either way)."""
    earlier: EarlierRun | None = None
    """For a follow-up, the run it continues in the same kernel: the task message tells the
    model of it (``agent.followup``), and the names that run made are not protected (the
    follow-up may refine them; they were never the user's)."""
    context_tokens: int | None = None
    """The model's window in tokens, which sizes observations and the history trim
    (``agent.loop.context_sizes``); None: the policy's own ``context_tokens``, else 16k."""
    workdir: Path | None = None
    """The folder a dialect's file tools (``Read``, ``Glob``, ``Grep``) see; None: the cwd."""
    data_dir: str = "."
    """Where the data is, as the kernel's code should name it (the dialect's prompt says it)."""


@dataclass
class RunOutcome:
    finished: RunFinished
    messages: list[Message]
    facts: dict[str, Any]


def render_header(
    subject: str,
    question: str | None,
    facts: dict[str, Any],
    analyst: str,
    run_id: str,
    title: str = "Analysis of",
) -> str:
    """The markdown header of a notebook the analyst writes from scratch (or a report,
    ``title`` "Analysis report:", as the run's own first cell may say "Analysis of"); the
    file name, the question and the analyst's label are shown literally, never as markup."""
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M")
    asked = escape_markdown(question) if question and question.strip() else "general exploration"
    shape = f"{facts.get('rows', '?')} rows x {facts.get('cols', '?')} columns"
    lines = [
        f"# {title} {code_span(subject)}",
        "",
        f"**Question:** {asked}",
        "",
        f"**Dataset:** {code_span(subject)}, {shape}",
        "",
        f"**Analyst:** {escape_markdown(analyst)}",
        "",
        f"*Written by jupyter-analyst {__version__} on {when}, run `{run_id}`. Cells tagged "
        "`jupyter-analyst` were written by the analyst; everything re-runs top to bottom.*",
    ]
    return "\n".join(lines)


def read_frame_facts(
    executor: SessionExecutor, variable: str, timeout: float | None = None, loaded_from: str | None = None
) -> dict[str, Any]:
    """Describe DataFrame ``variable`` in the kernel, refusing what can't be analysed.

    The one check of every shell: raises ``MissingVariableError`` (not defined) or
    ``InputError`` (not a DataFrame, empty) with a one-line message for the user, or
    ``KernelError`` (the kernel is busy, dead, or the code failed).
    """
    facts = parse_facts(executor.run_silent(frame_facts_code(variable), timeout))
    if not facts.get("rows") or not facts.get("cols"):
        shape = f"({facts.get('rows')} rows x {facts.get('cols')} columns)"
        if loaded_from:
            raise InputError(f"{loaded_from} loaded as an empty table {shape}")
        raise InputError(f"{variable!r} is an empty DataFrame {shape}: nothing to analyse")
    return facts


def stop_reason_of(exc: BaseException) -> StopReason | None:
    """The stop reason a failure amounts to, when it is one the user can act on."""
    if isinstance(exc, BackendError):
        return StopReason.MODEL_ERROR
    if isinstance(exc, KernelError) and exc.ename == "DeadKernelError":
        return StopReason.KERNEL_DIED
    return None


class Session:
    """Drives one run: ``run()`` in the thread that owns the executor, ``stop()`` and
    ``abandon()`` from any other."""

    def __init__(
        self,
        executor: SessionExecutor,
        sink: NotebookSink,
        spec: RunSpec,
        *,
        on_event: Callable[[Event], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        background_setup: bool = False,
    ) -> None:
        """``on_event`` sees every loop event after the sink did (progress, frames,
        records); ``should_stop`` adds an outside stop signal (evaluation's Ctrl-C);
        ``background_setup`` lets the first model call overlap the kernel setup."""
        self.executor = executor
        self.sink = sink
        self.spec = spec
        self.on_event = on_event or (lambda event: None)
        self.should_stop = should_stop or (lambda: False)
        self.background_setup = background_setup
        self.facts: dict[str, Any] | None = None
        self.user_names: dict[str, list[str]] | None = None
        """The user's names when the run began (with their origins): the run never rebinds them."""
        self.loop: AgentLoop | None = None
        self.finished: RunFinished | None = None
        self.wrote = False
        """True once a cell of this run reached the sink."""
        self.events: list[Event] = []
        """The loop's cell events delivered so far: what tidy reads at the end."""
        self._lock = threading.RLock()
        self._closed = False

    # -- from any thread ---------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self.executor.stopped or self.should_stop()

    def stop(self) -> None:
        """End the run at its next step; an agent cell that is executing is interrupted,
        nothing else (the user's own cell runs on)."""
        self.executor.stop()

    def abandon(self, reason: StopReason, detail: str = "") -> RunFinished | None:
        """End the run now, without waiting for ``run()`` (stuck in a model call, say):
        the note and ``RunFinished`` go out, later events of the loop are dropped."""
        self.stop()
        return self._finish(self._final(reason, detail))

    # -- the run -----------------------------------------------------------------------
    def read_facts(self, timeout: float | None = None) -> dict[str, Any]:
        """The frame's facts, computed once in the kernel (see ``read_frame_facts``)."""
        if self.facts is None:
            spec = self.spec
            self.facts = read_frame_facts(
                self.executor,
                spec.variable,
                timeout if timeout is not None else spec.facts_timeout,
                loaded_from=spec.subject if spec.load_code else None,
            )
        self.facts.setdefault("source", self.spec.source or f"variable `{self.spec.variable}`")
        return self.facts

    def read_user_names(self, timeout: float | None = None) -> dict[str, list[str]]:
        """The names bound in the kernel now, each with its origins (``USER_NAMES_CODE``).

        Read after the load cell, so in a notebook of our own the data the analysis is
        about (``df``, and ``pd`` that loaded it) is protected like a user's variable.
        """
        if self.user_names is None:
            out = self.executor.run_silent(
                USER_NAMES_CODE, timeout if timeout is not None else self.spec.facts_timeout
            )
            self.user_names = parse_user_names(out)
        return self.user_names

    def run(self, policy: Policy | Callable[[], Policy], label: str | None = None) -> RunOutcome:
        """Run to the end and return the outcome; see the module docstring for failures.

        ``policy`` may be a factory (the server loads a model for minutes): its failure
        ends the run like any other, with a note.
        """
        executor = self.executor
        try:
            if self.stopping:
                return self._outcome(self._finish(self._final(StopReason.STOPPED, "stopped before it began")))
            executor.prepare(background=self.background_setup)
            loaded = self._load() if self.spec.load_code else None
            facts = self.read_facts()
            protected = self.read_user_names()
            earlier = self.spec.earlier
            if earlier is not None:
                protected = {k: v for k, v in protected.items() if k not in set(earlier.created)}
            if not isinstance(policy, Policy):  # a factory: start the policy now
                policy = policy()
            if self.spec.subject is not None:
                header = render_header(
                    self.spec.subject, self.spec.question, facts, label or policy.name, self.spec.run_id
                )
                self._to_sink(CellAdded(0, "header", "markdown", header, "header"))
            if self.spec.load_code and loaded is not None:
                self._to_sink(CellAdded(0, "setup", "code", self.spec.load_code, "setup"))
                self._to_sink(CellExecuted(0, "setup", loaded, ""))
            executor.on_output = self.sink.show_outputs
            window = self.spec.context_tokens or getattr(policy, "context_tokens", None)
            observation_limit, context_chars = context_sizes(window)
            dialect = make_dialect(
                getattr(policy, "dialect", None), self.spec.workdir, self.spec.variable, self.spec.data_dir
            )
            self.loop = AgentLoop(
                policy,
                executor,
                self.spec.budget,
                observation_limit=observation_limit,
                context_chars=context_chars,
                context_tokens=window,
                should_stop=lambda: self.stopping,
                protected_names=protected,
                frames=known_frames(facts),
                prechecks=self.spec.prechecks,
                grounding_gate=self.spec.grounding_gate,
                dialect=dialect,
            )
            task = render_task(facts, self.spec.question, render_earlier(earlier) if earlier else None)
            for event in self.loop.run(task):
                if isinstance(event, RunFinished):
                    self._finish(event)
                    break
                if not self._deliver(event):
                    break  # abandoned from another thread
        except KeyboardInterrupt:
            self._finish(self._final(StopReason.STOPPED, "interrupted from the keyboard"))
        except Exception as exc:
            reason = stop_reason_of(exc)
            if reason is None and self.stopping and isinstance(exc, KernelError):
                reason = StopReason.STOPPED  # a wait cut short by the stop
            if reason is not None:
                self._finish(self._final(reason, str(exc)))
                return self._outcome(self.finished)
            if self.wrote or not isinstance(exc, InputError):  # not a mere refusal
                self._fail(str(exc) if isinstance(exc, AnalystError) else f"{type(exc).__name__}: {exc}")
            raise
        finally:
            executor.on_output = None
            executor.release()
        assert self.finished is not None
        return self._outcome(self.finished)

    # -- internals ---------------------------------------------------------------------
    def _load(self) -> CellResult:
        """Run the visible load cell; a file that won't load is the user's to fix."""
        assert self.spec.load_code is not None
        loaded = self.executor.execute(self.spec.load_code, "setup")
        if not loaded.ok:
            why = f"{loaded.error_name}: {loaded.error_value}".strip(": ") or loaded.status
            if loaded.status == "dead":
                why = "the kernel died while loading it (is the file too large for memory?)"
            raise InputError(f"could not load {self.spec.subject}: {why.splitlines()[0] if why else why}")
        return loaded

    def _final(self, reason: StopReason, detail: str) -> RunFinished:
        if self.loop is not None:
            return self.loop.finish(reason, detail=detail)
        return RunFinished(reason, None, 0, 0, 0.0, 0, 0, detail)

    def _to_sink(self, event: Event) -> None:
        self.sink.handle(event)
        self.wrote = True

    def _deliver(self, event: Event) -> bool:
        """Sink first (the cell exists before anyone is told), then the caller."""
        with self._lock:
            if self._closed:
                if isinstance(event, CellExecuted):
                    self.sink.handle(event)  # a cell that was running gets its outputs, never a [*]
                return False
            self._to_sink(event)
            if isinstance(event, (CellAdded, CellExecuted)):
                self.events.append(event)
            self.on_event(event)
            return True

    def _note(self, reason: StopReason | None, error: str) -> None:
        step = self.loop.step if self.loop is not None else 0
        note = CellAdded(step, uuid.uuid4().hex[:8], "markdown", stop_note(reason, step, error), "note")
        self._to_sink(note)
        self.on_event(note)

    def _fail(self, error: str) -> None:
        """Close a run that failed without a stop reason: a note with the error, no
        ``RunFinished`` (the shell reports the exception)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._note(None, error)

    def _tidy(self) -> list[str]:
        """The failed cells a later fix superseded, to drop from the notebook (none when the
        spec keeps them). Every run that ends with a ``RunFinished`` is tidied: a budget, a
        stop or a dead kernel does not make a fixed error any less superseded, and the
        notebook left behind is the one a reader (or the judge) re-runs."""
        if self.spec.keep_failed_cells:
            return []
        try:
            return superseded(self.events)
        except Exception:  # noqa: BLE001 - a cell kept is the old behaviour; a lost end is not
            return []

    def _remove(self, cell_ids: list[str]) -> bool:
        """Tell the sink, then the caller, to drop the superseded cells; False when the sink
        could not (the cells stay, as without tidy: the run's end must still be recorded)."""
        event = CellsRemoved(cell_ids)
        try:
            self.sink.handle(event)
        except Exception:  # noqa: BLE001
            return False
        self.on_event(event)
        return True

    def _finish(self, finished: RunFinished) -> RunFinished | None:
        """Close the run once: the superseded cells out, the note (unless it has
        conclusions), then ``RunFinished``."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            removed = self._tidy()
            if removed and self._remove(removed):
                finished = dataclasses.replace(finished, cells_removed=len(removed))
            if self.spec.earlier is not None:  # names the earlier run made stay the earlier run's
                mine = [n for n in finished.created if n not in set(self.spec.earlier.created)]
                finished = dataclasses.replace(finished, created=mine)
            self.finished = finished
            if not finished.reason.natural:
                error = finished.detail if finished.reason is StopReason.MODEL_ERROR else ""
                self._note(finished.reason, error)
            self.sink.handle(finished)
            self.on_event(finished)
            return finished

    def _outcome(self, finished: RunFinished | None) -> RunOutcome:
        finished = finished or self.finished
        assert finished is not None
        messages = self.loop.messages if self.loop is not None else []
        return RunOutcome(finished=finished, messages=messages, facts=self.facts or {})
