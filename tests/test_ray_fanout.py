"""``eval`` and ``collect`` fanned out over a Ray cluster (``--ray ADDRESS``).

A real local head started with Ray's own CLI, and the real CLI in subprocesses: the driver,
the cluster's daemons and its worker processes are separate processes, as across machines.
Started as from a background shell (SIGINT ignored, no stdin). The data travels through the
object store and the notebooks come back to the driver's output folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("ray")  # CI installs it (the test extra); skipped only where it is absent

import nbformat  # noqa: E402
from test_cli import CliProcess  # noqa: E402

from jupyter_analyst.eval.harness import finished_ids  # noqa: E402

TASKS = ["tips-percent", "airquality-ozone"]  # fast with the baseline analyst
RUN_TIMEOUT_S = 240  # a loaded 2-core machine: one task takes ~10 s, a worker starts in ~3 s


def _free_port() -> int:
    """A free port outside Ray's default worker ports (10002-19999), which it refuses to share."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not 10002 <= port <= 19999:
            return port


def _as_in_a_background_shell() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("ray-data-cache")
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "JUPYTER_ANALYST_DATA_CACHE": str(cache),
        "RAY_USAGE_STATS_ENABLED": "0",
    }


@pytest.fixture(scope="module")
def head(env: dict[str, str]) -> Iterator[str]:
    """A Ray head with 2 CPUs on free ports; its whole process group is ended afterwards."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    port = _free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    command = [
        str(ray_cli) if ray_cli.exists() else "ray",
        "start",
        "--head",
        "--port",
        str(port),
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "2",
        "--include-dashboard=false",
        "--dashboard-port",
        str(_free_port()),
        "--dashboard-agent-listen-port",
        str(_free_port()),
        "--object-store-memory",
        str(200 * 1024 * 1024),
        "--disable-usage-stats",
        "--temp-dir",
        temp,
    ]
    log = Path(temp) / "start.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its daemons stay in this process group: ended together below
            preexec_fn=_as_in_a_background_shell,
        )
    try:
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            code = -1
        if code != 0:
            pytest.fail(f"`ray start --head` failed ({code}):\n{log.read_text()[-3000:]}")
        yield f"127.0.0.1:{port}"
    finally:
        for signum, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:
                break
            time.sleep(grace)
        shutil.rmtree(temp, ignore_errors=True)


def cli(*args: str | Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``jupyter analyst ARGS`` as from a background shell; stderr is the user's view."""
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter_analyst", *map(str, args)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        preexec_fn=_as_in_a_background_shell,
    )
    return proc


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_eval_fans_out_brings_notebooks_back_and_resumes(
    head: str, env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = ["eval", "--suite", "builtin", "--tasks", *TASKS, "--baseline", "--ray", head, "-o", out]
    stopped = CliProcess(*argv, cwd=tmp_path, sigint="background", env=env)
    stopped.wait_until(lambda: f"-> {out}" in stopped.stderr, "the tasks' start")
    time.sleep(2)  # both tasks are on the workers now
    assert stopped.interrupt() == 130  # Ctrl-C cancels them there; nothing half-done is kept
    assert stopped.stderr.splitlines()[-1] == "stopped"
    before = len(finished_ids(out))

    first = cli(*argv, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"2 worker(s) on Ray {head} (1 node(s), 2 CPUs)" in first.stderr

    records = {r["task_id"]: r for r in lines(out / "results.jsonl")}
    assert sorted(records) == sorted(TASKS)
    for task_id, rec in records.items():
        assert "harness_error" not in rec, rec["harness_error"]
        assert rec["verdict"]["stop_reason"] == "final_answer" and rec["verdict"]["reproducible"]
        assert rec["notebook"] == f"notebooks/{task_id}.ipynb" and rec["data"].startswith("data/")
        assert (out / rec["data"]).exists()  # the driver's copy the notebook loads
        nb = nbformat.read(out / rec["notebook"], as_version=4)  # written here, from the worker
        nbformat.validate(nb)
        assert any(f"'../{rec['data']}'" in c.source for c in nb.cells if c.cell_type == "code")
    assert str(tmp_path) not in (out / "results.jsonl").read_text()  # no worker path leaked
    session = json.loads((out / "run.json").read_text())["sessions"][-1]
    assert session["ray"] == {"address": head, "nodes": 1, "cpus": 2, "task_cpus": 1.0}
    assert session["workers"] == 2 and session["to_run"] == 2 - before
    assert (out / "report.md").exists()

    again = cli(*argv, env=env, cwd=tmp_path)  # resumed: nothing runs again
    assert again.returncode == 0, again.stderr
    assert "resumed: 2 finished task(s) skipped" in again.stderr
    assert len(lines(out / "results.jsonl")) == 2
    assert json.loads((out / "run.json").read_text())["sessions"][-1]["to_run"] == 0


def test_collect_fans_out_and_writes_trajectories_here(
    head: str, env: dict[str, str], tmp_path: Path
) -> None:
    traj = tmp_path / "traj.jsonl"
    argv = ["collect", "-o", traj, "--tasks", *TASKS, "--baseline", "--no-rerun", "--keep", "finished"]
    done = cli(*argv, "--ray", head, "--workers", "2", "--quiet", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 in flight on Ray" in done.stderr and "kept 2 new trajectories" in done.stderr

    recs = lines(traj)
    assert sorted(r["meta"]["task_id"] for r in recs) == sorted(TASKS)
    assert all(r["messages"] and r["meta"]["stop_reason"] == "final_answer" for r in recs)
    state = lines(Path(f"{traj}.state.jsonl"))
    assert sorted(s["task_id"] for s in state) == sorted(TASKS) and all(s["kept"] for s in state)
    for task_id in TASKS:
        nbformat.validate(nbformat.read(tmp_path / "traj.jsonl.work" / "notebooks" / f"{task_id}-0.ipynb", 4))


def test_dabench_tables_and_replay_scripts_travel_with_the_tasks(
    head: str, env: dict[str, str], tmp_path: Path
) -> None:
    """A table outside the output folder and a replay script on the driver only."""
    from test_eval_dabench import write_dabench

    data = write_dabench(tmp_path / "dab")
    script = tmp_path / "script.json"
    answer = "Mean 20.0; north 30.\n@mean_units[20.00] @top_region[north] @top_units[30]"
    steps = [
        {"code": "print(df.units.mean())\nprint(df.groupby('region').units.sum())"},
        {"final_answer": answer},
    ]
    script.write_text(json.dumps(steps))
    out = tmp_path / "res"
    argv = ["eval", "--suite", "dabench", "--data-dir", data, "--replay", script, "--ray", head, "-o", out]
    done = cli(*argv, "--quiet", "--max-steps", "4", "--no-rerun", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    records = lines(out / "results.jsonl")
    assert len(records) == 2, records
    for rec in records:  # the worker read the table: every answer matches the labels
        assert rec["verdict"]["answers"] and all(a["ok"] for a in rec["verdict"]["answers"].values()), rec
    assert {r["policy"] for r in records} == {"replay of script.json"}
    assert {r["data"] for r in records} == {os.path.join("..", "dab", "da-dev-tables", "sales.csv")}


def test_an_absent_head_is_one_clear_line_at_once(env: dict[str, str], tmp_path: Path) -> None:
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    t0 = time.monotonic()
    done = cli(
        "eval",
        "--tasks",
        TASKS[0],
        "--baseline",
        "--ray",
        address,
        "-o",
        tmp_path / "o",
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and time.monotonic() - t0 < 60
    assert done.stderr.strip().splitlines() == [
        f"error: no Ray cluster answers at {address} (Connection refused); "
        "start one with `ray start --head` on this machine or join one"
    ]
    assert not (tmp_path / "o").exists()


def test_without_ray_the_flag_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_analyst.errors import InputError
    from jupyter_analyst.eval.fanout import connect
    from jupyter_analyst.models.select import PolicyChoice

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(InputError, match=r"pip install 'jupyter-analyst\[ray\]'"):
        with connect("127.0.0.1:1", PolicyChoice(profile="baseline")):
            pass


def test_a_table_outside_the_folder_lands_inside_the_node_local_one(tmp_path: Path) -> None:
    from jupyter_analyst.eval.fanout import _lay_out

    rel = os.path.join("..", "..", "dab", "tables", "t.csv")
    root, data = _lay_out(tmp_path, rel, b"a,b\n1,2\n")
    assert data is not None and data.read_bytes() == b"a,b\n1,2\n"
    assert data.is_relative_to(tmp_path) and Path(os.path.normpath(root / rel)) == data
    assert _lay_out(tmp_path / "x", None, None) == (tmp_path / "x" / "root", None)


def test_collect_runs_one_at_a_time_without_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jupyter_analyst.cli import main

    assert main(["collect", "-o", str(tmp_path / "t.jsonl"), "--baseline", "--workers", "2"]) == 2
    assert "above 1 only with --ray" in capsys.readouterr().err


class _TaskError(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Ref:
    def __init__(self, fn: Any, args: list[Any]) -> None:
        self.fn, self.args = fn, args
        self.key = getattr(args[1], "id", "") if len(args) > 2 else "probe"


class _FakeRay:
    """Just enough of Ray to drive ``Cluster`` in this process: a task runs when it is fetched;
    the tasks of ``hang`` never finish."""

    class exceptions:  # noqa: N801 - as Ray spells it
        RayError = _TaskError

    def __init__(self, cpus: int, hang: set[str]) -> None:
        self.cpus, self.hang = cpus, hang
        self.live: list[Any] = []
        self.peak = 0
        self.cancelled: list[str] = []

    def put(self, value: Any) -> Any:
        return SimpleNamespace(value=value)

    def remote(self, **_: Any) -> Any:
        return lambda fn: SimpleNamespace(remote=lambda *args: self._submit(fn, args))

    def _submit(self, fn: Any, args: tuple[Any, ...]) -> _Ref:
        ref = _Ref(fn, [a.value if isinstance(a, SimpleNamespace) else a for a in args])
        self.live.append(ref)
        self.peak = max(self.peak, len(self.live))
        return ref

    def wait(self, refs: list[Any], num_returns: int = 1, timeout: float | None = None) -> tuple[list, list]:
        ready = [r for r in refs if r.key not in self.hang][:num_returns]
        return ready, [r for r in refs if r not in ready]

    def get(self, ref: Any) -> Any:
        self.live.remove(ref)
        try:
            return ref.fn(*ref.args)
        except Exception as exc:
            raise _TaskError(exc) from exc

    def cancel(self, ref: Any) -> None:
        self.cancelled.append(ref.key)

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus}

    def nodes(self) -> list[dict[str, bool]]:
        return [{"Alive": True}]


def test_the_driver_caps_tasks_in_flight_and_cancels_the_rest_on_ctrl_c(tmp_path: Path) -> None:
    from jupyter_analyst.eval.fanout import Cluster, Job
    from jupyter_analyst.eval.tasks import EvalTask
    from jupyter_analyst.models.select import PolicyChoice

    fake = _FakeRay(cpus=2, hang={"c"})
    cluster = Cluster(fake, "user:pw@10.0.0.1:6379", PolicyChoice(profile="baseline"), None, 1.0)
    assert cluster.workers == 2 and cluster.label.startswith("rule-based baseline")
    assert cluster.info == {"address": "10.0.0.1:6379", "nodes": 1, "cpus": 2, "task_cpus": 1.0}

    def ok(task: EvalTask, policy: Any, root: Path) -> str:
        assert task.data_path is not None and task.data_path.read_text() == "x\n1\n"  # node-local copy
        (root / "notebooks").mkdir()
        (root / "notebooks" / f"{task.id}.ipynb").write_text("{}")
        return task.id

    def boom(task: EvalTask, policy: Any, root: Path) -> str:
        raise ValueError("the worker fell over")

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("x\n1\n")
    jobs = [
        Job(
            k,
            boom if k == "b" else ok,
            EvalTask(k, "t", "?"),
            tmp_path / "data" / "t.csv",
            tmp_path,
            f"notebooks/{k}.ipynb",
        )
        for k in "abcd"
    ]
    finished = cluster.imap(jobs)
    a, b, d = next(finished), next(finished), next(finished)  # c never finishes
    assert (a.value, a.error) == ("a", "") and (tmp_path / "notebooks" / "a.ipynb").read_text() == "{}"
    assert (b.value, b.error) == (None, "ValueError: the worker fell over")
    assert d.value == "d" and fake.peak == 2
    finished.close()  # Ctrl-C
    assert fake.cancelled == ["c"]
