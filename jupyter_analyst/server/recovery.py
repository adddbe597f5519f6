"""Runs of earlier servers, read back from their journals after a restart.

``GET runs`` survives a restart: each journal becomes an ended run. One without an end
record belongs to a run the server never finished (it crashed or was killed): it shows
as ``interrupted``, and its notebook gets one note cell saying where it stopped.
"""

from __future__ import annotations

import asyncio
import json

import nbformat

from ..models.select import PolicyChoice
from ..notebook.writer import META_KEY, agent_metadata
from .journal import JournalRecord, RunJournal, read_journals
from .runs import Run, RunManager, maybe_await, now


async def recover(manager: RunManager) -> None:
    """List the runs of earlier servers from their journals (GET runs survives a restart).

    A journal without an end record belongs to a run the server never finished: it
    crashed or was killed. That run shows as ``interrupted``, and its notebook gets a
    note cell after the run's last cell saying where it stopped (once: the journal
    then records the end).
    """
    folder = manager.settings.journal_dir
    if folder is None:
        return
    records = await asyncio.get_running_loop().run_in_executor(None, read_journals, folder)
    for record in records:
        if record.run_id in manager.runs:
            continue
        status = dict((record.end or {}).get("status") or record.start["status"])
        run = Run(
            run_id=record.run_id,
            path=str(status.get("path") or ""),
            variable=str(status.get("variable") or ""),
            question=status.get("question"),
            max_steps=int(status.get("max_steps") or 0),
            choice=PolicyChoice(),
            policy=str(status.get("policy") or ""),
            kernel_id=str(record.start.get("kernel_id") or ""),
            state=status.get("state") or "failed",
            step=int(status.get("step") or 0),
            started=str(status.get("started") or ""),
            ended=status.get("ended"),
            stop_reason=status.get("stop_reason"),
            answer=status.get("answer"),
            error=status.get("error"),
            recorded_cells=[str(c) for c in status.get("cells") or record.cells],
            closed=True,
            follows=status.get("follows"),
            created=next(
                (list(f.get("created") or []) for f in record.frames if f.get("type") == "run_finished"),
                [],
            ),
        )
        if record.end is None:
            await _interrupted(manager, run, record)
        run.frames = [json.dumps(f, default=str) for f in record.frames]
        run.emit_status()
        run.done.set()
        manager.runs[run.run_id] = run
    manager.compact_ended()


async def _interrupted(manager: RunManager, run: Run, record: JournalRecord) -> None:
    """Mark a run the server never finished, note it in its notebook, end its journal."""
    step = max(run.step, record.last_step)
    run.state, run.ended, run.step = "interrupted", now(), step
    run.error = f"the server stopped while the run was in progress (at step {step})"
    file_id = record.start.get("file_id")
    path = (
        manager.serverapp.web_app.settings["file_id_manager"].get_path(file_id) if file_id else None
    ) or run.path
    run.path = path
    noted = ""
    try:
        noted = await _note_interrupted(manager, run, path, step)
    except Exception as exc:
        manager.log.warning(
            "jupyter-analyst: could not note the interrupted run %s in %s: %s", run.run_id, path, exc
        )
    if noted:
        run.recorded_cells.append(noted)
    RunJournal(record.path.parent, run.run_id).end(run.status().model_dump(mode="json"), noted=bool(noted))


async def _note_interrupted(manager: RunManager, run: Run, path: str, step: int) -> str:
    """Put the note after the run's last cell in the notebook file; return its id."""
    cm = manager.serverapp.contents_manager
    model = await maybe_await(cm.get(path, content=True, type="notebook"))
    nb = nbformat.from_dict(model["content"])
    mine = [
        i
        for i, c in enumerate(nb.cells)
        if (c.get("metadata", {}).get(META_KEY) or {}).get("run_id") == run.run_id
    ]
    text = (
        f"*Run interrupted: the server stopped (it crashed or was killed) while the run was in "
        f"progress, at step {step}. Each step above was saved when it finished; the analyst's "
        "conclusions were never written.*"
    )
    note = nbformat.v4.new_markdown_cell(text, metadata=agent_metadata(run.run_id, step, "note"))
    nb.cells.insert(mine[-1] + 1 if mine else len(nb.cells), note)
    await maybe_await(cm.save({"type": "notebook", "format": "json", "content": nb}, path))
    return str(note.id)
