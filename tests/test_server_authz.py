"""An authenticated user the authorizer denies gets 403 on every endpoint, websocket included."""

from __future__ import annotations

from typing import Any

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado.httpclient import HTTPClientError

pytest.register_assert_rewrite("server_conftest")

import server_conftest  # noqa: E402
from server_conftest import *  # noqa: E402, F403  (the server fixtures, module-local)
from server_conftest import NB_PATH, asynctest  # noqa: E402


class DenyAnalyst(Authorizer):
    """Allows everything except the jupyter_analyst resource."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return resource != "jupyter_analyst"


@pytest.fixture
def jp_server_config(jp_root_dir: Any, tmp_path: Any) -> dict[str, Any]:
    config = server_conftest.jp_server_config.__wrapped__(jp_root_dir, tmp_path)  # type: ignore[attr-defined]
    config["ServerApp"]["authorizer_class"] = DenyAnalyst
    return config


@asynctest
async def test_unauthorized_user_gets_403(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    calls = [
        ("GET", ("jupyter-analyst", "dataframes"), {"path": NB_PATH}),
        ("GET", ("jupyter-analyst", "profiles"), None),
        ("GET", ("jupyter-analyst", "runs"), None),
        ("POST", ("jupyter-analyst", "runs"), None),
        ("GET", ("jupyter-analyst", "runs", "abc123"), None),
        ("POST", ("jupyter-analyst", "runs", "abc123", "stop"), None),
        ("POST", ("jupyter-analyst", "runs", "abc123", "export"), None),
    ]
    for method, parts, params in calls:
        r = await jp_fetch(
            *parts, method=method, params=params, raise_error=False, body="{}" if method == "POST" else None
        )
        assert r.code == 403, (method, parts, r.code)
    with pytest.raises(HTTPClientError) as err:
        await jp_ws_fetch("jupyter-analyst", "runs", "abc123", "events")
    assert err.value.code == 403
    # The server itself still answers this user: only the analyst is denied.
    assert (await jp_fetch("api", "contents", raise_error=False)).code == 200
