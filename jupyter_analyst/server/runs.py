"""Runs: one agent loop per notebook, driven in a worker thread, observed on the server loop.

A run is checked (notebook, kernel, variable) before ``POST runs`` answers, then a worker
thread acquires the policy (possibly loading a model for minutes) and iterates the
``AgentLoop``. Each loop event is handed to the server loop, which writes the notebook's
shared document and appends the event's JSON frame to the run's history; websocket
clients replay that history and follow it live. Stopping interrupts the kernel and sets
the loop's ``should_stop``; if the loop is stuck in a model call, the server ends the run
itself after ``stop_timeout`` and the worker's late events are dropped.
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

from ..agent import AgentLoop, Budget, RunFinished, StopReason
from ..agent.prompts import render_task
from ..agent.types import CellAdded, CellExecuted, Event, StepStarted
from ..agent.wire import event_to_dict
from ..errors import AnalystError
from ..kernel.executor import KernelError
from ..kernel.facts import SETUP_CODE, frame_facts_code, parse_facts
from ..models.select import PolicyChoice
from ..runner import STOP_NOTES
from .kernelio import TEARDOWN_CODE, KernelLink, kernel_busy, normalize_path, session_kernel_id
from .live import LiveDocument, LiveExecutor
from .policies import PolicyPool
from .schema import ACTIVE_STATES, RunRequest, RunState, RunStatus

T = TypeVar("T")


class ApiError(Exception):
    """A request the API refuses; the handlers turn it into ``HTTPError(status, message)``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> str:
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
    started: str = field(default_factory=_now)
    ended: str | None = None
    stop_reason: str | None = None
    answer: str | None = None
    error: str | None = None
    facts: dict[str, Any] | None = None
    frames: list[str] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    closed: bool = False
    link: KernelLink | None = None
    document: LiveDocument | None = None
    executor: LiveExecutor | None = None
    id_map: dict[str, str] = field(default_factory=dict)
    """Loop cell id -> document cell id (they differ after a clash or a user edit)."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def cells(self) -> list[str]:
        return list(self.document.cell_ids) if self.document else []

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
        )

    def emit(self, frame: dict[str, Any]) -> None:
        """Keep a frame for replay and wake the websocket pumps (server loop only)."""
        self.frames.append(json.dumps(frame, default=str))
        self._changed.set()
        self._changed = asyncio.Event()

    def emit_status(self) -> None:
        self.emit({"type": "status", "status": self.status().model_dump(mode="json")})

    async def wait_frames(self, seen: int) -> None:
        """Return once there are more than ``seen`` frames or the run has ended."""
        if len(self.frames) > seen or self.done.is_set():
            return
        await self._changed.wait()


class RunManager:
    """All runs of this server, newest last; at most one active run per notebook."""

    def __init__(self, serverapp: Any, pool: PolicyPool, settings: RunSettings, log: Any) -> None:
        self.serverapp = serverapp
        self.pool = pool
        self.settings = settings
        self.log = log
        self.runs: dict[str, Run] = {}
        self._background: set[asyncio.Future[None]] = set()
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

    # -- start -------------------------------------------------------------------------
    async def start(self, req: RunRequest, choice: PolicyChoice, label: str) -> Run:
        """Check the request against the server's state and start the run (201) or refuse."""
        self.loop = asyncio.get_running_loop()
        path = normalize_path(req.path)
        cm = self.serverapp.contents_manager
        if not await _maybe_await(cm.file_exists(path)):
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
        run = Run(
            run_id=uuid.uuid4().hex[:12],
            path=path,
            variable=req.variable,
            question=req.question,
            max_steps=req.max_steps or self.settings.max_steps,
            choice=choice,
            policy=label,
            kernel_id=kernel_id,
            after_cell_id=req.after_cell_id,
        )
        self.runs[run.run_id] = run  # reserved now: a second POST meanwhile gets 409
        try:
            # An idle kernel is checked now, so a typo is a 404, not a failed run. A busy one
            # (e.g. running the %analyst cell that asked, which waits for this reply) is
            # checked when the run starts: asking it now would deadlock until a timeout.
            if not kernel_busy(self.serverapp.kernel_manager, kernel_id):
                link = KernelLink(self.serverapp.kernel_manager, kernel_id)
                try:
                    run.link = await link.open(self.settings.check_timeout)
                    run.facts = await self._facts(run, self.settings.check_timeout)
                except KernelError as exc:
                    # No answer in time: busy after all (the server had not yet seen it
                    # go busy). Leave the check to the run rather than refuse.
                    if exc.ename not in ("CellTimeoutError", "NoReply"):
                        raise
                    link.close()
                    run.link = run.facts = None
        except KernelError as exc:
            del self.runs[run.run_id]
            if run.link:
                run.link.close()
            raise ApiError(404 if "not defined" in str(exc) else 400, str(exc)) from None
        except BaseException:
            del self.runs[run.run_id]
            if run.link:
                run.link.close()
            raise
        run.document = LiveDocument(ydoc_ext, path, run.run_id, req.after_cell_id)
        run.emit_status()
        threading.Thread(
            target=self._work, args=(run,), name=f"jupyter-analyst-{run.run_id}", daemon=True
        ).start()
        return run

    async def _facts(self, run: Run, timeout: float) -> dict[str, Any]:
        """Describe the chosen frame for the task message (silent helper code)."""
        assert run.link is not None
        facts = parse_facts(await run.link.run_silent(frame_facts_code(run.variable), timeout))
        if not facts.get("rows") or not facts.get("cols"):
            raise KernelError(
                f"{run.variable!r} is an empty DataFrame ({facts.get('rows')} rows x "
                f"{facts.get('cols')} columns): nothing to analyse"
            )
        facts["source"] = f"variable `{run.variable}` in {Path(run.path).name}"
        return facts

    # -- the worker thread -------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _work(self, run: Run) -> None:
        """Body of the run's thread: policy, preparation, then the loop's events."""
        handle = None
        try:
            handle = self.pool.acquire(run.choice)
            run.policy = handle.label
            if run.stop_requested.is_set():
                self._call(self._end(run, StopReason.STOPPED, "stopped while the model was loading"))
                return
            self._call(self._prepare(run))
            budget = Budget(
                self.settings.max_steps if run.max_steps is None else run.max_steps,
                self.settings.max_tokens,
                self.settings.max_seconds,
            )
            assert run.executor is not None and run.facts is not None
            loop = AgentLoop(handle.policy, run.executor, budget, should_stop=run.stop_requested.is_set)
            for event in loop.run(render_task(run.facts, run.question)):
                if run.closed:
                    break  # the server already ended this run (stop while the model was busy)
                self._call(self._on_event(run, event))
        except Exception as exc:  # our failures and start failures: a failed run, not a crash
            detail = str(exc) if isinstance(exc, AnalystError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, AnalystError):
                self.log.exception("jupyter-analyst run %s failed", run.run_id)
            if self.loop is not None and not self.loop.is_closed():
                reason = StopReason.MODEL_ERROR if handle is None else None
                if isinstance(exc, KernelError) and exc.ename == "DeadKernelError":
                    reason = StopReason.KERNEL_DIED
                error = f"{STOP_NOTES[reason]}: {detail}" if reason is not None else detail
                try:
                    self._call(self._end(run, reason, detail, error=error))
                except Exception:
                    pass
        finally:
            if handle is not None:
                self.pool.release(run.choice)

    async def _prepare(self, run: Run) -> None:
        assert run.document is not None and self.loop is not None
        if run.link is None:  # the kernel was busy at the request: wait for it now
            run.link = await KernelLink(self.serverapp.kernel_manager, run.kernel_id).open(
                max(60.0, self.settings.cell_timeout)
            )
        slow = max(60.0, self.settings.cell_timeout)  # imports (matplotlib) on a loaded machine
        if run.facts is None:
            run.facts = await self._facts(run, slow)
        # Inline figures and the facts formatters. Importing matplotlib takes seconds, so the
        # loop starts meanwhile; the first code cell waits for it (one reader of iopub at a time).
        setup = asyncio.ensure_future(run.link.run_silent(SETUP_CODE, timeout=slow))
        await run.document.document()  # open the room now: the run outlives a closed tab
        run.executor = LiveExecutor(
            self.loop,
            run.document,
            run.link,
            timeout=self.settings.cell_timeout,
            interrupt_grace=self.settings.interrupt_grace,
            max_output_bytes=self.settings.max_output_bytes,
            stopping=lambda: run.stop_requested.is_set() or run.closed,
            on_moved=lambda old, new: run.id_map.update({k: new for k, v in run.id_map.items() if v == old}),
            setup=setup,
        )
        run.executor.watch()
        if run.state == "starting":
            run.state = "running"
            run.emit_status()

    async def _on_event(self, run: Run, event: Event) -> None:
        """Apply one loop event to the document, then publish it (server loop)."""
        if run.closed:
            return
        assert run.document is not None and run.executor is not None
        if isinstance(event, StepStarted):
            run.step = event.step
        elif isinstance(event, CellAdded):
            doc_id, _ = await run.document.insert(
                event.cell_type, event.source, event.role, event.step, event.cell_id
            )
            run.id_map[event.cell_id] = doc_id
            if event.cell_type == "code":
                run.executor.current = doc_id
        elif isinstance(event, RunFinished):
            await self._end(run, event.reason, event.detail, event)
            return
        frame = event_to_dict(event)
        if isinstance(event, (CellAdded, CellExecuted)):
            frame["cell_id"] = run.id_map.get(event.cell_id, event.cell_id)
        run.emit(frame)
        if isinstance(event, (StepStarted, CellExecuted)):
            run.emit_status()

    async def _end(
        self,
        run: Run,
        reason: StopReason | None,
        detail: str = "",
        finished: RunFinished | None = None,
        error: str | None = None,
    ) -> None:
        """Finish a run once: note cell, final state, last frames, save, release the kernel.

        ``reason`` None with an ``error`` is a run that failed before its loop could end it
        (the policy would not start, the variable vanished); its ``stop_reason`` stays null.
        """
        if run.closed:
            return
        run.closed = True
        if finished is None and reason is not None:
            finished = RunFinished(reason, None, run.step, 0, 0.0, 0, 0, detail)
        if error is not None:
            run.state, run.error = "failed", error
        elif reason is StopReason.FINAL_ANSWER:
            run.state, run.answer = "finished", finished.answer if finished else None
        elif reason is StopReason.STOPPED:
            run.state = "stopped"
        elif reason is StopReason.MODEL_ERROR:
            run.state, run.error = (
                "failed",
                f"{STOP_NOTES[reason]}: {detail}" if detail else STOP_NOTES[reason],
            )
        elif reason is StopReason.KERNEL_DIED:
            run.state, run.error = "failed", STOP_NOTES[reason]
        else:
            run.state = "finished"  # a budget ran out: ended normally, without conclusions
        run.stop_reason = reason.value if reason is not None else None
        run.ended = _now()
        if reason is not StopReason.FINAL_ANSWER and run.document is not None:
            why = STOP_NOTES[reason] if reason is not None else "the run failed"
            note = f"*Run ended without conclusions: {why}"
            note += f" at step {run.step}.*" if reason is StopReason.STOPPED else ".*"
            if run.error:
                note += f"\n\n`{run.error}`"
            try:
                cell_id, _ = await run.document.insert("markdown", note, "note", run.step)
                # As an event too, so a UI lists the note and can scroll to it.
                run.emit(event_to_dict(CellAdded(run.step, cell_id, "markdown", note, "note")))
            except Exception:
                self.log.warning("jupyter-analyst: could not write the note cell of run %s", run.run_id)
        if finished is not None:
            run.emit(event_to_dict(finished))
        run.emit_status()
        run.done.set()
        # Saving and tidying the kernel may wait on a busy kernel: never hold the caller
        # (a stop request answers as soon as the run has ended).
        task = asyncio.ensure_future(self._release(run))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release(self, run: Run) -> None:
        if run.executor is not None:
            run.executor.unwatch()
            if isinstance(run.executor.setup, asyncio.Future):
                run.executor.setup.cancel()  # stopped before the first code cell
        if run.document is not None:
            await run.document.save()
        link, run.link = run.link, None
        if link is not None:
            try:
                if await link.alive():
                    await link.run_silent(TEARDOWN_CODE, timeout=5)
            except Exception:
                pass  # a busy or dead kernel keeps the formatters; harmless
            link.close()

    # -- stop --------------------------------------------------------------------------
    async def stop(self, run_id: str) -> Run:
        """Interrupt the kernel and end the run within ``stop_timeout`` (+ the note cell)."""
        run = self.get(run_id)
        if not run.active:
            raise ApiError(409, f"run {run_id} already ended ({run.state})")
        if run.state != "stopping":
            run.stop_requested.set()
            run.state = "stopping"
            run.emit_status()
            try:
                await self.serverapp.kernel_manager.interrupt_kernel(run.kernel_id)
            except Exception:
                pass  # a dead kernel: the run ends below anyway
        try:
            await asyncio.wait_for(asyncio.shield(run.done.wait()), timeout=self.settings.stop_timeout)
        except asyncio.TimeoutError:
            await self._end(run, StopReason.STOPPED, "stopped by the user")
        return run

    async def shutdown(self) -> None:
        """Server stop: end every active run (no waiting on models), then close policies."""
        for run in list(self.runs.values()):
            if run.active:
                run.stop_requested.set()
                try:
                    await asyncio.wait_for(
                        self._end(run, StopReason.STOPPED, "the server stopped"), timeout=5
                    )
                except Exception:
                    pass
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)
        await asyncio.get_running_loop().run_in_executor(None, self.pool.close_all)


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value
