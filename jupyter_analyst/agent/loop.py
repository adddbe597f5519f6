"""The agent loop: a generator of typed events over a Policy and an Executor.

The run ends only on ``final_answer`` or on a budget. A reply without a tool call gets a
short "continue" message instead of ending the run: ending on the first plain reply is
exactly why the base model in the original experiment stopped after 1.2 turns. Errors the
model or its code causes become the next observation (that is the fix loop); errors in our
own code raise. A cell that would rebind one of the user's names is not run at all: the
model is told which names and what to use instead (``agent.names``).

Two levers help any model, and can be switched off to measure them:

* ``prechecks``: a cell with a syntax error, or reading a column an input frame does not
  have, is answered from the source alone (``agent.precheck``): the model gets the error
  line or the nearest real column names, the cell is neither run nor added to the
  notebook (a ``ModelReplied`` then only the tool message; no ``CellAdded``/``CellExecuted``),
  so the notebook keeps no mistake nobody ran. These catches and the refusals above count
  in ``RunFinished.prechecks`` (a refused cell *is* added, commented out, so a re-run
  can't do it either).
* ``grounding_gate``: a ``final_answer`` stating numbers that no output of the run's cells
  and no data fact shows (``agent.grounding``, the judge's rule; the question's own numbers
  are exempt) goes back to the model once with those numbers listed, and nothing is added.
  The next ``final_answer`` is accepted; what it still states unsupported is recorded on
  the conclusions cell (``CellAdded.unverified``) and in ``RunFinished.unverified``. On the
  last step of the budget there is no going back: the answer is accepted and recorded.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import BackendError
from .copaw import is_tool_response, response_body
from .dialect import Action, Dialect, NotebookDialect
from .followup import earlier_of
from .grounding import Evidence, check_grounding, output_texts
from .names import (
    CLASH_ERROR,
    CellNames,
    Protected,
    alternatives,
    cell_names,
    commented,
    protect,
    refusal,
)
from .observe import DEFAULT_LIMIT, head_tail, observe
from .parsing import FORMAT_HINT
from .precheck import Prechecker, Verdict
from .prompts import SYSTEM_PROMPT, grounding_return, split_task
from .tools import CODE_TOOL, FINAL_TOOL, MARKDOWN_TOOL, TOOL_ARGUMENT, TOOLS
from .types import (
    CellAdded,
    CellExecuted,
    CellResult,
    Event,
    Executor,
    Message,
    ModelReplied,
    Policy,
    RunFinished,
    StepStarted,
    StopReason,
    ToolCall,
    ToolSpec,
)


@dataclass
class Budget:
    """Limits of one run; ``None`` means unlimited."""

    max_steps: int = 40
    max_tokens: int | None = None
    max_seconds: float | None = None


_Stop = tuple[StopReason, "str | None", str]

DEFAULT_CONTEXT_CHARS = 14_000 * 4
"""~14k tokens of history (at ~4 characters a token) leaves room for the reply in a 16k window."""
HISTORY_SHARE = 0.8
"""Of the window, what the rendered prompt may fill; the rest is the reply's."""
FULL_WINDOW_TOKENS = 16_384
"""The window the defaults above are sized for (the 9B profiles')."""
KEEP_RECENT = 6


def stopped_result(result: CellResult) -> CellResult:
    """``result`` of a cell the run's stop interrupted: status ``stopped``, the interrupt's
    traceback dropped, what the cell printed before it kept."""
    kept = [o for o in result.outputs if o.get("output_type") != "error"]
    return replace(result, status="stopped", outputs=kept, error_name="", error_value="", traceback=[])


def context_sizes(context_tokens: int | None) -> tuple[int, int]:
    """``(observation_limit, context_chars)`` for a model that sees ``context_tokens`` tokens.

    ``None`` or a window of 16k or more keeps the defaults. A smaller window (a model trained
    from scratch at 4k-8k) gets observations shrunk in proportion (never under 300
    characters) and a history budget of 80% of the window at 3 characters a token, a small
    vocabulary's rate; the rest holds the tool specs and the reply.
    """
    if not context_tokens or context_tokens >= FULL_WINDOW_TOKENS:
        return DEFAULT_LIMIT, DEFAULT_CONTEXT_CHARS
    observation = max(OLD_OBSERVATION_CHARS, DEFAULT_LIMIT * context_tokens // FULL_WINDOW_TOKENS)
    return observation, int(context_tokens * 0.8 * 3)


TRIM_TO = 0.75
"""Once over its budget, the conversation is cut to this share of it in one go, so the next
steps are pure appends again (a prefix cache restarts once every many steps, not every step)."""
CODE_KEEP_LINES = 3
"""An old code cell shortened to fit keeps its first lines and every line that binds a name."""
SHORTENED_CODE = "# ... (older code shortened to fit the context)"
OLD_OBSERVATION_CHARS = 300
TRIMMED = "\n[older output shortened to fit the context]"
STUB_CHARS = 80
"""The last resort for an old output: its first line, at most this long. Every exchange stays
(the model, and the baseline, read what was done from the code), only what it printed goes."""
DROPPED = "\n[older output dropped to fit the context]"


@dataclass
class _Tally:
    tokens: int = 0
    errors: int = 0
    fixed: int = 0
    last_failed: bool = False
    malformed: int = 0
    prechecks: int = 0
    returns: int = 0
    unverified: list[str] = field(default_factory=list)


class AgentLoop:
    """Drives one analysis. Iterate :meth:`run`; ``messages`` is the whole conversation.

    ``should_stop`` is polled between steps so a UI or Ctrl-C can end a run cleanly.
    ``protected_names`` are the user's names (with their import origins, see
    ``agent.names``): a cell that would rebind one is not run; the model is told which
    names clash and a free alternative for each. Names the run itself bound may be rebound.
    ``frames`` maps each input frame to its columns (``precheck.known_frames`` of the
    facts) for the column check; ``prechecks`` and ``grounding_gate`` switch the two
    levers of the module docstring (both on by default).
    """

    def __init__(
        self,
        policy: Policy,
        executor: Executor,
        budget: Budget | None = None,
        *,
        tools: list[ToolSpec] | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        observation_limit: int = DEFAULT_LIMIT,
        context_chars: int = DEFAULT_CONTEXT_CHARS,
        context_tokens: int | None = None,
        context_trim: float = TRIM_TO,
        should_stop: Callable[[], bool] | None = None,
        protected_names: Protected | Iterable[str] | None = None,
        frames: Mapping[str, Sequence[str]] | None = None,
        prechecks: bool = True,
        grounding_gate: bool = True,
        dialect: Dialect | None = None,
    ) -> None:
        self.policy = policy
        self.dialect: Dialect = dialect or NotebookDialect()
        """How the model's replies become actions and its results messages (``agent.dialect``)."""
        self.executor = executor
        self.budget = budget or Budget()
        self.tools = tools if tools is not None else TOOLS
        self.system_prompt = system_prompt
        self.observation_limit = observation_limit
        self.context_chars = context_chars
        self.context_tokens = context_tokens
        self.context_trim = context_trim
        """Over budget, the history is cut to this share of it (``fit_context``)."""
        """The model's window, when known: with the prompt tokens the backend reports, the
        budget becomes a share of the *rendered* prompt (template, tool specs, the model's
        own tokenizer), not a guess from message characters."""
        self.should_stop = should_stop or (lambda: False)
        self.protected = protect(protected_names)
        self.created: dict[str, None] = {}
        """Names the run's cells bound that were not protected (ordered, as a set)."""
        self.frames = {name: list(columns) for name, columns in (frames or {}).items()}
        self.prechecks = prechecks
        self.grounding_gate = grounding_gate
        self._checker = Prechecker(self.frames)
        self._outputs: list[tuple[str, list[str]]] = []
        """(cell source, output texts) of every cell that ran: the gate's evidence."""
        self._meter = ContextMeter()
        self._budget_chars = context_chars
        """The history budget in characters, recalibrated from the backend's token counts."""
        """Text of the non-error outputs of the run's cells: the gate's evidence."""
        self._question = ""
        self._facts = ""
        self._answered: list[tuple[ToolCall, str]] = []
        """The current turn's results, written into the history when the turn is done."""
        self._acted = False
        self.messages: list[Message] = []
        self.finished: RunFinished | None = None
        self.step = 0
        """The step being worked on (0 before the first)."""
        self._tally = _Tally()
        self._start: float | None = None

    def run(self, task: str) -> Iterator[Event]:
        """Yield events until the run ends; the last one is always :class:`RunFinished`."""
        self.messages = self.dialect.opening(self.system_prompt, task)
        self._acted = False
        self._start = time.monotonic()
        self._tally = tally = _Tally()
        self.step = 0
        self.finished = None
        self.created = {}
        self._checker = Prechecker(self.frames)
        self._outputs = []
        self._meter = ContextMeter()
        question, facts = split_task(task)
        earlier = earlier_of(task)  # a follow-up may quote the run it continues
        self._question, self._facts = question, "\n".join(filter(None, [facts, earlier]))

        while True:
            stop = self._budget_exceeded(self.step, tally.tokens, time.monotonic() - self._start)
            if stop is None and self.should_stop():
                stop = StopReason.STOPPED
            if stop is not None:
                yield self.finish(stop)  # the reason says it all
                return
            self.step += 1
            step = self.step
            yield StepStarted(step)
            t0 = time.monotonic()
            try:
                fit_context(self.messages, self._budget_chars, meter=self._meter, trim_to=self.context_trim)
                sent = sum(map(self._meter.size, self.messages))
                turn = self.policy(self.messages, self.dialect.tools(self.tools))
                self._calibrate(sent, turn.usage.prompt_tokens)
            except BackendError as exc:
                yield self.finish(StopReason.MODEL_ERROR, detail=str(exc))
                return
            tally.tokens += turn.usage.total
            decoded = self.dialect.decode(turn, self._acted)
            problem = decoded.problem
            tally.malformed += int(decoded.malformed)
            calls = decoded.calls or [a.call for a in decoded.actions if a.call is not None]
            yield ModelReplied(step, turn, calls, round(time.monotonic() - t0, 3), problem)
            self.messages.append(self.dialect.assistant_message(turn, decoded))
            if self.should_stop():  # stopped while the model was answering: act on nothing
                yield self.finish(StopReason.STOPPED)
                return
            if not decoded.actions:
                self.messages.append({"role": "user", "content": problem})
                continue
            self._answered = []
            self._acted = True
            for action in decoded.actions:
                if action.call is None:  # answered by the dialect itself: no cell
                    self._answered.append((ToolCall("observation", {}), self.dialect.observe(action)))
                    continue
                told = len(self._answered)
                outcome = yield from self._act(step, action, tally, decoded.final)
                if action.hidden:  # the dialect's own cell: the model didn't ask, it isn't told
                    del self._answered[told:]
                if outcome is not None:
                    self._answer(decoded.final)
                    reason, answer, detail = outcome
                    yield self.finish(reason, answer, detail)
                    return
            self._answer(decoded.final)

    def finish(self, reason: StopReason, answer: str | None = None, detail: str = "") -> RunFinished:
        """The run's last record with what it really spent so far.

        The loop calls it when it ends by itself; a caller whose run ends from outside
        (Ctrl-C, a stop that could not wait for a model call) calls it too, so a stopped
        run records its real steps, tokens, seconds and errors.
        """
        if self.finished is not None:
            return self.finished
        tally = self._tally
        self.finished = RunFinished(
            reason=reason,
            answer=answer,
            steps=self.step,
            tokens=tally.tokens,
            seconds=round(time.monotonic() - self._start, 3) if self._start is not None else 0.0,
            errors=tally.errors,
            errors_fixed=tally.fixed,
            detail=detail,
            created=list(self.created),
            prechecks=tally.prechecks,
            grounding_returns=tally.returns,
            malformed_calls=tally.malformed,
            unverified=list(tally.unverified),
        )
        return self.finished

    def _budget_exceeded(self, step: int, tokens: int, elapsed: float) -> StopReason | None:
        b = self.budget
        if step >= b.max_steps:
            return StopReason.MAX_STEPS
        if b.max_tokens is not None and tokens >= b.max_tokens:
            return StopReason.MAX_TOKENS
        if b.max_seconds is not None and elapsed >= b.max_seconds:
            return StopReason.MAX_TIME
        return None

    def _answer(self, final: bool) -> None:
        """Put the turn's results into the history, the way the dialect writes them."""
        self.messages.extend(self.dialect.answers(self._answered, final))
        self._answered = []

    def _act(
        self, step: int, action: Action, tally: _Tally, final_turn: bool = False
    ) -> Generator[Event, None, _Stop | None]:
        """Run one notebook action; return (reason, answer, detail) when it ends the run."""
        call = action.call
        assert call is not None
        problem = _invalid(call)
        if problem:
            tally.malformed += 1
            self._tool_message(call, problem)
            return None
        value = str(call.arguments[TOOL_ARGUMENT[call.name]])
        cell_id = uuid.uuid4().hex[:8]
        if call.name == FINAL_TOOL:
            unverified = self._unsupported(value) if self.grounding_gate else []
            if unverified and not tally.returns and step < self.budget.max_steps:
                tally.returns += 1  # once: back to the model, nothing added
                self._tool_message(call, grounding_return(unverified))
                return None
            tally.unverified = unverified
            source = value if value.lstrip().startswith("#") else f"## Conclusions\n\n{value}"
            yield CellAdded(step, cell_id, "markdown", source, "conclusions", unverified=list(unverified))
            if not final_turn:  # a dialect that ends with a plain reply gets no acknowledgement
                self._tool_message(call, "ok: the analysis is finished")
            return StopReason.FINAL_ANSWER, value, ""
        if call.name == MARKDOWN_TOOL:
            yield CellAdded(step, cell_id, "markdown", value, "markdown")
            self._tool_message(call, action.observation or "ok: markdown cell added")
            return None
        verdict = self._checker.check(value) if self.prechecks else Verdict()
        if verdict.catch is not None:  # neither run nor added: the notebook keeps no such cell
            tally.prechecks += 1
            self._tool_message(call, verdict.catch.observation)
            return None
        names = cell_names(value)
        refused = self._refusal(names)
        if refused is not None:  # the cell stays, commented out, so a re-run can't do it either
            tally.prechecks += 1
            error, text = refused
            yield CellAdded(step, cell_id, "code", commented(value, error), "code")
            result = CellResult(status="error", error_name=CLASH_ERROR, error_value=error)
        else:
            yield CellAdded(step, cell_id, "code", value, "code")
            result = self.executor.execute(value, cell_id)
            if result.status in ("error", "timeout") and self.should_stop():
                # the stop interrupted it: no error to fix and no traceback to keep
                result = stopped_result(result)
                yield CellExecuted(step, cell_id, result, "stopped by the user", False)
                self._tool_message(call, "stopped by the user")
                return StopReason.STOPPED, None, ""
            text = observe(result, self.observation_limit)
            text = self.dialect.result_text(action, result, text, self.observation_limit)
            self._record(names)
            self._checker.ran(verdict)
            texts = output_texts({"cells": [{"cell_type": "code", "outputs": result.outputs}]})
            self._outputs.append((value, texts))
        fixed = result.ok and tally.last_failed
        if result.ok:
            tally.fixed += int(fixed)
        else:
            tally.errors += 1
        tally.last_failed = not result.ok
        yield CellExecuted(step, cell_id, result, text, fixed)
        self._tool_message(call, text)
        if result.status == "dead":
            return StopReason.KERNEL_DIED, None, "the kernel died while running a cell"
        return None

    def _unsupported(self, answer: str) -> list[str]:
        """The numbers ``answer`` states that no output of the run and no fact shows."""
        evidence = Evidence.from_cells(self._outputs, [self._facts])  # the judge's evidence rule
        found = check_grounding(answer, evidence, self._question).unsupported
        return list(dict.fromkeys(found))

    def _refusal(self, names: CellNames) -> tuple[str, str] | None:
        """(error value, observation) when the cell would rebind a protected name (or
        star-import over them), with a free alternative for each; None when it may run."""
        clashes = names.clashes(self.protected)
        if not clashes and not (names.star_imports and self.protected):
            return None
        taken = {*self.protected, *self.created, *names.origins}
        return refusal(alternatives(clashes, taken), names.star_imports)

    def _record(self, names: CellNames) -> None:
        """Note what a cell that ran bound or deleted (protected names it re-imported are
        still the user's, not the run's)."""
        for name, bound in names.final.items():
            if name in self.protected:
                continue
            if bound:
                self.created.setdefault(name)
            else:
                self.created.pop(name, None)

    def _calibrate(self, chars: int, prompt_tokens: int) -> None:
        """Size the history budget from what the backend counted: ``HISTORY_SHARE`` of the
        window, in this run's own characters per rendered-prompt token."""
        if not self.context_tokens or prompt_tokens <= 0 or chars <= 0:
            return
        self._budget_chars = int(HISTORY_SHARE * self.context_tokens * chars / prompt_tokens)

    def _tool_message(self, call: ToolCall, content: str) -> None:
        self._answered.append((call, content))


def _size(message: Message) -> int:
    calls = message.get("tool_calls") or []
    return len(str(message.get("content") or "")) + sum(len(c["function"]["arguments"]) for c in calls)


class ContextMeter:
    """Each message's size, measured once: the conversation grows by a few messages a step,
    and measuring all of it again every step made a step's cost grow with the run."""

    def __init__(self) -> None:
        self._sizes: dict[int, tuple[Message, int]] = {}

    def size(self, message: Message) -> int:
        known = self._sizes.get(id(message))
        if known is not None and known[0] is message:  # the same dict (a trim replaces it)
            return known[1]
        size = _size(message)
        self._sizes[id(message)] = (message, size)
        return size


def fit_context(
    messages: list[Message],
    budget: int,
    keep_recent: int = KEEP_RECENT,
    meter: ContextMeter | None = None,
    trim_to: float = TRIM_TO,
) -> None:
    """Keep the conversation under ``budget`` characters.

    Below the budget nothing changes: the prompt stays a pure append and a prefix cache
    holds. Over it, the history is cut in one go to ``trim_to`` of the budget: first the
    oldest tool results are shortened (head and tail, labelled), then, when that is not
    enough, the oldest code cells (their first lines and every line that binds a name, so
    the model still knows its variables), and last the old results down to their first
    line. The task and the latest ``keep_recent`` exchanges
    stay whole: the model needs recent outputs and code to fix errors.
    """
    size = meter.size if meter is not None else _size
    total = sum(map(size, messages))
    if total <= budget:
        return
    goal = int(budget * trim_to)
    tool_indices = [
        i
        for i, m in enumerate(messages)
        if m.get("role") == "tool"
        or (m.get("role") == "user" and i > 1 and is_tool_response(m.get("content")))
    ]
    old_tools = tool_indices[: max(0, len(tool_indices) - keep_recent)]
    for i in old_tools:
        if total <= goal:
            return
        content = str(messages[i].get("content") or "")
        body, wrap = response_body(content)
        if len(body) <= OLD_OBSERVATION_CHARS or body.endswith(TRIMMED):
            continue
        short = wrap(head_tail(body, OLD_OBSERVATION_CHARS) + TRIMMED)
        total -= len(content) - len(short)
        messages[i] = {**messages[i], "content": short}
    cutoff = old_tools[-1] if old_tools else 0  # code older than the kept exchanges
    for i in range(1, cutoff):
        if total <= goal:
            return
        message = messages[i]
        if message.get("role") != "assistant" or not message.get("tool_calls"):
            continue
        calls = [_shorten_call(c) for c in message["tool_calls"]]
        if calls != message["tool_calls"]:
            before = size(message)
            messages[i] = {**message, "tool_calls": calls}
            total -= before - size(messages[i])
    for i in old_tools:  # still over: old outputs down to their first line
        if total <= goal:
            return
        content = str(messages[i].get("content") or "")
        body, wrap = response_body(content)
        if body.endswith(DROPPED):
            continue
        stub = wrap(body.split("\n", 1)[0][:STUB_CHARS] + DROPPED)
        if len(stub) < len(content):
            total -= len(content) - len(stub)
            messages[i] = {**messages[i], "content": stub}


def _shorten_call(call: dict[str, Any]) -> dict[str, Any]:
    """A code call with only its first lines and the lines that bind names (else as it is)."""
    function = call.get("function") or {}
    if function.get("name") != CODE_TOOL:
        return call
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        return call
    code = arguments.get(TOOL_ARGUMENT[CODE_TOOL])
    if not isinstance(code, str) or SHORTENED_CODE in code:
        return call
    lines = code.splitlines()
    kept = [line for n, line in enumerate(lines) if n < CODE_KEEP_LINES or _BINDS.match(line)]
    if len(kept) >= len(lines) - 1:  # nothing worth cutting
        return call
    arguments[TOOL_ARGUMENT[CODE_TOOL]] = "\n".join([*kept, SHORTENED_CODE])
    return {**call, "function": {**function, "arguments": json.dumps(arguments, ensure_ascii=False)}}


_BINDS = re.compile(r"^[A-Za-z_][\w, ]*(\[[^\]]*\])?\s*=[^=]|^(import|from)\s|^def\s|^class\s")
"""A line that binds a name: ``x = ...``, ``a, b = ...``, an import, a def or class."""


def _invalid(call: ToolCall) -> str:
    """Why a parsed call can't run, in words the model can act on; '' when it can."""
    if call.name not in TOOL_ARGUMENT:
        names = ", ".join(t["function"]["name"] for t in TOOLS)
        return f"Error: there is no tool named {call.name!r}. Available tools: {names}."
    if "__raw_arguments__" in call.arguments:
        return "Error: the tool arguments were not valid JSON. " + FORMAT_HINT
    arg = TOOL_ARGUMENT[call.name]
    value = call.arguments.get(arg)
    if not isinstance(value, str) or not value.strip():
        return f"Error: {call.name} needs a non-empty string argument {arg!r}."
    if call.name == CODE_TOOL and len(value) > 20_000:
        return "Error: the cell is too long; split it into smaller cells."
    return ""
