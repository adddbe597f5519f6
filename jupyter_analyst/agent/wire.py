"""JSON form of the loop's events, shared by every consumer that leaves the process.

The server's event stream, run records in evaluation and trajectory files all carry the
same dicts, so a UI, a judge and a training script read one format. Cell outputs (images)
stay out: they live in the notebook; the ``observation`` is what the model saw.
"""

from __future__ import annotations

from typing import Any

from .types import (
    AssistantTurn,
    CellAdded,
    CellExecuted,
    CellResult,
    CellsRemoved,
    Event,
    ModelReplied,
    RunFinished,
    StepStarted,
    StopReason,
    ToolCall,
    Usage,
)

MAX_TEXT = 4000
"""Cap on free text in one wire event, so a runaway reply can't flood a websocket."""


def _cap(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_TEXT:
        return text
    return text[:MAX_TEXT] + f"... [{len(text) - MAX_TEXT} more characters]"


def event_to_dict(event: Event) -> dict[str, Any]:
    """One event as a JSON-safe dict with a ``type`` key (snake_case of the record name)."""
    if isinstance(event, StepStarted):
        return {"type": "step_started", "step": event.step}
    if isinstance(event, ModelReplied):
        return {
            "type": "model_replied",
            "step": event.step,
            "content": _cap(event.turn.content),
            "reasoning": _cap(event.turn.reasoning),
            "calls": [{"name": c.name, "id": c.id} for c in event.calls],
            "problem": event.problem,
            "seconds": event.seconds,
            "prompt_tokens": event.turn.usage.prompt_tokens,
            "completion_tokens": event.turn.usage.completion_tokens,
        }
    if isinstance(event, CellAdded):
        return {
            "type": "cell_added",
            "step": event.step,
            "cell_id": event.cell_id,
            "cell_type": event.cell_type,
            "source": _cap(event.source),
            "role": event.role,
            "unverified": list(event.unverified),
        }
    if isinstance(event, CellExecuted):
        r = event.result
        return {
            "type": "cell_executed",
            "step": event.step,
            "cell_id": event.cell_id,
            "status": r.status,
            "execution_count": r.execution_count,
            "duration": round(r.duration, 3),
            "error_name": r.error_name,
            "error_value": _cap(r.error_value),
            "figures": sum(1 for f in r.facts if f.get("type") == "figure"),
            "observation": _cap(event.observation),
            "fixed_error": event.fixed_error,
        }
    if isinstance(event, RunFinished):
        return {
            "type": "run_finished",
            "reason": event.reason.value,
            "answer": event.answer,
            "steps": event.steps,
            "tokens": event.tokens,
            "seconds": event.seconds,
            "errors": event.errors,
            "errors_fixed": event.errors_fixed,
            "detail": event.detail,
            "created": list(event.created),
            "prechecks": event.prechecks,
            "grounding_returns": event.grounding_returns,
            "malformed_calls": event.malformed_calls,
            "cells_removed": event.cells_removed,
            "unverified": list(event.unverified),
        }
    if isinstance(event, CellsRemoved):
        return {"type": "cells_removed", "cell_ids": list(event.cell_ids), "reason": event.reason}
    raise TypeError(f"not a loop event: {event!r}")


def event_from_dict(data: dict[str, Any]) -> Event:
    """The typed event of a dict :func:`event_to_dict` wrote (a record, a trajectory, a frame).

    The wire form keeps no outputs, so a rebuilt ``CellExecuted`` has none; its figures
    come back as that many bare figure facts, which is all a judge counts. Raises
    ``ValueError`` on a dict that is not an event, so a corrupt record is loud.
    """
    kind = data.get("type")
    try:
        if kind == "step_started":
            return StepStarted(int(data["step"]))
        if kind == "model_replied":
            turn = AssistantTurn(
                content=data.get("content") or "",
                reasoning=data.get("reasoning"),
                usage=Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0)),
            )
            calls = [ToolCall(c["name"], {}, c["id"]) for c in data.get("calls") or []]
            return ModelReplied(
                int(data["step"]), turn, calls, float(data.get("seconds") or 0.0), data.get("problem") or ""
            )
        if kind == "cell_added":
            return CellAdded(
                int(data["step"]),
                data["cell_id"],
                data["cell_type"],
                data.get("source") or "",
                data["role"],
                [str(n) for n in data.get("unverified") or []],
            )
        if kind == "cell_executed":
            result = CellResult(
                status=data["status"],
                execution_count=data.get("execution_count"),
                error_name=data.get("error_name") or "",
                error_value=data.get("error_value") or "",
                duration=float(data.get("duration") or 0.0),
                facts=[{"type": "figure"} for _ in range(int(data.get("figures") or 0))],
            )
            return CellExecuted(
                int(data["step"]),
                data["cell_id"],
                result,
                data.get("observation") or "",
                bool(data.get("fixed_error")),
            )
        if kind == "run_finished":
            return RunFinished(
                reason=StopReason(data["reason"]),
                answer=data.get("answer"),
                steps=int(data.get("steps") or 0),
                tokens=int(data.get("tokens") or 0),
                seconds=float(data.get("seconds") or 0.0),
                errors=int(data.get("errors") or 0),
                errors_fixed=int(data.get("errors_fixed") or 0),
                detail=data.get("detail") or "",
                created=[str(name) for name in data.get("created") or []],
                prechecks=int(data.get("prechecks") or 0),
                grounding_returns=int(data.get("grounding_returns") or 0),
                malformed_calls=int(data.get("malformed_calls") or 0),
                cells_removed=int(data.get("cells_removed") or 0),
                unverified=[str(n) for n in data.get("unverified") or []],
            )
        if kind == "cells_removed":
            return CellsRemoved([str(c) for c in data["cell_ids"]], str(data.get("reason") or "superseded"))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a complete {kind} event: {exc}") from None
    raise ValueError(f"not a loop event: {data!r:.200}")
