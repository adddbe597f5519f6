"""The analysis loop, free of tornado, jupyter_server and torch: pure protocols and records."""

from .loop import AgentLoop, Budget
from .types import (
    AssistantTurn,
    CellAdded,
    CellExecuted,
    CellResult,
    CellsRemoved,
    Event,
    Executor,
    ModelReplied,
    Policy,
    RunFinished,
    StepStarted,
    StopReason,
    ToolCall,
    Usage,
)

__all__ = [
    "AgentLoop",
    "AssistantTurn",
    "Budget",
    "CellAdded",
    "CellExecuted",
    "CellResult",
    "CellsRemoved",
    "Event",
    "Executor",
    "ModelReplied",
    "Policy",
    "RunFinished",
    "StepStarted",
    "StopReason",
    "ToolCall",
    "Usage",
]
