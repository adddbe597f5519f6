"""Export one run as a report: a header cell plus only that run's cells, as .ipynb and .html.

The live notebook mixes the user's cells with one or more runs; the report keeps just the
analysis of one run (its cells carry ``metadata.jupyter_analyst.run_id``), with outputs,
so it can be shared as it is. It is written next to the notebook through the contents
manager, so the paths returned are API paths the frontend can open.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import nbformat

from ..export import render_html
from ..notebook.markdown import code_span
from ..notebook.writer import META_KEY, TAG
from ..session import render_header
from .runs import ApiError, Run, maybe_await
from .schema import ExportReply


def report_path(notebook_path: str) -> str:
    """``<dir>/<stem>-analysis-report.ipynb`` for an API path."""
    folder, name = posixpath.split(notebook_path)
    stem = name[: -len(".ipynb")] if name.endswith(".ipynb") else name
    return posixpath.join(folder, f"{stem}-analysis-report.ipynb")


async def current_notebook(serverapp: Any, path: str) -> dict[str, Any]:
    """The notebook as the shared document holds it now (unsaved edits included), else on disk."""
    ydoc_ext = serverapp.web_app.settings.get("jupyter_server_ydoc")
    if ydoc_ext is not None:
        try:
            doc = await ydoc_ext.get_document(
                path=path, content_type="notebook", file_format="json", copy=True, create=False
            )
        except Exception:
            doc = None
        if doc is not None:
            content: dict[str, Any] = await doc.aget()
            return content
    model = await maybe_await(serverapp.contents_manager.get(path, content=True, type="notebook"))
    return cast(dict[str, Any], model["content"])


_OWN_LINES = ("%analyst", "%load_ext jupyter_analyst", "%reload_ext jupyter_analyst")


def cell_run_id(cell: Any) -> str | None:
    """The run that wrote ``cell`` (its ``metadata.jupyter_analyst.run_id``), None for the user's."""
    run_id = (cell.get("metadata", {}).get(META_KEY) or {}).get("run_id")
    return str(run_id) if run_id else None


def setup_cells(cells: list[Any], first_run_cell: int) -> list[Any]:
    """Copies of the user's code cells above the run, without our magic lines.

    The run analysed a variable those cells made (``df = pd.read_csv(...)``); without them
    the report fails at its first cell with a NameError. Another run's cells and the
    ``%analyst`` lines (re-running one would start a new analysis) are left out."""
    found = []
    for cell in cells[:first_run_cell]:
        if cell.get("cell_type") != "code" or cell_run_id(cell):
            continue
        kept = [ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(_OWN_LINES)]
        source = "\n".join(kept).strip("\n")
        if source.strip():
            copy = nbformat.v4.new_code_cell(source)  # still the user's cell: none of our metadata
            copy.outputs, copy.execution_count = cell.get("outputs", []), cell.get("execution_count")
            found.append(copy)
    return found


def run_chain(runs: Mapping[str, Run], run: Run) -> list[str]:
    """The run and the earlier runs it follows up, oldest first: a follow-up's cells use
    their variables, so its report holds their cells too."""
    chain = [run.run_id]
    earlier = runs.get(run.follows) if run.follows else None
    while earlier is not None and earlier.run_id not in chain:
        chain.insert(0, earlier.run_id)
        earlier = runs.get(earlier.follows) if earlier.follows else None
    return chain


def build_report(
    run: Run, content: dict[str, Any], runs_in_notebook: int = 1, chain: list[str] | None = None
) -> nbformat.NotebookNode:
    """Header, the user's cells that made the frame, then the run's cells (outputs kept), as a
    new, valid notebook that re-runs top to bottom in a fresh kernel beside the original.
    ``chain`` (``run_chain``): the runs whose cells go in, for a follow-up."""
    nb = nbformat.from_dict(content)
    chain = chain or [run.run_id]
    at = [i for i, c in enumerate(nb.cells) if cell_run_id(c) in chain]
    cells = [nb.cells[i] for i in at]
    setup = setup_cells(list(nb.cells), at[0] if at else len(nb.cells))
    header = render_header(
        run.variable, run.question, run.facts or {}, run.policy, run.run_id, title="Analysis report:"
    )
    source = f"the notebook {code_span(run.path)}"
    if len(chain) > 1:
        earlier = ", ".join(f"`{r}`" for r in chain[:-1])
        source += f" (this report holds run `{run.run_id}` and the runs it follows up: {earlier})"
    elif runs_in_notebook > 1:
        source += f" (this report holds one of its {runs_in_notebook} runs: `{run.run_id}`)"
    header += f"\n\n*From {source}; the DataFrame is the variable {code_span(run.variable)} of its kernel.*"
    report = nbformat.v4.new_notebook()
    report.metadata.update({k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")})
    report.metadata[META_KEY] = {
        "run_id": run.run_id,
        "question": run.question,
        "variable": run.variable,
        "notebook": run.path,
        "policy": run.policy,
        "started": run.started,
        "ended": run.ended,
        "stop_reason": run.stop_reason,
    }
    title = posixpath.basename(run.path)[: -len(".ipynb")] or "notebook"
    report.metadata["title"] = f"Analysis report: {title}" + (f": {run.question}" if run.question else "")
    report.cells.append(
        nbformat.v4.new_markdown_cell(
            header, metadata={META_KEY: {"run_id": run.run_id, "step": 0, "role": "header"}, "tags": [TAG]}
        )
    )
    if setup:
        note = (
            f"## Setup\n\nThe cells of {code_span(run.path)} above the analysis, so this report "
            "re-runs on its own."
        )
        report.cells.append(nbformat.v4.new_markdown_cell(note, metadata={META_KEY: {"role": "user-setup"}}))
        report.cells.extend(setup)
    report.cells.extend(cells)
    nbformat.validate(report)
    return report


def _render_html(os_path: Any, nb: nbformat.NotebookNode, html_path: str) -> str | None:
    """The sanitized HTML of ``nb`` (``export.render_html``): written beside the report when
    files live on disk (returns None), else returned for the contents manager to save."""
    body = render_html(nb)
    if os_path is None:
        return body
    Path(os_path(html_path)).write_text(body, encoding="utf-8")
    return None


async def export_run(serverapp: Any, run: Run, chain: list[str] | None = None) -> ExportReply:
    """Write the report of a run that has ended (409 while it still runs)."""
    if run.active:
        raise ApiError(409, f"run {run.run_id} is still {run.state}; export it when it has ended")
    try:
        content = await current_notebook(serverapp, run.path)
    except Exception as exc:
        raise ApiError(404, f"cannot read {run.path}: {exc}") from None
    runs = {cell_run_id(c) for c in content.get("cells", [])} - {None}
    report = build_report(run, content, max(1, len(runs)), chain)
    ipynb = report_path(run.path)
    await maybe_await(
        serverapp.contents_manager.save({"type": "notebook", "format": "json", "content": report}, ipynb)
    )
    cm = serverapp.contents_manager
    html = ipynb[: -len(".ipynb")] + ".html"
    os_path = getattr(cm, "_get_os_path", None)  # FileContentsManager and its async twin
    body = await asyncio.get_running_loop().run_in_executor(None, _render_html, os_path, report, html)
    if body is not None:
        await maybe_await(cm.save({"type": "file", "format": "text", "content": body}, html))
    return ExportReply(ipynb=ipynb, html=html)
