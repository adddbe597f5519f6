"""Runs: one session per notebook, driven in a worker thread, observed on the server loop.

``POST runs`` checks the server's state (notebook, kernel, one run per notebook and per
kernel), then a worker thread connects to the notebook's kernel, reads the frame's facts
(a typo is a 404, an empty frame a 400, before the request answers) and runs the
``Session`` with the live document as its sink and the notebook's kernel as its executor.
Each event reaches the server loop, which appends its JSON frame to the run's history;
websocket clients replay that history and follow it live. Stop interrupts only an agent
cell that is executing (never the user's own) and ends the run at its next step; if the
run is stuck in a model call, the session is ended from here after ``stop_timeout``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..agent import (
    Budget,
    CellAdded,
    CellExecuted,
    CellsRemoved,
    Event,
    RunFinished,
    StepStarted,
    StopReason,
)
from ..agent.followup import outcome_words
from ..agent.types import Policy
from ..agent.wire import event_to_dict
from ..errors import AnalystError, InputError, KernelError, MissingVariableError
from ..kernel import ManagedKernelExecutor
from ..models.select import PolicyChoice, PolicyHandle
from ..session import RunSpec, Session
from .journal import RunJournal
from .kernelio import (
    kernel_busy,
    kernel_notebook_path,
    managed_executor,
    normalize_path,
    session_kernel_id,
)
from .live import LiveDocument, LiveSink
from .policies import PolicyPool
from .runcells import Discard, earlier_run
from .schema import ACTIVE_STATES, RunRequest, RunState, RunStatus

T = TypeVar("T")
WAITING_FOR_CELL = "waiting for your running cell to finish"


class ApiError(Exception):
    """A request the API refuses; the handlers turn it into ``HTTPError(status, message)``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunSettings:
    """The extension's configuration as the run manager needs it (see ``app.JupyterAnalyst``)."""

    max_steps: int = 40
    max_tokens: int | None = None
    max_seconds: float | None = None
    cell_timeout: float = 120.0
    interrupt_grace: float = 10.0
    max_output_bytes: int = 1_000_000
    check_timeout: float = 10.0
    stop_timeout: float = 1.5
    keep_events: int = 20
    journal_dir: Path | None = None
    """Where run journals go (None: no journal, as in embedded test servers)."""


@dataclass
class Run:
    """One run's state, its event history and the handles it holds while active."""

    run_id: str
    path: str
    variable: str
    question: str | None
    max_steps: int
    choice: PolicyChoice
    policy: str
    kernel_id: str
    after_cell_id: str | None = None
    state: RunState = "starting"
    step: int = 0
    started: str = field(default_factory=now)
    ended: str | None = None
    stop_reason: str | None = None
    answer: str | None = None
    error: str | None = None
    waiting: str | None = None
    """Why the run has not begun yet; shown only while it is ``starting``."""
    frames: list[str] = field(default_factory=list)
    compacted: bool = False
    """True once ``compact`` dropped the step-by-step frames."""
    closed: bool = False
    document: LiveDocument | None = None
    executor: ManagedKernelExecutor | None = None
    session: Session | None = None
    journal: RunJournal | None = None
    recorded_cells: list[str] = field(default_factory=list)
    """The cells of a run read back from its journal (it has no live document)."""
    kept_facts: dict[str, Any] | None = None
    """The frame's facts once the session is let go (the report header needs them)."""
    follows: str | None = None
    """The earlier run this one follows up (same notebook and kernel)."""
    created: list[str] = field(default_factory=list)
    """The names its cells bound in the kernel (``RunFinished.created``)."""
    discard: Discard | None = None
    """What discarding it took out of the notebook, kept for one undo (``server.discard``)."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _status_sent: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def cells(self) -> list[str]:
        return list(self.document.cell_ids) if self.document else list(self.recorded_cells)

    @property
    def facts(self) -> dict[str, Any] | None:
        return self.session.facts if self.session else self.kept_facts

    def status(self) -> RunStatus:
        return RunStatus(
            run_id=self.run_id,
            path=self.path,
            variable=self.variable,
            question=self.question,
            state=self.state,
            step=self.step,
            max_steps=self.max_steps,
            policy=self.policy,
            started=self.started,
            ended=self.ended,
            stop_reason=self.stop_reason,
            answer=self.answer,
            error=self.error,
            cells=self.cells,
            waiting=self.waiting if self.state == "starting" else None,
            follows=self.follows,
            discarded=self.discard is not None,
            created=self.created,
        )

    def emit(self, frame: dict[str, Any]) -> None:
        """Keep a frame for replay and wake the websocket pumps (server loop only)."""
        self.frames.append(json.dumps(frame, default=str))
        self._changed.set()
        self._changed = asyncio.Event()

    def emit_status(self) -> None:
        """A ``status`` frame: the whole RunStatus the first time, then without ``question``,
        which never changes (4,000 characters in each of a run's dozens of frames add up)."""
        exclude = {"question"} if self._status_sent else None
        self._status_sent = True
        self.emit({"type": "status", "status": self.status().model_dump(mode="json", exclude=exclude)})

    def compact(self) -> None:
        """Free an ended run's step-by-step frames: its replay becomes its ``run_finished``
        frame (when it has one) and one full status. The list is replaced, not cut, so a
        websocket already replaying the old one finishes it."""
        if self.compacted or not self.done.is_set():
            return
        finished = next(
            (f for f in reversed(self.frames) if json.loads(f).get("type") == "run_finished"), None
        )
        status = json.dumps({"type": "status", "status": self.status().model_dump(mode="json")})
        self.frames = [finished, status] if finished is not None else [status]
        self.compacted = True

    async def wait_frames(self, seen: int) -> None:
        """Return once there are more than ``seen`` frames or the run has ended."""
        if len(self.frames) > seen or self.done.is_set():
            return
        await self._changed.wait()


class RunManager:
    """All runs of this server, newest last; at most one active run per notebook and per
    kernel (two notebooks may share a kernel, and so one namespace)."""

    def __init__(self, serverapp: Any, pool: PolicyPool, settings: RunSettings, log: Any) -> None:
        self.serverapp = serverapp
        self.pool = pool
        self.settings = settings
        self.log = log
        self.runs: dict[str, Run] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- queries -----------------------------------------------------------------------
    def get(self, run_id: str) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise ApiError(404, f"no run {run_id!r} on this server")
        return run

    def newest_first(self) -> list[Run]:
        return list(reversed(self.runs.values()))

    def active_on(self, path: str) -> Run | None:
        return next((r for r in self.runs.values() if r.path == path and r.active), None)

    def newest_on(self, path: str) -> Run | None:
        """The newest run of notebook ``path`` (where its notebook is now, after renames)."""
        return next((r for r in self.newest_first() if current_path(r) == path), None)

    def follow_up_of(self, run_id: str) -> Run | None:
        """A run that follows up ``run_id`` and is still in its notebook."""
        return next((r for r in self.runs.values() if r.follows == run_id and r.discard is None), None)

    def active_on_kernel(self, kernel_id: str) -> Run | None:
        """The active run in this kernel, whatever its notebook (sessions may share a kernel)."""
        return next((r for r in self.runs.values() if r.kernel_id == kernel_id and r.active), None)

    def ending_on_kernel(self, kernel_id: str) -> Run | None:
        """A run in this kernel that has ended but whose thread still tears down (its silent
        teardown cell may keep the kernel busy a moment after the run's last event)."""
        mine = (r for r in self.runs.values() if r.kernel_id == kernel_id)
        return next((r for r in mine if not r.active and r.executor is not None), None)

    def compact_ended(self) -> None:
        """Keep the full event history of the newest ``keep_events`` ended runs only; older
        ones replay just their result (their cells stay in the notebook)."""
        ended = [run for run in reversed(self.runs.values()) if run.done.is_set()]
        for run in ended[max(0, self.settings.keep_events) :]:
            run.compact()

    # -- start -------------------------------------------------------------------------
    async def start(self, req: RunRequest, choice: PolicyChoice, label: str) -> Run:
        """Check the request against the server's state and start the run (201) or refuse."""
        self.loop = loop = asyncio.get_running_loop()
        settings = self.settings
        path = normalize_path(req.path)
        if req.kernel_id is not None:  # the magic: its kernel's session says where it is now
            found = await kernel_notebook_path(self.serverapp, req.kernel_id)
            if found is None:
                raise ApiError(
                    404,
                    f"no single notebook session runs kernel {req.kernel_id} "
                    "(run the magic in a notebook opened in JupyterLab)",
                )
            path = found
        cm = self.serverapp.contents_manager
        if not await maybe_await(cm.file_exists(path)):
            raise ApiError(404, f"notebook not found: {path}")
        ydoc_ext = self.serverapp.web_app.settings.get("jupyter_server_ydoc")
        if ydoc_ext is None:
            raise ApiError(
                503, "live editing needs jupyter-collaboration (the jupyter_server_ydoc extension)"
            )
        kernel_id = await session_kernel_id(self.serverapp, path)
        if kernel_id is None:
            raise ApiError(404, f"no running kernel for {path}: open the notebook and start its kernel")
        if self.active_on(path) is not None:
            raise ApiError(409, f"{path} already has a run in progress")
        earlier = self._earlier(req, path)
        other = self.active_on_kernel(kernel_id)
        if other is not None:  # two analyses in one namespace would overwrite each other
            raise ApiError(
                409,
                f"the kernel of {path} is shared with {other.path}, which has a run in progress; "
                "one run per kernel: wait for it to end or stop it",
            )
        variable = req.variable or (earlier.variable if earlier is not None else "")
        run = Run(
            run_id=uuid.uuid4().hex[:12],
            path=path,
            variable=variable,
            question=req.question,
            max_steps=req.max_steps or settings.max_steps,
            choice=choice,
            policy=label,
            kernel_id=kernel_id,
            after_cell_id=req.after_cell_id,
            follows=earlier.run_id if earlier is not None else None,
        )
        slow = max(60.0, settings.cell_timeout)  # imports (matplotlib) on a loaded machine
        run.document = LiveDocument(ydoc_ext, path, run.run_id, req.after_cell_id)
        run.executor = managed_executor(
            self.serverapp,
            kernel_id,
            loop,
            timeout=settings.cell_timeout,
            startup_timeout=slow,
            interrupt_grace=settings.interrupt_grace,
            max_output_bytes=settings.max_output_bytes,
        )
        context = None
        if earlier is not None:  # its cells and conclusions in context; cells after its last one
            context, last = await earlier_run(
                run.document,
                earlier.run_id,
                question=earlier.question,
                answer=earlier.answer,
                outcome=outcome_words(earlier.state, earlier.step, earlier.answer, earlier.stop_reason),
                created=earlier.created,
                variable=earlier.variable,
            )
            if req.after_cell_id is None and last is not None:
                run.document.anchor = run.after_cell_id = last
        spec = RunSpec(
            variable=variable,
            question=req.question,
            budget=Budget(run.max_steps, settings.max_tokens, settings.max_seconds),
            source=f"variable `{variable}` in {Path(path).name}",
            run_id=run.run_id,
            facts_timeout=slow,
            keep_failed_cells=req.keep_failed_cells,
            earlier=context,
            workdir=_notebook_folder(self.serverapp, path),
        )
        run.session = Session(
            run.executor,
            LiveSink(run.document, loop),
            spec,
            on_event=lambda event: self._call(self._on_event(run, event)),
            background_setup=True,
        )
        self.runs[run.run_id] = run  # reserved now: a second POST meanwhile gets 409
        self.compact_ended()  # runs end between starts: this bounds the histories kept
        # An idle kernel is checked before we answer, so a typo is a 404, not a failed run.
        # A busy one (e.g. running the %analyst cell that asked, which waits for this reply)
        # is checked when the run starts: asking it now would wait for that cell.
        # The magic's own kernel is busy by definition (its cell waits for this reply), even
        # before the server has seen its busy status: checking it now would wait for that cell
        # while the magic waits for us.
        busy = req.kernel_id is not None or kernel_busy(self.serverapp.kernel_manager, kernel_id)
        if busy:  # the run queues behind the user's cell: say so rather than sit at step 0
            run.waiting = WAITING_FOR_CELL
        run.emit_status()
        self._watch(run, True)
        checked: asyncio.Future[None] = loop.create_future()
        threading.Thread(
            target=self._work, args=(run, busy, checked), name=f"jupyter-analyst-{run.run_id}", daemon=True
        ).start()
        try:
            await asyncio.wait_for(asyncio.shield(checked), timeout=2 * settings.check_timeout + 5)
        except ApiError:
            del self.runs[run.run_id]
            raise
        except asyncio.TimeoutError:
            checked.cancel()  # no answer yet: the run goes on and fails itself if it must
        return run

    def _earlier(self, req: RunRequest, path: str) -> Run | None:
        """The run a follow-up continues (None for a new run): ``latest`` or an id, of this
        notebook, ended, not discarded."""
        if req.follow_up is None:
            return None
        if req.follow_up == "latest":
            earlier = self.newest_on(path)
            if earlier is None:
                raise ApiError(404, f"{path} has no earlier run to follow up: start an analysis first")
        else:
            earlier = self.get(req.follow_up)
            if current_path(earlier) != path:
                raise ApiError(
                    409,
                    f"run {earlier.run_id} analysed {earlier.path}, not {path}: a follow-up "
                    "continues in its earlier run's notebook and kernel",
                )
        if earlier.discard is not None:
            raise ApiError(409, f"run {earlier.run_id} was discarded: there is nothing to follow up")
        if req.variable is not None and req.variable != earlier.variable:
            raise ApiError(
                400,
                f"a follow-up analyses its earlier run's frame `{earlier.variable}`, not "
                f"`{req.variable}`: start a new analysis for another frame",
            )
        return earlier

    # -- the worker thread -------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _check(self, run: Run, busy: bool) -> ApiError | None:
        """Connect and read the facts now, unless the kernel is busy: why to refuse, or None."""
        assert run.executor is not None and run.session is not None
        if busy:
            return None
        timeout = self.settings.check_timeout
        try:
            run.executor.open(timeout)
            run.session.read_facts(timeout)
        except MissingVariableError as exc:
            return ApiError(404, str(exc))
        except InputError as exc:
            return ApiError(400, str(exc))
        except KernelError as exc:
            # No answer in time: busy after all (the server had not yet seen it go busy).
            # Leave the check to the run rather than refuse.
            if exc.ename not in ("CellTimeoutError", "NoReply"):
                return ApiError(400, str(exc))
        return None

    def _work(self, run: Run, busy: bool, checked: asyncio.Future[None]) -> None:
        """Body of the run's thread: the check, then the session (which acquires the policy)."""
        assert run.session is not None and run.executor is not None
        handle: PolicyHandle | None = None

        def policy() -> Policy:
            nonlocal handle
            handle = self.pool.acquire(run.choice)  # may load a model for minutes
            run.policy = handle.label
            return handle.policy

        try:
            refusal = self._check(run, busy)
            answered = self._call(self._answer(run, checked, refusal))
            if refusal is not None:
                if not answered:  # the request had already been accepted
                    self._call(self._fail(run, refusal.message))
                return
            run.session.run(policy)
        except Exception as exc:  # our failures and late refusals: a failed run, not a crash
            detail = str(exc) if isinstance(exc, AnalystError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, AnalystError):
                self.log.exception("jupyter-analyst run %s failed", run.run_id)
            try:
                self._call(self._fail(run, detail))
            except Exception:
                pass  # the server loop is gone
        finally:
            if handle is not None:
                self.pool.release(run.choice)
            run.executor.close()
            try:
                self._call(self._release(run))
            except Exception:
                pass

    async def _answer(self, run: Run, checked: asyncio.Future[None], refusal: ApiError | None) -> bool:
        """Give ``POST runs`` the check's verdict; False when it stopped waiting for it.

        An accepted run starts its journal here, before any of its events can exist.
        """
        if refusal is None and self.settings.journal_dir is not None:
            run.journal = RunJournal(self.settings.journal_dir, run.run_id)
            assert run.document is not None
            run.journal.start(run.status().model_dump(mode="json"), run.kernel_id, run.document.file_id)
        if checked.done():
            return False
        if refusal is not None:
            checked.set_exception(refusal)
        else:
            checked.set_result(None)
        return True

    # -- events (server loop) ----------------------------------------------------------
    async def _on_event(self, run: Run, event: Event) -> None:
        """Publish one event the live document already holds."""
        if run.closed:
            return
        if run.state == "starting":
            run.state = "running"
        if isinstance(event, StepStarted):
            run.step = event.step
        elif isinstance(event, RunFinished):
            await self._end(run, event)
            return
        if run.document is not None:
            run.path = run.document.current_path or run.path  # renamed in JupyterLab: follow it
        frame = event_to_dict(event)
        if isinstance(event, (CellAdded, CellExecuted)) and run.document is not None:
            frame["cell_id"] = run.document.doc_id(event.cell_id)
            if isinstance(event, CellExecuted) and frame["cell_id"] in run.document.copies:
                frame["copy_of"] = run.document.copies[frame["cell_id"]]  # the user edited that one
        elif isinstance(event, CellsRemoved) and run.document is not None:
            # what the document really lost; a cell the user edited stayed, and the record says so
            doc_ids = [run.document.doc_id(c) for c in event.cell_ids]
            frame["cell_ids"] = [c for c in doc_ids if c in run.document.removed]
            kept = [c for c in doc_ids if c in run.document.kept_edited]
            if kept:
                frame["kept_edited"] = kept
        run.emit(frame)
        if run.journal is not None:
            run.journal.write(frame)
        if isinstance(event, (StepStarted, CellExecuted)):
            run.emit_status()

    async def _end(self, run: Run, finished: RunFinished) -> None:
        """A run that ended for a reason (its note cell is already in the document)."""
        reason = finished.reason
        run.created = list(finished.created)
        if reason is StopReason.FINAL_ANSWER:
            run.state, run.answer = "finished", finished.answer
        elif reason is StopReason.STOPPED:
            run.state = "stopped"
        elif reason is StopReason.MODEL_ERROR:
            detail = finished.detail
            run.state, run.error = "failed", f"{reason.why}: {detail}" if detail else reason.why
        elif reason is StopReason.KERNEL_DIED:
            run.state, run.error = "failed", reason.why
        else:
            run.state = "finished"  # a budget ran out: ended normally, without conclusions
        run.stop_reason = reason.value
        frame = event_to_dict(finished)
        if run.document is not None and finished.cells_removed:
            frame["cells_removed"] = len(run.document.removed)  # the user's edits stay
        run.emit(frame)
        if run.journal is not None:
            run.journal.write(frame)
        self._close(run)

    async def _fail(self, run: Run, error: str) -> None:
        """A run that failed before its session could end it (our bug, a late refusal)."""
        if run.closed:
            return
        run.state, run.error = "failed", error
        self._close(run)

    def _close(self, run: Run) -> None:
        run.closed = True
        run.ended = now()
        run.emit_status()
        run.done.set()
        if run.journal is not None:
            run.journal.end(run.status().model_dump(mode="json"))
        # No save here: a run that ends with RunFinished was saved (and checked) by its sink,
        # and its thread's _release flushes whatever else it wrote.

    def _watch(self, run: Run, on: bool) -> None:
        """Notice the server restarting (or losing) the kernel while the run lasts."""
        if run.executor is None:
            return
        try:
            km = self.serverapp.kernel_manager.get_kernel(run.kernel_id)
        except KeyError:
            return
        for event in ("restart", "dead"):
            try:
                if on:
                    km.add_restart_callback(run.executor.mark_lost, event)
                else:
                    km.remove_restart_callback(run.executor.mark_lost, event)
            except Exception:
                pass

    async def _release(self, run: Run) -> None:
        """The run's thread is done: flush, and let go of what an ended run no longer needs
        (the conversation, the kernel client), keeping its facts for a report."""
        self._watch(run, False)
        if run.document is not None and run.session is not None and run.session.wrote:
            await run.document.flush()
        if run.done.is_set() and run.session is not None:
            run.kept_facts, run.session, run.executor = run.session.facts, None, None

    # -- stop --------------------------------------------------------------------------
    async def stop(self, run_id: str) -> Run:
        """End the run within ``stop_timeout`` (+ the note cell); see the module docstring."""
        run = self.get(run_id)
        if not run.active:
            raise ApiError(409, f"run {run_id} already ended ({run.state})")
        assert run.session is not None
        if run.state != "stopping":
            run.state = "stopping"
            run.emit_status()
            run.session.stop()
        try:
            await asyncio.wait_for(asyncio.shield(run.done.wait()), timeout=self.settings.stop_timeout)
        except asyncio.TimeoutError:
            await self._abandon(run, "stopped by the user")
        return run

    async def _abandon(self, run: Run, detail: str) -> None:
        """End the session from here (its thread is stuck, e.g. in a model call)."""
        assert run.session is not None
        # Off the loop: the session's note and events are marshalled back onto it.
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, run.session.abandon, StopReason.STOPPED, detail
            )
        except Exception as exc:  # the final save failed (the cells went to a rescue copy)
            await self._fail(
                run, str(exc) if isinstance(exc, AnalystError) else f"{type(exc).__name__}: {exc}"
            )
        if not run.done.is_set():
            await self._fail(run, detail)  # it never got far enough to end as a run

    async def shutdown(self) -> None:
        """Server stop: end every active run (no waiting on models), then close policies."""
        for run in list(self.runs.values()):
            if run.active and run.session is not None:
                run.session.stop()
                try:
                    await asyncio.wait_for(self._abandon(run, "the server stopped"), timeout=5)
                except Exception:
                    pass
        await asyncio.get_running_loop().run_in_executor(None, self.pool.close_all)


def current_path(run: Run) -> str:
    """Where the run's notebook is now: a live document follows renames by file id."""
    return (run.document.current_path if run.document is not None else None) or run.path


async def maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


def _notebook_folder(serverapp: Any, path: str) -> Path | None:
    """The notebook's folder on disk (what a dialect's ``Read``/``Glob`` see), when the
    contents manager keeps files on disk."""
    root = getattr(serverapp.contents_manager, "root_dir", None)
    return (Path(root) / path).parent if root else None
