"""How the loop talks to a model: our notebook tools, or the dialect a model was trained on.

The loop itself only knows notebook actions: a code cell (``add_and_execute_jupyter_code_cell``),
a markdown cell, the conclusions (``final_answer``). A dialect turns the model's reply into
those actions, answers what needs no cell itself (a file written, a file read), and writes
the conversation the way the model saw it in training. ``NotebookDialect`` is ours and the
default: OpenAI tool calls, one ``tool`` message per call. ``CopawDialect`` is the terminal
agent's (``agent.copaw``): calls as JSON in the reply's text, every result of a turn in one
``<tool_response>`` user message, the run's end a reply with no call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import copaw
from .copaw import SCRIPTS_CELL, WORKSPACE
from .parsing import FORMAT_HINT, parse_tool_calls
from .prompts import CONTINUE_MESSAGE
from .tools import CODE_TOOL, FINAL_TOOL, MARKDOWN_TOOL
from .types import AssistantTurn, CellResult, Message, ToolCall, ToolSpec

DIALECTS = ("notebook", "copaw")


@dataclass
class Action:
    """One thing a reply asks for: a notebook ``call`` for the loop to act on, or an
    ``observation`` the dialect answered itself (no cell)."""

    call: ToolCall | None = None
    observation: str = ""
    command: str = ""
    """For a script run: the command the model wrote (its result reads like that process's)."""
    script: str = ""
    """For a run of a written file: the file (its latest output is kept for an ``Edit``)."""
    rerun: str = ""
    """A script an ``Edit`` just ran again: this action answers with that run's output."""
    hidden: bool = False
    """A cell the dialect adds on its own (not asked for): its result is not told to the model."""


@dataclass
class Decoded:
    """A reply, decoded: the actions in order, the calls as the model made them (for the
    event), and why there are none (shown to the model) when there are none."""

    actions: list[Action] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    problem: str = ""
    final: bool = False
    """The reply ended the run without a call (the dialect's way to finish)."""
    history: str | None = None
    """The reply's text as it goes into the history, when that differs from what is shown
    (the shown text has its call blocks taken out)."""
    malformed: bool = False
    """The reply tried to call a tool and could not be read (counted as a malformed call)."""


class Dialect(Protocol):
    name: str

    def opening(self, system_prompt: str, task: str) -> list[Message]:
        """The conversation's first messages."""
        ...

    def tools(self, tools: list[ToolSpec]) -> list[ToolSpec]:
        """The tool specs sent with each request ([] when the prompt describes them)."""
        ...

    def decode(self, turn: AssistantTurn, acted: bool) -> Decoded:
        """The reply's actions; ``acted``: whether any action ran before this reply."""
        ...

    def assistant_message(self, turn: AssistantTurn, decoded: Decoded) -> Message:
        """The reply as it goes into the history."""
        ...

    def result_text(self, action: Action, result: CellResult, observed: str, limit: int) -> str:
        """What the model is told of a cell that ran (``observed``: our rendering)."""
        ...

    def observe(self, action: Action) -> str:
        """The answer to an action with no cell, when its turn comes (not when decoded)."""
        ...

    def answers(self, answered: list[tuple[ToolCall, str]], final: bool) -> list[Message]:
        """The messages that carry a turn's results."""
        ...


class NotebookDialect:
    """Our own tools (``agent.tools``), as OpenAI tool calls: the default."""

    name = "notebook"

    def opening(self, system_prompt: str, task: str) -> list[Message]:
        return [{"role": "system", "content": system_prompt}, {"role": "user", "content": task}]

    def tools(self, tools: list[ToolSpec]) -> list[ToolSpec]:
        return tools

    def decode(self, turn: AssistantTurn, acted: bool) -> Decoded:
        if turn.tool_calls:
            calls = list(turn.tool_calls)
        else:
            parsed = parse_tool_calls(turn.content)
            if not parsed.calls:
                return Decoded(problem=parsed.error or CONTINUE_MESSAGE, malformed=bool(parsed.error))
            turn.content = parsed.content
            turn.reasoning = turn.reasoning or parsed.reasoning
            calls = parsed.calls
        return Decoded([Action(c) for c in calls], calls)

    def assistant_message(self, turn: AssistantTurn, decoded: Decoded) -> Message:
        msg: Message = {"role": "assistant", "content": turn.content or ""}
        if decoded.calls:
            msg["tool_calls"] = [c.to_openai() for c in decoded.calls]
        return msg

    def result_text(self, action: Action, result: CellResult, observed: str, limit: int) -> str:
        return observed

    def observe(self, action: Action) -> str:
        return action.observation

    def answers(self, answered: list[tuple[ToolCall, str]], final: bool) -> list[Message]:
        return [
            {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": text}
            for call, text in answered
        ]


COPAW_CONTINUE = (
    "Please continue your analysis: use the tools (run a Python script with Bash), then explain the results."
)


class CopawDialect:
    """The CoPaw terminal agent's tools and format (``agent.copaw``), mapped onto cells.

    ``root`` is the notebook's folder: ``Read``, ``Glob`` and ``Grep`` see files under it
    only. ``frame`` is the loaded DataFrame's name, which the system prompt mentions.
    """

    name = "copaw"

    def __init__(self, root: Path | None = None, frame: str | None = "df", data_dir: str = ".") -> None:
        self.root = Path(root) if root is not None else Path.cwd()
        self.frame = frame
        self.data_dir = data_dir
        self.workspace = copaw.Workspace()
        self._ran: dict[str, str] = {}
        """Script key -> the output of its latest run (an ``Edit`` runs the patched script)."""
        self._fresh: set[str] = set()
        """Scripts an ``Edit`` just re-ran: the model's next ``python`` of it reads that run."""
        self._charts = False
        """Whether the cell that makes the workspace and shows saved charts was added."""

    def opening(self, system_prompt: str, task: str) -> list[Message]:
        # The trained prompt replaces ours; the task (question + data facts) is the user turn.
        prompt = copaw.system_prompt(self.data_dir, WORKSPACE, self.frame)
        return [{"role": "system", "content": prompt}, {"role": "user", "content": task}]

    def tools(self, tools: list[ToolSpec]) -> list[ToolSpec]:
        return []  # the system prompt lists them; the model never saw a tools list

    def decode(self, turn: AssistantTurn, acted: bool) -> Decoded:
        calls = list(turn.tool_calls)
        raw = turn.content or ""
        parsed = parse_tool_calls(raw)
        if not calls:
            calls = parsed.calls
            turn.reasoning = turn.reasoning or parsed.reasoning
        if calls:
            turn.content = parsed.content  # shown without the call blocks; the history keeps them
        if not calls:
            if parsed.error:  # its own format in the hint, not ours
                hint = "Use this EXACT format:\n" + copaw.CALL_FORMAT
                return Decoded(problem=parsed.error.replace(FORMAT_HINT, hint), malformed=True)
            text = (parsed.content or turn.content or "").strip()
            if acted and text:  # the trained ending: a reply with no call is the final report
                return Decoded([Action(ToolCall(FINAL_TOOL, {"answer": text}))], [], final=True)
            return Decoded(problem=COPAW_CONTINUE)
        actions: list[Action] = []
        for c in calls:
            action = self._action(c)
            code = str(action.call.arguments.get("code", "")) if action.call is not None else ""
            if action.command and code and not code.startswith("!") and not self._charts:
                self._charts = True  # before the first script: its saved charts show in the notebook
                actions.append(Action(ToolCall(CODE_TOOL, {"code": SCRIPTS_CELL}), hidden=True))
            actions.append(action)
        return Decoded(actions, calls, history=raw)

    def _action(self, call: ToolCall) -> Action:
        args = call.arguments
        why = copaw.missing_arguments(call.name, args)
        if why:
            return Action(observation=why)
        if call.name == "Write":
            path, content = str(args["file_path"]), str(args["content"])
            said = self.workspace.write(path, content)
            if path.lower().endswith((".md", ".markdown")):
                return Action(ToolCall(MARKDOWN_TOOL, {"text": content}, id=call.id), observation=said)
            return Action(observation=said)
        if call.name == "Edit":
            path = str(args["file_path"])
            said, changed = self.workspace.edit(path, str(args["old_string"]), str(args["new_string"]))
            found = self.workspace.script(path)
            if changed and found is not None and found[0] in self._ran:
                key, code = found  # the patched script runs again, in a new cell
                self._fresh.add(key)
                rerun = ToolCall(CODE_TOOL, {"code": code}, id=call.id)
                return Action(rerun, observation=said, command=f"python {key}", script=key)
            return Action(observation=said)
        if call.name == "Read":
            return Action(observation=copaw.read(self.root, str(args["file_path"])))
        if call.name == "Glob":
            return Action(observation=copaw.glob(self.root, str(args["pattern"])))
        if call.name == "Grep":
            where = args.get("path")
            found_lines = copaw.grep(self.root, str(args["pattern"]), str(where) if where else None)
            return Action(observation=found_lines)
        command = str(args["command"])
        bash = copaw.bash_action(command, self.workspace)
        if bash.kind == "run":
            if bash.script in self._fresh:  # just run by the Edit: no second cell, its output
                return Action(rerun=bash.script)
            run = ToolCall(CODE_TOOL, {"code": bash.code}, id=call.id)
            return Action(run, command=command, script=bash.script)
        if bash.kind == "shell":
            return Action(ToolCall(CODE_TOOL, {"code": bash.code}, id=call.id), command=command)
        return Action(observation=bash.text)

    def assistant_message(self, turn: AssistantTurn, decoded: Decoded) -> Message:
        if decoded.final:
            return {"role": "assistant", "content": decoded.actions[0].call.arguments["answer"]}  # type: ignore[union-attr]
        text = decoded.history if decoded.history is not None else (turn.content or "")
        if decoded.calls and "<tool_call>" not in text:  # a server parsed the calls out: put them back
            blocks = [
                f'<tool_call>\n{{"name": {_json(c.name)}, "arguments": {_json(c.arguments)}}}\n</tool_call>'
                for c in decoded.calls
            ]
            text = "\n\n".join(filter(None, [text.strip(), *blocks]))
        return {"role": "assistant", "content": text}

    def result_text(self, action: Action, result: CellResult, observed: str, limit: int) -> str:
        text = copaw.process_output(result, action.command or "python", limit, action.script)
        if action.script:
            self._ran[action.script] = text
            if action.observation:  # an Edit's rerun: told it edited; its next `python` reads this
                return action.observation
            self._fresh.discard(action.script)
        return text

    def observe(self, action: Action) -> str:
        if action.rerun:
            self._fresh.discard(action.rerun)
            return self._ran.get(action.rerun, "")
        return action.observation

    def answers(self, answered: list[tuple[ToolCall, str]], final: bool) -> list[Message]:
        if not answered:
            return []
        if final:  # the grounding gate's return of a report: a plain user turn
            return [{"role": "user", "content": "\n\n".join(text for _, text in answered)}]
        return [{"role": "user", "content": copaw.tool_response([text for _, text in answered])}]


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def make_dialect(
    name: str | None, root: Path | None = None, frame: str | None = "df", data_dir: str = "."
) -> Dialect:
    """The dialect a profile names (``None``: ours)."""
    if name in (None, "", "notebook"):
        return NotebookDialect()
    if name == "copaw":
        return CopawDialect(root, frame, data_dir)
    raise ValueError(f"unknown tool dialect {name!r}; use one of {', '.join(DIALECTS)}")
