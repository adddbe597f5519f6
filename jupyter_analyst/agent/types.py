"""Typed records shared by the loop, its policies, executors and every consumer.

Everything that crosses a layer boundary is one of these plain dataclasses, so the
notebook writer, the progress display, the trajectory recorder and the evaluator all
read the same stream without reaching into the loop.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Message = dict[str, Any]
"""One chat message in OpenAI wire form (role, content, tool_calls, tool_call_id...)."""

ToolSpec = dict[str, Any]
"""One tool in OpenAI function-calling form: {"type": "function", "function": {...}}."""


@dataclass
class ToolCall:
    """A parsed request from the model to run one tool."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:12])

    def to_openai(self) -> dict[str, Any]:
        """Wire form for an assistant message's ``tool_calls`` (arguments as JSON text)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)},
        }


@dataclass
class Usage:
    """Token counts of one model call, when the backend reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class AssistantTurn:
    """What a policy returns: the model's text, its tool calls and what it cost.

    ``tool_calls`` holds calls the backend already parsed (OpenAI ``tool_calls``); when it
    is empty the loop parses ``content`` for the model's native tool-call syntax.
    """

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str = ""


@runtime_checkable
class Policy(Protocol):
    """Anything that maps a conversation and a tool list to the next assistant turn."""

    @property
    def name(self) -> str:
        """Shown in the notebook header and the CLI; says what produced the analysis."""
        ...

    def __call__(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn: ...


CellStatus = Literal["ok", "error", "timeout", "dead", "stopped"]
"""``stopped``: the user stopped the run while the cell ran; no error, no traceback kept."""


@dataclass
class CellResult:
    """The outcome of executing one code cell, in the form Jupyter stores it.

    ``outputs`` are nbformat v4 output dicts ready to put in a notebook (already capped);
    ``facts`` holds machine-readable descriptions the kernel computed for the model
    (figures, frames), which are not written to the notebook.
    """

    status: CellStatus
    outputs: list[dict[str, Any]] = field(default_factory=list)
    execution_count: int | None = None
    error_name: str = ""
    error_value: str = ""
    traceback: list[str] = field(default_factory=list)
    duration: float = 0.0
    truncated: bool = False
    facts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@runtime_checkable
class Executor(Protocol):
    """Runs code somewhere a notebook would (a kernel) and reports what happened.

    ``cell_id`` names the notebook cell the code belongs to (the ``CellAdded`` that came
    just before), so an executor that streams outputs knows where they go.
    """

    def execute(self, code: str, cell_id: str) -> CellResult: ...


class StopReason(str, enum.Enum):
    """Why a run ended; each maps to one CLI exit code."""

    FINAL_ANSWER = "final_answer"
    MAX_STEPS = "max_steps"
    MAX_TOKENS = "max_tokens"
    MAX_TIME = "max_time"
    KERNEL_DIED = "kernel_died"
    MODEL_ERROR = "model_error"
    STOPPED = "stopped"

    @property
    def natural(self) -> bool:
        return self is StopReason.FINAL_ANSWER

    @property
    def why(self) -> str:
        """Why the run ended without conclusions, as a clause for a note or a status line."""
        return STOP_NOTES[self]


STOP_NOTES: dict[StopReason, str] = {
    StopReason.FINAL_ANSWER: "the analyst wrote its conclusions",
    StopReason.MAX_STEPS: "the step budget ran out before the analyst wrote its conclusions",
    StopReason.MAX_TOKENS: "the token budget ran out before the analyst wrote its conclusions",
    StopReason.MAX_TIME: "the time budget ran out before the analyst wrote its conclusions",
    StopReason.KERNEL_DIED: "the kernel died (out of memory, or the code ended the process)",
    StopReason.MODEL_ERROR: "the model backend failed",
    StopReason.STOPPED: "the run was stopped",
}

FAILED_NOTE = "the run failed"
"""The clause for a run that failed in our own code or at its start (no stop reason)."""


def stop_note(reason: StopReason | None, step: int, error: str = "") -> str:
    """The markdown of the note cell that ends a run without conclusions.

    One wording for every shell: a reader of the notebook sees why it ends here, at which
    step, and the one-line error when there is one.
    """
    why = reason.why if reason is not None else FAILED_NOTE
    note = f"*Run ended without conclusions: {why}"
    note += f" at step {step}.*" if step else ".*"
    if error:
        note += f"\n\n`{' '.join(error.split())}`"
    return note


CellRole = Literal["header", "setup", "code", "markdown", "conclusions", "note"]


@dataclass
class StepStarted:
    """The loop is about to ask the policy for turn ``step`` (1-based)."""

    step: int


@dataclass
class ModelReplied:
    """The policy answered; ``calls`` are the tool calls the loop will act on."""

    step: int
    turn: AssistantTurn
    calls: list[ToolCall]
    seconds: float
    problem: str = ""
    """Non-empty when the reply had no usable tool call: what the model is told."""


@dataclass
class CellAdded:
    """A cell is to be appended to the notebook (before it runs, so live views show it)."""

    step: int
    cell_id: str
    cell_type: Literal["code", "markdown"]
    source: str
    role: CellRole
    unverified: list[str] = field(default_factory=list)
    """On a conclusions cell: numbers it states that no output or fact supports (the
    grounding gate let them through on its second look); kept in the cell's metadata."""


@dataclass
class CellExecuted:
    """A code cell finished; ``observation`` is exactly what the model is shown."""

    step: int
    cell_id: str
    result: CellResult
    observation: str
    fixed_error: bool = False
    """True when this cell ran cleanly right after a failing one: the model fixed it."""


@dataclass
class RunFinished:
    """The last record of every run."""

    reason: StopReason
    answer: str | None
    steps: int
    tokens: int
    seconds: float
    errors: int
    errors_fixed: int
    detail: str = ""
    created: list[str] = field(default_factory=list)
    """The names the run's cells bound that the user's namespace did not have before, in
    the order they were first bound (read statically from the cells that ran, so a cell
    that failed part-way may list a name it never reached)."""
    prechecks: int = 0
    """Cells the pre-execution checks answered without running them (``agent.precheck``)."""
    grounding_returns: int = 0
    """Times ``final_answer`` went back to the model for numbers no output supports."""
    malformed_calls: int = 0
    """Replies or calls the loop could not act on (unparseable, unknown tool, bad arguments)."""
    cells_removed: int = 0
    """Failed cells a later fix superseded, removed from the finished notebook (tidy)."""
    unverified: list[str] = field(default_factory=list)
    """Numbers the conclusions state that no output or fact supports."""


@dataclass
class CellsRemoved:
    """Agent cells to drop from the notebook: failed attempts a later cell fixed.

    They stay in the run's events (and so in records and trajectories); only the finished
    notebook loses them, so it re-runs top to bottom without an error.
    """

    cell_ids: list[str]
    reason: str = "superseded"


Event = StepStarted | ModelReplied | CellAdded | CellExecuted | CellsRemoved | RunFinished
