"""Where the agent's cells go: an nbformat file on disk (the live document is ``server.live``).

The writer, and nbformat with it, are imported on first use (``NotebookWriter``,
``atomic_write``): ``import nbformat`` costs ~0.85 s, which a headless run pays while its
kernel starts instead of before (``cli``).
"""

from typing import Any

from .meta import META_KEY, RAISES_TAG, TAG, agent_metadata, is_agent_cell

__all__ = [
    "META_KEY",
    "RAISES_TAG",
    "TAG",
    "NotebookWriter",
    "agent_metadata",
    "atomic_write",
    "is_agent_cell",
]


def __getattr__(name: str) -> Any:
    if name in ("NotebookWriter", "atomic_write"):
        from . import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
