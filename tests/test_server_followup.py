"""After a run, on a real server and kernel: a follow-up, discard, and its undo."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("server_conftest")

from server_conftest import *  # noqa: E402, F403  (the server fixtures, module-local)
from server_conftest import (  # noqa: E402
    NB_PATH,
    api,
    asynctest,
    run_user_cell,
    saved_notebook,
    wait_idle,
    wait_run,
    ydoc,
)

from jupyter_analyst.notebook import META_KEY  # noqa: E402

RUNS = ("jupyter-analyst", "runs")


def run_of(cell: dict[str, Any]) -> str | None:
    return (cell.get("metadata", {}).get(META_KEY) or {}).get("run_id")


async def finished_frame(jp_ws_fetch: Any, run_id: str) -> dict[str, Any]:
    ws = await jp_ws_fetch(*RUNS, run_id, "events")
    frames = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        message = await asyncio.wait_for(ws.read_message(), timeout=deadline - time.monotonic())
        if message is None:
            break
        frames.append(json.loads(message))
    ws.close()
    return next(f for f in frames if f["type"] == "run_finished")


async def kernel_has(jp_serverapp: Any, kernel_id: str, *names: str) -> list[bool]:
    await wait_idle(jp_serverapp, kernel_id)
    reply = await run_user_cell(jp_serverapp, kernel_id, f"print([n in globals() for n in {list(names)!r}])")
    printed = "".join(o.get("text", "") for o in reply["outputs"]).strip()
    result: list[bool] = json.loads(printed.replace("True", "true").replace("False", "false"))
    return result


@asynctest
async def test_follow_up_then_discard_and_restore(
    jp_fetch: Any,
    jp_ws_fetch: Any,
    jp_serverapp: Any,
    jp_root_dir: Path,
    analyst_app: Any,
    live_notebook: Any,
    tmp_path: Path,
) -> None:
    kernel_id = await live_notebook()
    first = tmp_path / "first.json"
    first.write_text(
        json.dumps(
            [
                {"code": "by_species = df.groupby('species')['body_mass_g'].mean()\nprint(4242)"},
                {"final_answer": "The marker printed is 4242."},
            ]
        )
    )
    analyst_app.replay = str(first)
    _, a = await api(jp_fetch, *RUNS, method="POST", expect=201, body={"path": NB_PATH, "variable": "df"})
    a_final = await wait_run(jp_fetch, a["run_id"])
    assert a_final["state"] == "finished", a_final
    doc = await ydoc(jp_serverapp)
    doc.append_cell(
        {"id": "user-after", "cell_type": "code", "source": "1 + 1", "metadata": {}, "outputs": []}
    )
    await wait_idle(jp_serverapp, kernel_id)

    # the follow-up: no variable (the earlier run's), the earlier names may be rebound, the
    # earlier conclusions may be quoted, and its cells go right after the earlier run's
    second = tmp_path / "second.json"
    second.write_text(
        json.dumps(
            [
                {
                    "code": "by_species = df.groupby('island').size()\n"
                    "by_island = df.groupby('island')['flipper_length_mm'].mean()\nprint('ok')"
                },
                {"final_answer": "Before, the marker was 4242; now the islands are compared."},
            ]
        )
    )
    analyst_app.replay = str(second)
    code, refused = await api(
        jp_fetch, *RUNS, method="POST", body={"path": NB_PATH, "follow_up": "latest", "variable": "empty"}
    )
    assert code == 400 and "its earlier run's frame `df`" in refused["message"], refused
    await api(jp_fetch, *RUNS, method="POST", body={"path": NB_PATH, "follow_up": "nope"}, expect=404)
    await api(jp_fetch, *RUNS, method="POST", body={"path": NB_PATH}, expect=400)  # neither
    _, b = await api(
        jp_fetch,
        *RUNS,
        method="POST",
        expect=201,
        body={"path": NB_PATH, "follow_up": a["run_id"], "question": "Now by island?"},
    )
    assert (b["follows"], b["variable"]) == (a["run_id"], "df")
    b_final = await wait_run(jp_fetch, b["run_id"])
    assert b_final["state"] == "finished", b_final
    finished = await finished_frame(jp_ws_fetch, b["run_id"])
    assert finished["grounding_returns"] == 0, finished  # 4242 came from the earlier run
    assert finished["created"] == ["by_island"], finished  # by_species was rebound, not refused
    cells = doc.get()["cells"]
    owners = [run_of(c) for c in cells]
    last_a = max(i for i, r in enumerate(owners) if r == a["run_id"])
    assert owners[last_a + 1 : last_a + 1 + len(b_final["cells"])] == [b["run_id"]] * len(b_final["cells"])
    assert cells[-1]["id"] == "user-after"  # not appended after the user's later cell
    code_b = next(c for c in cells if run_of(c) == b["run_id"] and c["cell_type"] == "code")
    assert code_b["metadata"][META_KEY]["status"] == "ok" and "ok" in code_b["outputs"][0]["text"]

    # the report of a follow-up holds the earlier run's cells too (its variables come from there)
    _, exported = await api(jp_fetch, *RUNS, b["run_id"], "export", method="POST", expect=201)
    import nbformat

    report = nbformat.read(jp_root_dir / exported["ipynb"], as_version=4)
    assert {run_of(c) for c in report.cells} >= {a["run_id"], b["run_id"]}
    assert "the runs it follows up" in report.cells[0].source

    # discard: refused for a run a later run follows up; the follow-up goes with its variables
    code, refused = await api(jp_fetch, *RUNS, a["run_id"], "discard", method="POST")
    assert code == 409 and b["run_id"] in refused["message"], refused
    before = [c["id"] for c in doc.get()["cells"]]
    assert await kernel_has(jp_serverapp, kernel_id, "by_island", "by_species") == [True, True]
    _, gone = await api(jp_fetch, *RUNS, b["run_id"], "discard", method="POST", expect=200)
    assert gone["cells"] == len(b_final["cells"]) and gone["variables"] == ["by_island"], gone
    assert [c["id"] for c in doc.get()["cells"]] == [i for i in before if i not in b_final["cells"]]
    assert await kernel_has(jp_serverapp, kernel_id, "by_island", "by_species", "df") == [False, True, True]
    _, status = await api(jp_fetch, *RUNS, b["run_id"], expect=200)
    assert status["discarded"] is True
    await api(jp_fetch, *RUNS, b["run_id"], "discard", method="POST", expect=409)
    code, refused = await api(
        jp_fetch, *RUNS, method="POST", body={"path": NB_PATH, "follow_up": b["run_id"]}
    )
    assert code == 409 and "discarded" in refused["message"]
    saved = await saved_notebook(
        jp_root_dir / NB_PATH, lambda nb: not any(run_of(c) == b["run_id"] for c in nb.cells)
    )
    assert [c.id for c in saved.cells] == [i for i in before if i not in b_final["cells"]]

    # one undo puts every cell back where it was (the deleted variable stays deleted)
    _, back = await api(jp_fetch, *RUNS, b["run_id"], "restore", method="POST", expect=200)
    assert back["cells"] == len(b_final["cells"]) and "by_island" in back["note"], back
    assert [c["id"] for c in doc.get()["cells"]] == before
    await api(jp_fetch, *RUNS, b["run_id"], "restore", method="POST", expect=409)
    _, status = await api(jp_fetch, *RUNS, b["run_id"], expect=200)
    assert status["discarded"] is False

    # without the variables: the kernel keeps them
    _, gone = await api(
        jp_fetch, *RUNS, b["run_id"], "discard", method="POST", body={"variables": False}, expect=200
    )
    assert gone["variables"] == [] and await kernel_has(jp_serverapp, kernel_id, "by_species") == [True]
