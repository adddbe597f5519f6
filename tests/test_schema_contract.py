"""``src/schema.ts`` must agree with the server's wire schema, field by field.

The server is the source of truth (pydantic models in ``server/schema.py``, event frames of
``agent.wire.event_to_dict``); the frontend's hand-written mirror drifts silently otherwise.
The mutation cases prove the checker sees each kind of drift, from either side.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Literal

import pytest
from pydantic import create_model
from schema_ts import SCHEMA_TS, PySchema, check, python_schema

from jupyter_analyst.agent.wire import event_to_dict
from jupyter_analyst.server import schema

REGENERATE = (
    "src/schema.ts disagrees with the Python wire schema (the server is the source of truth: "
    "fix src/schema.ts; `python tests/schema_ts.py` lists the differences):\n"
)


@pytest.fixture(scope="module")
def ts_text() -> str:
    return SCHEMA_TS.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def py() -> PySchema:
    return python_schema()


def test_schema_ts_agrees_with_the_server(ts_text: str, py: PySchema) -> None:
    problems = check(ts_text, py)
    assert not problems, REGENERATE + "\n".join(problems)


def _edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the mutation target {old!r} is not in schema.ts exactly once"
    return text.replace(old, new)


TS_MUTATIONS: list[tuple[str, list[tuple[str, str]], list[str]]] = [
    # (why, [(old text, new text), ...], the problems expected: each a substring of one reported line)
    ("field missing", [("  kernel_id: string;\n", "")], ["IDataFramesReply.kernel_id: missing in schema.ts"]),
    (
        "extra field",
        [("export interface IExportReply {\n", "export interface IExportReply {\n  pdf: string;\n")],
        ["IExportReply.pdf: in schema.ts but not sent by the server"],
    ),
    (
        "number -> string",
        [("  memory_bytes: number;", "  memory_bytes: string;")],
        ["IDataFrameInfo.memory_bytes: schema.ts says string, Python sends number"],
    ),
    (
        "boolean -> number",
        [("  fixed_error: boolean;", "  fixed_error: number;")],
        ["ICellExecutedEvent.fixed_error: schema.ts says number, Python sends boolean"],
    ),
    (
        "nullable dropped",
        [("  ended: string | null;", "  ended: string;")],
        ["IRunStatus.ended: schema.ts says string, Python sends string | null"],
    ),
    (
        "nullable added",
        [("  policy: string;", "  policy: string | null;")],
        ["IRunStatus.policy: schema.ts says string | null, Python sends string"],
    ),
    (
        "array -> scalar",
        [("  cells: string[];", "  cells: string;")],
        ["IRunStatus.cells: schema.ts says string, Python sends string[]"],
    ),
    (
        "tuple -> array",
        [("  shape: [number, number];", "  shape: number[];")],
        ["IDataFrameInfo.shape: schema.ts says number[], Python sends [number, number]"],
    ),
    (
        "optional -> required",
        [("400). */\n  question?: string | null;", "400). */\n  question: string | null;")],
        ["IRunRequest.question: required in schema.ts, may be left out in Python"],
    ),
    (
        "RunState literal removed",
        [("  | 'stopping'\n", "")],
        [
            "type RunState: schema.ts says 'failed' | 'finished' | 'interrupted' | 'running' | "
            "'starting' | 'stopped', ",
            "IRunStatus.state: schema.ts says 'failed' | 'finished' | 'interrupted' | 'running' | "
            "'starting' | 'stopped', ",
        ],
    ),
    (
        "StopReason literal added",
        [("  | 'max_time'\n", "  | 'max_time'\n  | 'out_of_memory'\n")],
        ["type StopReason: schema.ts says", "IRunFinishedEvent.reason: schema.ts says"],
    ),
    (
        "inline literal union",
        [("  cell_type: 'code' | 'markdown';", "  cell_type: 'code' | 'markdown' | 'raw';")],
        [
            "ICellAddedEvent.cell_type: schema.ts says 'code' | 'markdown' | 'raw', "
            "Python sends 'code' | 'markdown'"
        ],
    ),
    (
        "event field missing",
        [("  figures: number;\n", "")],
        ["ICellExecutedEvent.figures: missing in schema.ts"],
    ),
    (
        "event extra field",
        [("  type: 'step_started';\n", "  type: 'step_started';\n  seconds: number;\n")],
        ["IStepStartedEvent.seconds: in schema.ts but not sent by the server"],
    ),
    (
        "inline object field",
        [("  calls: { name: string; id: string }[];", "  calls: { name: string }[];")],
        [
            "IModelRepliedEvent.calls: schema.ts says { name: string }[], "
            "Python sends { id: string; name: string }[]"
        ],
    ),
    (
        "event union member missing",
        [("  | IRunFinishedEvent\n  | IStatusEvent;", "  | IRunFinishedEvent;")],
        ["RunEvent in schema.ts is "],
    ),
    (
        "interface missing",
        [("export interface IExportReply {\n  ipynb: string;\n  html: string;\n}\n", "")],
        ["interface IExportReply (pydantic model ExportReply) is missing in schema.ts"],
    ),
    (
        "extra interface",
        [("/** The error body", "export interface IUnknownReply {\n  a: string;\n}\n\n/** The error body")],
        ["interface IUnknownReply in schema.ts matches no pydantic model and no event frame"],
    ),
    (
        "alias missing",
        [("export type ProfileKind = 'embedded' | 'openai' | 'baseline';\n", "")],
        ["schema.ts could not be read: unknown type ProfileKind"],
    ),
    (
        "alias renamed",
        [
            ("export type ProfileKind =", "export type ProfileKinds ="),
            ("  kind: ProfileKind;", "  kind: ProfileKinds;"),
        ],
        [
            "type ProfileKinds in schema.ts has no Literal or enum of that name in Python",
            "type ProfileKind (a Literal of server/schema.py) is missing in schema.ts",
        ],
    ),
    (
        "interface declared twice",
        [("/** The error body", "export interface IExportReply {\n  pdf: string;\n}\n\n/** The error body")],
        ["schema.ts could not be read: IExportReply is declared twice"],
    ),
    (
        "syntax the reader does not know",
        [("export type CellStatus =", "export class Foo {}\nexport type CellStatus =")],
        ["schema.ts could not be read: unexpected 'class'"],
    ),
]


@pytest.mark.parametrize(
    ("edits", "expected"), [pytest.param(edits, expected, id=why) for why, edits, expected in TS_MUTATIONS]
)
def test_a_changed_schema_ts_is_reported(
    ts_text: str, py: PySchema, edits: list[tuple[str, str]], expected: list[str]
) -> None:
    for old, new in edits:
        ts_text = _edit(ts_text, old, new)
    problems = check(ts_text, py)
    for text in expected:
        assert any(text in line for line in problems), f"{text!r} not in {problems}"
    assert len(problems) == len(expected), problems


def _with_models(*replacements: Any, drop: str = "", aliases: dict[str, Any] | None = None) -> PySchema:
    """The real Python side with some pydantic models replaced (same name), added or dropped."""
    names = {m.__name__ for m in replacements}
    models = [
        m
        for m in vars(schema).values()
        if isinstance(m, type) and m.__module__ == schema.__name__ and hasattr(m, "model_fields")
    ]
    models = [m for m in models if m.__name__ not in names and m.__name__ != drop]
    return python_schema(models=[*models, *replacements], aliases=aliases)


def _frames(change: Callable[[dict[str, Any]], dict[str, Any]]) -> PySchema:
    """The real Python side with every event frame passed through ``change``."""
    return python_schema(to_dict=lambda event: change(event_to_dict(event)))


def _set(
    kind: str, key: str, value: Callable[[dict[str, Any]], Any]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A frame change: ``key`` of the frames of type ``kind`` becomes ``value(frame)``."""
    return lambda d: {**d, key: value(d)} if d["type"] == kind else d


MORE_STATES = Literal[
    "starting", "running", "finished", "stopping", "stopped", "failed", "interrupted", "paused"
]

PY_MUTATIONS: list[tuple[str, Callable[[], PySchema], list[str]]] = [
    (
        "model field added",
        lambda: _with_models(create_model("RunStatus", __base__=schema.RunStatus, gpu=(str, ...))),
        ["IRunStatus.gpu: missing in schema.ts (Python sends string)"],
    ),
    (
        "model field type changed",
        lambda: _with_models(
            create_model("DataFrameInfo", __base__=schema.DataFrameInfo, memory_bytes=(str, ...))
        ),
        ["IDataFrameInfo.memory_bytes: schema.ts says number, Python sends string"],
    ),
    (
        "model field made nullable",
        lambda: _with_models(
            create_model("ExportReply", __base__=schema.ExportReply, html=(str | None, ...))
        ),
        ["IExportReply.html: schema.ts says string, Python sends string | null"],
    ),
    (
        "model field given a default",
        lambda: _with_models(create_model("ExportReply", __base__=schema.ExportReply, html=(str, ""))),
        ["IExportReply.html: required in schema.ts, may be left out in Python"],
    ),
    (
        "model field made a list",
        lambda: _with_models(create_model("ProfileInfo", __base__=schema.ProfileInfo, kind=(list[str], ...))),
        ["IProfileInfo.kind: schema.ts says 'baseline' | 'embedded' | 'openai', Python sends string[]"],
    ),
    (
        "model removed",
        lambda: _with_models(drop="ErrorReply"),
        ["interface IErrorReply in schema.ts matches no pydantic model and no event frame"],
    ),
    (
        "model added",
        lambda: _with_models(create_model("KernelInfo", name=(str, ...))),
        ["interface IKernelInfo (pydantic model KernelInfo) is missing in schema.ts"],
    ),
    (
        "RunState gained a state",
        lambda: _with_models(
            create_model("RunStatus", __base__=schema.RunStatus, state=(MORE_STATES, ...)),
            aliases={"RunState": MORE_STATES},
        ),
        [
            "IRunStatus.state: schema.ts says 'failed' | 'finished' | 'interrupted' | 'running' | "
            "'starting' | 'stopped' | 'stopping', Python sends 'failed' | 'finished' | 'interrupted' | "
            "'paused' |",
            "type RunState: schema.ts says",
        ],
    ),
    (
        "event key added",
        lambda: _frames(_set("step_started", "run_id", lambda d: "abc")),
        ["IStepStartedEvent.run_id: missing in schema.ts (Python sends string)"],
    ),
    (
        "event key removed",
        lambda: _frames(lambda d: {k: v for k, v in d.items() if k != "figures"}),
        ["ICellExecutedEvent.figures: in schema.ts but not sent by the server"],
    ),
    (
        "event value type changed",
        lambda: _frames(_set("cell_executed", "duration", lambda d: str(d["duration"]))),
        ["ICellExecutedEvent.duration: schema.ts says number, Python sends string"],
    ),
    (
        "event value sometimes null",
        lambda: _frames(
            _set("model_replied", "content", lambda d: None if d["reasoning"] is None else d["content"])
        ),
        ["IModelRepliedEvent.content: schema.ts says string, Python sends string | null"],
    ),
    (
        "event key sometimes left out",
        lambda: _frames(lambda d: {k: v for k, v in d.items() if k != "answer" or v is not None}),
        [
            "IRunFinishedEvent.answer: schema.ts says string | null, Python sends string",
            "IRunFinishedEvent.answer: required in schema.ts, may be left out in Python",
        ],
    ),
]


@pytest.mark.parametrize(("make", "expected"), [pytest.param(m, e, id=why) for why, m, e in PY_MUTATIONS])
def test_a_changed_python_side_is_reported(
    ts_text: str, make: Callable[[], PySchema], expected: list[str]
) -> None:
    problems = check(ts_text, make())
    for text in expected:
        assert any(text in line for line in problems), f"{text!r} not in {problems}"
    assert len(problems) == len(expected), problems


def test_a_new_event_type_and_a_changed_literal_alias_are_reported(ts_text: str, py: PySchema) -> None:
    mutated = copy.deepcopy(py)
    mutated.events["heartbeat"] = {"type": (False, frozenset({"'heartbeat'"}))}
    mutated.aliases["CellStatus"] = mutated.aliases["CellStatus"] | {"'skipped'"}
    problems = check(ts_text, mutated)
    assert problems == [
        "no interface in schema.ts has type: 'heartbeat' (a frame the server sends)",
        "type CellStatus: schema.ts says 'dead' | 'error' | 'ok' | 'stopped' | 'timeout', "
        "Python says 'dead' | 'error' | 'ok' | 'skipped' | 'stopped' | 'timeout'",
    ]
