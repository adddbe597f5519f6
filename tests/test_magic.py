"""``%analyst`` without a Jupyter server: argument checks and the in-process run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from jupyter_analyst.errors import InputError, MissingVariableError
from jupyter_analyst.kernel import InProcessExecutor
from jupyter_analyst.magic import parse_line
from jupyter_analyst.notebook import META_KEY
from jupyter_analyst.session import read_frame_facts

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_parse_line() -> None:
    args = parse_line('df "why did churn rise?" --max-steps 6')
    assert (args.variable, args.question, args.max_steps, args.profile) == (
        "df",
        "why did churn rise?",
        6,
        None,
    )
    assert parse_line("sales").question is None
    assert parse_line("df what about price --profile baseline").question == "what about price"
    for bad in ("", "1df", "df --max-steps 0", "df --max-steps x", 'df "unclosed', "df --nope"):
        with pytest.raises(InputError):
            parse_line(bad)


def test_every_shell_refuses_the_same_inputs(ipython_shell: Any) -> None:
    """The magic checks with the session's own check, run in this shell's namespace."""
    import pandas as pd

    ipython_shell.user_ns.update(df=pd.DataFrame({"a": [1]}), empty=pd.DataFrame(), n=3)
    executor = InProcessExecutor(ipython_shell)
    assert read_frame_facts(executor, "df")["rows"] == 1
    with pytest.raises(MissingVariableError, match="name 'nope' is not defined"):
        read_frame_facts(executor, "nope")
    with pytest.raises(InputError, match="'n' is a int, not a pandas DataFrame"):
        read_frame_facts(executor, "n")
    with pytest.raises(InputError, match="'empty' is an empty DataFrame"):
        read_frame_facts(executor, "empty")


def test_magic_headless_writes_a_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a plain kernel (nbclient, no Jupyter server) the run happens in the kernel itself."""
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    data = tmp_path / "penguins.csv"
    data.write_bytes((EXAMPLES / "penguins.csv").read_bytes())
    cells = [
        "import pandas as pd\ndf = pd.read_csv('penguins.csv')\nempty = pd.DataFrame()\nnumber = 3",
        "%load_ext jupyter_analyst",
        '%analyst df "How does body mass differ by species?" --max-steps 6',
        "%analyst nope",
        "%analyst number",
        "%analyst empty --max-steps 3",
        "sorted(k for k in globals() if 'jupyter_analyst' in k)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    def text(i: int) -> str:
        return "".join(o.get("text", "") for o in nb.cells[i].outputs if o.output_type == "stream")

    lines = text(2).strip().splitlines()
    assert all(line.startswith("analyst:") for line in lines), lines  # the agent's prints stay captured
    assert not [o for o in nb.cells[2].outputs if o.output_type != "stream"]
    report = tmp_path / "df-analysis-report.ipynb"
    assert str(report) in lines[-1]
    assert text(3).strip() == "analyst: error: name 'nope' is not defined"
    assert text(4).strip() == "analyst: error: 'number' is a int, not a pandas DataFrame"
    assert text(5).strip().startswith("analyst: error: 'empty' is an empty DataFrame")
    assert nb.cells[6].outputs[0]["data"]["text/plain"] == "[]"
    written = nbformat.read(report, as_version=4)
    nbformat.validate(written)
    assert written.cells[0].metadata[META_KEY]["role"] == "header"
    assert "body mass" in written.cells[0].source
    code = [c for c in written.cells if c.cell_type == "code"]
    assert code and all(c.outputs for c in code)
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert not any(
        k.startswith("application/vnd.jupyter-analyst")
        for c in code
        for o in c.outputs
        for k in o.get("data", {})
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["df-analysis-report.ipynb", "penguins.csv"]
