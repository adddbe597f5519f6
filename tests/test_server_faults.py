"""Faults that must not cost the user work: a renamed or moved notebook mid-run, a server
killed mid-run. Real Jupyter servers (one in-process, one in a process of its own that is
SIGKILLed), a real kernel, the replayed analyst."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytest.register_assert_rewrite("server_conftest")

from server_conftest import *  # noqa: E402, F403  (the server fixtures, module-local)
from server_conftest import (  # noqa: E402
    EXAMPLES,
    NB_PATH,
    SERVER_EXTENSIONS,
    USER_CELLS,
    USER_CODE,
    api,
    asynctest,
    run_user_cell,
    saved_notebook,
    wait_run,
    ydoc,
)

from jupyter_analyst.agent.types import AssistantTurn, Message, ToolSpec  # noqa: E402
from jupyter_analyst.errors import BackendError  # noqa: E402
from jupyter_analyst.models.scripted import ScriptedPolicy, code  # noqa: E402
from jupyter_analyst.models.select import PolicyHandle  # noqa: E402
from jupyter_analyst.notebook import META_KEY  # noqa: E402

RUNS = ("jupyter-analyst", "runs")
SLOW_STEPS = 6


def slow_script(folder: Path, steps: int = SLOW_STEPS) -> Path:
    """A replayed analysis whose cells take a while: time to rename, move or kill."""
    cells: list[dict[str, Any]] = [
        {"code": f"import time\ntime.sleep(0.4)\nprint('step {i}')"} for i in range(steps)
    ]
    cells += [{"markdown": "Almost done."}, {"final_answer": "The steps printed their numbers."}]
    script = folder / "slow.json"
    script.write_text(json.dumps(cells))
    return script


def user_cells(cells: list[Any]) -> list[dict[str, Any]]:
    return [{"id": c["id"], "source": c["source"]} for c in cells if META_KEY not in c["metadata"]]


ORIGINAL = [{"id": c["id"], "source": c["source"]} for c in USER_CELLS]


async def start_slow_run(jp_fetch: Any, jp_serverapp: Any, analyst_app: Any, tmp_path: Path) -> str:
    """POST a run of the slow script and wait until its first cell is in the document."""
    analyst_app.replay = str(slow_script(tmp_path))
    body = {"path": NB_PATH, "variable": "df"}
    _, status = await api(jp_fetch, *RUNS, method="POST", expect=201, body=body)
    await first_agent_cell(jp_serverapp)
    return str(status["run_id"])


async def first_agent_cell(jp_serverapp: Any, path: str = NB_PATH) -> None:
    doc = await ydoc(jp_serverapp, path)
    deadline = time.monotonic() + 300  # a guard against a hang
    while not any(META_KEY in (c.get("metadata") or {}) for c in doc.get()["cells"]):
        assert time.monotonic() < deadline, "no agent cell appeared"
        await asyncio.sleep(0.05)


@asynctest
async def test_a_notebook_renamed_in_jupyter_mid_run_is_followed(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, analyst_app: Any, live_notebook: Any, tmp_path: Path
) -> None:
    await live_notebook()
    run_id = await start_slow_run(jp_fetch, jp_serverapp, analyst_app, tmp_path)
    renamed = "work dir/renamed analysis.ipynb"
    await api(jp_fetch, "api", "contents", NB_PATH, method="PATCH", body={"path": renamed}, expect=200)
    final = await wait_run(jp_fetch, run_id)
    assert final["state"] == "finished" and final["stop_reason"] == "final_answer", final
    assert final["path"] == renamed
    assert not (jp_root_dir / NB_PATH).exists()
    nb = nbformat.read(jp_root_dir / renamed, as_version=4)  # saved and checked at the end
    nbformat.validate(nb)
    ids = [c.id for c in nb.cells]
    assert all(cell in ids for cell in final["cells"])
    assert nb.cells[-1].metadata[META_KEY]["role"] == "conclusions"
    assert user_cells(nb.cells) == ORIGINAL


@asynctest
async def test_a_notebook_moved_on_disk_mid_run_is_rescued_not_lost(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, analyst_app: Any, live_notebook: Any, tmp_path: Path
) -> None:
    await live_notebook()
    run_id = await start_slow_run(jp_fetch, jp_serverapp, analyst_app, tmp_path)
    os.rename(jp_root_dir / NB_PATH, jp_root_dir / "work dir" / "moved away.ipynb")  # behind Jupyter's back
    final = await wait_run(jp_fetch, run_id)
    assert final["state"] == "failed", final  # never "finished" with unsaved cells
    assert "could not save" in final["error"] and "analyst-rescue" in final["error"], final["error"]
    rescue = jp_root_dir / "work dir" / f"analysis-analyst-rescue-{run_id}.ipynb"
    nb = nbformat.read(rescue, as_version=4)
    nbformat.validate(nb)
    ids = [c.id for c in nb.cells]
    assert all(cell in ids for cell in final["cells"])  # nothing the run wrote is lost
    assert any((c.metadata.get(META_KEY) or {}).get("role") == "conclusions" for c in nb.cells)
    assert user_cells(nb.cells) == ORIGINAL


# --------------------------------------------------------------------------- faults during a live run


class CrashingModel:
    """A model backend that answers twice, then dies (a worker killed mid-run)."""

    name = "crashing model"

    def __init__(self) -> None:
        self.script = ScriptedPolicy([code("x_agent = 1"), code("print(x_agent + 1)")])

    def __call__(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        if sum(1 for m in messages if m["role"] == "assistant") >= 2:
            raise BackendError("the model worker exited (killed by the OOM killer?)")
        return self.script(messages, tools)


LIVE_FAULTS: dict[str, tuple[list[dict[str, Any]] | None, str, str | None]] = {
    "50 MB of output": (
        [{"code": "print('x' * 50_000_000)"}, {"code": "print('after')"}, {"final_answer": "It printed."}],
        "finished",
        "final_answer",
    ),
    "the kernel is killed (SIGKILL)": (
        [{"code": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"}, {"final_answer": "never"}],
        "failed",
        "kernel_died",
    ),
    "the model backend dies mid-run": (None, "failed", "model_error"),
    "the user deletes an agent cell mid-run": (
        [{"code": "import time\ntime.sleep(1.5)\nprint('agent output')"}, {"final_answer": "Done."}],
        "finished",
        "final_answer",
    ),
}


@pytest.mark.parametrize("fault", list(LIVE_FAULTS))
@asynctest
async def test_live_faults_keep_the_users_cells_variables_and_a_valid_notebook(
    jp_fetch: Any,
    jp_serverapp: Any,
    jp_root_dir: Path,
    analyst_app: Any,
    live_notebook: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    kernel_id = await live_notebook()
    script, state, reason = LIVE_FAULTS[fault]
    if script is None:
        model = CrashingModel()
        monkeypatch.setattr(analyst_app.pool, "factory", lambda choice: PolicyHandle(model, model.name))
    else:
        path = tmp_path / "fault.json"
        path.write_text(json.dumps(script))
        analyst_app.replay = str(path)
    body = {"path": NB_PATH, "variable": "df"}
    _, status = await api(jp_fetch, *RUNS, method="POST", expect=201, body=body)
    doc = await ydoc(jp_serverapp)
    if fault == "the user deletes an agent cell mid-run":
        await first_agent_cell(jp_serverapp)
        mine = next(i for i, c in enumerate(doc.ycells) if META_KEY in c["metadata"].to_py())
        del doc.ycells[mine]
    final = await wait_run(jp_fetch, status["run_id"])
    assert (final["state"], final["stop_reason"]) == (state, reason), final
    cells = doc.get()["cells"]
    assert user_cells(cells) == ORIGINAL
    if reason != "final_answer":
        assert cells[-1]["metadata"][META_KEY]["role"] == "note"
    outputs = json.dumps([c.get("outputs") for c in cells])
    assert len(outputs) < 3_000_000  # 50 MB never reached the document
    # The run's end checked the file; the run's teardown may be saving it again right now, and
    # jupyter_server rewrites a file in place (its backup is the atomic part): read it again
    # until a whole file is there, as any reader of a file Jupyter is saving must.
    saved = await saved_notebook(jp_root_dir / NB_PATH, lambda nb: bool(nb.cells), timeout=30)
    nbformat.validate(saved)
    assert user_cells(saved.cells) == ORIGINAL
    if fault == "the user deletes an agent cell mid-run":
        assert "agent output" in outputs  # the agent's code ran in a copy, not lost
    if reason != "kernel_died":  # the user's variables are still there
        reply = await run_user_cell(jp_serverapp, kernel_id, "df.shape")
        assert reply["status"] == "ok" and "(344, 8)" in json.dumps(reply["outputs"])


# --------------------------------------------------------------------------- a killed server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``jupyter server`` with the extension in a process group of its own."""

    TOKEN = "fault-test-token"

    def __init__(self, root: Path, home: Path, script: Path) -> None:
        self.root, self.home, self.script = root, home, script
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "server.log"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "JUPYTER_DATA_DIR": str(self.home / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "IPYTHONDIR": str(self.home / "ipython"),
            "HF_HUB_OFFLINE": "1",
        }

    def start(self) -> None:
        config = {
            "ServerApp": {
                "jpserver_extensions": SERVER_EXTENSIONS,
                "allow_unauthenticated_access": False,
                "port": self.port,
                "port_retries": 0,
                "open_browser": False,
                "allow_root": True,  # CI runs as root
                "root_dir": str(self.root),
            },
            "IdentityProvider": {"token": self.TOKEN},
            "FileContentsManager": {"delete_to_trash": False},
            "JupyterAnalyst": {"replay": str(self.script), "cell_timeout": 60.0},
            "YDocExtension": {"document_save_delay": 30},  # only our flushes write the file
            "SQLiteYStore": {"db_path": str(self.home / "ystore.db")},
            "BaseFileIdManager": {"db_path": str(self.home / "fileid.db"), "root_dir": str(self.root)},
        }
        cfg = self.home / "server_config.json"
        cfg.write_text(json.dumps(config))
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyter_server", f"--config={cfg}"],
                cwd=self.home,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 300
        while True:
            try:
                self.call("GET", "api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                assert self.proc.poll() is None, self.log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {self.TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            return json.loads(raw) if raw else None

    def recovered(self, run_id: str) -> dict[str, Any]:
        """The run's status once the restarted server has read the journals (its start hook
        runs just after the server answers)."""
        deadline = time.monotonic() + 120
        while True:
            found = [r for r in self.call("GET", "jupyter-analyst/runs") if r["run_id"] == run_id]
            if found:
                return dict(found[0])
            assert time.monotonic() < deadline, f"run {run_id} not listed after the restart"
            time.sleep(0.2)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)


def _run_in_kernel(runtime: Path, kernel_id: str, code: str) -> str:
    """Execute code in the server's kernel through its connection file (as a console would)."""
    from jupyter_client import BlockingKernelClient

    kc = BlockingKernelClient(connection_file=str(runtime / f"kernel-{kernel_id}.json"))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        out: list[str] = []
        reply = kc.execute_interactive(
            code,
            timeout=120,
            output_hook=lambda m: (
                out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
            ),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(out)
    finally:
        kc.stop_channels()


@pytest.mark.timeout(900)
def test_a_killed_server_loses_no_cell_and_marks_the_run_interrupted(tmp_path: Path) -> None:
    root, home = tmp_path / "root", tmp_path / "home"
    (root / "work dir").mkdir(parents=True)
    home.mkdir()
    shutil.copy(EXAMPLES / "penguins.csv", root / "work dir" / "penguins.csv")
    nb = nbformat.v4.new_notebook(cells=[nbformat.from_dict(c) for c in USER_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / NB_PATH)
    server = ServerProcess(root, home, slow_script(tmp_path, steps=12))
    kernel_pid = 0
    try:
        server.start()
        session = server.call(
            "POST",
            "api/sessions",
            {"path": NB_PATH, "name": "analysis.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
        )
        kernel_id = session["kernel"]["id"]
        runtime = home / "runtime"
        kernel_pid = int(_run_in_kernel(runtime, kernel_id, USER_CODE + "\nimport os; print(os.getpid())"))
        run = server.call("POST", "jupyter-analyst/runs", {"path": NB_PATH, "variable": "df"})
        deadline = time.monotonic() + 300
        while server.call("GET", f"jupyter-analyst/runs/{run['run_id']}")["step"] < 6:
            assert time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.1)
        server.kill()  # SIGKILL: no shutdown hook runs
        server.start()
        after = server.recovered(run["run_id"])
        assert after["state"] == "interrupted" and "server stopped" in (after["error"] or ""), after
        saved = nbformat.read(root / NB_PATH, as_version=4)
        nbformat.validate(saved)
        assert user_cells(saved.cells) == ORIGINAL
        journal_file = next((home / "data" / "jupyter_analyst" / "runs").glob("*.jsonl"))
        journal = [json.loads(line) for line in journal_file.read_text().splitlines()]
        executed = [f["cell_id"] for f in journal if f.get("type") == "cell_executed"]
        ids = [c.id for c in saved.cells]
        assert len(executed) >= 5 and [i for i in executed if i not in ids] == []  # 0 cells lost
        note = saved.cells[-1]
        assert note.metadata[META_KEY]["role"] == "note" and "server stopped" in note.source
        server.kill()
        server.start()  # a second restart notes nothing twice
        again = server.recovered(run["run_id"])
        assert again["state"] == "interrupted"
        notes = [c for c in nbformat.read(root / NB_PATH, as_version=4).cells if "server stopped" in c.source]
        assert len(notes) == 1
    finally:
        server.kill()
        if kernel_pid:
            try:
                os.kill(kernel_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
