"""Data-derived text in markdown the analyst writes, shown literally.

Column names, values, labels and the user's question come from outside: as markdown they
could open emphasis, links, images, raw HTML or math, or turn a line into a heading.
Everything that puts such text into a markdown cell (the baseline's notes and
conclusions, the notebook header, the report header) goes through these two.
"""

from __future__ import annotations

import re
from typing import Any

_MD_SPECIAL = re.compile(r"[\\`*\[\]<>&$~|]|(?<![^\W_])_|_(?![^\W_])")
_MD_LEADING = re.compile(r"^(#{1,6}|[-+]|\d{1,9}[.)])(?=\s|$)")
"""What would make a line a heading or a list item."""


def escape_markdown(text: Any) -> str:
    """``text`` as markdown that renders literally, on one line: no emphasis, code, links,
    images, HTML, math or tables from data. Underscores inside a word stay as they are
    (``flipper_length_mm``), since they can't start emphasis there."""
    line = " ".join(str(text).split())
    line = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), line)
    return _MD_LEADING.sub(lambda m: m.group(0)[:-1] + "\\" + m.group(0)[-1], line, count=1)


def code_span(text: Any) -> str:
    """``text`` as one markdown code span that shows it literally, whatever backticks it
    holds (the fence is longer than its longest run of them)."""
    body = " ".join(str(text).split())
    if not body:
        return "` `"
    fence = "`" * (max((len(run) for run in re.findall(r"`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"
