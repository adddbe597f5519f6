"""The wire schema of the server API: the one source of truth for ``src/schema.ts``.

Every request body is parsed, and every reply built, through these models, so a field
can't drift between the handlers, the run manager and the TypeScript mirror. Field
names and shapes follow ``docs/server-api.md``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RunState = Literal["starting", "running", "finished", "stopping", "stopped", "failed", "interrupted"]
"""starting: policy loading / checks; stopping: stop asked, not yet ended; interrupted: the
server stopped (crashed, was killed) during the run, as a restarted server finds it."""

ACTIVE_STATES: frozenset[str] = frozenset({"starting", "running", "stopping"})
"""States in which a run still owns its notebook (a second run gets 409)."""

ProfileKind = Literal["embedded", "openai", "baseline"]

QUESTION_MAX_CHARS = 4000
"""A question is a few sentences; one of megabytes would ride into the prompt and the report."""
NAME_MAX_CHARS = 200
"""Variable, profile and cell-id names."""
PATH_MAX_CHARS = 4096
"""Linux's own limit on a path."""


class DataFrameInfo(BaseModel):
    """One pandas DataFrame variable of a kernel (names starting with ``_`` are skipped)."""

    name: str
    shape: tuple[int, int]
    columns: list[str] = Field(description="the first 50 column names")
    memory_bytes: int


class DataFramesReply(BaseModel):
    path: str
    kernel_id: str
    dataframes: list[DataFrameInfo]
    run_id: str | None = Field(
        default=None,
        description="the analyst's active run on this kernel: the kernel is busy with it, so the "
        "list holds only the frame that run analyses (from its facts, no kernel round trip)",
    )


class ProfileInfo(BaseModel):
    name: str
    description: str
    kind: ProfileKind
    memory_gb: float


class ProfilesReply(BaseModel):
    default: str
    reason: str
    profiles: list[ProfileInfo]


class RunRequest(BaseModel):
    """Body of ``POST runs``. Unknown fields are rejected (400) so typos surface early, and
    every string is bounded (400) so no request can make the server hold megabytes."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        min_length=1,
        max_length=PATH_MAX_CHARS,
        description="API path of the notebook, relative to the server root",
    )
    variable: str | None = Field(
        default=None,
        min_length=1,
        max_length=NAME_MAX_CHARS,
        description="name of the DataFrame variable in its kernel (a follow-up defaults to its "
        "earlier run's)",
    )
    question: str | None = Field(default=None, max_length=QUESTION_MAX_CHARS)
    follow_up: str | None = Field(
        default=None,
        min_length=1,
        max_length=NAME_MAX_CHARS,
        description="continue this earlier run of the notebook (a run id, or 'latest'): same kernel, "
        "its conclusions and cells in context, cells after its last one",
    )
    max_steps: int | None = Field(default=None, ge=1, le=200)
    profile: str | None = Field(default=None, max_length=NAME_MAX_CHARS)
    after_cell_id: str | None = Field(
        default=None, max_length=NAME_MAX_CHARS, description="insert the agent's cells after this cell"
    )
    keep_failed_cells: bool = Field(
        default=False,
        description="keep failed cells a later fix superseded (by default the run's end removes them)",
    )
    kernel_id: str | None = Field(
        default=None,
        max_length=NAME_MAX_CHARS,
        description="the asking kernel (the magic's): the run goes to the notebook whose session runs "
        "it now, whatever `path` says (a kernel's own idea of its notebook goes stale on a rename)",
    )

    @field_validator("variable")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not value.isidentifier():
            raise ValueError(f"not a Python variable name: {value!r}")
        return value

    @model_validator(mode="after")
    def _variable_or_follow_up(self) -> RunRequest:
        if self.variable is None and self.follow_up is None:
            raise ValueError("a run needs `variable` (or `follow_up`, which reuses its earlier run's)")
        return self

    @field_validator("path")
    @classmethod
    def _notebook(cls, value: str) -> str:
        value = value.strip("/")
        if not value.endswith(".ipynb"):
            raise ValueError(f"not a notebook path: {value!r}")
        return value


class RunStatus(BaseModel):
    """A run's state. Replies always carry every field; a run's ``status`` frames after its
    first leave out ``question``, which never changes (docs/server-api.md)."""

    run_id: str
    path: str
    variable: str
    question: str | None = Field(default=None, description="left out of status frames after the first")
    state: RunState
    step: int
    max_steps: int
    policy: str
    started: str = Field(description="ISO 8601, UTC")
    ended: str | None
    stop_reason: str | None = Field(description="a StopReason value once the run ended")
    answer: str | None
    error: str | None = Field(description="readable reason of a failed run")
    cells: list[str] = Field(description="ids of the run's cells in the notebook document")
    waiting: str | None = Field(
        default=None,
        description="why a starting run has not begun (the user's cell still runs in the kernel); "
        "Stop cancels it",
    )
    follows: str | None = Field(default=None, description="the earlier run this one follows up")
    discarded: bool = Field(
        default=False, description="its cells were taken out of the notebook (restore puts them back)"
    )
    created: list[str] = Field(
        default_factory=list,
        description="the names its cells bound in the kernel, once it ended (discard deletes them)",
    )


class DiscardRequest(BaseModel):
    """Body of ``POST runs/{id}/discard``."""

    model_config = ConfigDict(extra="forbid")

    variables: bool = Field(
        default=True, description="also delete the variables the run made from the kernel (modules stay)"
    )


class DiscardReply(BaseModel):
    """What ``POST runs/{id}/discard`` took out, or ``POST runs/{id}/restore`` put back."""

    run_id: str
    cells: int = Field(description="cells taken out of (or put back into) the notebook")
    variables: list[str] = Field(
        default_factory=list, description="names deleted from the kernel (a restore can't bring them back)"
    )
    note: str = Field(default="", description="what was left as it was, and why")


class ExportReply(BaseModel):
    ipynb: str = Field(description="API path of the report notebook")
    html: str = Field(description="API path of the HTML report")


class ErrorReply(BaseModel):
    """jupyter_server's ``APIHandler`` error body."""

    message: str
    reason: str | None = None
