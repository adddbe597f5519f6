"""Export a finished analysis notebook as a standalone HTML report (nbconvert), sanitized.

A report is shared as a file and opened in a browser, so nothing in it may run: column
names, values and labels come from the user's data and model-written markdown can hold
anything (``<img onerror=...>``, ``[x](javascript:...)``). nbconvert's own switch,
``HTMLExporter(sanitize_html=True)``, routes markdown cells and HTML/markdown outputs
through its ``clean_html`` filter and drops JavaScript outputs; but that filter's allowlist
(bleach's defaults plus a few tags) escapes headings, paragraphs and table headers, so a
report would show ``<h1 id=...>`` as text and DataFrames without their header row. We keep
nbconvert's mechanism and replace only the allowlist (:func:`clean_html`): the tags
markdown and pandas produce, no event handlers, no styles beyond a few safe properties,
links only to web/mail/in-page addresses, images only as web or ``data:image`` sources.
Figures (PNG outputs) are written by the template itself and stay embedded.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import InputError

ALLOWED_TAGS = frozenset(
    {
        *("a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt"),
        *("em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p"),
        *("pre", "s", "small", "span", "strong", "sub", "summary", "sup", "ul"),
        *("table", "caption", "colgroup", "col", "thead", "tbody", "tfoot", "tr", "th", "td"),
    }
)
"""What markdown (mistune) and ``DataFrame.to_html`` produce; everything else is escaped."""

_STYLED = frozenset({"table", "tr", "th", "td", "span", "div"})
_SAFE_LINK = re.compile(r"(https?://|mailto:|#)", re.IGNORECASE)
_SAFE_IMAGE = re.compile(r"(https?://|data:image/(png|jpe?g|gif|webp);base64,)", re.IGNORECASE)
_CSS = ("text-align", "vertical-align", "white-space", "color", "background-color", "font-weight")


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    """bleach's attribute filter: no ``on*`` handlers, no script or data links."""
    if name in ("class", "id", "title"):
        return True
    if name == "style":
        return tag in _STYLED  # the CSS sanitizer then keeps only the properties in _CSS
    if tag == "a" and name == "href":
        value = value.strip()
        return bool(_SAFE_LINK.match(value)) or (":" not in value and not value.startswith("//"))
    if tag == "img":
        value = value.strip()
        relative = ":" not in value and not value.startswith("//")
        if name == "src":
            return relative or bool(_SAFE_IMAGE.match(value))
        return name in ("alt", "width", "height")
    if tag in ("th", "td"):
        return name in ("colspan", "rowspan", "align")
    if tag == "table":
        return name == "border"
    if tag == "ol":
        return name == "start"
    return False


@lru_cache(maxsize=1)
def _css() -> Any:
    from bleach.css_sanitizer import CSSSanitizer

    return CSSSanitizer(allowed_css_properties=_CSS)


def clean_html(html: Any) -> str:
    """Sanitize an HTML fragment the way nbconvert's ``clean_html`` filter does (bleach,
    escaping what is not allowed), under our allowlist; the exporter's ``clean_html``."""
    import bleach

    text = html.decode() if isinstance(html, bytes) else str(html)
    return str(
        bleach.clean(
            text,
            tags=ALLOWED_TAGS,
            attributes=_allowed_attribute,
            protocols=("http", "https", "mailto", "data"),  # data: only where _allowed_attribute lets it
            css_sanitizer=_css(),
            strip=False,
            strip_comments=True,
        )
    )


def render_html(nb: Any, default_title: str | None = None) -> str:
    """One self-contained, sanitized HTML page of notebook node ``nb`` (figures embedded),
    titled by its ``metadata.title``, else ``default_title`` (nbconvert's own is "Notebook")."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(embed_images=True, sanitize_html=True, filters={"clean_html": clean_html})
    name = str(nb.get("metadata", {}).get("title") or "") or default_title
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": name}} if name else None)
    return str(body)


def export_html(notebook: Path, output: Path | None = None) -> Path:
    """Render ``notebook`` (outputs and figures embedded) to one self-contained HTML file."""
    import nbformat

    if not notebook.exists():
        raise InputError(f"notebook not found: {notebook}")
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for a bad file
        raise InputError(f"cannot read {notebook} as a notebook: {type(exc).__name__}: {exc}") from None
    target = output or notebook.with_suffix(".html")
    target.write_text(render_html(nb, notebook.stem), encoding="utf-8")
    return target
