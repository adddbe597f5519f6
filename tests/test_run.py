"""End to end on a real kernel: the baseline analyst, scripted fixes, silent models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from jupyter_analyst.agent import Budget, CellExecuted, StopReason
from jupyter_analyst.agent.types import Message
from jupyter_analyst.models.scripted import ScriptedPolicy, code, final
from jupyter_analyst.notebook import META_KEY, TAG
from jupyter_analyst.runner import RunConfig, run_analysis

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def figures(nb: Any) -> int:
    return sum(
        1 for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})
    )


def rerun(path: Path) -> None:
    """Execute the notebook top to bottom in a fresh kernel, as a user re-running it would."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()


@pytest.mark.parametrize(
    "name, question",
    [
        ("penguins.csv", "How does body mass differ by species?"),
        ("seattle-weather.csv", None),
    ],
)
def test_baseline_end_to_end(tmp_path: Path, name: str, question: str | None) -> None:
    out = tmp_path / "analysis.ipynb"
    events: list[Any] = []
    from jupyter_analyst.models.baseline import BaselineAnalyst

    outcome = run_analysis(
        RunConfig(EXAMPLES / name, out, question), BaselineAnalyst(), on_event=events.append
    )
    assert outcome.finished.reason is StopReason.FINAL_ANSWER, outcome.finished
    nb = nbformat.read(out, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[-1].metadata[META_KEY]["role"] == "conclusions"
    assert "baseline" in nb.cells[0].source.lower()  # labelled as what it is
    assert figures(nb) >= 3
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(TAG in c.metadata["tags"] for c in nb.cells)
    assert [c.execution_count for c in code_cells] == list(range(1, len(code_cells) + 1))
    assert not [e for e in events if isinstance(e, CellExecuted) and not e.result.ok]
    # The conclusions quote numbers that some cell really printed.
    outputs = "\n".join(
        "".join(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in code_cells
        for o in c.outputs
    )
    import re

    numbers = re.findall(r"\d+\.\d+", nb.cells[-1].source)
    assert numbers and sum(n in outputs for n in numbers) >= len(numbers) * 0.8
    # The whole conversation fits a small model's context (~4 characters a token).
    chars = sum(
        len(str(m.get("content") or "")) + len(str(m.get("tool_calls") or "")) for m in outcome.messages
    )
    assert chars < 16_000 * 4, chars
    rerun(out)


def test_error_fixed_on_a_real_kernel(tmp_path: Path) -> None:
    def fix(messages: list[Message]) -> Any:
        seen = messages[-1]["content"]
        if "KeyError" in seen and "body_mass" in seen:
            return code("mean_mass = df['body_mass_g'].mean()\nprint(f'mean mass {mean_mass:.1f}')")
        return code("raise SystemExit('the policy never saw the traceback')")

    policy = ScriptedPolicy(
        [
            code("print(df.shape)"),
            code("column = 'body_mass'\ndf[column].mean()"),  # computed: only the kernel can tell
            fix,
            final("Mean mass 4201.8 g."),
        ]
    )
    out = tmp_path / "fix.ipynb"
    events: list[Any] = []
    # keep_failed_cells: the failed attempt stays (tidy's default removes it: tests/test_tidy.py)
    config = RunConfig(EXAMPLES / "penguins.csv", out, keep_failed_cells=True)
    outcome = run_analysis(config, policy, on_event=events.append)
    executed = [e for e in events if isinstance(e, CellExecuted)]
    assert [e.result.status for e in executed] == ["ok", "error", "ok"]
    assert "Error: KeyError" in executed[1].observation
    assert executed[2].fixed_error and "mean mass 4201.8" in executed[2].observation
    assert outcome.finished.errors_fixed == 1 and outcome.finished.reason is StopReason.FINAL_ANSWER
    nb = nbformat.read(out, as_version=4)
    assert nb.cells[3].outputs[0]["output_type"] == "error"
    # The failed attempt stays visible, tagged so the notebook still re-runs top to bottom.
    assert "raises-exception" in nb.cells[3].metadata["tags"]
    assert "raises-exception" not in nb.cells[4].metadata["tags"]
    rerun(out)


def test_model_that_never_calls_a_tool(tmp_path: Path) -> None:
    out = tmp_path / "silent.ipynb"
    policy = ScriptedPolicy([], fallback="The penguins look interesting.")
    outcome = run_analysis(RunConfig(EXAMPLES / "penguins.csv", out, budget=Budget(max_steps=4)), policy)
    assert outcome.finished.reason is StopReason.MAX_STEPS and outcome.finished.steps == 4
    nb = nbformat.read(out, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata[META_KEY]["stop_reason"] == "max_steps"
    assert nb.cells[-1].metadata[META_KEY]["role"] == "note" and "step budget" in nb.cells[-1].source


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_tiny_local_model_through_the_embedded_worker(
    tmp_path: Path, tiny_model_dir: Path, tiny_adapter_dir: Path, quantization: str
) -> None:
    """The real loading code (transformers + peft + bitsandbytes) serving the real loop over HTTP.

    A random model never produces a valid tool call, so the run must end on its budget
    with a valid notebook and a note saying so.
    """
    from jupyter_analyst.models.host import EmbeddedModel

    with EmbeddedModel(
        tiny_model_dir, adapter=tiny_adapter_dir, quantization=quantization, device="cpu", max_new_tokens=24
    ) as host:
        policy = host.policy(temperature=0.0)
        out = tmp_path / "tiny.ipynb"
        events: list[Any] = []
        outcome = run_analysis(
            RunConfig(EXAMPLES / "penguins.csv", out, budget=Budget(max_steps=3)),
            policy,
            on_event=events.append,
        )
    assert outcome.finished.reason is StopReason.MAX_STEPS and outcome.finished.steps == 3
    assert outcome.finished.tokens > 0  # usage came back over the API
    nb = nbformat.read(out, as_version=4)
    nbformat.validate(nb)
    assert "via http://127.0.0.1" in nb.metadata[META_KEY]["policy"]
    assert nb.cells[-1].metadata[META_KEY]["role"] == "note"


@pytest.mark.parametrize(
    "output, budget, cell_timeout, says",
    [
        ("a-file/out.ipynb", Budget(), 60.0, "a-file is not a folder"),
        ("folder.ipynb", Budget(), 60.0, "is a folder, not a notebook file"),
        ("out.html", Budget(), 60.0, "must be an .ipynb file"),
        ("out.ipynb", Budget(max_steps=0), 60.0, "--max-steps must be at least 1"),
        ("out.ipynb", Budget(max_seconds=-1.0), 60.0, "--max-time must be a positive number"),
        ("out.ipynb", Budget(), 0.0, "--cell-timeout must be a positive number"),
    ],
)
def test_run_refuses_bad_outputs_and_limits_before_a_kernel_starts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    output: str,
    budget: Budget,
    cell_timeout: float,
    says: str,
) -> None:
    """Evaluation and collection get the CLI's refusals too (they call ``run_analysis``)."""
    from jupyter_analyst.errors import InputError
    from jupyter_analyst.kernel import KernelExecutor
    from jupyter_analyst.models.scripted import ScriptedPolicy

    def no_kernel(self: KernelExecutor) -> None:
        raise AssertionError("a kernel was started for a run that should have been refused")

    monkeypatch.setattr(KernelExecutor, "start", no_kernel)
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "folder.ipynb").mkdir()
    config = RunConfig(EXAMPLES / "penguins.csv", tmp_path / output, budget=budget, cell_timeout=cell_timeout)
    with pytest.raises(InputError, match=re.escape(says)):
        run_analysis(config, ScriptedPolicy([final("never")]))


def test_saving_keeps_an_existing_notebooks_mode(tmp_path: Path) -> None:
    """``--overwrite`` of a file the user made 0640 leaves it 0640, as ``open()`` would."""
    from jupyter_analyst.notebook import NotebookWriter

    path = tmp_path / "shared.ipynb"
    path.write_text("{}")
    path.chmod(0o640)
    writer = NotebookWriter(path, "run-1")
    writer.save()
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    nbformat.validate(nbformat.read(path, as_version=4))
