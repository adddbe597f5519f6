"""HTTP and websocket handlers of ``{base_url}jupyter-analyst/`` (see docs/server-api.md).

Every handler method is ``@tornado.web.authenticated`` (``ws_authenticated`` for the
websocket, which must not redirect) and ``@authorized`` on the ``jupyter_analyst``
resource; a test introspects this. Then, before anything else, it asks the authorizer for
what Jupyter's own handlers would require of the same work (``require``): running code in
the kernel needs ``execute`` on ``kernels``, reading or writing the notebook needs
``read``/``write`` on ``contents``, so the extension never lets a user do what the server
itself would refuse them. Bodies and replies go through ``schema``; refusals are
``HTTPError``s that ``APIHandler`` renders as ``{"message", "reason"}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from http.client import responses
from typing import Any

import tornado.web
from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from pydantic import BaseModel, ValidationError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..errors import AnalystError, KernelError
from .discard import discard_run, restore_run
from .kernelio import LIST_FRAMES_CODE, kernel_busy, managed_executor, normalize_path, session_kernel_id
from .runs import ApiError, Run, RunManager
from .schema import DataFrameInfo, DataFramesReply, DiscardRequest, RunRequest

AUTH_RESOURCE = "jupyter_analyst"
NAMESPACE = "jupyter-analyst"


def _error(status: int, message: str) -> tornado.web.HTTPError:
    return tornado.web.HTTPError(status, message, reason=responses.get(status, "Error"))


Permission = tuple[str, str, str]
"""(action, resource, what needs it): a Jupyter permission an endpoint needs besides its own."""

RUN_CODE: Permission = ("execute", "kernels", "runs code in the notebook's kernel")
READ_NOTEBOOK: Permission = ("read", "contents", "reads the notebook")
WRITE_NOTEBOOK: Permission = ("write", "contents", "writes into the notebook")
SHOW_CONTENT: Permission = (
    "read",
    "contents",
    "shows notebook content (the questions, answers, cells and outputs of runs)",
)
INTERRUPT: Permission = ("write", "kernels", "may interrupt the agent's cell in the kernel")
WRITE_FILES: Permission = ("write", "contents", "writes the report files next to the notebook")


async def require(handler: JupyterHandler, what: str, *needs: Permission) -> None:
    """403 unless the user also holds what Jupyter's own handlers ask for the same work.

    ``@authorized`` checked the extension's own resource; this checks ``kernels`` and
    ``contents`` with the same authorizer, in order, and names the first one missing.
    """
    for action, resource, why in needs:
        allowed = await ensure_async(
            handler.authorizer.is_authorized(handler, handler.current_user, action, resource)
        )
        if not allowed:
            raise _error(
                403,
                f"{what} {why}, which needs the Jupyter permission {action!r} on {resource!r}; "
                "this user does not have it",
            )


class _Base(APIHandler):
    """Shared helpers: the run manager, JSON replies, error translation."""

    auth_resource = AUTH_RESOURCE

    @property
    def extension(self) -> Any:
        return self.settings["jupyter_analyst"]

    @property
    def manager(self) -> RunManager:
        manager: RunManager = self.extension.manager
        return manager

    def reply(self, model: BaseModel | list[BaseModel], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        if isinstance(model, list):
            self.finish(json.dumps([m.model_dump(mode="json") for m in model]))
        else:
            self.finish(model.model_dump_json())

    def run_or_404(self, run_id: str) -> Run:
        try:
            return self.manager.get(run_id)
        except ApiError as exc:
            raise _error(exc.status, exc.message) from None


class DataFramesHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        """List the DataFrame variables in the kernel of notebook ``path``.

        Helper code runs silently (no history, no execution count, no new names), so it
        needs ``execute`` on ``kernels``.
        Status: 200 DataFramesReply; 400 no ``path``; 401/403 not authenticated/authorized
        (403 also without ``execute`` on ``kernels``); 404 no running kernel for the
        notebook; 409 the kernel stayed busy (it is running a cell; try again when it is
        idle); 500 the helper code failed. While an analyst run is active on the kernel the
        reply holds only that run's frame and its ``run_id``.
        """
        await require(self, "Listing DataFrames", RUN_CODE)
        path = normalize_path(self.get_query_argument("path", "") or "")
        if not path:
            raise _error(400, "the query parameter 'path' is required")
        kernel_id = await session_kernel_id(self.serverapp, path)
        if kernel_id is None:
            raise _error(404, f"no running kernel for {path}")
        run = self.manager.active_on_kernel(kernel_id)
        if run is not None:  # busy with the analyst's own cells: not the user's to wait for
            self.reply(
                DataFramesReply(path=path, kernel_id=kernel_id, dataframes=run_frames(run), run_id=run.run_id)
            )
            return
        kernel_manager = self.settings["kernel_manager"]
        deadline = time.monotonic() + self.extension.check_timeout
        while kernel_busy(kernel_manager, kernel_id) and self.manager.ending_on_kernel(kernel_id):
            if time.monotonic() > deadline:  # busy with our own teardown: wait for it, not the user
                break
            await asyncio.sleep(0.05)
        if kernel_busy(kernel_manager, kernel_id):
            raise _error(409, f"the kernel of {path} is busy running a cell; try again when it is idle")
        loop = asyncio.get_running_loop()
        timeout = self.extension.check_timeout
        executor = managed_executor(self.serverapp, kernel_id, loop, timeout=timeout, startup_timeout=timeout)

        def list_frames() -> str:  # off the loop: the executor blocks
            try:
                executor.open(timeout)
                return executor.run_silent(LIST_FRAMES_CODE, timeout)
            finally:
                executor.close()

        try:
            out = await loop.run_in_executor(None, list_frames)
        except KernelError as exc:
            busy = exc.ename in ("CellTimeoutError", "NoReply")
            status = 409 if busy else 404 if exc.ename == "DeadKernelError" else 500
            raise _error(status, str(exc)) from None
        line = next((x for x in reversed(out.splitlines()) if x.startswith("[")), "[]")
        frames = [DataFrameInfo(**item) for item in json.loads(line)]
        self.reply(DataFramesReply(path=path, kernel_id=kernel_id, dataframes=frames))


def run_frames(run: Run) -> list[DataFrameInfo]:
    """The frame an active run analyses, as its facts describe it (none before they're read)."""
    facts = run.facts or {}
    if "rows" not in facts:
        return []
    columns = [str(c.get("name", "")) for c in facts.get("columns") or []][:50]
    return [
        DataFrameInfo(
            name=run.variable, shape=(facts["rows"], facts["cols"]), columns=columns, memory_bytes=0
        )
    ]


class ProfilesHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        """The model profiles and the one runs use when they name none.

        Needs nothing beyond the extension's own resource (it touches no notebook).
        Status: 200 ProfilesReply; 401/403 not authenticated/authorized; 500 the user's
        profiles file is unreadable (the message names it).
        """
        try:
            reply = await asyncio.get_running_loop().run_in_executor(None, self.extension.profiles_reply)
        except AnalystError as exc:
            raise _error(500, str(exc)) from None
        self.reply(reply)


class RunsHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        """All runs of this server, newest first.

        A status shows notebook content (the question, the answer), so it needs ``read``
        on ``contents``.
        Status: 200 [RunStatus]; 401/403 not authenticated/authorized (403 also without
        ``read`` on ``contents``).
        """
        await require(self, "Listing runs", SHOW_CONTENT)
        self.reply([run.status() for run in self.manager.newest_first()])

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        """Start a run on a notebook's live document and kernel.

        A run executes cells in the kernel and reads and writes the notebook: it needs
        ``execute`` on ``kernels`` and ``read`` and ``write`` on ``contents`` (checked
        before the body is read).
        Status: 201 RunStatus (state ``starting``); 400 bad body (a question over 4,000
        characters, say: ``schema.RunRequest``), unknown profile, not a DataFrame or an
        empty one; 401/403 not authenticated/authorized (403 also without
        one of those permissions); 404 notebook, kernel or variable not found; 409 the
        notebook already has an active run, or another notebook sharing its kernel has
        one (the message names it); 503 jupyter-collaboration is not enabled.
        """
        await require(self, "A run", RUN_CODE, READ_NOTEBOOK, WRITE_NOTEBOOK)
        try:
            req = RunRequest.model_validate_json(self.request.body or b"{}")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise _error(400, f"bad run request: {problems}") from None
        try:
            choice, label = self.extension.policy_choice(req.profile)
            run = await self.manager.start(req, choice, label)
        except ApiError as exc:
            raise _error(exc.status, exc.message) from None
        self.reply(run.status(), status=201)


class RunHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        """One run's status.

        Status: 200 RunStatus; 401/403 not authenticated/authorized (403 also without
        ``read`` on ``contents``); 404 unknown run.
        """
        await require(self, "A run's status", SHOW_CONTENT)
        self.reply(self.run_or_404(run_id).status())


class StopHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        """End the run within ~2 s, with a note cell saying so.

        Only an agent cell that is executing is interrupted; a run that waits (queued
        behind the user's cell, or on the model) is cancelled without an interrupt, so a
        cell of the user's is never interrupted.

        Writing the note needs ``write`` on ``contents``; interrupting needs ``write`` on
        ``kernels``, as Jupyter's own interrupt does.
        Status: 202 RunStatus (normally already ``stopped``); 401/403 not
        authenticated/authorized (403 also without one of those permissions); 404
        unknown run; 409 the run already ended.
        """
        await require(self, "Stopping a run", WRITE_NOTEBOOK, INTERRUPT)
        self.run_or_404(run_id)
        try:
            run = await self.manager.stop(run_id)
        except ApiError as exc:
            raise _error(exc.status, exc.message) from None
        self.reply(run.status(), status=202)


class ExportHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        """Write ``<stem>-analysis-report.ipynb`` (header + this run's cells) and its HTML.

        Needs ``read`` and ``write`` on ``contents`` (it reads the notebook and writes two
        files; no code runs).
        Status: 201 ExportReply (API paths); 401/403 not authenticated/authorized (403
        also without one of those permissions); 404 unknown run or unreadable notebook;
        409 the run is still active.
        """
        await require(self, "Exporting a report", READ_NOTEBOOK, WRITE_FILES)
        from .report import export_run, run_chain

        run = self.run_or_404(run_id)
        try:
            reply = await export_run(self.serverapp, run, run_chain(self.manager.runs, run))
        except ApiError as exc:
            raise _error(exc.status, exc.message) from None
        self.reply(reply, status=201)


class DiscardHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        """Take every cell of an ended run out of its notebook (kept for one restore) and,
        unless the body says ``{"variables": false}``, delete the variables it made.

        Needs ``write`` on ``contents``, and ``execute`` on ``kernels`` to delete variables.
        Status: 200 DiscardReply; 400 bad body; 401/403 not authenticated/authorized (403
        also without those permissions); 404 unknown run; 409 the run is active, already
        discarded, another run is writing into its notebook, or a later run follows it up.
        """
        await require(self, "Discarding a run", WRITE_NOTEBOOK)  # before the body is read
        try:
            req = DiscardRequest.model_validate_json(self.request.body or b"{}")
        except ValidationError as exc:
            raise _error(400, f"bad discard request: {exc.errors()[0]['msg']}") from None
        if req.variables:  # deleting them runs code in the kernel
            await require(self, "Deleting a run's variables", RUN_CODE)
        run = self.run_or_404(run_id)
        try:
            reply = await discard_run(self.manager, run, req.variables, self.extension.check_timeout)
        except ApiError as exc:
            raise _error(exc.status, exc.message) from None
        self.reply(reply)


class RestoreHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        """Undo a discard: the run's cells go back where they were (deleted variables don't).

        Needs ``write`` on ``contents``.
        Status: 200 DiscardReply; 401/403 not authenticated/authorized (403 also without
        that permission); 404 unknown run; 409 nothing discarded to restore.
        """
        await require(self, "Restoring a run", WRITE_NOTEBOOK)
        run = self.run_or_404(run_id)
        try:
            reply = await restore_run(self.manager, run)
        except ApiError as exc:
            raise _error(exc.status, exc.message) from None
        self.reply(reply)


class EventsHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):  # type: ignore[misc]
    """The run's event stream: past frames replayed, then live ones, then close."""

    auth_resource = AUTH_RESOURCE
    run: Run
    _pump_task: asyncio.Task[None] | None = None

    def set_default_headers(self) -> None:
        """Undo JupyterHandler's HTML headers, meaningless for a websocket."""

    @ws_authenticated
    @authorized
    async def get(self, run_id: str) -> None:  # type: ignore[override]
        """Upgrade to a websocket after authentication and authorization.

        The frames carry the run's cells and outputs: ``read`` on ``contents`` is needed.
        Status: 101 switching protocols; 401/403 not authenticated/authorized (checked
        before the upgrade; 403 also without ``read`` on ``contents``); 404 unknown run.
        """
        await require(self, "A run's event stream", SHOW_CONTENT)
        run = self.settings["jupyter_analyst"].manager.runs.get(run_id)
        if run is None:
            raise _error(404, f"no run {run_id!r} on this server")
        self.run = run
        await super().get(run_id)

    def open(self, run_id: str) -> None:  # type: ignore[override]
        super().open()  # WebSocketMixin: keep-alive pings
        self._pump_task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        frames = self.run.frames  # this list: compacting an ended run replaces it, never cuts it
        sent = 0
        try:
            while True:
                while sent < len(frames):
                    await self.write_message(frames[sent])
                    sent += 1
                if self.run.done.is_set() and sent >= len(frames):
                    break
                await self.run.wait_frames(sent)
        except (WebSocketClosedError, asyncio.CancelledError):
            return
        self.close()

    def on_message(self, message: str | bytes) -> None:
        """The stream is one-way; client messages are ignored."""

    def on_close(self) -> None:
        if self._pump_task is not None and not self._pump_task.done():
            self._pump_task.cancel()


def handlers() -> list[tuple[str, type[tornado.web.RequestHandler]]]:
    """URL patterns relative to the server's base_url (the ExtensionApp prefixes it)."""
    run = r"(?P<run_id>[^/]+)"
    return [
        (rf"/{NAMESPACE}/dataframes", DataFramesHandler),
        (rf"/{NAMESPACE}/profiles", ProfilesHandler),
        (rf"/{NAMESPACE}/runs", RunsHandler),
        (rf"/{NAMESPACE}/runs/{run}", RunHandler),
        (rf"/{NAMESPACE}/runs/{run}/stop", StopHandler),
        (rf"/{NAMESPACE}/runs/{run}/events", EventsHandler),
        (rf"/{NAMESPACE}/runs/{run}/export", ExportHandler),
        (rf"/{NAMESPACE}/runs/{run}/discard", DiscardHandler),
        (rf"/{NAMESPACE}/runs/{run}/restore", RestoreHandler),
    ]
