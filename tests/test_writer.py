"""The notebook file of a headless run: flat per-step cost, always a valid file."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import nbformat
import pytest

from jupyter_analyst.agent import CellAdded, CellExecuted, RunFinished, StopReason
from jupyter_analyst.agent.types import CellResult, CellsRemoved
from jupyter_analyst.notebook import writer as writer_module
from jupyter_analyst.notebook.writer import NotebookWriter

PNG = base64.b64encode(b"\x89PNG" + bytes(range(256)) * 40).decode()


def result(i: int) -> CellResult:
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": f"line {i}\nsecond é\n"},
        {"output_type": "display_data", "data": {"image/png": PNG, "text/plain": "<Figure>"}, "metadata": {}},
    ]
    return CellResult(status="ok", outputs=outputs, execution_count=i, duration=0.01)


def finished(steps: int) -> RunFinished:
    return RunFinished(StopReason.FINAL_ANSWER, "done", steps, 0, 1.0, 0, 0)


def run_events(writer: NotebookWriter, steps: int, first: int = 1) -> None:
    for i in range(first, first + steps):
        writer.handle(CellAdded(i, f"m{i}", "markdown", f"## Step {i}\nwhy", "markdown"))
        writer.handle(CellAdded(i, f"c{i}", "code", f"x = {i}\nprint(x)", "code"))
        writer.handle(CellExecuted(i, f"c{i}", result(i), ""))


def test_the_file_is_what_nbformat_writes_and_each_cell_is_serialised_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = writer_module.cell_text
    monkeypatch.setattr(writer_module, "cell_text", lambda cell: calls.append(cell.id) or real(cell))
    path = tmp_path / "run.ipynb"
    with NotebookWriter(path, "r1", {"question": "q"}, save_interval=0.05) as writer:
        run_events(writer, 40)
        writer.handle(CellsRemoved(["c3"]))
        writer.handle(finished(40))
    # a markdown cell once; a code cell when added and once more with its outputs: flat in
    # the run's length, where a full rewrite per step would dump every cell every step
    assert len(calls) == 40 + 2 * 40, len(calls)
    assert path.read_text(encoding="utf-8") == nbformat.v4.writes(writer.nb) + "\n"
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert len(nb.cells) == 79 and "c3" not in [c.id for c in nb.cells]
    assert nb.metadata["jupyter_analyst"]["stop_reason"] == "final_answer"


def test_saves_follow_in_the_background_and_the_end_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "run.ipynb"
    writer = NotebookWriter(path, "r1", save_interval=0.3)
    run_events(writer, 1)
    deadline = time.monotonic() + 10
    while not path.exists() or len(nbformat.read(str(path), as_version=4).cells) < 2:
        assert time.monotonic() < deadline, "the background save never came"
        time.sleep(0.02)
    t0 = time.perf_counter()
    run_events(writer, 3, first=2)  # within the interval: at most one more save, not one per event
    handled = time.perf_counter() - t0
    writer.handle(finished(3))  # RunFinished: written before handle returns
    saved = nbformat.read(str(path), as_version=4)
    assert saved.metadata["jupyter_analyst"]["steps"] == 3 and len(saved.cells) == 8
    assert handled < 0.3, handled  # no event waited for a save
    assert writer._saver is None  # the saver thread has ended


def test_a_failed_run_still_saves_everything_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "run.ipynb"
    with pytest.raises(RuntimeError, match="boom"), NotebookWriter(path, "r1", save_interval=60) as writer:
        run_events(writer, 2)
        raise RuntimeError("boom")  # a run that fails without a RunFinished
    assert [c.id for c in nbformat.read(str(path), as_version=4).cells] == ["m1", "c1", "m2", "c2"]


def test_an_invalid_output_is_refused_at_its_step_and_the_file_stays_valid(tmp_path: Path) -> None:
    path = tmp_path / "run.ipynb"
    with NotebookWriter(path, "r1", save_interval=0) as writer:
        run_events(writer, 1)
        writer.handle(CellAdded(2, "bad", "code", "1", "code"))
        broken = CellResult(status="ok", outputs=[{"output_type": "nope"}], execution_count=2)
        with pytest.raises(nbformat.ValidationError):
            writer.handle(CellExecuted(2, "bad", broken, ""))
    nbformat.validate(nbformat.read(str(path), as_version=4))


def test_closing_while_the_saver_saves_never_hangs(tmp_path: Path) -> None:
    """close() races the saver at every point of its loop (a lost wake-up would hang the run's end)."""
    import threading

    for i in range(150):
        writer = NotebookWriter(tmp_path / f"r{i}.ipynb", "r1", save_interval=0.001 * (i % 4))
        run_events(writer, 1 + i % 3)
        closer = threading.Thread(target=writer.handle, args=(finished(1),))
        closer.start()
        closer.join(10)
        assert not closer.is_alive(), f"close() hung at try {i}"
        assert len(nbformat.read(str(tmp_path / f"r{i}.ipynb"), as_version=4).cells) == 2 * (1 + i % 3)


def test_a_run_imports_nbformat_only_when_it_writes() -> None:
    """``import nbformat`` costs most of a second (jsonschema's format checkers); the run's
    modules leave it to the writer, which the CLI imports while the kernel starts."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import jupyter_analyst.cli, jupyter_analyst.runner, jupyter_analyst.session\n"
        "import jupyter_analyst.kernel, jupyter_analyst.notebook, jupyter_analyst.models.select\n"
        "assert 'nbformat' not in sys.modules, 'nbformat imported before the writer'\n"
        "from jupyter_analyst.notebook import NotebookWriter\n"
        "assert 'nbformat' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
