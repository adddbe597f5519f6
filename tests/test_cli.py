"""The CLI as a user meets it: one clear line and an exit code for every kind of bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# Guards against a hang, nothing more: a few seconds is normal even on a loaded 2-core machine.
START_GUARD_S = 300.0
STOP_GUARD_S = 180.0


def cli(
    *args: str | Path,
    cwd: Path,
    timeout: float = 240,
    env: dict[str, str] | None = None,
    umask: int = -1,
) -> subprocess.CompletedProcess[str]:
    """``jupyter analyst ARGS``; ``env`` adds to ours, ``umask`` is the child's (-1: ours)."""
    return subprocess.run(
        [sys.executable, "-m", "jupyter_analyst", *map(str, args)],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        umask=umask,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def replay(tmp_path: Path, steps: list[object]) -> Path:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(steps))
    return path


def _sigint_as_in_a_terminal() -> None:
    """In the child, before exec: SIGINT back to its default, as a terminal's Ctrl-C finds it.

    A process started from a background shell (CI, ``cmd &``) inherits SIGINT ignored and
    Python keeps an ignored SIGINT ignored, so without this the test's SIGINT would be lost.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _sigint_as_in_a_background_shell() -> None:
    """In the child, before exec: SIGINT ignored, as ``cmd &`` in a script leaves it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


SIGINT_AT_START = {"terminal": _sigint_as_in_a_terminal, "background": _sigint_as_in_a_background_shell}


class CliProcess:
    """``jupyter analyst ARGS`` in the background; a thread collects its stderr lines."""

    def __init__(
        self, *args: str | Path, cwd: Path, sigint: str = "terminal", env: dict[str, str] | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_analyst", *map(str, args)],
            cwd=cwd,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=SIGINT_AT_START[sigint],
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_until(self, ready: Callable[[], bool], what: str, guard: float = START_GUARD_S) -> None:
        deadline = time.monotonic() + guard
        while not ready():
            if self.proc.poll() is not None:
                self._reader.join(timeout=STOP_GUARD_S)
                if ready():
                    return
                pytest.fail(f"the CLI exited ({self.proc.returncode}) before {what}:\n{self.stderr}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"hang guard: no {what} after {guard:g} s:\n{self.stderr}")
            time.sleep(0.1)

    def interrupt(self, guard: float = STOP_GUARD_S, signum: int = signal.SIGINT) -> int:
        """Ctrl-C (or ``signum``), then the exit code (the process is killed if it does not stop)."""
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=guard)
        except subprocess.TimeoutExpired:
            self.kill()
            name = signal.Signals(signum).name
            pytest.fail(f"hang guard: {name} did not stop the CLI in {guard:g} s:\n{self.stderr}")
        self._reader.join(timeout=guard)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # a `serve` worker watches its stdin and exits with its parent
            self.proc.wait()

    def __enter__(self) -> CliProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def test_missing_file(tmp_path: Path) -> None:
    proc = cli("run", "nope.csv", "--baseline", cwd=tmp_path)
    assert proc.returncode == 2 and "data file not found" in one_line_error(proc)


def test_unreadable_and_unsupported_files(tmp_path: Path) -> None:
    (tmp_path / "junk.parquet").write_bytes(b"this is not parquet at all" * 10)
    proc = cli("run", "junk.parquet", "--baseline", cwd=tmp_path)
    assert proc.returncode == 2 and "could not load junk.parquet" in one_line_error(proc)
    (tmp_path / "data.docx").write_text("x")
    proc = cli("run", "data.docx", "--baseline", cwd=tmp_path)
    assert proc.returncode == 2 and "unsupported file type" in one_line_error(proc)
    assert not list(tmp_path.glob("*.ipynb"))  # nothing half-written


def test_empty_inputs(tmp_path: Path) -> None:
    (tmp_path / "zero.csv").write_text("")
    proc = cli("run", "zero.csv", "--baseline", cwd=tmp_path)
    assert proc.returncode == 2 and "is empty" in one_line_error(proc)
    (tmp_path / "header.csv").write_text("a,b,c\n")
    proc = cli("run", "header.csv", "--baseline", cwd=tmp_path)
    assert proc.returncode == 2 and "empty table (0 rows" in one_line_error(proc)


UNREACHABLE = ("--base-url", "http://127.0.0.1:9/v1")
"""A model that fails at once (exit 5) if it is ever asked for: a refusal with exit 2 under
it proves the input was checked before any model loads."""


@pytest.mark.parametrize(
    "args, says",
    [
        (["-o", "a-file/out.ipynb"], "a-file is not a folder"),
        (["-o", "a-file/deeper/out.ipynb"], "a-file is not a folder"),
        (["-o", "folder.ipynb"], "folder.ipynb is a folder, not a notebook file"),
        (["-o", "folder.ipynb", "--overwrite"], "folder.ipynb is a folder, not a notebook file"),
        (["-o", "out.html"], "the output must be an .ipynb file, got out.html"),
        (["--max-steps", "0"], "--max-steps must be at least 1, got 0"),
        (["--max-steps", "-3"], "--max-steps must be at least 1, got -3"),
        (["--cell-timeout", "0"], "--cell-timeout must be a positive number of seconds, got 0"),
        (["--cell-timeout", "-2.5"], "--cell-timeout must be a positive number of seconds, got -2.5"),
        (["--max-time", "0"], "--max-time must be a positive number of seconds, got 0"),
        (["--max-tokens", "-1"], "--max-tokens must be at least 1, got -1"),
    ],
)
def test_bad_output_and_limits_are_refused_before_any_model(
    tmp_path: Path, args: list[str], says: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "folder.ipynb").mkdir()
    before = sorted(tmp_path.rglob("*"))
    proc = cli("run", EXAMPLES / "penguins.csv", *UNREACHABLE, *args, cwd=tmp_path)
    assert proc.returncode == 2 and says in one_line_error(proc), proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, nothing made


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a /proc file system")
def test_output_folder_that_cannot_be_created(tmp_path: Path) -> None:
    proc = cli("run", EXAMPLES / "penguins.csv", *UNREACHABLE, "-o", "/proc/nope/o.ipynb", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "cannot create the folder /proc/nope" in one_line_error(proc)
    assert not Path("/proc/nope").exists()


def test_missing_output_folders_are_probed_not_left_behind(tmp_path: Path) -> None:
    """A good ``-o new/deeper/out.ipynb`` passes the checks (the model is then unreachable):
    the folders made to probe it are gone again; the run makes them when it writes."""
    proc = cli("run", EXAMPLES / "penguins.csv", *UNREACHABLE, "-o", "new/deeper/out.ipynb", cwd=tmp_path)
    assert proc.returncode == 5 and "cannot reach" in one_line_error(proc)
    assert not (tmp_path / "new").exists()


def test_unreachable_base_url(tmp_path: Path) -> None:
    proc = cli("run", EXAMPLES / "penguins.csv", "--base-url", "http://127.0.0.1:9/v1", cwd=tmp_path)
    assert proc.returncode == 5 and "cannot reach" in one_line_error(proc)


def test_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "mine.ipynb").write_text("precious")
    proc = cli("run", EXAMPLES / "penguins.csv", "--baseline", "-o", "mine.ipynb", cwd=tmp_path)
    assert proc.returncode == 2 and "already exists" in one_line_error(proc)
    assert (tmp_path / "mine.ipynb").read_text() == "precious"


def test_runaway_cells_are_bounded(tmp_path: Path) -> None:
    script = replay(
        tmp_path,
        [
            {"code": "x = 41"},
            {"code": "while True:\n    pass"},
            {"code": "print('x' * 50_000_000)"},
            {"code": "print(x + 1)"},
            {"final_answer": "x + 1 is 42"},
        ],
    )
    proc = cli(
        "run",
        EXAMPLES / "penguins.csv",
        "--replay",
        script,
        "-o",
        "out.ipynb",
        "--cell-timeout",
        "3",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    nbformat.validate(nb)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    assert cells[2].metadata["jupyter_analyst"]["status"] == "timeout"
    assert cells[3].metadata["jupyter_analyst"]["status"] == "ok"
    assert (tmp_path / "out.ipynb").stat().st_size < 3_000_000
    assert cells[4].outputs[0]["text"].strip() == "42"  # the kernel kept its state


def test_kernel_death_has_a_clear_stop(tmp_path: Path) -> None:
    script = replay(tmp_path, [{"code": "import os\nos._exit(1)"}, {"final_answer": "never"}])
    proc = cli("run", EXAMPLES / "penguins.csv", "--replay", script, "-o", "dead.ipynb", cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert "kernel_died" in proc.stderr and "Traceback" not in proc.stderr
    nb = nbformat.read(tmp_path / "dead.ipynb", as_version=4)
    nbformat.validate(nb)
    assert "kernel died" in nb.cells[-1].source


@pytest.mark.timeout(400)
def test_run_baseline_then_export(tmp_path: Path) -> None:
    proc = cli(
        "run",
        EXAMPLES / "cars.csv",
        "-q",
        "What drives fuel economy (mpg)?",
        "--baseline",
        "--save-trajectory",
        "traj.jsonl",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "traj.jsonl").read_text().splitlines()[0])
    assert record["messages"][0]["role"] == "system" and record["tools"] and record["meta"]["source"] == "run"
    assert any(m.get("tool_calls") for m in record["messages"] if m["role"] == "assistant")
    assert "rule-based baseline analyst" in proc.stderr and "finished with conclusions" in proc.stderr
    assert "step  1" in proc.stderr
    notebook = tmp_path / "cars_analysis.ipynb"
    nbformat.validate(nbformat.read(notebook, as_version=4))
    proc = cli("export", notebook, "--to", "html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "cars_analysis.html").read_text()
    assert "<img" in html and "Conclusions" in html


def test_models_lists_profiles(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter_analyst", "models"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "JUPYTER_ANALYST_PROFILES": str(tmp_path / "none.toml")},
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("qwen3.5-9b-4bit", "copaw-flash-9b-analyst", "qwen2.5-1.5b-cpu", "baseline"):
        assert name in proc.stdout
    assert "GB GPU" in proc.stdout and "default here:" in proc.stdout
    assert "DataAnalyst-LoRA  (tools: the copaw dialect)" in proc.stdout  # what that profile runs


@pytest.mark.timeout(START_GUARD_S + 2 * STOP_GUARD_S)
def test_serve_a_local_model_by_hand(tmp_path: Path, tiny_model_dir: Path) -> None:
    import httpx

    def serving() -> str | None:
        return next((line for line in list(child.lines) if line.startswith("serving")), None)

    with CliProcess("serve", "--model", tiny_model_dir, "--port", "0", cwd=tmp_path) as child:
        child.wait_until(lambda: serving() is not None, "'serving' line")
        found = re.match(r"serving (\S+)\s+\(api key: (\S+)\)", serving() or "")
        assert found, child.stderr
        url, key = found.groups()
        assert httpx.get(f"{url}/models", timeout=STOP_GUARD_S).status_code == 401
        models = httpx.get(
            f"{url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=STOP_GUARD_S
        ).json()
        assert models["data"][0]["id"]
        assert child.interrupt() == 0, child.stderr


def test_run_against_an_openai_compatible_server(tmp_path: Path, tiny_model_dir: Path) -> None:
    """--base-url/--api-key: the same client any vLLM/Ollama/llama.cpp server is reached with."""
    from jupyter_analyst.models.host import EmbeddedModel

    # unconstrained: with the grammar a random model may well call final_answer at once
    with EmbeddedModel(tiny_model_dir, device="cpu", max_new_tokens=16, constrained=False) as host:
        args = (
            "run",
            EXAMPLES / "penguins.csv",
            "--base-url",
            host.base_url,
            "--max-steps",
            "2",
            "-o",
            "r.ipynb",
        )
        proc = cli(*args, "--api-key", "wrong-key", cwd=tmp_path)
        assert proc.returncode == 5 and "rejected the API key" in one_line_error(proc)
        proc = cli(*args, "--api-key", host.api_key, "--max-new-tokens", "16", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr  # a random model never finishes: the budget ends it
    assert "ended without conclusions (max_steps)" in proc.stderr
    nb = nbformat.read(tmp_path / "r.ipynb", as_version=4)
    assert "via http://127.0.0.1" in nb.metadata["jupyter_analyst"]["policy"]


@pytest.mark.timeout(START_GUARD_S + 2 * STOP_GUARD_S)
@pytest.mark.parametrize("started_from", ["terminal", "background"])
def test_ctrl_c_stops_the_run_and_keeps_a_valid_notebook(tmp_path: Path, started_from: str) -> None:
    """Also when started with SIGINT ignored (a background shell): the CLI restores it."""
    running = tmp_path / "long-cell-is-running"
    long_cell = f"import pathlib, time\npathlib.Path({str(running)!r}).touch()\ntime.sleep(120)"
    script = replay(tmp_path, [{"code": "print('started')"}, {"code": long_cell}])
    args = ("run", EXAMPLES / "penguins.csv", "--replay", script, "-o", "stopped.ipynb")
    with CliProcess(*args, cwd=tmp_path, sigint=started_from) as child:
        child.wait_until(running.exists, "long cell running")
        code = child.interrupt()
    err = child.stderr
    assert code == 130, err
    assert "Traceback" not in err and "ended without conclusions (stopped)" in err
    nb = nbformat.read(tmp_path / "stopped.ipynb", as_version=4)
    nbformat.validate(nb)
    meta = nb.metadata["jupyter_analyst"]
    assert meta["stop_reason"] == "stopped"
    assert meta["steps"] == 2 and meta["seconds"] > 0  # what the run really spent, not zeros
    assert "stopped at step 2" in nb.cells[-1].source


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_notebook_mode_follows_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    """As a plain ``open()`` would make it, not the private 0600 of the temp file behind it."""
    script = replay(tmp_path, [{"final_answer": "nothing to see"}])
    proc = cli(
        "run", EXAMPLES / "penguins.csv", "--replay", script, "-o", "m.ipynb", cwd=tmp_path, umask=umask
    )
    assert proc.returncode == 0, proc.stderr
    assert oct((tmp_path / "m.ipynb").stat().st_mode & 0o777) == oct(mode)


def _process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped yet counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc here: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.mark.timeout(START_GUARD_S + 3 * STOP_GUARD_S)
def test_sigterm_stops_the_run_like_ctrl_c_and_cleans_up(tmp_path: Path) -> None:
    """``kill`` (SIGTERM): the stopped note, a valid notebook, exit 143, and neither the
    kernel process nor its private connection directory left behind."""
    temp = tmp_path / "temp"  # the kernel's private directory goes here (TMPDIR), and only ours
    temp.mkdir()
    pid_file, running = tmp_path / "kernel.pid", tmp_path / "long-cell-is-running"
    script = replay(
        tmp_path,
        [
            {"code": f"import os, pathlib\npathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))"},
            {"code": f"import time\npathlib.Path({str(running)!r}).touch()\ntime.sleep(120)"},
        ],
    )
    args = ("run", EXAMPLES / "penguins.csv", "--replay", script, "-o", "killed.ipynb")
    with CliProcess(*args, cwd=tmp_path, env={"TMPDIR": str(temp)}) as child:
        child.wait_until(running.exists, "long cell running")
        kernel_pid = int(pid_file.read_text())
        assert [p.name for p in temp.glob("ja-kernel-*")], "the kernel's directory is not where we look"
        code = child.interrupt(signum=signal.SIGTERM)
    err = child.stderr
    assert code == 143, err
    assert "Traceback" not in err and "ended without conclusions (stopped): terminated (SIGTERM)" in err
    nb = nbformat.read(tmp_path / "killed.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["jupyter_analyst"]["stop_reason"] == "stopped"
    assert "stopped at step 2" in nb.cells[-1].source
    assert not list(temp.glob("ja-kernel-*"))
    deadline = time.monotonic() + STOP_GUARD_S  # a hang guard: it is normally gone already
    while not _process_gone(kernel_pid):
        if time.monotonic() > deadline:
            os.kill(kernel_pid, signal.SIGKILL)
            pytest.fail(f"the kernel (pid {kernel_pid}) outlived the run")
        time.sleep(0.1)


SECRETS = {
    "OPENAI_API_KEY": "sk-test-openai-0000",
    "HF_TOKEN": "hf_test_token_1111",
    "AWS_SECRET_ACCESS_KEY": "aws-test-secret-2222",
    "JUPYTER_ANALYST_WORKER_SECRET": "worker-test-secret-3333",
}


def test_secrets_stay_out_of_the_notebook(tmp_path: Path) -> None:
    names = [*SECRETS, "MY_SETTING"]
    script = replay(
        tmp_path,
        [
            {"code": f"import os\nfor name in {names!r}:\n    print(name, os.environ.get(name))"},
            {"code": "print(dict(os.environ))"},
            {"final_answer": "printed the environment"},
        ],
    )
    proc = cli(
        "run",
        EXAMPLES / "penguins.csv",
        "--replay",
        script,
        "-o",
        "env.ipynb",
        cwd=tmp_path,
        env={**SECRETS, "MY_SETTING": "innocent-4444"},
    )
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "env.ipynb").read_text()
    assert "MY_SETTING innocent-4444" in text
    for name, value in SECRETS.items():
        assert value not in text, name
        assert f"{name} None" in text


def test_the_levers_switch_off_from_the_command_line(tmp_path: Path) -> None:
    """``--no-prechecks``/``--no-grounding-gate``/``--keep-failed-cells``: the same run, levers
    on and off, shows each one acting (so an eval can measure them, see ``levers``)."""
    script = replay(
        tmp_path,
        [
            {"code": "df['bil_length_mm'].mean()"},  # a misspelled column
            {"code": "round(df['bill_length_mm'].mean() * 3, 1)"},
            {"final_answer": "Three times the mean bill length is 131.8 mm; 99999 is made up."},
            {"final_answer": "Three times the mean bill length is 131.8 mm; 99999 is made up."},
        ],
    )
    base = ("run", EXAMPLES / "penguins.csv", "--replay", script, "--max-steps", "8")
    on = cli(*base, "-o", "on.ipynb", cwd=tmp_path)
    off = cli(
        *base, "-o", "off.ipynb", "--no-prechecks", "--no-grounding-gate", "--keep-failed-cells", cwd=tmp_path
    )
    assert on.returncode == 0 and off.returncode == 0, (on.stderr, off.stderr)
    meta_on = nbformat.read(tmp_path / "on.ipynb", as_version=4).metadata["jupyter_analyst"]
    meta_off = nbformat.read(tmp_path / "off.ipynb", as_version=4).metadata["jupyter_analyst"]
    # on: the typo is answered before it runs, the made-up number goes back once
    assert (meta_on["prechecks"], meta_on["errors"], meta_on["grounding_returns"]) == (1, 0, 1)
    # off: the typo runs and fails, stays in the notebook, and the first answer is taken
    assert (meta_off["prechecks"], meta_off["errors"], meta_off["grounding_returns"]) == (0, 1, 0)
    assert meta_off["cells_removed"] == 0
    nb_off = nbformat.read(tmp_path / "off.ipynb", as_version=4)
    assert any(o.get("ename") == "KeyError" for c in nb_off.cells if c.cell_type == "code" for o in c.outputs)
