"""The live-document sink: a run's cells in the notebook's shared Y document.

``LiveDocument`` writes the run's cells into the notebook's collaborative document
(jupyter-collaboration), which every open browser tab shows within a fraction of a
second and the room saves to disk; it is opened server-side (``create=True``), so a run
survives a closed tab. It lives on the server's event loop, where pycrdt documents live;
``LiveSink`` is the session's ``NotebookSink`` for the run's worker thread and marshals
every event (and the outputs of a running cell) onto that loop, in order.

Rules from design.md §4: the agent only touches cells carrying its metadata; if the user
edited one of them since the agent wrote it (source hash differs), the agent leaves it
alone and continues in a fresh copy appended after it; streamed text is appended in
place; the execution count is set only at the end; execution states are
``running``/``idle``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import posixpath
import threading
import uuid
from typing import Any

from pycrdt import Map, Text

from ..agent.types import CellAdded, CellExecuted, CellRole, CellsRemoved, Event, RunFinished
from ..errors import AnalystError
from ..notebook.writer import META_KEY, RAISES_TAG, agent_metadata


class SaveError(AnalystError):
    """The notebook could not be saved at the end of a run (its cells went to a rescue copy)."""


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


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
        from jupyter_server_ydoc.utils import encode_file_path, room_id_from_encoded_path

        self.ydoc_ext = ydoc_ext
        self.serverapp = ydoc_ext.serverapp
        self.path = path
        """Where the notebook was when the run started (``current_path`` follows renames)."""
        self.file_ids = self.serverapp.web_app.settings["file_id_manager"]
        self.file_id: str = self.file_ids.index(path)
        self.room_id = room_id_from_encoded_path(encode_file_path("json", "notebook", self.file_id))
        self.run_id = run_id
        self.anchor = after_cell_id
        """The cell the next agent cell goes after; None: the end of the notebook."""
        self.hashes: dict[str, str] = {}
        """Source hash of each agent cell as the agent wrote it."""
        self.cell_ids: list[str] = []
        """Every cell the run put into the document, in order."""
        self.ids: dict[str, str] = {}
        """The loop's cell id -> the document's (they differ after a clash or a user edit)."""
        self.removed: list[str] = []
        """Document ids of the superseded cells the run's end took out (``agent.tidy``)."""
        self.kept_edited: list[str] = []
        """Document ids of superseded cells left in place because the user had edited them."""
        self.copies: dict[str, str] = {}
        """A fresh copy's document id -> the agent cell the user edited while it ran."""
        self._code: dict[str, str] = {}
        self._mirrors: dict[str, _Mirror] = {}
        self.lock = asyncio.Lock()
        """Serialises changes, so they apply in the order the run made them."""

    @property
    def current_path(self) -> str | None:
        """The notebook's path now: a rename through Jupyter keeps its file id (None: deleted)."""
        path: str | None = self.file_ids.get_path(self.file_id)
        return path

    async def document(self) -> Any:
        """The room's own document (``copy=False``: a fork's edits would go nowhere), found by
        the file's id, so a notebook renamed in JupyterLab mid-run is followed."""
        ynb = await self.ydoc_ext.get_document(room_id=self.room_id, copy=False, create=True)
        if ynb is None:
            raise RuntimeError(f"could not open the shared document of {self.current_path or self.path}")
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
        unverified: list[str] | None = None,
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
            "metadata": agent_metadata(self.run_id, step, role, unverified),
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

    async def _save_now(self) -> None:
        """Have the room write the file now, not after its debounce delay, and wait for it."""
        room = await self.ydoc_ext.ywebsocket_server.get_room(self.room_id)
        task = room._save_to_disc()  # what jupyter-collaboration's manual save calls
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout=30)

    async def flush(self) -> None:
        """Write the finished steps to disk (a crash then loses at most the step in flight);
        a failure here is only logged: ``save`` at the end checks and rescues."""
        try:
            await self._save_now()
        except Exception as exc:
            self.serverapp.log.warning("jupyter-analyst: could not save %s: %s", self.current_path, exc)

    async def save(self) -> str:
        """Save now and check the run's cells reached the file; return its path.

        The room logs a failed save and goes on, so the file is read back. When the run's
        cells are not there (the notebook was moved or deleted outside Jupyter), the whole
        document is written to a rescue notebook beside where it was, and ``SaveError``
        says where: the run's work is never lost silently.
        """
        ynb = await self.document()
        mine = set(self.cell_ids)
        expected = [c["id"] for c in ynb.ycells if c.get("id") in mine]
        path = self.current_path
        problem = ""
        try:
            await self._save_now()
            if path is None:
                problem = "the notebook was deleted"
            else:
                cm = self.serverapp.contents_manager
                model = await _maybe_await(cm.get(path, content=True, type="notebook"))
                on_disk = {c.get("id") for c in model["content"]["cells"]}
                missing = [i for i in expected if i not in on_disk]
                if missing:
                    problem = f"{len(missing)} of the run's cells are not in {path}"
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if not problem:
            return path or self.path
        rescue = await self._rescue(ynb)
        raise SaveError(
            f"could not save the notebook {path or self.path} ({problem}; was it moved or deleted "
            f"outside Jupyter?); the run's cells were written to {rescue}"
        )

    async def _rescue(self, ynb: Any) -> str:
        """Write the whole shared document to a new notebook beside the original."""
        cm = self.serverapp.contents_manager
        folder, name = posixpath.split(self.current_path or self.path)
        stem = name[: -len(".ipynb")] if name.endswith(".ipynb") else name
        if folder and not await _maybe_await(cm.dir_exists(folder)):
            folder = ""
        target = posixpath.join(folder, f"{stem}-analyst-rescue-{self.run_id}.ipynb")
        content = ynb.get()
        await _maybe_await(cm.save({"type": "notebook", "format": "json", "content": content}, target))
        return target

    # -- the run's events (server loop; callers hold ``lock``) ----------------------------
    def doc_id(self, loop_id: str) -> str:
        """Where the loop's cell is in the document now (after moves)."""
        return self.ids.get(loop_id, loop_id)

    async def apply(self, event: Event) -> None:
        """Put one loop event into the document."""
        if isinstance(event, CellAdded):
            doc_id, ycell = await self.insert(
                event.cell_type,
                event.source,
                event.role,
                event.step,
                event.cell_id,
                unverified=event.unverified,
            )
            self.ids[event.cell_id] = doc_id
            if event.cell_type == "code":
                self._code[event.cell_id] = event.source
                self._mirrors[event.cell_id] = _Mirror()
                ycell["execution_state"] = "running"  # the loop executes it next
        elif isinstance(event, CellExecuted) and event.cell_id in self._code:
            result = event.result
            ycell = await self._target(event.cell_id)
            self._mirrors[event.cell_id].sync(ycell, result.outputs)
            ycell["execution_count"] = result.execution_count  # last: setting it resets the [*] prompt
            ycell["execution_state"] = "idle"
            self.set_status(
                ycell, self.ids[event.cell_id], status=result.status, seconds=round(result.duration, 3)
            )

        elif isinstance(event, CellsRemoved):
            await self.remove(event.cell_ids)

    async def remove(self, loop_ids: list[str]) -> list[str]:
        """Take the run's superseded cells out of the document; return their document ids.

        Only the agent's own cells as it wrote them go: one the user edited is theirs now
        and stays (``kept_edited``), one the user deleted is already gone.
        """
        ynb = await self.document()
        gone: list[str] = []
        for loop_id in loop_ids:
            doc_id = self.doc_id(loop_id)
            i = self.index(ynb, doc_id)
            if i is None:
                continue
            if self.user_changed(ynb.ycells[i], doc_id):
                self.kept_edited.append(doc_id)
                continue
            if self.anchor == doc_id:  # later cells (the note) go where this one was
                self.anchor = ynb.ycells[i - 1].get("id") if i > 0 else None
            del ynb.ycells[i]
            gone.append(doc_id)
        self.removed.extend(gone)
        self.cell_ids = [c for c in self.cell_ids if c not in gone]
        return gone

    async def show(self, loop_id: str, outputs: list[dict[str, Any]]) -> None:
        """Outputs of a cell still running, as far as they came."""
        if loop_id in self._code:
            self._mirrors[loop_id].sync(await self._target(loop_id), outputs)

    async def _target(self, loop_id: str) -> Any:
        """The Y cell a code cell's outputs go to: the agent's own, or, when the user edited
        or deleted it, a fresh copy after it (the edited cell stays as the user left it)."""
        doc_id = self.ids[loop_id]
        ynb = await self.document()
        ycell = self.find(ynb, doc_id)
        if ycell is not None and not self.user_changed(ycell, doc_id):
            return ycell
        meta: dict[str, Any] = {}
        if ycell is not None:
            meta = (ycell["metadata"].to_py() or {}).get(META_KEY, {})
            ycell["execution_state"] = "idle"  # the user's cell now; never leave it at [*]
        step, role = int(meta.get("step", 0)), meta.get("role", "code")
        new_id, new_cell = await self.insert(
            "code", self._code[loop_id], role, step, after=doc_id if ycell is not None else None
        )
        self.ids[loop_id] = new_id
        self.copies[new_id] = self.copies.get(doc_id, doc_id)
        self._mirrors[loop_id] = _Mirror()
        new_cell["execution_state"] = "running"
        return new_cell


class LiveSink:
    """The session's ``NotebookSink`` on a run's worker thread: every change is marshalled
    onto the server loop in the order the run made it.

    Events wait until the document has them (a UI told of a cell finds it); outputs of a
    running cell don't: the latest of each cell is applied as soon as the loop is free,
    so a print flood costs the loop one update at a time, not one per message.
    """

    def __init__(self, document: LiveDocument, loop: asyncio.AbstractEventLoop) -> None:
        self.document = document
        self.loop = loop
        self._latest: dict[str, list[dict[str, Any]]] = {}
        self._mutex = threading.Lock()

    def handle(self, event: Event) -> None:
        asyncio.run_coroutine_threadsafe(self._apply(event), self.loop).result()

    def show_outputs(self, cell_id: str, outputs: list[dict[str, Any]]) -> None:
        with self._mutex:
            first = cell_id not in self._latest
            self._latest[cell_id] = outputs
        if first:
            asyncio.run_coroutine_threadsafe(self._show(cell_id), self.loop)

    async def _apply(self, event: Event) -> None:
        async with self.document.lock:
            if isinstance(event, CellExecuted):
                with self._mutex:
                    self._latest.pop(event.cell_id, None)  # the final outputs supersede them
            await self.document.apply(event)
            if isinstance(event, RunFinished):
                await self.document.save()  # checked: a run never ends with unsaved cells
            elif isinstance(event, (CellExecuted, CellsRemoved)) or (
                isinstance(event, CellAdded) and event.cell_type == "markdown"
            ):
                await self.document.flush()  # a finished step is on disk

    async def _show(self, cell_id: str) -> None:
        async with self.document.lock:
            with self._mutex:
                outputs = self._latest.pop(cell_id, None)
            if outputs is not None:
                await self.document.show(cell_id, outputs)


class _Mirror:
    """Keeps a Y cell's outputs equal to a list of nbformat outputs, incrementally."""

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
