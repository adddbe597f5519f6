"""The baseline's variable names: never one the notebook already uses.

The baseline works in the user's live kernel, where ``summary``, ``fig`` or ``df_clean``
may already hold the user's work (or an earlier analysis). Its first code cell
(:func:`names_cell`) asks the kernel for the first suffix (``""``, ``"_2"``, ``"_3"``...)
under which none of the names its cells bind (:data:`NAMES`, the module aliases, the
cleaned frame) is taken, and prints it on one short line; the baseline reads it back
(:func:`suffix_of`) and every later cell is written with plain names, then renamed
(:func:`finalize`). One suffix for the whole run keeps the notebook easy to read (all of
this analysis's variables end in ``_2``) and keeps the line short, so it survives the
loop's shortening of old observations. In a fresh kernel the suffix is empty and the
cells read exactly as written.

A module alias that already holds that very module (the user's ``np`` is numpy) is not
taken: importing it again binds the same object (the loop's own check allows it too).

The cells are written with :data:`FRAME` standing for the user's DataFrame; it becomes
the real name last, so a frame called ``table`` or ``summary`` stays the frame while the
analysis's own ``table`` becomes ``table_2``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping

FRAME = "__frame__"
"""Placeholder for the user's DataFrame in generated code (see :func:`finalize`)."""

MODULES = {"np": "numpy", "plt": "matplotlib.pyplot", "sns": "seaborn"}
"""Module aliases the cells import, with the module each must be."""

NAMES = tuple(
    sorted(
        """
        a ax axes b best by by_group categorical changes col corr counts date_col dates digits fig
        group i image j key label labels lengths lower means measures missing missing_pct
        n_duplicates n_out num_cols numbers numeric pair pairs parsed part plot_df positions q1 q3 r
        rank rows_before seen share shares sizes slope subset summary table target top top_a top_b
        top_groups trend unparsed upper values with_target worst x y
        """.split()
    )
)
"""Every other module-level name a baseline cell binds (tests check the list is complete)."""

SUFFIX_LINE = "Suffix for this analysis's names:"
_SUFFIX_RE = re.compile(rf"^{re.escape(SUFFIX_LINE)} '(_\d+|)'$", re.MULTILINE)
FALLBACK_SUFFIX = "_ja"
"""Used when the kernel could not say (the names cell failed twice): unlikely to be taken."""


def names_cell(clean_frame: str) -> str:
    """The first code cell: print the first suffix under which no name of the analysis is
    taken. It binds nothing itself (comprehension variables stay inside)."""
    names = _wrap(" ".join([*NAMES, clean_frame]))
    modules = ", ".join(f"({alias!r}, {module!r})" for alias, module in MODULES.items())
    return "\n".join(
        [
            "# This analysis never replaces the notebook's own variables: if any name it uses is",
            "# taken, all of its names get the first free suffix (_2, _3, ...).",
            f'print("{SUFFIX_LINE}", repr(next(',
            '    suffix for suffix in ["", *(f"_{i}" for i in range(2, 10_000))]',
            "    if not any(",
            "        name + suffix in globals()",
            '        and (module is None or getattr(globals()[name + suffix], "__name__", None) != module)',
            "        for name, module in [",
            f"            {modules},",
            "            *((n, None) for n in (",
            *[f"                {chunk!r}" for chunk in names],
            "            ).split()),",
            "        ]",
            "    )",
            ")))",
        ]
    )


def _wrap(words: str, width: int = 78) -> list[str]:
    """``words`` in chunks of whole words, each ending in a space but the last."""
    chunks: list[str] = []
    line = ""
    for word in words.split():
        if line and len(line) + len(word) > width:
            chunks.append(line)
            line = ""
        line += word + " "
    chunks.append(line.rstrip())
    return chunks


def suffix_of(observation: str) -> str | None:
    """The suffix :func:`names_cell` printed, or None when its output doesn't say."""
    m = _SUFFIX_RE.search(observation)
    return m.group(1) if m else None


def rename(code: str, mapping: Mapping[str, str]) -> str:
    """``code`` with every variable named in ``mapping`` renamed, ``import m as x`` aliases
    included (names only: attributes, keywords and text in strings stay; names inside
    f-string fields are renamed).

    Works on the syntax tree's positions, so the code keeps its layout and comments.
    """
    if not mapping:
        return code
    tree = ast.parse(code)
    params = {a.arg for node in ast.walk(tree) if isinstance(node, ast.arg) for a in [node]}
    if params & set(mapping):
        raise ValueError(f"cannot rename parameters {sorted(params & set(mapping))}")
    lines = code.split("\n")
    edits: dict[int, list[tuple[int, int, str]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in mapping:
            old, start = node.id, node.col_offset
        elif isinstance(node, ast.alias) and (node.asname or node.name) in mapping:
            if not node.asname:  # ``import x`` binds x with no "as" to rename
                raise ValueError(f"cannot rename the import of {node.name!r}")
            old = node.asname
            start = (node.end_col_offset or 0) - len(old.encode("utf-8"))  # "m as x": x ends it
        else:
            continue
        assert node.end_lineno == node.lineno and node.end_col_offset is not None
        edits.setdefault(node.lineno - 1, []).append((start, node.end_col_offset, mapping[old]))
    for row, spans in edits.items():
        data = lines[row].encode("utf-8")  # offsets are in UTF-8 bytes
        for start, end, new in sorted(set(spans), reverse=True):
            data = data[:start] + new.encode("utf-8") + data[end:]
        lines[row] = data.decode("utf-8")
    return "\n".join(lines)


def finalize(code: str, frame: str, suffix: str) -> str:
    """A cell as it runs: the analysis's names with ``suffix``, :data:`FRAME` as ``frame``."""
    names = {name: name + suffix for name in (*NAMES, *MODULES)} if suffix else {}
    return rename(rename(code, names), {FRAME: frame})
