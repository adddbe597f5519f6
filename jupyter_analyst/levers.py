"""The loop's quality levers as command-line flags, spelt once for ``run`` and ``eval``.

Each lever is on by default and can be switched off, so its effect can be measured (an
eval with and without it). This module imports only argparse: the CLI builds its parser
before any heavy import.
"""

from __future__ import annotations

import argparse
from typing import TypedDict


class LeverSettings(TypedDict):
    """The levers' values, as ``RunConfig``/``EvalConfig``/``RunSpec`` take them."""

    prechecks: bool
    grounding_gate: bool
    keep_failed_cells: bool


def add_lever_options(parser: argparse.ArgumentParser) -> None:
    """The levers as flags, spelt once for ``run`` and ``eval`` (so they can be measured on and off)."""
    parser.add_argument(
        "--keep-failed-cells",
        action="store_true",
        help="keep failed cells a later cell fixed (by default they leave the finished notebook)",
    )
    parser.add_argument(
        "--no-prechecks",
        dest="prechecks",
        action="store_false",
        help="run every cell as written (no syntax or column check before it runs)",
    )
    parser.add_argument(
        "--no-grounding-gate",
        dest="grounding_gate",
        action="store_false",
        help="accept conclusions at once, even with numbers no output shows",
    )


def lever_settings(args: argparse.Namespace) -> LeverSettings:
    """The lever fields of parsed ``args`` (see :func:`add_lever_options`)."""
    return LeverSettings(
        prechecks=bool(args.prechecks),
        grounding_gate=bool(args.grounding_gate),
        keep_failed_cells=bool(args.keep_failed_cells),
    )
