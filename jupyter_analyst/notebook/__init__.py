"""Where the agent's cells go: an nbformat file on disk (the live document comes later)."""

from .writer import META_KEY, RAISES_TAG, TAG, NotebookWriter, agent_metadata, atomic_write, is_agent_cell

__all__ = [
    "META_KEY",
    "RAISES_TAG",
    "TAG",
    "NotebookWriter",
    "agent_metadata",
    "atomic_write",
    "is_agent_cell",
]
