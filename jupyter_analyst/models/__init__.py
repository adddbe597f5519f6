"""Model backends: an OpenAI-compatible client and an embedded transformers worker.

Importing this package is cheap: torch, transformers and peft load only inside the worker
process (``python -m jupyter_analyst.models.worker``), and the clients (httpx) only when
one of the names below is first used, so the CLI's parser (which reads the model flags
from ``models.select``) starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .host import EmbeddedModel
    from .openai_client import OpenAIChatPolicy, check_server

__all__ = ["EmbeddedModel", "OpenAIChatPolicy", "check_server"]

_HOMES = {"EmbeddedModel": ".host", "OpenAIChatPolicy": ".openai_client", "check_server": ".openai_client"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
