"""The server extension on a real Jupyter server and a real kernel, offline (baseline policy).

Authentication is required (``allow_unauthenticated_access: False``), the base URL is
non-trivial, and the notebook lives in a folder with a space in its name.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
import tornado.web
from jupyter_server.auth.decorator import authorized, ws_authenticated
from tornado.httpclient import HTTPClientError

pytest.register_assert_rewrite("server_conftest")

from server_conftest import *  # noqa: E402, F403  (the server fixtures, module-local)
from server_conftest import (  # noqa: E402
    NB_PATH,
    USER_CELLS,
    api,
    asynctest,  # noqa: E402
    run_user_cell,
    saved_notebook,
    wait_idle,
    wait_run,
    ydoc,
)

from jupyter_analyst.agent import AssistantTurn, ToolCall  # noqa: E402
from jupyter_analyst.models.select import PolicyChoice, PolicyHandle  # noqa: E402
from jupyter_analyst.notebook import META_KEY, TAG  # noqa: E402
from jupyter_analyst.server.handlers import EventsHandler, handlers  # noqa: E402
from jupyter_analyst.server.kernelio import kernel_busy  # noqa: E402

RUNS = ("jupyter-analyst", "runs")


def user_cells_of(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The user's cells as comparable dicts (everything a save would write)."""
    out = []
    for c in cells:
        if META_KEY in c.get("metadata", {}):
            continue
        c = json.loads(json.dumps(c))
        c.pop("execution_state", None)  # Y-only field
        c["metadata"].pop("trusted", None)  # transient: the contents manager adds it on load
        out.append(c)
    return out


def original_user_cells() -> list[dict[str, Any]]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.from_dict(c) for c in USER_CELLS])
    return user_cells_of(nbformat.reads(nbformat.writes(nb), as_version=4)["cells"])


async def events_of(jp_ws_fetch: Any, run_id: str, timeout: float = 300) -> list[dict[str, Any]]:
    """All frames of a run's event stream until the server closes it."""
    ws = await jp_ws_fetch(*RUNS, run_id, "events")
    frames = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await asyncio.wait_for(ws.read_message(), timeout=deadline - time.monotonic())
        if message is None:
            break
        frames.append(json.loads(message))
    ws.close()
    return frames


# --------------------------------------------------------------------------- authentication


def test_every_handler_requires_authentication_and_authorization() -> None:
    """Each HTTP method of each handler is wrapped by authenticated and authorized."""
    authenticated_code = tornado.web.authenticated(lambda self: None).__code__
    ws_code = ws_authenticated(lambda self: None).__code__
    authorized_code = authorized(lambda self: None).__code__
    checked = 0
    for _, cls in handlers():
        for name in ("get", "post", "put", "patch", "delete", "head"):
            method = cls.__dict__.get(name)
            if method is None:
                continue
            outer = ws_code if cls is EventsHandler else authenticated_code
            assert method.__code__ is outer, f"{cls.__name__}.{name} is not authenticated"
            inner = method.__wrapped__
            assert inner.__code__ is authorized_code, f"{cls.__name__}.{name} is not authorized"
            assert getattr(cls, "auth_resource", None) == "jupyter_analyst"
            checked += 1
    assert checked == 10  # discard and restore included


@asynctest
async def test_unauthenticated_requests_are_refused(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    no_auth = {"Authorization": ""}
    calls = [
        ("GET", ("jupyter-analyst", "dataframes"), {"path": NB_PATH}),
        ("GET", ("jupyter-analyst", "profiles"), None),
        ("GET", RUNS, None),
        ("POST", RUNS, None),
        ("GET", (*RUNS, "abc123"), None),
        ("POST", (*RUNS, "abc123", "stop"), None),
        ("POST", (*RUNS, "abc123", "export"), None),
    ]
    for method, parts, params in calls:
        for headers in (no_auth, {"Authorization": "token wrong"}):
            r = await jp_fetch(
                *parts,
                method=method,
                params=params,
                headers=dict(headers),
                raise_error=False,
                body="{}" if method == "POST" else None,
            )
            assert r.code in (401, 403), (method, parts, r.code)
    with pytest.raises(HTTPClientError) as err:
        await jp_ws_fetch(*RUNS, "abc123", "events", headers=dict(no_auth))
    assert err.value.code in (401, 403)


# --------------------------------------------------------------------------- endpoints


@asynctest
async def test_dataframes_profiles_and_refusals(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, live_notebook: Any
) -> None:
    kernel_id = await live_notebook()
    before = await run_user_cell(jp_serverapp, kernel_id, "number")
    _, reply = await api(jp_fetch, "jupyter-analyst", "dataframes", params={"path": NB_PATH}, expect=200)
    assert reply["kernel_id"] == kernel_id and reply["path"] == NB_PATH
    frames = {f["name"]: f for f in reply["dataframes"]}
    assert set(frames) == {"df", "empty"}  # not _hidden, not number
    assert frames["df"]["shape"] == [344, 8] and frames["df"]["columns"][0] == "species"
    assert frames["df"]["memory_bytes"] > 0
    # Neither the execution count nor the namespace moved.
    after = await run_user_cell(jp_serverapp, kernel_id, "[n for n in dir() if 'jupyter_analyst' in n]")
    assert after["execution_count"] == before["execution_count"] + 1
    assert after["outputs"][0]["data"]["text/plain"] == "[]"

    await api(jp_fetch, "jupyter-analyst", "dataframes", expect=400)
    await api(jp_fetch, "jupyter-analyst", "dataframes", params={"path": "nope.ipynb"}, expect=404)

    _, profiles = await api(jp_fetch, "jupyter-analyst", "profiles", expect=200)
    assert profiles["default"] == "baseline"
    assert {"baseline", "qwen3.5-9b-4bit"} <= {p["name"] for p in profiles["profiles"]}

    nbformat.write(nbformat.v4.new_notebook(), jp_root_dir / "no kernel.ipynb")
    refusals = [
        ("not json", 400),
        ({"path": NB_PATH}, 400),
        ({"path": NB_PATH, "variable": "df", "surprise": 1}, 400),
        ({"path": NB_PATH, "variable": "df", "max_steps": 0}, 400),
        ({"path": NB_PATH, "variable": "df", "profile": "no-such-profile"}, 400),
        ({"path": NB_PATH, "variable": "number"}, 400),
        ({"path": NB_PATH, "variable": "empty"}, 400),
        ({"path": "missing.ipynb", "variable": "df"}, 404),
        ({"path": "no kernel.ipynb", "variable": "df"}, 404),
        ({"path": NB_PATH, "variable": "nope"}, 404),
    ]
    for body, status in refusals:
        await wait_idle(jp_serverapp, kernel_id)  # after the previous check's silent cell
        code, error = await api(jp_fetch, *RUNS, method="POST", body=body)
        assert code == status, (body, code, error)
        assert error["message"] and "reason" in error
    for parts, method in (
        ((*RUNS, "abc123"), "GET"),
        ((*RUNS, "abc123", "stop"), "POST"),
        ((*RUNS, "abc123", "export"), "POST"),
    ):
        await api(jp_fetch, *parts, method=method, expect=404)
    with pytest.raises(HTTPClientError) as err:
        await jp_ws_fetch(*RUNS, "abc123", "events")
    assert err.value.code == 404
    _, runs = await api(jp_fetch, *RUNS, expect=200)
    assert runs == []


@asynctest
async def test_full_run_in_live_notebook(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, live_notebook: Any
) -> None:
    await live_notebook()
    on_disk = json.loads((jp_root_dir / NB_PATH).read_text())["cells"]
    t0 = time.monotonic()
    _, status = await api(
        jp_fetch,
        *RUNS,
        method="POST",
        expect=201,
        body={"path": NB_PATH, "variable": "df", "question": "How does body mass differ by species?"},
    )
    run_id = status["run_id"]
    assert status["state"] in ("starting", "running")
    await api(jp_fetch, *RUNS, method="POST", body={"path": NB_PATH, "variable": "df"}, expect=409)
    doc = await ydoc(jp_serverapp)
    while not any(META_KEY in (c.get("metadata") or {}) for c in doc.get()["cells"]):
        assert time.monotonic() - t0 < 300, "no agent cell appeared"  # a guard against a hang
        await asyncio.sleep(0.02)
    first_cell = time.monotonic() - t0
    frames = await events_of(jp_ws_fetch, run_id)
    final = await wait_run(jp_fetch, run_id)
    print(
        f"\nPOST -> first agent cell in the document: {first_cell:.2f}s; run: {time.monotonic() - t0:.1f}s, "
        f"{final['step']} steps"
    )
    assert final["state"] == "finished" and final["stop_reason"] == "final_answer", final
    assert final["answer"] and final["ended"] and final["error"] is None

    kinds = [f["type"] for f in frames]
    assert kinds[0] == "status" and kinds[-1] == "status" and "run_finished" in kinds
    statuses = [f["status"] for f in frames if f["type"] == "status"]
    assert statuses[0]["question"] == "How does body mass differ by species?" == final["question"]
    assert len(statuses) > 3 and not any("question" in s for s in statuses[1:])  # said once
    assert {"step_started", "model_replied", "cell_added", "cell_executed"} <= set(kinds)
    added = [f["cell_id"] for f in frames if f["type"] == "cell_added"]
    assert added == final["cells"]
    assert frames[-1]["status"]["state"] == "finished"
    # A late subscriber gets the same replay.
    assert [f["type"] for f in await events_of(jp_ws_fetch, run_id)] == kinds

    cells = doc.get()["cells"]
    assert user_cells_of(cells) == original_user_cells()
    agent = [c for c in cells if META_KEY in c["metadata"]]
    assert [c["id"] for c in agent] == final["cells"]
    assert all(TAG in c["metadata"]["tags"] and c["metadata"][META_KEY]["run_id"] == run_id for c in agent)
    assert agent[-1]["metadata"][META_KEY]["role"] == "conclusions"
    code = [c for c in agent if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code)
    assert sum("image/png" in o.get("data", {}) for c in code for o in c["outputs"]) >= 2
    assert not any(
        k.startswith("application/vnd.jupyter-analyst")
        for c in code
        for o in c["outputs"]
        for k in o.get("data", {})
    )
    assert [c["id"] for c in cells[:3]] == ["user-md", "user-code", "user-tail"]  # appended after the user's

    saved = await saved_notebook(jp_root_dir / NB_PATH, lambda nb: len(nb.cells) == len(cells))
    nbformat.validate(saved)
    assert saved.cells[-1].metadata[META_KEY]["role"] == "conclusions"
    assert user_cells_of(saved.cells) == original_user_cells()
    raw = json.loads((jp_root_dir / NB_PATH).read_text())["cells"]
    assert [c for c in raw if META_KEY not in c["metadata"]] == on_disk  # the user's cells, as stored

    await api(jp_fetch, *RUNS, run_id, "stop", method="POST", expect=409)
    _, exported = await api(jp_fetch, *RUNS, run_id, "export", method="POST", expect=201)
    assert exported == {
        "ipynb": "work dir/analysis-analysis-report.ipynb",
        "html": "work dir/analysis-analysis-report.html",
    }
    report = nbformat.read(jp_root_dir / exported["ipynb"], as_version=4)
    nbformat.validate(report)
    assert report.cells[0].metadata[META_KEY]["role"] == "header"
    assert "body mass" in report.cells[0].source and "`df`" in report.cells[0].source
    assert report.cells[0].source.startswith("# Analysis report:")  # not a second "Analysis of `df`"
    # the user's cells that made `df` come first, so the report re-runs on its own
    assert [c.cell_type for c in report.cells[1:4]] == ["markdown", "code", "code"]
    assert [c.source for c in report.cells[2:4]] == [USER_CELLS[1]["source"], "number + 1"]
    assert [c.id for c in report.cells[4:]] == final["cells"]
    html = (jp_root_dir / exported["html"]).read_text()
    assert "<title>Analysis report: analysis: How does body mass differ by species?</title>" in html
    from nbclient import NotebookClient

    rerun = nbformat.read(jp_root_dir / exported["ipynb"], as_version=4)
    await NotebookClient(
        rerun, timeout=120, resources={"metadata": {"path": str(jp_root_dir / "work dir")}}
    ).async_execute()
    assert not [
        o for c in rerun.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    _, runs = await api(jp_fetch, *RUNS, expect=200)
    assert [r["run_id"] for r in runs] == [run_id]
    # The policy started for the run is kept for the next one, and closed when the server stops.
    app = jp_serverapp.web_app.settings["jupyter_analyst"]
    assert app.pool.started == [final["policy"]] and app._reaper is not None  # the idle reaper runs
    await app.stop_extension()
    assert app.pool.started == []


@asynctest
async def test_dataframes_during_a_run_list_the_runs_frame_without_blaming_the_kernel(
    jp_fetch: Any,
    jp_serverapp: Any,
    analyst_app: Any,
    live_notebook: Any,
    tmp_path: Path,
) -> None:
    """After a reload mid-run the sidebar lists frames while the kernel is busy with the
    analyst's own cell: the reply names the run and its frame, not "the kernel is busy"."""
    kernel_id = await live_notebook()
    script = tmp_path / "slow.json"
    script.write_text(json.dumps([{"code": "import time\ntime.sleep(30)"}, {"final_answer": "done"}]))
    analyst_app.replay = str(script)
    _, status = await api(
        jp_fetch, *RUNS, method="POST", expect=201, body={"path": NB_PATH, "variable": "df"}
    )
    run_id = status["run_id"]
    doc = await ydoc(jp_serverapp)
    deadline = time.monotonic() + 120
    while not any(c.get("execution_state") == "running" for c in doc.ycells):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    _, reply = await api(jp_fetch, "jupyter-analyst", "dataframes", params={"path": NB_PATH}, expect=200)
    assert reply["run_id"] == run_id
    assert [(f["name"], f["shape"]) for f in reply["dataframes"]] == [("df", [344, 8])]
    assert reply["dataframes"][0]["columns"][0] == "species"
    await api(jp_fetch, *RUNS, run_id, "stop", method="POST", expect=202)
    await wait_run(jp_fetch, run_id)
    await wait_idle(jp_serverapp, kernel_id)  # the interrupt and the run's teardown
    # ended: the kernel is asked again, and the user's frames are all there
    _, reply = await api(jp_fetch, "jupyter-analyst", "dataframes", params={"path": NB_PATH}, expect=200)
    assert reply["run_id"] is None and "empty" in {f["name"] for f in reply["dataframes"]}


@asynctest
async def test_stop_a_running_cell(
    jp_fetch: Any,
    jp_ws_fetch: Any,
    jp_serverapp: Any,
    jp_root_dir: Path,
    analyst_app: Any,
    live_notebook: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stop during an agent cell interrupts that cell (and only the kernel, never a restart)."""
    kernel_id = await live_notebook()
    interrupts = count_interrupts(jp_serverapp, monkeypatch)
    script = tmp_path / "slow.json"
    script.write_text(
        json.dumps(
            [
                {"markdown": "Counting slowly."},
                {"code": "import time\nfor i in range(600):\n    time.sleep(0.1)"},
                {"final_answer": "never reached"},
            ]
        )
    )
    analyst_app.replay = str(script)
    _, status = await api(
        jp_fetch, *RUNS, method="POST", expect=201, body={"path": NB_PATH, "variable": "df"}
    )
    run_id = status["run_id"]
    await api(jp_fetch, *RUNS, run_id, "export", method="POST", expect=409)
    doc = await ydoc(jp_serverapp)
    deadline = time.monotonic() + 300  # a guard against a hang
    while not any(c.get("execution_state") == "running" for c in doc.ycells):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    _, stopped = await api(jp_fetch, *RUNS, run_id, "stop", method="POST", expect=202)
    print(f"\nstop latency: {time.monotonic() - t0:.2f}s (reply state {stopped['state']})")
    final = await wait_run(jp_fetch, run_id)
    assert final["state"] == "stopped" and final["stop_reason"] == "stopped"
    assert interrupts == [kernel_id]  # the agent's executing cell, once
    deadline = time.monotonic() + 60  # the interrupted cell is never left at [*]
    while any(c.get("execution_state") == "running" for c in doc.ycells):
        assert time.monotonic() < deadline, "a cell was left running"
        await asyncio.sleep(0.05)
    cells = doc.get()["cells"]
    assert cells[-1]["metadata"][META_KEY]["role"] == "note" and "stopped" in cells[-1]["source"]
    assert user_cells_of(cells) == original_user_cells()
    # a stop is not an error: the interrupted cell keeps no traceback, the run counts no error
    loop_cell = next(c for c in cells if "range(600)" in str(c["source"]))
    assert not [o for o in loop_cell["outputs"] if o["output_type"] == "error"], loop_cell["outputs"]
    frames = await events_of(jp_ws_fetch, run_id, timeout=120)
    assert frames[-1]["status"]["state"] == "stopped"
    executed = [f for f in frames if f["type"] == "cell_executed"]
    assert executed[-1]["status"] == "stopped" and not executed[-1]["error_name"]
    finished = next(f for f in frames if f["type"] == "run_finished")
    assert finished["errors"] == 0 and finished["reason"] == "stopped"
    # Interrupted, not restarted: the user's variables are still there.
    reply = await run_user_cell(jp_serverapp, kernel_id, "df.shape")
    assert reply["status"] == "ok" and "(344, 8)" in reply["outputs"][0]["data"]["text/plain"]
    await api(jp_fetch, *RUNS, run_id, "stop", method="POST", expect=409)
    saved = await saved_notebook(jp_root_dir / NB_PATH, lambda nb: len(nb.cells) == len(cells))
    assert user_cells_of(saved.cells) == original_user_cells()


@asynctest
async def test_one_run_per_kernel_across_notebooks(
    jp_fetch: Any,
    jp_serverapp: Any,
    jp_root_dir: Path,
    analyst_app: Any,
    live_notebook: Any,
    tmp_path: Path,
) -> None:
    """Two notebooks sharing one kernel share one namespace: while one runs, the other gets 409."""
    kernel_id = await live_notebook()
    second = "work dir/second.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), jp_root_dir / second)
    _, session = await api(
        jp_fetch,
        "api",
        "sessions",
        method="POST",
        expect=201,
        body={"path": second, "name": "second.ipynb", "type": "notebook", "kernel": {"id": kernel_id}},
    )
    assert session["kernel"]["id"] == kernel_id
    script = tmp_path / "slow.json"
    script.write_text(
        json.dumps(
            [{"code": "import time\nfor i in range(600):\n    time.sleep(0.1)"}, {"final_answer": "-"}]
        )
    )
    analyst_app.replay = str(script)
    _, first = await api(jp_fetch, *RUNS, method="POST", expect=201, body={"path": NB_PATH, "variable": "df"})
    _, error = await api(jp_fetch, *RUNS, method="POST", expect=409, body={"path": second, "variable": "df"})
    assert error["message"] == (
        f"the kernel of {second} is shared with {NB_PATH}, which has a run in progress; "
        "one run per kernel: wait for it to end or stop it"
    )
    _, runs = await api(jp_fetch, *RUNS, expect=200)
    assert [r["run_id"] for r in runs] == [first["run_id"]]  # the refused run left no trace
    await api(jp_fetch, *RUNS, first["run_id"], "stop", method="POST", expect=202)
    assert (await wait_run(jp_fetch, first["run_id"]))["state"] == "stopped"
    quick = tmp_path / "quick.json"
    quick.write_text(json.dumps([{"code": "df.shape"}, {"final_answer": "344 rows."}]))
    analyst_app.replay = str(quick)
    _, other = await api(jp_fetch, *RUNS, method="POST", expect=201, body={"path": second, "variable": "df"})
    final = await wait_run(jp_fetch, other["run_id"])
    assert final["state"] == "finished" and final["path"] == second, final


@asynctest
async def test_size_limits_and_ended_runs_histories(
    jp_fetch: Any, jp_ws_fetch: Any, analyst_app: Any, live_notebook: Any, tmp_path: Path
) -> None:
    """Long questions and names are refused; an ended run beyond the newest
    ``keep_run_events`` replays only its result, and still exports."""
    await live_notebook()
    for body, field in (
        ({"path": NB_PATH, "variable": "df", "question": "x" * 4001}, "question"),
        ({"path": NB_PATH, "variable": "d" * 201}, "variable"),
        ({"path": "a/" * 2100 + "n.ipynb", "variable": "df"}, "path"),
    ):
        _, error = await api(jp_fetch, *RUNS, method="POST", body=body, expect=400)
        assert error["message"].startswith(f"bad run request: {field}: String should have at most")
        assert len(error["message"]) < 200  # the refused text is not echoed back
    _, runs = await api(jp_fetch, *RUNS, expect=200)
    assert runs == []

    analyst_app.keep_run_events = 1
    quick = tmp_path / "quick.json"
    quick.write_text(json.dumps([{"code": "df.shape"}, {"final_answer": "344 rows."}]))
    analyst_app.replay = str(quick)
    question = "é" * 4000  # characters, not bytes
    ids = []
    for _ in range(3):
        _, status = await api(
            jp_fetch,
            *RUNS,
            method="POST",
            expect=201,
            body={"path": NB_PATH, "variable": "df", "question": question},
        )
        assert status["question"] == question
        ids.append(status["run_id"])
        assert (await wait_run(jp_fetch, status["run_id"]))["state"] == "finished"
    oldest, kept, newest = [await events_of(jp_ws_fetch, run_id) for run_id in ids]
    assert [f["type"] for f in oldest] == ["run_finished", "status"]  # compacted at the third start
    assert oldest[0]["answer"] == "344 rows." and oldest[1]["status"]["question"] == question
    assert oldest[1]["status"]["state"] == "finished" and oldest[1]["status"]["cells"]
    for frames in (kept, newest):  # the newest ended run (and the active one) keep every event
        assert {"step_started", "cell_added", "cell_executed", "run_finished"} <= {f["type"] for f in frames}
        statuses = [f["status"] for f in frames if f["type"] == "status"]
        assert statuses[0]["question"] == question and not any("question" in s for s in statuses[1:])
    _, status = await api(jp_fetch, *RUNS, ids[0], expect=200)
    assert status["question"] == question and status["answer"] == "344 rows."
    await api(jp_fetch, *RUNS, ids[0], "export", method="POST", expect=201)


def count_interrupts(serverapp: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the kernels interrupted through the server's kernel manager from now on."""
    kernels = serverapp.kernel_manager
    calls: list[str] = []
    interrupt = kernels.interrupt_kernel

    async def counting(kernel_id: str) -> Any:
        calls.append(kernel_id)
        return await interrupt(kernel_id)

    monkeypatch.setattr(kernels, "interrupt_kernel", counting)
    return calls


HOLD_CODE = """\
import os, time
user_before = 1
print('the user cell started', flush=True)
_deadline = time.monotonic() + 300  # a guard against a hang
while not os.path.exists({flag!r}) and time.monotonic() < _deadline:
    time.sleep(0.05)
user_after = 2
print('the user cell ended')
"""
"""A user's cell that runs until the test creates ``flag``: no race on how long it sleeps."""


async def hold_user_cell(serverapp: Any, kernel_id: str, flag: Path) -> asyncio.Task[dict[str, Any]]:
    """Start the user's holding cell; return once the kernel runs it and the server sees it busy."""
    started = asyncio.Event()
    task = asyncio.ensure_future(
        run_user_cell(serverapp, kernel_id, HOLD_CODE.format(flag=str(flag)), started=started)
    )
    await asyncio.wait_for(started.wait(), timeout=300)  # a guard against a hang
    deadline = time.monotonic() + 60
    while not kernel_busy(serverapp.kernel_manager, kernel_id):
        assert time.monotonic() < deadline, "the server never saw the kernel busy"
        await asyncio.sleep(0.02)
    return task


async def assert_user_cell_finished_normally(
    serverapp: Any, kernel_id: str, task: asyncio.Task[dict[str, Any]], flag: Path
) -> None:
    """The held cell was still running; once released it ends ok, its variables intact."""
    assert not task.done(), "the user's cell ended before it was released"
    flag.touch()
    reply = await asyncio.wait_for(task, timeout=300)
    assert reply["status"] == "ok", reply  # not KeyboardInterrupt
    text = "".join(o.get("text", "") for o in reply["outputs"])
    assert "the user cell ended" in text and "KeyboardInterrupt" not in text
    check = await run_user_cell(serverapp, kernel_id, "user_before + user_after, df.shape")
    assert check["status"] == "ok", check
    assert check["outputs"][0]["data"]["text/plain"] == "(3, (344, 8))"


@asynctest
async def test_stop_of_a_run_waiting_for_the_users_cell_never_interrupts_it(
    jp_fetch: Any, jp_serverapp: Any, live_notebook: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's cell runs; a run is queued behind it (``starting``); Stop cancels the run
    and the user's cell runs on to its normal end."""
    kernel_id = await live_notebook()
    interrupts = count_interrupts(jp_serverapp, monkeypatch)
    flag = tmp_path / "release-user-cell"
    user = await hold_user_cell(jp_serverapp, kernel_id, flag)
    _, status = await api(
        jp_fetch, *RUNS, method="POST", expect=201, body={"path": NB_PATH, "variable": "df"}
    )
    assert status["state"] == "starting"  # the busy kernel is checked when the run starts
    assert status["waiting"] == "waiting for your running cell to finish"  # not a silent step 0
    await asyncio.sleep(0.5)  # the run's thread is now waiting for the kernel
    await api(jp_fetch, *RUNS, status["run_id"], "stop", method="POST", expect=202)
    final = await wait_run(jp_fetch, status["run_id"])
    assert final["state"] == "stopped" and final["stop_reason"] == "stopped", final
    assert final["waiting"] is None
    assert interrupts == []
    await assert_user_cell_finished_normally(jp_serverapp, kernel_id, user, flag)
    assert interrupts == []
    doc = await ydoc(jp_serverapp)
    cells = doc.get()["cells"]
    assert cells[-1]["metadata"][META_KEY]["role"] == "note" and "stopped" in cells[-1]["source"]
    assert user_cells_of(cells) == original_user_cells()


class BlockingPolicy:
    """A model that takes as long as the test wants: it answers once ``release`` is set."""

    name = "blocking test policy"

    def __init__(self) -> None:
        self.called = threading.Event()
        self.release = threading.Event()

    def __call__(self, messages: list[Any], tools: list[Any]) -> AssistantTurn:
        self.called.set()
        self.release.wait(timeout=300)  # a guard against a hang
        return AssistantTurn(tool_calls=[ToolCall("final_answer", {"answer": "too late"})])


@asynctest
async def test_stop_while_the_model_thinks_and_the_user_runs_a_cell(
    jp_fetch: Any,
    jp_serverapp: Any,
    analyst_app: Any,
    live_notebook: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agent waits on the model while the user runs a cell of their own: Stop ends the
    run and leaves the user's cell alone."""
    kernel_id = await live_notebook()
    policy = BlockingPolicy()

    def factory(choice: PolicyChoice) -> PolicyHandle:
        return PolicyHandle(policy, policy.name)

    monkeypatch.setattr(analyst_app.pool, "factory", factory)
    interrupts = count_interrupts(jp_serverapp, monkeypatch)
    try:
        _, status = await api(
            jp_fetch, *RUNS, method="POST", expect=201, body={"path": NB_PATH, "variable": "df"}
        )
        assert await asyncio.get_running_loop().run_in_executor(None, policy.called.wait, 300)
        flag = tmp_path / "release-user-cell"
        user = await hold_user_cell(jp_serverapp, kernel_id, flag)
        await api(jp_fetch, *RUNS, status["run_id"], "stop", method="POST", expect=202)
        final = await wait_run(jp_fetch, status["run_id"])
        assert final["state"] == "stopped" and final["stop_reason"] == "stopped", final
        assert final["policy"] == policy.name and final["answer"] is None
        assert interrupts == []
        await assert_user_cell_finished_normally(jp_serverapp, kernel_id, user, flag)
        assert interrupts == []
    finally:
        policy.release.set()  # the model's late answer adds no cell (the run has ended)
    doc = await ydoc(jp_serverapp)
    cells = doc.get()["cells"]
    assert cells[-1]["metadata"][META_KEY]["role"] == "note" and "stopped" in cells[-1]["source"]
    assert user_cells_of(cells) == original_user_cells()


@asynctest
async def test_user_edit_of_an_agent_cell_is_kept(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, analyst_app: Any, live_notebook: Any, tmp_path: Path
) -> None:
    await live_notebook()
    agent_code = "import time\ntime.sleep(1.5)\nprint('agent output')"
    script = tmp_path / "edit.json"
    script.write_text(
        json.dumps([{"code": agent_code}, {"final_answer": "Done: the cell printed its output."}])
    )
    analyst_app.replay = str(script)
    _, status = await api(
        jp_fetch, *RUNS, method="POST", expect=201, body={"path": NB_PATH, "variable": "df"}
    )
    doc = await ydoc(jp_serverapp)
    deadline = time.monotonic() + 300  # a guard against a hang
    while True:
        mine = [c for c in doc.ycells if META_KEY in c["metadata"].to_py()]
        if mine:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    edited_id = mine[0]["id"]
    doc.set_cell(LiveIndex.of(doc, edited_id), source="# the user's version\nprint('mine')")
    final = await wait_run(jp_fetch, status["run_id"])
    assert final["state"] == "finished", final
    cells = doc.get()["cells"]
    ids = [c["id"] for c in cells]
    edited = cells[ids.index(edited_id)]
    assert edited["source"] == "# the user's version\nprint('mine')"
    assert edited.get("execution_count") is None and "status" not in edited["metadata"][META_KEY]
    states = {str(c["id"]): c.get("execution_state") for c in doc.ycells}  # a Y-only field
    assert states[edited_id] == "idle"  # never a [*] left on the user's cell
    copy = cells[ids.index(edited_id) + 1]
    assert copy["source"] == agent_code and META_KEY in copy["metadata"]
    assert "agent output" in "".join(o.get("text", "") for o in copy["outputs"])
    assert states[copy["id"]] == "idle"
    assert user_cells_of(cells) == original_user_cells()
    # the step list learns that the step's cell is now the copy (it follows it there)
    executed = [f for f in await events_of(jp_ws_fetch, status["run_id"]) if f["type"] == "cell_executed"]
    assert [(f["cell_id"], f.get("copy_of")) for f in executed] == [(copy["id"], edited_id)]


class LiveIndex:
    @staticmethod
    def of(doc: Any, cell_id: str) -> int:
        return next(i for i, c in enumerate(doc.ycells) if c["id"] == cell_id)


@asynctest
async def test_model_error_timeout_and_dead_kernel(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, analyst_app: Any, live_notebook: Any, tmp_path: Path
) -> None:
    """A backend error and a dead kernel fail the run readably; a slow cell is interrupted."""
    kernel_id = await live_notebook()
    analyst_app.profile = ""
    analyst_app.base_url = "http://127.0.0.1:9/v1"  # nothing listens: the backend is unreachable
    _, status = await api(
        jp_fetch, *RUNS, method="POST", expect=201, body={"path": NB_PATH, "variable": "df"}
    )
    final = await wait_run(jp_fetch, status["run_id"])
    assert final["state"] == "failed" and final["stop_reason"] == "model_error", final
    assert "127.0.0.1:9" in final["error"]

    analyst_app.base_url = ""
    # A cell over the per-cell timeout is interrupted; the model sees it and the run goes on.
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps([{"code": "import time\ntime.sleep(60)"}, {"final_answer": "It timed out."}]))
    analyst_app.replay, analyst_app.cell_timeout = str(slow), 1.0
    _, status = await api(
        jp_fetch, *RUNS, method="POST", expect=201, body={"path": NB_PATH, "variable": "df"}
    )
    frames = await events_of(jp_ws_fetch, status["run_id"], timeout=300)
    executed = [f for f in frames if f["type"] == "cell_executed"]
    assert executed[0]["status"] == "timeout" and "exceeded 1s" in executed[0]["error_value"]
    assert "interrupted" in executed[0]["error_value"]  # not left to the 60 s sleep
    assert frames[-1]["status"]["state"] == "finished"
    reply = await run_user_cell(jp_serverapp, kernel_id, "df.shape")  # interrupted, not restarted
    assert reply["status"] == "ok"

    script = tmp_path / "die.json"
    script.write_text(json.dumps([{"code": "import os\nos._exit(1)"}, {"final_answer": "unreachable"}]))
    analyst_app.replay = str(script)
    _, status = await api(
        jp_fetch, *RUNS, method="POST", expect=201, body={"path": NB_PATH, "variable": "df"}
    )
    final = await wait_run(jp_fetch, status["run_id"], timeout=300)
    assert final["state"] == "failed" and final["stop_reason"] == "kernel_died", final
    assert "kernel died" in final["error"]
    doc = await ydoc(jp_serverapp)
    assert "kernel died" in doc.get()["cells"][-1]["source"]
