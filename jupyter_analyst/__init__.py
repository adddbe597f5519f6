"""jupyter-analyst: a local LLM data analyst that works in a real Jupyter notebook.

Importing the package is cheap on purpose: torch, transformers and the kernel machinery
load only in the functions that use them (including the Jupyter hooks below).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """jupyter_server entry point: the extension app (imported only by a server)."""
    from .server.app import JupyterAnalyst

    return [{"module": "jupyter_analyst", "app": JupyterAnalyst}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where ``jupyter labextension develop`` finds the built frontend (``labextension/`` at the
    repository root, built from ``src/``; wheels ship it as shared data)."""
    return [{"src": "../labextension", "dest": "jupyter-analyst"}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_analyst``: registers the ``%analyst`` magic."""
    from .magic import register

    register(ipython)
