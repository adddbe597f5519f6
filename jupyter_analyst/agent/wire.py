"""JSON form of the loop's events, shared by every consumer that leaves the process.

The server's event stream, run records in evaluation and trajectory files all carry the
same dicts, so a UI, a judge and a training script read one format. Cell outputs (images)
stay out: they live in the notebook; the ``observation`` is what the model saw.
"""

from __future__ import annotations

from typing import Any

from .types import CellAdded, CellExecuted, Event, ModelReplied, RunFinished, StepStarted

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
        }
    raise TypeError(f"not a loop event: {event!r}")
