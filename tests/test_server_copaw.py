"""The CoPaw dialect in the live notebook, on a real server and kernel: a replay in that
model's format writes and runs its scripts as cells of the user's notebook."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("server_conftest")

from copaw_replay import MEAN_BILL, REPORT, copaw_replay  # noqa: E402
from server_conftest import *  # noqa: E402, F403  (the server fixtures, module-local)
from server_conftest import NB_PATH, api, asynctest, run_user_cell, wait_idle, wait_run, ydoc  # noqa: E402

from jupyter_analyst.notebook import META_KEY  # noqa: E402

RUNS = ("jupyter-analyst", "runs")


@asynctest
async def test_a_copaw_replay_works_in_the_live_notebook(
    jp_fetch: Any,
    jp_serverapp: Any,
    analyst_app: Any,
    live_notebook: Any,
    tmp_path: Path,
) -> None:
    kernel_id = await live_notebook()
    before = [dict(c) for c in (await ydoc(jp_serverapp)).ycells.to_py()]
    replay = tmp_path / "copaw.json"
    replay.write_text(json.dumps(copaw_replay()), encoding="utf-8")
    analyst_app.replay = str(replay)
    _, status = await api(
        jp_fetch,
        *RUNS,
        method="POST",
        expect=201,
        body={"path": NB_PATH, "variable": "df", "question": "What is the average bill length?"},
    )
    final = await wait_run(jp_fetch, status["run_id"])
    assert final["state"] == "finished", final
    assert MEAN_BILL in (final.get("answer") or ""), final
    cells = (await ydoc(jp_serverapp)).ycells.to_py()
    assert [c["source"] for c in cells[: len(before)]] == [c["source"] for c in before]  # the user's
    mine = [c for c in cells if (c.get("metadata", {}).get(META_KEY) or {}).get("run_id") == status["run_id"]]
    kinds = [(c["cell_type"], c["metadata"][META_KEY].get("role")) for c in mine]
    assert kinds == [
        ("code", "code"),  # the scripts' workspace, their saved charts shown
        ("code", "code"),
        ("code", "code"),
        ("markdown", "markdown"),
        ("markdown", "conclusions"),
    ], kinds
    assert "data['bill_length_mm']" in mine[1]["source"]
    printed = "".join(o.get("text", "") for o in mine[1]["outputs"])
    assert printed.split() == ["(344,", "8)", MEAN_BILL]
    assert sum("image/png" in o.get("data", {}) for o in mine[1]["outputs"]) == 1  # its saved chart
    assert mine[2]["source"] == "!head -3 penguins.csv" and "species,island" in str(mine[2]["outputs"])
    assert mine[3]["source"] == REPORT
    # The script ran in the notebook's kernel, not a process of its own: its names are there.
    await wait_idle(jp_serverapp, kernel_id)
    reply = await run_user_cell(jp_serverapp, kernel_id, "print(type(data).__name__, len(data))")
    assert "".join(o.get("text", "") for o in reply["outputs"]).strip() == "DataFrame 344"
