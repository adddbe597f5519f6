"""Fixtures for the server extension tests: a real Jupyter server with jupyter-collaboration,
authentication required, a non-trivial base URL, a notebook whose kernel holds ``df``.

Test modules star-import this module instead of registering pytest-jupyter as a plugin:
``pytest_plugins`` would register it for the whole session, and its autouse fixtures (an
event loop and a ServerApp cleanup per test) would then run around every other test too.
Imported fixtures stay local to the importing module; ``asynctest`` runs coroutine tests
on pytest-jupyter's loop, as its (unregistered) ``pytest_pyfunc_call`` hook would.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_core.utils import ensure_event_loop
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures, local to importers)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NB_PATH = "work dir/analysis.ipynb"
USER_CODE = (
    "import pandas as pd\n"
    "df = pd.read_csv('penguins.csv')\n"
    "empty = pd.DataFrame()\n"
    "_hidden = pd.DataFrame({'a': [1]})\n"
    "number = 3\n"
    "df.shape"
)
USER_CELLS = [
    nbformat.v4.new_markdown_cell("# My analysis\n\nThe user's own words.", id="user-md"),
    nbformat.v4.new_code_cell(USER_CODE, id="user-code"),
    nbformat.v4.new_code_cell("number + 1", id="user-tail"),
]


def own_session(session: Any) -> Any:
    """A session with the kernel's key but a fresh id: a client of its own, as the browser's
    would be (two clients sharing one id would get each other's replies)."""
    from jupyter_client.session import Session

    return Session(key=session.key, signature_scheme=session.signature_scheme, username=session.username)


def asynctest(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run a coroutine test function on the current (pytest-jupyter) event loop."""
    assert inspect.iscoroutinefunction(fn)

    @functools.wraps(fn)  # pytest reads the fixtures from the wrapped signature
    def run(*args: Any, **kwargs: Any) -> None:
        ensure_event_loop(prefer_selector_loop=True).run_until_complete(fn(*args, **kwargs))

    return run


@pytest.fixture(autouse=True)
def server_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each server in a temporary cwd: a room that jupyter-collaboration opens for
    ``get_document(create=True)`` builds its store without the configured ``db_path`` and
    would write ``.jupyter_ystore.db`` into the checkout."""
    monkeypatch.chdir(tmp_path)


SERVER_EXTENSIONS = {
    "jupyter_analyst": True,
    "jupyter_server_ydoc": True,
    "jupyter_server_fileid": True,
    "jupyterlab": False,
    "jupyter_lsp": False,
    "notebook_shim": False,
    "jupyter_server_terminals": False,
}
"""Only the extensions the tests need (no JupyterLab: a faster start)."""


@pytest.fixture
def jp_server_config(jp_root_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """Auth required; only the extensions the tests need (no JupyterLab: faster start)."""
    return {
        "ServerApp": {
            "jpserver_extensions": dict(SERVER_EXTENSIONS),
            "allow_unauthenticated_access": False,
        },
        "IdentityProvider": {"token": "secret-test-token"},
        "FileContentsManager": {"delete_to_trash": False},
        "JupyterAnalyst": {"profile": "baseline", "cell_timeout": 60.0},
        "YDocExtension": {"document_save_delay": 0.3, "document_cleanup_delay": 60},
        "SQLiteYStore": {"db_path": str(tmp_path / "ystore.db")},
        "BaseFileIdManager": {"db_path": str(tmp_path / "fileid.db"), "root_dir": str(jp_root_dir)},
    }


@pytest.fixture
def analyst_app(jp_serverapp: Any) -> Any:
    """The extension app instance (traits can be changed at runtime, e.g. ``replay``)."""
    return jp_serverapp.web_app.settings["jupyter_analyst"]


@pytest.fixture
def notebook_file(jp_root_dir: Path) -> Path:
    """A notebook with the user's cells, next to a copy of penguins.csv."""
    folder = jp_root_dir / "work dir"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "penguins.csv", folder / "penguins.csv")
    nb = nbformat.v4.new_notebook(cells=[nbformat.from_dict(c) for c in USER_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = jp_root_dir / NB_PATH
    nbformat.write(nb, path)
    return path


async def api(
    jp_fetch: Any,
    *parts: str,
    method: str = "GET",
    body: Any = None,
    params: dict[str, str] | None = None,
    expect: int | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """Call the API (token attached by jp_fetch); return (status, decoded JSON)."""
    kwargs: dict[str, Any] = {"method": method, "raise_error": False, "headers": dict(headers or {})}
    if body is not None:
        kwargs["body"] = body if isinstance(body, str) else json.dumps(body)
    elif method == "POST":
        kwargs["body"] = "{}"
    r = await jp_fetch(*parts, params=params, **kwargs)
    data = json.loads(r.body) if r.body else None
    if expect is not None:
        assert r.code == expect, (r.code, data)
    return r.code, data


async def run_user_cell(
    serverapp: Any,
    kernel_id: str,
    code: str = USER_CODE,
    metadata: dict[str, Any] | None = None,
    timeout: float = 300,
    started: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Execute code in the notebook's kernel as the browser would (optionally with a cellId).

    ``started`` is set at the cell's first output (print a marker first), so a test can act
    while the cell is still running (run this in a task)."""
    km = serverapp.kernel_manager.get_kernel(kernel_id)
    kc = km.client(session=own_session(km.session))  # its own identity: replies come back here
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg = kc.session.msg("execute_request", content, metadata=metadata or {})
        kc.shell_channel.send(msg)
        deadline = time.monotonic() + timeout
        outputs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                m = await kc.get_iopub_msg(timeout=1)
            except Exception:
                continue
            if m["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                continue
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
            if m["msg_type"] in ("stream", "execute_result", "error", "display_data"):
                outputs.append(m["content"])
                if started is not None:
                    started.set()
        reply: dict[str, Any] = (await kc.get_shell_msg(timeout=120))["content"]
        reply["outputs"] = outputs
        # The server learns of the idle state from its own iopub stream, a moment later;
        # until then the extension would still see the kernel busy (GET dataframes: 409).
        while getattr(km, "execution_state", "idle") == "busy" and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return reply
    finally:
        kc.stop_channels()


@pytest.fixture
def live_notebook(jp_fetch: Any, jp_serverapp: Any, notebook_file: Path) -> Callable[[], Awaitable[str]]:
    """Start a session (kernel) for the notebook and run the user's cell; returns the kernel id."""

    async def start() -> str:
        _, session = await api(
            jp_fetch,
            "api",
            "sessions",
            method="POST",
            expect=201,
            body={
                "path": NB_PATH,
                "name": "analysis.ipynb",
                "type": "notebook",
                "kernel": {"name": "python3"},
            },
        )
        kernel_id: str = session["kernel"]["id"]
        reply = await run_user_cell(jp_serverapp, kernel_id)
        assert reply["status"] == "ok", reply
        return kernel_id

    return start


async def wait_idle(serverapp: Any, kernel_id: str, timeout: float = 30) -> None:
    """Until the server sees the kernel idle: a silent cell of ours (a check, a run's
    teardown) can leave it busy a moment longer on a loaded machine, and a busy kernel is
    answered differently (409, or checked later by the run). A person would wait too."""
    km = serverapp.kernel_manager.get_kernel(kernel_id)
    deadline = time.monotonic() + timeout
    while km.execution_state != "idle" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def wait_run(
    jp_fetch: Any,
    run_id: str,
    states: tuple[str, ...] = ("finished", "stopped", "failed"),
    timeout: float = 300,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        _, status = await api(jp_fetch, "jupyter-analyst", "runs", run_id, expect=200)
        if status["state"] in states:
            return status
        assert time.monotonic() < deadline, f"run did not reach {states}: {status}"
        await asyncio.sleep(0.1)


async def ydoc(serverapp: Any, path: str = NB_PATH) -> Any:
    """The live shared document of the notebook (the room's own, not a copy)."""
    ext = serverapp.web_app.settings["jupyter_server_ydoc"]
    return await ext.get_document(
        path=path, content_type="notebook", file_format="json", copy=False, create=True
    )


async def saved_notebook(path: Path, predicate: Callable[[Any], bool], timeout: float = 120) -> Any:
    """Wait until the file on disk satisfies ``predicate`` (the room saves after a delay)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            nb = nbformat.read(path, as_version=4)
            if predicate(nb):
                return nb
        except Exception:
            pass
        assert time.monotonic() < deadline, "the notebook was not saved as expected"
        await asyncio.sleep(0.2)
