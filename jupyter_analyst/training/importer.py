"""``jupyter analyst import-trajectories``: public notebook-agent data -> our trajectory schema.

    jupyter analyst import-trajectories data.parquet [more.jsonl ...] -o traj.jsonl [--keep finished|any]

Reads JSONL (one object per line) or Parquet files with a ``messages`` column (a list of
messages, or that list as a JSON string). Tool calls may be OpenAI ``tool_calls`` with
``arguments`` as JSON strings or dicts, or the model's native ``<tool_call>`` text in the
assistant content (parsed with the loop's own parser). Only trajectories whose calls all
use our tool names (``add_and_execute_jupyter_code_cell``, ``final_answer``,
``add_markdown_cell``) are kept, so what the model learns is what the loop offers.

The CoPaw collector's trajectories (``--dialect copaw``, or detected: the system prompt
second, results in ``<tool_response>`` user turns) are converted to those tools by
``copaw_import``; ``--keep-dialect`` writes them in their own dialect instead. A report of
what converted, why the rest did not, and the calls per tool is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import copaw_import
from .copaw_import import ImportReport, is_copaw
from .trajectory import KEEP_CHOICES, BadTrajectory, TrajectoryFilter, TrajectoryWriter, make_record

ROLE_ALIASES = {
    "function": "tool",
    "ipython": "tool",
    "observation": "tool",
    "human": "user",
    "gpt": "assistant",
}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "import-trajectories",
        help="convert public notebook-agent trajectories (JSONL/Parquet with a messages column) for training",
    )
    p.add_argument("sources", nargs="+", type=Path, help="JSONL or Parquet files")
    p.add_argument("-o", "--output", type=Path, required=True, help="trajectory JSONL file (appended to)")
    p.add_argument("--messages-column", default="messages", help="column holding the conversation")
    p.add_argument(
        "--keep",
        choices=KEEP_CHOICES[1:],
        default="finished",
        help="finished: only conversations ending with final_answer (default); any",
    )
    p.add_argument("--max-chars", type=int, default=200_000, help="drop conversations longer than this")
    p.add_argument("--limit", type=int, help="read at most N rows per file")
    p.add_argument(
        "--dialect",
        choices=("auto", "notebook", "copaw"),
        default="auto",
        help="auto: detect the CoPaw collector's trajectories per row (default); notebook: our tools "
        "or OpenAI tool calls; copaw: the collector's (converted to our notebook tools)",
    )
    p.add_argument(
        "--keep-dialect",
        action="store_true",
        help="write CoPaw trajectories in their own dialect (meta dialect=copaw, no tools list) "
        "to train a copaw-dialect adapter, instead of converting them",
    )


def read_rows(path: Path, column: str = "messages", limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL or Parquet file as dicts (Parquet is read in batches)."""
    n = 0
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        cols = [c for c in (column, "tools", "id") if c in names]
        for batch in pf.iter_batches(batch_size=256, columns=cols):
            for row in batch.to_pylist():
                if limit is not None and n >= limit:
                    return
                n += 1
                yield row
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if limit is not None and n >= limit:
                return
            line = line.strip()
            if not line:
                continue
            n += 1
            try:
                row = json.loads(line)
            except ValueError:
                yield {"__error__": "invalid JSON line"}
                continue
            yield row if isinstance(row, dict) else {column: row}


def _native_calls(content: str) -> tuple[str, list[dict[str, Any]]]:
    """Tool calls written in the assistant text (``<tool_call>`` syntax) as OpenAI calls."""
    from ..agent.parsing import parse_tool_calls

    if "<tool_call>" not in content and "<function=" not in content:
        return content, []
    parsed = parse_tool_calls(content)
    if not parsed.calls:
        raise BadTrajectory(parsed.error or "an unparseable <tool_call>")
    return parsed.content, [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in parsed.calls
    ]


def convert(raw_messages: Any) -> list[dict[str, Any]]:
    """Public messages -> our messages (roles, text content, dict arguments, tool names checked)."""
    from ..agent.tools import TOOL_NAMES

    if isinstance(raw_messages, str):
        try:
            raw_messages = json.loads(raw_messages)
        except ValueError:
            raise BadTrajectory("messages is a string that is not JSON") from None
    if not isinstance(raw_messages, list) or not raw_messages:
        raise BadTrajectory("no messages")
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for m in raw_messages:
        if not isinstance(m, dict):
            raise BadTrajectory("a message is not an object")
        role = ROLE_ALIASES.get(str(m.get("role") or m.get("from")), m.get("role") or m.get("from"))
        content = m.get("content") if "content" in m else m.get("value")
        msg: dict[str, Any] = {"role": role, "content": content}
        if role == "assistant":
            calls = [c for c in (m.get("tool_calls") or []) if c]
            if not calls and isinstance(content, str):
                msg["content"], calls = _native_calls(content)
            for c in calls:
                fn = c.get("function") or c
                if fn.get("name") not in TOOL_NAMES:
                    raise BadTrajectory(f"uses tool {fn.get('name')!r}, not one of ours")
                if c.get("id"):
                    call_names[str(c["id"])] = fn["name"]
            if calls:
                msg["tool_calls"] = calls
            if m.get("reasoning_content"):
                msg["reasoning_content"] = m["reasoning_content"]
        elif role == "tool":
            msg["tool_call_id"] = m.get("tool_call_id")
            msg["name"] = m.get("name") or call_names.get(str(m.get("tool_call_id")), "")
        out.append(msg)
    return out


def import_file(
    path: Path,
    writer: TrajectoryWriter,
    column: str = "messages",
    limit: int | None = None,
    dialect: str = "auto",
    keep_dialect: bool = False,
    report: ImportReport | None = None,
) -> Counter[str]:
    """Convert every row of ``path`` into ``writer``; returns counts by outcome.

    CoPaw rows (``dialect``, or detected under ``auto``) go through ``copaw_import`` and are
    also tallied in ``report``.
    """
    from ..agent.tools import TOOLS

    report = report if report is not None else ImportReport()
    counts: Counter[str] = Counter()
    for i, row in enumerate(read_rows(path, column, limit)):
        meta = {"source": f"import:{path.name}", "row": i, "original_id": row.get("id")}
        raw = row.get(column)
        if "__error__" not in row and (dialect == "copaw" or (dialect == "auto" and is_copaw(raw))):
            record = _copaw_record(raw, meta, keep_dialect, writer.filters.keep != "any", report)
            if record is None:  # the reason is in the report
                counts[f"copaw, not {'kept' if keep_dialect else 'converted'} (see below)"] += 1
                continue
        else:
            try:
                if "__error__" in row:
                    raise BadTrajectory(row["__error__"])
                messages = convert(raw)
                tools = row.get("tools")
                if isinstance(tools, str):
                    tools = json.loads(tools) if tools.strip() else None
                record = make_record(messages, tools or TOOLS, None, meta)
            except (BadTrajectory, ValueError) as exc:
                counts[f"skipped: {str(exc)[:60]}"] += 1
                continue
        why = writer.write(record)
        counts["imported" if not why else f"skipped: {why}"] += 1
    return counts


def _copaw_record(
    raw: Any, meta: dict[str, Any], keep_dialect: bool, finished: bool, report: ImportReport
) -> dict[str, Any] | None:
    """A CoPaw row as a record, converted or kept in its dialect, or None; tallied in ``report``.
    ``finished``: a kept trajectory must end with a reply."""
    from ..agent.tools import TOOLS

    outcome = copaw_import.keep(raw, finished) if keep_dialect else copaw_import.convert(raw)
    report.add(raw, outcome, kept=keep_dialect)
    if outcome.messages is None:
        return None
    # a kept record has no tools list: its system prompt describes the six tools, as in training
    tools = [] if keep_dialect else TOOLS
    return make_record(outcome.messages, tools, None, {**meta, **outcome.meta})


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError

    for src in args.sources:
        if not src.exists():
            raise InputError(f"file not found: {src}")
    # A kept CoPaw record ends with a plain reply: the filter reads its meta's dialect.
    writer = TrajectoryWriter(args.output, TrajectoryFilter(keep=args.keep, max_chars=args.max_chars))
    report = ImportReport()
    for src in args.sources:
        counts = import_file(
            src, writer, args.messages_column, args.limit, args.dialect, args.keep_dialect, report
        )
        detail = ", ".join(f"{n} {k}" for k, n in counts.most_common()) or "no rows"
        print(f"{src.name}: {detail}", file=sys.stderr)
    if report.read:
        for line in report.lines():
            print(line, file=sys.stderr)
    print(f"wrote {writer.written} trajectories -> {args.output}", file=sys.stderr)
    return 0
