"""The agent's hands in a live notebook: cells in the shared Y document, code in its kernel.

``LiveDocument`` writes the run's cells into the notebook's collaborative document
(jupyter-collaboration), which every open browser tab shows within a fraction of a
second and the room saves to disk; it is opened server-side (``create=True``), so a run
survives a closed tab. ``LiveExecutor`` satisfies ``agent.types.Executor``: the loop calls
it synchronously from its worker thread, and every kernel and Y operation is marshalled
onto the server's event loop, where pycrdt documents and kernel clients live.

Rules from design.md §4: the agent only touches cells carrying its metadata; if the user
edited one of them since the agent wrote it (source hash differs), the agent leaves it
alone and appends a fresh copy instead; streamed text is appended in place; the execution
count is set only at the end; execution states are ``running``/``idle``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pycrdt import Map, Text

from ..agent.observe import strip_ansi
from ..agent.types import CellResult, CellRole
from ..kernel.executor import _Outputs
from ..notebook.writer import META_KEY, RAISES_TAG, agent_metadata
from .kernelio import KernelLink

_POLL = 0.1
"""Seconds per iopub wait: bounds how late a deadline, a stop or a death is noticed."""


def source_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _plain(output: dict[str, Any]) -> dict[str, Any]:
    """A JSON-only copy (nbformat nodes and tuples out) that pycrdt stores as it is."""
    value: dict[str, Any] = json.loads(json.dumps(output, default=str))
    return value


def _youtput(output: dict[str, Any]) -> Map:
    out = _plain(output)
    if out.get("output_type") == "stream":
        out["text"] = Text(out.get("text", ""))  # a Y text, so later chunks append in place
    return Map(out)


class LiveDocument:
    """The run's cells in one notebook's shared document. Use only on the server loop."""

    def __init__(self, ydoc_ext: Any, path: str, run_id: str, after_cell_id: str | None = None) -> None:
        self.ydoc_ext = ydoc_ext
        self.path = path
        self.run_id = run_id
        self.anchor = after_cell_id
        """The cell the next agent cell goes after; None: the end of the notebook."""
        self.hashes: dict[str, str] = {}
        """Source hash of each agent cell as the agent wrote it."""
        self.cell_ids: list[str] = []

    async def document(self) -> Any:
        """The room's own document (``copy=False``: a fork's edits would go nowhere)."""
        ynb = await self.ydoc_ext.get_document(
            path=self.path, content_type="notebook", file_format="json", copy=False, create=True
        )
        if ynb is None:
            raise RuntimeError(f"could not open the shared document of {self.path}")
        return ynb

    @staticmethod
    def index(ynb: Any, cell_id: str | None) -> int | None:
        if cell_id is None:
            return None
        for i, ycell in enumerate(ynb.ycells):
            if ycell.get("id") == cell_id:
                return i
        return None

    def find(self, ynb: Any, cell_id: str) -> Any:
        i = self.index(ynb, cell_id)
        return None if i is None else ynb.ycells[i]

    def user_changed(self, ycell: Any, cell_id: str) -> bool:
        """True when the source differs from what the agent wrote (the user edited it), or
        the user deleted the cell (a deleted Y map has no keys left)."""
        try:
            return source_hash(str(ycell["source"])) != self.hashes.get(cell_id)
        except KeyError:
            return True

    async def insert(
        self,
        cell_type: str,
        source: str,
        role: CellRole,
        step: int,
        cell_id: str | None = None,
        after: str | None = None,
    ) -> tuple[str, Any]:
        """Insert an agent cell after the anchor (or ``after``); return its id and Y cell."""
        ynb = await self.document()
        ids = {c.get("id") for c in ynb.ycells}
        if not cell_id or cell_id in ids:
            cell_id = uuid.uuid4().hex[:8]
            while cell_id in ids:
                cell_id = uuid.uuid4().hex[:8]
        cell: dict[str, Any] = {
            "id": cell_id,
            "cell_type": cell_type,
            "source": source,
            "metadata": agent_metadata(self.run_id, step, role),
        }
        if cell_type == "code":
            cell.update(outputs=[], execution_count=None)
        ycell = ynb.create_ycell(cell)
        anchor = self.index(ynb, after if after is not None else self.anchor)
        if anchor is None:
            ynb.ycells.append(ycell)
        else:
            ynb.ycells.insert(anchor + 1, ycell)
        self.hashes[cell_id] = source_hash(source)
        self.cell_ids.append(cell_id)
        if after is None or after == self.anchor:
            self.anchor = cell_id
        return cell_id, ycell

    def set_status(self, ycell: Any, cell_id: str, **values: Any) -> None:
        """Record the outcome in the agent's own metadata (never on a user-edited cell)."""
        if self.user_changed(ycell, cell_id):
            return
        meta = ycell["metadata"]
        current = meta.get(META_KEY)
        current = current.to_py() if hasattr(current, "to_py") else dict(current or {})
        meta[META_KEY] = {**current, **values}
        if values.get("status") in ("error", "timeout"):
            tags = meta.get("tags")
            tags = list(tags.to_py() if hasattr(tags, "to_py") else tags or [])
            if RAISES_TAG not in tags:
                meta["tags"] = [*tags, RAISES_TAG]

    async def save(self) -> None:
        """Ask the room to save now rather than after its debounce delay (best effort)."""
        try:
            file_id = self.ydoc_ext.serverapp.web_app.settings["file_id_manager"].index(self.path)
            from jupyter_server_ydoc.utils import encode_file_path, room_id_from_encoded_path

            room_id = room_id_from_encoded_path(encode_file_path("json", "notebook", file_id))
            room = await self.ydoc_ext.ywebsocket_server.get_room(room_id)
            task = room._save_to_disc()  # what jupyter-collaboration's manual save calls
            if task is not None:
                await asyncio.wait_for(asyncio.shield(task), timeout=10)
        except Exception:
            pass  # the room's autosave still writes the file after its delay


class _Mirror:
    """Keeps a Y cell's outputs equal to an ``_Outputs`` accumulator, incrementally."""

    def __init__(self) -> None:
        self.synced: list[tuple[str, Any]] = []

    def reset(self) -> None:
        self.synced = []

    def sync(self, ycell: Any, outputs: list[dict[str, Any]]) -> None:
        youts = ycell["outputs"]
        if len(outputs) < len(self.synced) or any(
            kind != outputs[i].get("output_type") for i, (kind, _) in enumerate(self.synced)
        ):
            youts.clear()  # clear_output(), or a note folded into earlier outputs
            self.synced = []
        for i, out in enumerate(outputs):
            kind = out.get("output_type", "")
            if i >= len(self.synced):
                youts.append(_youtput(out))
                self.synced.append((kind, len(out["text"]) if kind == "stream" else id(out.get("data"))))
                continue
            mark = self.synced[i][1]
            if kind == "stream":
                text = out["text"]
                if len(text) > mark:
                    ytext = youts[i]["text"]
                    ytext += text[mark:]  # in place: re-assigning renders but saves []
                    self.synced[i] = (kind, len(text))
            elif id(out.get("data")) != mark:  # update_display_data replaced the bundle
                youts[i] = _youtput(out)
                self.synced[i] = (kind, id(out.get("data")))


class LiveExecutor:
    """Runs the agent's code cells in the notebook's kernel, outputs into the Y cells.

    ``current`` names the cell the next ``execute`` fills; the run sets it when the loop
    announces a code cell (``CellAdded`` always precedes the matching ``execute``).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        document: LiveDocument,
        link: KernelLink,
        *,
        timeout: float = 120.0,
        interrupt_grace: float = 10.0,
        max_output_bytes: int = 1_000_000,
        max_single_output_bytes: int = 10_000_000,
        stopping: Callable[[], bool] = lambda: False,
        on_moved: Callable[[str, str], None] = lambda old, new: None,
        setup: Awaitable[Any] | None = None,
    ) -> None:
        """``setup``: silent kernel preparation still running; awaited before the first cell."""
        self.loop = loop
        self.document = document
        self.link = link
        self.timeout = timeout
        self.interrupt_grace = interrupt_grace
        self.max_output_bytes = max_output_bytes
        self.max_single_output_bytes = max_single_output_bytes
        self.stopping = stopping
        self.on_moved = on_moved
        self.current: str | None = None
        self.setup = setup
        self.died = False
        self._callbacks_on = False

    # -- kernel death ------------------------------------------------------------------
    def _restarted(self) -> None:
        self.died = True  # an auto-restarted kernel lost every variable: the run can't go on

    def watch(self) -> None:
        """Notice the kernel dying (and the server restarting it) while the run lasts."""
        km = self.link.km
        for event in ("restart", "dead"):
            km.add_restart_callback(self._restarted, event)
        self._callbacks_on = True

    def unwatch(self) -> None:
        if self._callbacks_on:
            for event in ("restart", "dead"):
                try:
                    self.link.km.remove_restart_callback(self._restarted, event)
                except Exception:
                    pass
            self._callbacks_on = False

    # -- Executor protocol -------------------------------------------------------------
    def execute(self, code: str) -> CellResult:
        """Blocking entry point for the loop's worker thread."""
        return asyncio.run_coroutine_threadsafe(self.aexecute(code), self.loop).result()

    async def _cell(self, code: str) -> tuple[str, Any]:
        """The Y cell to fill: ours as written, or a fresh copy when the user changed it."""
        ynb = await self.document.document()
        cell_id = self.current
        ycell = self.document.find(ynb, cell_id) if cell_id else None
        if ycell is not None and cell_id is not None and not self.document.user_changed(ycell, cell_id):
            return cell_id, ycell
        return await self._move(cell_id, code)

    async def _move(self, old: str | None, code: str) -> tuple[str, Any]:
        """Append a copy of the agent's cell after ``old`` (left as the user made it)."""
        ynb = await self.document.document()
        meta = {}
        ycell = self.document.find(ynb, old) if old else None
        if ycell is not None:
            meta = (ycell["metadata"].to_py() or {}).get(META_KEY, {})
        step, role = int(meta.get("step", 0)), meta.get("role", "code")
        after = old if ycell is not None else None
        new_id, new_cell = await self.document.insert("code", code, role, step, after=after)
        if old is not None:
            self.on_moved(old, new_id)
        self.current = new_id
        return new_id, new_cell

    async def aexecute(self, code: str) -> CellResult:
        """Run ``code`` as the current cell; stream its outputs into the document."""
        if self.stopping():  # never start a cell once the run is being stopped
            return CellResult(
                status="error", error_name="KeyboardInterrupt", error_value="the run was stopped"
            )
        if self.setup is not None:
            setup, self.setup = self.setup, None
            await setup  # a failure here is ours: it raises and fails the run
        if self.died or not await self.link.alive():
            self.died = True
            return CellResult(
                status="dead",
                error_name="DeadKernelError",
                error_value="the notebook's kernel is dead or was restarted; all variables are lost",
            )
        cell_id, ycell = await self._cell(code)
        acc = _Outputs(self.max_output_bytes, self.max_single_output_bytes)
        mirror = _Mirror()
        ycell["outputs"].clear()
        ycell["execution_state"] = "running"

        def sync() -> None:
            nonlocal cell_id, ycell
            acc._flush_stream()
            if self.document.user_changed(ycell, cell_id):
                raise _Moved
            mirror.sync(ycell, acc.outputs)

        started = time.monotonic()
        msg_id = self.link.kc.execute(
            code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False
        )
        timed_out = stopped = False
        interrupted_at: float | None = None
        last_alive = started
        idle = False
        while True:
            now = time.monotonic()
            if interrupted_at is None and now - started >= self.timeout:
                timed_out, interrupted_at = True, now
                await self.link.interrupt()
            elif interrupted_at is None and self.stopping():
                stopped, interrupted_at = True, now  # the stop already interrupted the kernel
            elif interrupted_at is not None and now - interrupted_at >= (
                1.5 if stopped else self.interrupt_grace
            ):
                break  # the kernel ignores the interrupt; leave it, report what we have
            if self.died or (now - last_alive >= 0.5 and not await self.link.alive()):
                self.died = True
                break
            if now - last_alive >= 0.5:
                last_alive = now
            try:
                msg = await self.link.kc.get_iopub_msg(timeout=_POLL)
            except queue.Empty:
                continue
            except Exception:  # channels closed under us (the run was ended): don't spin
                await asyncio.sleep(_POLL)
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"].get("execution_state") == "idle":
                    idle = True
                    break
                continue
            acc.handle(msg)
            try:
                sync()
            except _Moved:
                cell_id, ycell = await self._move(cell_id, code)
                mirror.reset()
                ycell["execution_state"] = "running"
                mirror.sync(ycell, acc.outputs)
        reply = (await self.link.reply(msg_id, 2.0) if idle else None) or {}
        outputs, truncated = acc.finish()
        if self.document.user_changed(ycell, cell_id):
            cell_id, ycell = await self._move(cell_id, code)
            mirror.reset()
        mirror.sync(ycell, outputs)
        count = reply.get("execution_count", acc.execution_count)
        result = CellResult(
            status="ok",
            outputs=outputs,
            execution_count=count,
            duration=time.monotonic() - started,
            truncated=truncated,
            facts=acc.facts,
        )
        error = acc.error or (reply if reply.get("status") == "error" else None)
        if error:
            result.status = "error"
            result.error_name = str(error.get("ename", ""))
            result.error_value = str(error.get("evalue", ""))
            result.traceback = [strip_ansi(line) for line in error.get("traceback", [])]
        if self.died:
            result.status, result.error_name = "dead", "DeadKernelError"
            result.error_value = "the kernel died while running this cell; all variables are lost"
        elif timed_out:
            result.status, result.error_name = "timeout", "CellTimeoutError"
            result.error_value = f"cell exceeded {self.timeout:g}s and was interrupted"
        elif stopped and not idle:
            result.status, result.error_name = "error", "KeyboardInterrupt"
            result.error_value = "the run was stopped"
        ycell["execution_count"] = count  # last: setting it resets the [*] prompt
        ycell["execution_state"] = "idle"
        self.document.set_status(ycell, cell_id, status=result.status, seconds=round(result.duration, 3))
        return result


class _Moved(Exception):
    """The user edited the cell being filled: continue in a fresh copy."""
