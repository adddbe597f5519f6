"""Export a finished analysis notebook as a standalone HTML report (nbconvert)."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError


def export_html(notebook: Path, output: Path | None = None) -> Path:
    """Render ``notebook`` (outputs and figures embedded) to one self-contained HTML file."""
    import nbformat
    from nbconvert import HTMLExporter

    if not notebook.exists():
        raise InputError(f"notebook not found: {notebook}")
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for a bad file
        raise InputError(f"cannot read {notebook} as a notebook: {type(exc).__name__}: {exc}") from None
    body, _ = HTMLExporter(embed_images=True).from_notebook_node(nb)
    target = output or notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target
