"""Authorization as Jupyter's own handlers do it: the extension's resource, then ``kernels``
and ``contents`` for whatever runs code in the kernel or reads and writes notebooks.

One server serves several roles: the authorizer picks the role from a request header, so
an admin can start a real run that a read-only user then watches.
"""

from __future__ import annotations

from typing import Any

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado.httpclient import HTTPClientError

pytest.register_assert_rewrite("server_conftest")

import server_conftest  # noqa: E402
from server_conftest import *  # noqa: E402, F403  (the server fixtures, module-local)
from server_conftest import NB_PATH, api, asynctest, wait_run  # noqa: E402

ROLE = "X-Analyst-Test-Role"
RUNS = ("jupyter-analyst", "runs")


class RoleAuthorizer(Authorizer):
    """Roles by request header; every question asked about a request of the extension is kept.

    admin (no header): everything. no-analyst: everything but the ``jupyter_analyst``
    resource. read-only: the extension, and only ``read`` on anything else. analyst-only:
    the extension and nothing else.
    """

    asked: list[tuple[str, str, str, str]] = []
    """(role, "METHOD path after the base URL", action, resource)."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        role = handler.request.headers.get(ROLE, "admin")
        path = handler.request.path
        if "/jupyter-analyst/" in path:
            where = path[path.index("/jupyter-analyst/") + 1 :]
            RoleAuthorizer.asked.append((role, f"{handler.request.method} {where}", action, resource))
        if role == "no-analyst":
            return resource != "jupyter_analyst"
        if role == "read-only":
            return resource == "jupyter_analyst" or action == "read"
        if role == "analyst-only":
            return resource == "jupyter_analyst"
        return True


@pytest.fixture
def jp_server_config(jp_root_dir: Any, tmp_path: Any) -> dict[str, Any]:
    config = server_conftest.jp_server_config.__wrapped__(jp_root_dir, tmp_path)  # type: ignore[attr-defined]
    config["ServerApp"]["authorizer_class"] = RoleAuthorizer
    return config


@pytest.fixture(autouse=True)
def fresh_record() -> None:
    RoleAuthorizer.asked.clear()


CALLS: list[tuple[str, tuple[str, ...], dict[str, str] | None]] = [
    ("GET", ("jupyter-analyst", "dataframes"), {"path": NB_PATH}),
    ("GET", ("jupyter-analyst", "profiles"), None),
    ("GET", RUNS, None),
    ("POST", RUNS, None),
    ("GET", (*RUNS, "abc123"), None),
    ("POST", (*RUNS, "abc123", "stop"), None),
    ("POST", (*RUNS, "abc123", "export"), None),
    ("POST", (*RUNS, "abc123", "discard"), None),
    ("POST", (*RUNS, "abc123", "restore"), None),
]

NEEDS: dict[str, set[tuple[str, str]]] = {
    "GET jupyter-analyst/dataframes": {("read", "jupyter_analyst"), ("execute", "kernels")},
    "GET jupyter-analyst/profiles": {("read", "jupyter_analyst")},
    "GET jupyter-analyst/runs": {("read", "jupyter_analyst"), ("read", "contents")},
    "POST jupyter-analyst/runs": {
        ("write", "jupyter_analyst"),
        ("execute", "kernels"),
        ("read", "contents"),
        ("write", "contents"),
    },
    "GET jupyter-analyst/runs/abc123": {("read", "jupyter_analyst"), ("read", "contents")},
    "POST jupyter-analyst/runs/abc123/stop": {
        ("write", "jupyter_analyst"),
        ("write", "contents"),
        ("write", "kernels"),
    },
    "POST jupyter-analyst/runs/abc123/export": {
        ("write", "jupyter_analyst"),
        ("read", "contents"),
        ("write", "contents"),
    },
    "POST jupyter-analyst/runs/abc123/discard": {
        ("write", "jupyter_analyst"),
        ("write", "contents"),
        ("execute", "kernels"),
    },
    "POST jupyter-analyst/runs/abc123/restore": {("write", "jupyter_analyst"), ("write", "contents")},
    "GET jupyter-analyst/runs/abc123/events": {("read", "jupyter_analyst"), ("read", "contents")},
}
"""What each endpoint asks the authorizer: the extension's resource, and what Jupyter's own
kernels and contents handlers would require of the same work."""


async def call_all(jp_fetch: Any, jp_ws_fetch: Any, role: str) -> dict[str, tuple[int, str]]:
    """Every endpoint once as ``role`` (unknown run ids): "METHOD path" -> (status, message)."""
    out: dict[str, tuple[int, str]] = {}
    for method, parts, params in CALLS:
        code, body = await api(jp_fetch, *parts, method=method, params=params, headers={ROLE: role})
        out[f"{method} {'/'.join(parts)}"] = (code, (body or {}).get("message", ""))
    try:
        ws = await jp_ws_fetch(*RUNS, "abc123", "events", headers={ROLE: role})
        ws.close()
        out["GET jupyter-analyst/runs/abc123/events"] = (101, "")
    except HTTPClientError as err:
        out["GET jupyter-analyst/runs/abc123/events"] = (err.code, "")
    return out


@asynctest
async def test_each_endpoint_asks_for_what_jupyter_would(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    codes = await call_all(jp_fetch, jp_ws_fetch, "admin")
    assert codes["GET jupyter-analyst/profiles"][0] == 200
    assert codes["POST jupyter-analyst/runs"][0] == 400  # allowed, then the empty body is refused
    asked: dict[str, set[tuple[str, str]]] = {}
    for _, where, action, resource in RoleAuthorizer.asked:
        asked.setdefault(where, set()).add((action, resource))
    assert asked == NEEDS


@asynctest
async def test_unauthorized_user_gets_403(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    """Denied the extension's resource: 403 everywhere, websocket included."""
    codes = await call_all(jp_fetch, jp_ws_fetch, "no-analyst")
    assert {where: code for where, (code, _) in codes.items()} == dict.fromkeys(NEEDS, 403)
    # The server itself still answers this user: only the analyst is denied.
    r = await jp_fetch("api", "contents", headers={ROLE: "no-analyst"}, raise_error=False)
    assert r.code == 200


@asynctest
async def test_extension_only_role_cannot_run_read_or_write(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    """Allowed the extension's resource but neither kernels nor contents: only the profiles."""
    codes = await call_all(jp_fetch, jp_ws_fetch, "analyst-only")
    expected = dict.fromkeys(NEEDS, 403)
    expected["GET jupyter-analyst/profiles"] = 200
    assert {where: code for where, (code, _) in codes.items()} == expected
    assert codes["GET jupyter-analyst/dataframes"][1] == (
        "Listing DataFrames runs code in the notebook's kernel, which needs the Jupyter "
        "permission 'execute' on 'kernels'; this user does not have it"
    )
    assert "'execute' on 'kernels'" in codes["POST jupyter-analyst/runs"][1]
    assert "reads the notebook" in codes["POST jupyter-analyst/runs/abc123/export"][1]
    # Checked before the body is read: a bad body is still a 403, not a 400.
    code, _ = await api(jp_fetch, *RUNS, method="POST", body="not json", headers={ROLE: "analyst-only"})
    assert code == 403


@asynctest
async def test_read_only_role_watches_but_cannot_run_stop_or_export(
    jp_fetch: Any, jp_ws_fetch: Any, live_notebook: Any
) -> None:
    """A run the admin started: a read-only user sees it (runs, status, events) but can't
    list DataFrames (code in the kernel), start a run, stop it or export it."""
    await live_notebook()
    _, status = await api(
        jp_fetch, *RUNS, method="POST", expect=201, body={"path": NB_PATH, "variable": "df"}
    )
    run_id = status["run_id"]
    watcher = {ROLE: "read-only"}
    await api(jp_fetch, "jupyter-analyst", "profiles", headers=watcher, expect=200)
    _, runs = await api(jp_fetch, *RUNS, headers=watcher, expect=200)
    assert [r["run_id"] for r in runs] == [run_id]
    await api(jp_fetch, *RUNS, run_id, headers=watcher, expect=200)
    refused = [
        ("GET", ("jupyter-analyst", "dataframes"), {"path": NB_PATH}, None, "'execute' on 'kernels'"),
        ("POST", RUNS, None, {"path": NB_PATH, "variable": "df"}, "'execute' on 'kernels'"),
        ("POST", (*RUNS, run_id, "stop"), None, None, "'write' on 'contents'"),
        ("POST", (*RUNS, run_id, "export"), None, None, "'write' on 'contents'"),
    ]
    for method, parts, params, body, needs in refused:
        code, error = await api(jp_fetch, *parts, method=method, params=params, body=body, headers=watcher)
        assert code == 403 and needs in error["message"], (method, parts, code, error)
    ws = await jp_ws_fetch(*RUNS, run_id, "events", headers=dict(watcher))
    first = await ws.read_message()
    ws.close()
    assert first is not None and '"type": "status"' in first
    final = await wait_run(jp_fetch, run_id)  # the read-only user's stop did not stop it
    assert final["state"] == "finished", final
    await api(jp_fetch, *RUNS, run_id, "export", method="POST", headers=watcher, expect=403)
    await api(jp_fetch, *RUNS, run_id, "export", method="POST", expect=201)  # the admin may
    for action in ("discard", "restore"):  # taking a run's cells out of the notebook writes it
        code, error = await api(jp_fetch, *RUNS, run_id, action, method="POST", headers=watcher)
        assert code == 403 and "'write' on 'contents'" in error["message"], (action, error)
