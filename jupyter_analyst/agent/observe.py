"""Turn a cell's result into the text a small model reads next.

A 30-step run has to fit in ~16k tokens, so each observation is a few hundred tokens at
most: head and tail of long text, the last traceback frames and the error line, frames as
shape plus a few rows, and figures described from the figure objects in the kernel (title,
axes, series, ranges) instead of pixels.
"""

from __future__ import annotations

import re
from typing import Any

from .types import CellResult

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
"""Any CSI escape sequence (IPython colours tracebacks; the model needs none)."""

DEFAULT_LIMIT = 1500
"""Characters per observation: ~400 tokens, so 30 steps of code + output fit in ~16k."""


SMALL_FRAME_ROWS = 12


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


def head_tail(text: str, limit: int) -> str:
    """Keep the start and the end of ``text`` (where summaries and results usually are)."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    omitted = len(text) - head - tail
    return f"{text[:head]}\n[... {omitted} characters omitted ...]\n{text[-tail:]}"


def trim_traceback(result: CellResult, frames: int = 2, frame_limit: int = 500) -> str:
    """The error line first, then the last ``frames`` frames: what a fix needs."""
    lines = [strip_ansi(t) for t in result.traceback]
    # IPython's traceback list is [rule, frame..., "Name: value"]; keep only frames.
    frame_blocks = [b for b in lines if b.strip() and not set(b.strip()) <= {"-"}]
    if frame_blocks and frame_blocks[-1].strip().startswith(f"{result.error_name}"):
        frame_blocks = frame_blocks[:-1]
    kept = [head_tail(b.rstrip(), frame_limit) for b in frame_blocks[-frames:]]
    header = f"Error: {result.error_name}: {result.error_value}".rstrip(": ")
    return "\n".join([header, *kept]) if kept else header


def _fmt_range(lim: Any) -> str:
    try:
        lo, hi = lim
        return f"{lo:g}..{hi:g}"
    except (TypeError, ValueError):
        return str(lim)


def describe_figure(fact: dict[str, Any]) -> str:
    """One line per figure, from the facts the kernel read off the matplotlib objects."""
    parts = []
    if fact.get("suptitle"):
        parts.append(f"suptitle {fact['suptitle']!r}")
    axes = fact.get("axes") or []
    for i, ax in enumerate(axes[:6]):
        bits = []
        if ax.get("title"):
            bits.append(f"title {ax['title']!r}")
        if ax.get("xlabel"):
            bits.append(f"x {ax['xlabel']!r}")
        if ax.get("ylabel"):
            bits.append(f"y {ax['ylabel']!r}")
        for key in ("lines", "collections", "patches", "images"):
            if ax.get(key):
                bits.append(f"{ax[key]} {key}")
        if ax.get("xlim") is not None:
            bits.append(f"x range {_fmt_range(ax['xlim'])}")
        if ax.get("ylim") is not None:
            bits.append(f"y range {_fmt_range(ax['ylim'])}")
        if ax.get("legend"):
            bits.append("legend: " + ", ".join(map(str, ax["legend"])))
        prefix = f"axes {i + 1}: " if len(axes) > 1 else ""
        parts.append(prefix + ", ".join(bits) if bits else prefix + "empty axes")
    if len(axes) > 6:
        parts.append(f"+{len(axes) - 6} more axes")
    return "[figure: " + "; ".join(parts or ["no axes"]) + "]"


def describe_frame(fact: dict[str, Any]) -> str:
    """A frame as its shape and first rows: enough to check a result, cheap in tokens."""
    shape = fact.get("shape") or []
    kind = fact.get("kind", "DataFrame")
    if len(shape) == 2:
        head = f"[{kind}: {shape[0]} rows x {shape[1]} columns]"
    elif len(shape) == 1:
        head = f"[{kind}: {shape[0]} rows]"
    else:
        head = f"[{kind}]"
    body = fact.get("head") or ""
    return f"{head}\n{body}".rstrip()


def _mime_text(output: dict[str, Any]) -> str:
    data = output.get("data", {})
    text = data.get("text/plain", "")
    return "".join(text) if isinstance(text, list) else str(text)


def observe(result: CellResult, limit: int = DEFAULT_LIMIT) -> str:
    """Render ``result`` as the tool message for the model, at most about ``limit`` chars."""
    if result.status == "dead":
        return "Error: the kernel died while running this cell; all variables are lost."
    figures = [f for f in result.facts if f.get("type") == "figure"]
    # Only DataFrames render as HTML; Series print compactly as text anyway.
    frames = [f for f in result.facts if f.get("type") == "frame" and len(f.get("shape") or []) == 2]
    pieces: list[str] = []
    for out in result.outputs:
        kind = out.get("output_type")
        if kind == "stream":
            text = out.get("text", "")
            pieces.append(strip_ansi("".join(text) if isinstance(text, list) else text).rstrip("\n"))
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            if "image/png" in data or "image/svg+xml" in data:
                pieces.append(describe_figure(figures.pop(0)) if figures else "[figure]")
            elif frames and "text/html" in data:
                fact = frames.pop(0)
                if (fact.get("shape") or [0])[0] <= SMALL_FRAME_ROWS and "text/plain" in data:
                    # A small result table (describe(), a group summary) is worth showing whole.
                    fact = {**fact, "head": strip_ansi(_mime_text(out))}
                pieces.append(describe_frame(fact))
            elif "text/plain" in data:
                pieces.append(strip_ansi(_mime_text(out)))
            elif "text/markdown" in data or "text/html" in data:
                pieces.append("[rich output]")
    pieces.extend(describe_figure(f) for f in figures)  # figures shown without a png
    body = head_tail("\n".join(p for p in pieces if p).strip(), limit)
    if result.status in ("error", "timeout"):
        tb = trim_traceback(result)
        body = f"{body}\n{tb}" if body else tb
    elif not body:
        body = "(cell ran, no output)"
    if result.truncated:
        body += "\n[output was truncated in the notebook]"
    return body
