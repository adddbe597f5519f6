"""KernelExecutor against a real ipykernel: outputs, errors, timeouts, floods, deaths, facts."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_analyst.agent.prompts import FACTS_COLUMN_RE, FACTS_HEADER_RE, render_facts
from jupyter_analyst.agent.types import CellResult, Executor
from jupyter_analyst.errors import InputError, MissingVariableError
from jupyter_analyst.kernel import KernelError, KernelExecutor
from jupyter_analyst.kernel.executor import is_secret_name
from jupyter_analyst.kernel.facts import FACTS_MIMES, frame_facts_code, parse_facts

BASE_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}


@pytest.fixture(scope="module")
def ex() -> Iterator[KernelExecutor]:
    """One shared kernel for tests that leave it healthy (start costs ~1.5 s)."""
    with KernelExecutor(timeout=30, max_output_bytes=100_000, interrupt_grace=5) as executor:
        yield executor


def _text(result: CellResult, name: str = "stdout") -> str:
    return "".join(o["text"] for o in result.outputs if o["output_type"] == "stream" and o["name"] == name)


def _mimes(result: CellResult) -> set[str]:
    return {m for o in result.outputs for m in o.get("data", {})}


def test_protocol_and_public_names(ex: KernelExecutor) -> None:
    assert isinstance(ex, Executor)
    assert ex.alive
    names = ex.run_silent("print(' '.join(n for n in dir() if not n.startswith('_')))").split()
    assert set(names) <= BASE_NAMES, names


def test_ok_cell(ex: KernelExecutor) -> None:
    r = ex.execute("print('hello')\nprint('world')\nimport sys; print('warn', file=sys.stderr)\n40 + 2")
    assert r.status == "ok" and r.ok
    assert [o["output_type"] for o in r.outputs] == ["stream", "stream", "execute_result"]
    assert r.outputs[0]["text"] == "hello\nworld\n"  # consecutive stdout chunks merged
    assert r.outputs[1]["name"] == "stderr"
    assert r.outputs[2]["data"]["text/plain"] == "42"
    assert r.execution_count is not None and r.outputs[2]["execution_count"] == r.execution_count
    assert r.duration > 0 and not r.truncated and not r.facts


def test_error_cell(ex: KernelExecutor) -> None:
    r = ex.execute("def f(x):\n    return x / 0\nprint('before')\nf(1)")
    assert r.status == "error"
    assert r.error_name == "ZeroDivisionError" and "division by zero" in r.error_value
    assert r.traceback and all("\x1b[" not in line for line in r.traceback)
    assert "ZeroDivisionError" in r.traceback[-1]
    assert any("return x / 0" in line for line in r.traceback)
    assert r.outputs[-1]["output_type"] == "error"
    assert _text(r) == "before\n"


def test_run_silent_keeps_execution_count(ex: KernelExecutor) -> None:
    first = ex.execute("1").execution_count
    assert ex.run_silent("print(2 + 2)") == "4\n"
    ex.run_silent("_ja_tmp = 1\ndel _ja_tmp")
    second = ex.execute("1").execution_count
    assert first is not None and second == first + 1
    with pytest.raises(KernelError) as info:
        ex.run_silent("raise ValueError('boom')")
    assert info.value.ename == "ValueError" and info.value.evalue == "boom"


def test_clear_output(ex: KernelExecutor) -> None:
    r = ex.execute(
        "from IPython.display import clear_output\n"
        "print('old')\nclear_output()\nprint('new')\n"
        "clear_output(wait=True)\nprint('newest')"
    )
    assert r.status == "ok" and _text(r) == "newest\n"
    r = ex.execute("from IPython.display import clear_output\nprint('kept')\nclear_output(wait=True)")
    assert _text(r) == "kept\n"


def test_timeout_interrupts_and_keeps_state(ex: KernelExecutor) -> None:
    ex.execute("kept_value = 41")
    old = ex.timeout
    ex.timeout = 2
    try:
        r = ex.execute("while True:\n    pass")
    finally:
        ex.timeout = old
    assert r.status == "timeout" and r.error_name == "CellTimeoutError"
    assert "exceeded 2s" in r.error_value and "interrupted" in r.error_value
    assert "restarted" not in r.error_value  # the interrupt was enough
    r = ex.execute("kept_value + 1")
    assert r.status == "ok" and r.outputs[-1]["data"]["text/plain"] == "42"


def test_huge_print_is_capped(ex: KernelExecutor) -> None:
    ex.execute("still_here = 'yes'")
    r = ex.execute("print('x' * 50_000_000)")
    assert r.truncated
    text = _text(r)
    assert len(text) < ex.max_output_bytes + 200
    assert re.search(r"\[\.\.\. output truncated: \d+ bytes omitted \.\.\.\]", text)
    assert ex.execute("still_here").outputs[-1]["data"]["text/plain"] == "'yes'"


def test_print_flood_is_interrupted(ex: KernelExecutor) -> None:
    r = ex.execute("for i in range(5_000_000):\n    print(i)")
    assert r.truncated
    assert r.status == "error" and r.error_name == "OutputLimitError"
    assert len(_text(r)) < ex.max_output_bytes + 200
    assert ex.execute("still_here").status == "ok"


def test_figure_facts(ex: KernelExecutor) -> None:
    r = ex.execute(
        "import matplotlib.pyplot as plt, seaborn as sns, pandas as pd\n"
        "_d = pd.DataFrame({'g': ['a', 'b', 'a', 'b'], 'v': [1, 2, 3, 4]})\n"
        "ax = sns.barplot(data=_d, x='g', y='v')\n"
        "ax.set_title('Value by group'); ax.set_xlabel('Group'); ax.set_ylabel('Value')\n"
        "plt.show()"
    )
    assert r.status == "ok", r
    assert "image/png" in _mimes(r)
    assert not _mimes(r) & set(FACTS_MIMES)
    assert not any(set(o.get("metadata", {})) & set(FACTS_MIMES) for o in r.outputs)
    (fig,) = [f for f in r.facts if f["type"] == "figure"]
    (axis,) = fig["axes"]
    assert (axis["title"], axis["xlabel"], axis["ylabel"]) == ("Value by group", "Group", "Value")
    assert axis["patches"] == 2 and axis["xticklabels"] == ["a", "b"]


def test_frame_result_facts(ex: KernelExecutor) -> None:
    r = ex.execute("import pandas as pd\ndf = pd.DataFrame({'a': range(7), 'b': list('abcdefg')})\ndf")
    assert r.status == "ok"
    assert {"text/html", "text/plain"} <= _mimes(r) and not _mimes(r) & set(FACTS_MIMES)
    (frame,) = r.facts
    assert frame["type"] == "frame" and frame["shape"] == [7, 2]
    assert frame["dtypes"]["a"] == "int64" and "a" in frame["head"]
    r = ex.execute("df['a']")
    assert r.facts[0]["kind"] == "Series" and r.facts[0]["shape"] == [7]


FRAME_SETUP = """
import numpy as np, pandas as pd
n = 300
facts_df = pd.DataFrame({
    'amount': np.arange(n, dtype=float),
    'segment': pd.Categorical(['a', 'b', 'c'] * 100),
    'city': ['Oslo', 'Rome', None] * 100,
    'signup': pd.date_range('2021-01-01', periods=n).strftime('%Y-%m-%d'),
    'when': pd.date_range('2021-01-01', periods=n),
    'flag': [True, False] * 150,
    'note': [f'free text {i}' for i in range(n)],
    'tags': [[i % 3] for i in range(n)],
})
facts_df.loc[0, 'amount'] = np.nan
empty_df = facts_df.iloc[:0]
wide_df = pd.DataFrame(np.zeros((2, 70)), columns=[f'c{i}' for i in range(70)])
not_a_frame = 3
"""


def test_frame_facts_code(ex: KernelExecutor) -> None:
    ex.run_silent(FRAME_SETUP)
    facts = parse_facts(ex.run_silent(frame_facts_code("facts_df")))
    assert (facts["name"], facts["rows"], facts["cols"]) == ("facts_df", 300, 8)
    cols = {c["name"]: c for c in facts["columns"]}
    assert cols["amount"]["kind"] == "numeric" and cols["amount"]["missing"] == 1
    assert cols["amount"]["example"] == "1.0"
    assert cols["segment"]["kind"] == "categorical" and cols["segment"]["unique"] == 3
    assert cols["city"]["missing"] == 100 and cols["city"]["kind"] == "categorical"
    assert cols["when"]["kind"] == "datetime" and cols["flag"]["kind"] == "boolean"
    assert cols["note"]["kind"] == "text" and cols["tags"]["unique"] == 3
    assert set(facts["date_columns"]) == {"signup", "when"}
    assert facts["omitted_columns"] == 0 and "amount" in facts["head"]
    text = render_facts(facts)
    assert FACTS_HEADER_RE.search(text)
    assert len(FACTS_COLUMN_RE.findall(text)) == 8

    empty = parse_facts(ex.run_silent(frame_facts_code("empty_df")))
    assert empty["rows"] == 0 and len(empty["columns"]) == 8
    assert all(c["example"] == "" and c["missing"] == 0 for c in empty["columns"])

    wide = parse_facts(ex.run_silent(frame_facts_code("wide_df")))
    assert len(wide["columns"]) == 60 and wide["omitted_columns"] == 10

    with pytest.raises(MissingVariableError, match="not defined"):
        parse_facts(ex.run_silent(frame_facts_code("missing_df")))
    with pytest.raises(InputError, match="not a pandas DataFrame"):
        parse_facts(ex.run_silent(frame_facts_code("not_a_frame")))
    with pytest.raises(ValueError):
        frame_facts_code("df; import os")
    names = ex.run_silent("print(' '.join(n for n in dir() if n.startswith('__ja')))")
    assert names.strip() == ""


def test_dead_kernel_is_reported_quickly() -> None:
    with KernelExecutor(timeout=30) as dying:
        dying.execute("x = 1")
        r = dying.execute("import os; os._exit(1)")
        assert r.status == "dead" and r.error_name == "DeadKernelError"
        assert not dying.alive
        again = dying.execute("x")
        assert again.status == "dead" and "earlier cell" in again.error_value  # not a timeout
        with pytest.raises(KernelError):
            dying.run_silent("print(1)")
        dying.restart()
        assert dying.execute("1 + 1").status == "ok"
    dying.shutdown()  # idempotent


def test_killed_kernel_and_uninterruptible_cell(tmp_path: Path) -> None:
    with KernelExecutor(cwd=tmp_path, timeout=1, interrupt_grace=2, env={"JA_TEST_VAR": "on"}) as ex2:
        r = ex2.execute("import os; print(os.getcwd(), os.environ['JA_TEST_VAR'])")
        assert _text(r).split() == [str(tmp_path), "on"]
        r = ex2.execute(
            "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
            "    except KeyboardInterrupt:\n        pass"
        )
        assert r.status == "timeout" and "restarted" in r.error_value
        assert ex2.execute("'fresh'").status == "ok"
        pid = int(ex2.run_silent("import os; print(os.getpid())"))
        ex2.timeout = 30
        os.kill(pid, signal.SIGKILL)
        r = ex2.execute("import time; time.sleep(10)")
        assert r.status == "dead" and "died" in r.error_value  # noticed, not timed out


def test_unknown_kernel_raises() -> None:
    with pytest.raises(KernelError, match="could not start"):
        KernelExecutor(kernel_name="no-such-kernel").start()


@pytest.mark.parametrize(
    "name, secret",
    [
        ("OPENAI_API_KEY", True),
        ("HF_TOKEN", True),
        ("hf_token", True),
        ("GITHUB_TOKEN", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("AWS_SESSION_TOKEN", True),
        ("JUPYTER_ANALYST_WORKER_SECRET", True),
        ("JUPYTER_TOKEN", True),
        ("DJANGO_SECRET_KEY", True),
        ("PGPASSWORD", True),
        ("DB_PASSWORD", True),
        ("MYSQL_PWD", True),
        ("MY_SETTING", False),
        ("TOKENIZERS_PARALLELISM", False),
        ("PWD", False),
        ("PATH", False),
        ("HOME", False),
        ("GPG_KEY", False),
        ("SSH_AUTH_SOCK", False),
        ("HF_HUB_OFFLINE", False),
    ],
)
def test_which_names_are_secrets(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_worker_secret_is_withheld_by_its_own_name() -> None:
    from jupyter_analyst.models.host import SECRET_ENV

    assert is_secret_name(SECRET_ENV)


def test_secrets_stay_out_of_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel runs a model's code into a shared notebook: no API keys, tokens or the
    worker's secret in its environment; what a caller passes in ``env`` still arrives."""
    secrets = ["OPENAI_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "JUPYTER_ANALYST_WORKER_SECRET"]
    for name in secrets:
        monkeypatch.setenv(name, f"value-of-{name}")
    monkeypatch.setenv("MY_SETTING", "innocent")
    names = [*secrets, "MY_SETTING", "PASSED_API_KEY"]
    with KernelExecutor(timeout=30, env={"PASSED_API_KEY": "on-purpose"}) as kernel:
        r = kernel.execute(f"import os\nfor n in {names!r}:\n    print(n, os.environ.get(n))")
    seen = dict(line.split(" ", 1) for line in _text(r).splitlines())
    assert seen == {
        **dict.fromkeys(secrets, "None"),
        "MY_SETTING": "innocent",
        "PASSED_API_KEY": "on-purpose",
    }
