"""``%analyst`` inside a Jupyter server: the run happens in the notebook, after the magic's cell."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

pytest.register_assert_rewrite("server_conftest")

from server_conftest import *  # noqa: E402, F403  (the server fixtures, module-local)
from server_conftest import NB_PATH, api, asynctest, run_user_cell, wait_idle, wait_run, ydoc  # noqa: E402


@asynctest
async def test_magic_in_server_places_cells_after_its_cell(
    jp_fetch: Any, jp_serverapp: Any, live_notebook: Any
) -> None:
    kernel_id = await live_notebook()
    doc = await ydoc(jp_serverapp)
    magic = '%load_ext jupyter_analyst\n%analyst df "Which species is heaviest?" --max-steps 4'
    doc.ycells.insert(
        2,
        doc.create_ycell(
            {
                "id": "magic-cell",
                "cell_type": "code",
                "source": magic,
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
        ),
    )
    t0 = time.monotonic()
    reply = await run_user_cell(jp_serverapp, kernel_id, magic, metadata={"cellId": "magic-cell"})
    printed = "".join(o.get("text", "") for o in reply["outputs"])
    assert reply["status"] == "ok" and "analyst: run " in printed and NB_PATH in printed, reply
    # No timing check: the run executes its cells in this same kernel, so it could only
    # finish (asserted below) if the magic's cell returned without waiting for it.
    runs: list[dict[str, Any]] = []
    while not runs or runs[0]["state"] not in ("finished", "stopped", "failed"):
        assert time.monotonic() - t0 < 600, "the run did not end"  # a guard against a hang
        await asyncio.sleep(0.2)
        _, runs = await api(jp_fetch, "jupyter-analyst", "runs", expect=200)
    assert runs[0]["state"] == "finished" and runs[0]["question"] == "Which species is heaviest?", runs[0]
    ids = [c["id"] for c in doc.get()["cells"]]
    assert ids[:3] == ["user-md", "user-code", "magic-cell"]
    assert ids[3:-1] == runs[0]["cells"] and ids[-1] == "user-tail"
    assert doc.get()["cells"][2]["source"] == magic

    # %analyst --follow-up: the notebook's latest run goes on, its cells after this magic's cell
    follow = '%analyst --follow-up "And by island?" --max-steps 4'
    doc.append_cell(
        {"id": "follow-cell", "cell_type": "code", "source": follow, "metadata": {}, "outputs": []}
    )
    await wait_idle(jp_serverapp, kernel_id)
    reply = await run_user_cell(jp_serverapp, kernel_id, follow, metadata={"cellId": "follow-cell"})
    assert "analyst: run " in "".join(o.get("text", "") for o in reply["outputs"]), reply
    first = runs[0]
    _, runs = await api(jp_fetch, "jupyter-analyst", "runs", expect=200)
    second = await wait_run(jp_fetch, runs[0]["run_id"])
    assert (second["follows"], second["variable"], second["question"]) == (
        first["run_id"],
        "df",
        "And by island?",
    )
    assert second["state"] == "finished", second
    ids = [c["id"] for c in doc.get()["cells"]]
    at = ids.index("follow-cell")
    assert ids[at + 1 : at + 1 + len(second["cells"])] == second["cells"]


@asynctest
async def test_magic_after_a_rename_writes_into_its_own_notebook(
    jp_fetch: Any, jp_serverapp: Any, live_notebook: Any
) -> None:
    """The kernel's ``JPY_SESSION_NAME`` still names the old file after a rename; the run
    must go to the notebook the kernel's session names now (the server asks its sessions)."""
    kernel_id = await live_notebook()
    renamed = "work dir/sales_review.ipynb"
    # what JupyterLab does on a rename: move the file, then point the session at it
    await api(jp_fetch, "api", "contents", NB_PATH, method="PATCH", body={"path": renamed}, expect=200)
    _, sessions = await api(jp_fetch, "api", "sessions", expect=200)
    session_id = next(s["id"] for s in sessions if s["kernel"]["id"] == kernel_id)
    await api(jp_fetch, "api", "sessions", session_id, method="PATCH", body={"path": renamed}, expect=200)
    doc = await ydoc(jp_serverapp, renamed)
    magic = '%load_ext jupyter_analyst\n%analyst df "Which species is heaviest?" --max-steps 3'
    reply = await run_user_cell(jp_serverapp, kernel_id, magic)
    printed = "".join(o.get("text", "") for o in reply["outputs"])
    assert reply["status"] == "ok" and f"started on {renamed}" in printed, reply
    t0 = time.monotonic()
    runs: list[dict[str, Any]] = []
    while not runs or runs[0]["state"] not in ("finished", "stopped", "failed"):
        assert time.monotonic() - t0 < 600, "the run did not end"
        await asyncio.sleep(0.2)
        _, runs = await api(jp_fetch, "jupyter-analyst", "runs", expect=200)
    assert runs[0]["path"] == renamed and runs[0]["state"] == "finished", runs[0]
    ids = [c["id"] for c in doc.get()["cells"]]
    assert set(runs[0]["cells"]) <= set(ids)


@asynctest
async def test_a_run_for_a_kernel_without_a_notebook_session_is_a_clear_404(
    jp_fetch: Any, live_notebook: Any
) -> None:
    await live_notebook()
    code, body = await api(
        jp_fetch,
        "jupyter-analyst",
        "runs",
        method="POST",
        body={"path": NB_PATH, "variable": "df", "kernel_id": "no-such-kernel"},
    )
    assert code == 404 and "no single notebook session runs kernel no-such-kernel" in body["message"]


@asynctest
async def test_the_magics_kernel_is_never_checked_before_the_reply(
    jp_fetch: Any, jp_serverapp: Any, live_notebook: Any
) -> None:
    """The kernel that asks (the magic's) is running the asking cell, which waits for this
    reply; the server may not have seen it busy yet. Checking it then would wait for that
    cell while the cell waits for us (the magic's 30 s ran out and it analysed in-process).
    So such a request is answered at once and its run checks the kernel when it starts."""
    kernel_id = await live_notebook()
    await wait_idle(jp_serverapp, kernel_id)
    code, status = await api(
        jp_fetch,
        "jupyter-analyst",
        "runs",
        method="POST",
        body={"path": NB_PATH, "variable": "no_such_frame", "kernel_id": kernel_id},
    )
    assert code == 201, status  # an idle, ordinary request would be a 404 before the answer
    final = await wait_run(jp_fetch, status["run_id"])
    assert final["state"] == "failed" and "no_such_frame" in final["error"], final
