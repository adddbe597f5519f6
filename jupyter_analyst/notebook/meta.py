"""What marks a cell as the analyst's: its metadata key, its tags.

Kept apart from the writer (and from nbformat, whose import costs most of a second) so the
server, the kernel side and the session can tell agent cells apart without importing it.
"""

from __future__ import annotations

from typing import Any

from ..agent.types import CellRole

TAG = "jupyter-analyst"
META_KEY = "jupyter_analyst"
RAISES_TAG = "raises-exception"
"""Jupyter's tag for a cell expected to fail. nbclient, nbconvert and JupyterLab's Run All go
past such a cell, so a notebook whose errors the agent then fixed still re-runs top to
bottom, with the failed attempt kept visible."""


def agent_metadata(
    run_id: str, step: int, role: CellRole, unverified: list[str] | None = None
) -> dict[str, Any]:
    """Cell metadata that marks a cell as written by the agent (and, on conclusions, the
    numbers no output supported, so a reader of the file sees them too)."""
    meta: dict[str, Any] = {"run_id": run_id, "step": step, "role": role}
    if unverified:
        meta["unverified"] = list(unverified)
    return {META_KEY: meta, "tags": [TAG]}


def is_agent_cell(cell: dict[str, Any]) -> bool:
    return META_KEY in cell.get("metadata", {})
