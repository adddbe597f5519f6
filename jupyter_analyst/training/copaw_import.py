"""The CoPaw collector's trajectories, converted to our notebook tools or kept in their dialect.

The collector (ms-swift JSONL, ``{"messages"}``) recorded a terminal agent: the question
first, its system prompt second, JSON calls of six tools inside ``<tool_call>`` in the
assistant's text, each turn's results in one ``<tool_response>`` user turn (joined by
``---``), and an episode's end a reply with no call. ``convert`` turns the first episode
into the record a live run with our tools writes (``trajectory.record_run``): our system
prompt, the question as the task, one tool call per assistant turn, a ``tool`` message per
call, ``final_answer``. What a call becomes is decided by ``agent.copaw`` (``Workspace``,
``bash_action``), the mapping the live CoPaw dialect uses, so a converted trajectory shows
the cells a live run would have added:

- ``Write`` of a script is kept; the ``Bash`` run of it is one code cell holding the file's
  content at that moment (an ``Edit`` in between is in that code) and the run's output as
  its observation; a read-only shell command is a ``!command`` cell; ``Write`` of a ``.md``
  file is a markdown cell; the final reply is ``final_answer``.
- ``Read``, ``Glob`` and ``Grep`` are dropped (counted): our notebook loads the data as a
  frame and states its facts in the task, and no cell of ours reads a file to show it.
- Installs, deletions and network commands are dropped (counted): the notebook refuses them,
  so a model should not learn to ask. A ``python`` command the policy refuses (piped,
  redirected, chained, a heredoc) rejects the trajectory instead: dropping a run would leave
  later prose and the final answer quoting output no cell printed.
- Follow-up questions after the first final reply are counted, not converted.

``keep`` leaves a trajectory in its own dialect (system prompt moved first: Qwen templates
refuse a system message elsewhere) for training a CoPaw-dialect adapter.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ..agent import copaw
from ..agent.parsing import parse_tool_calls, split_reasoning
from ..agent.prompts import SYSTEM_PROMPT, render_question
from ..agent.tools import CODE_TOOL, FINAL_TOOL, MARKDOWN_TOOL
from ..agent.types import Message, ToolCall
from .trajectory import ends_with_reply

DIALECT = "copaw"
MARKDOWN_OK = "ok: markdown cell added"
FINAL_OK = "ok: the analysis is finished"
"""What the loop answers a markdown cell and ``final_answer`` with (``agent.loop``)."""
TASK_NOTE = "the collector's question alone: its data facts are unknown, so the task has no facts block"

_MARKDOWN = (".md", ".markdown")
_READS = ("Read", "Glob", "Grep")
_RUNS_PYTHON = re.compile(r"(?:^|[\s/;&|(])python(?:3(?:\.\d+)?)?(?:\s|$)")
_DATA_PATH = re.compile(
    r"""['"]([^'"\n]+\.(?:csv|tsv|xlsx?|json|jsonl|parquet|feather|pkl|pickle|txt|dta|sav))['"]"""
)
_DATA_ARG = re.compile(r"(?<!\S)(\S+\.(?:csv|tsv|xlsx?|json|jsonl|parquet|txt))(?!\S)")
_WRITES = re.compile(r"(?:\.to_\w+|savefig)\(\s*$")


class Rejected(ValueError):
    """A trajectory that can't be converted; the message is the counted reason."""


@dataclass
class Conversion:
    """One trajectory's outcome: our messages (None when rejected), why not, and what it cost."""

    messages: list[Message] | None
    why: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    unstepped: Counter[str] = field(default_factory=Counter)
    """Calls that got no step of their own, by kind (dropped, or folded into a run's code)."""
    followups: int = 0


@dataclass
class ImportReport:
    """What an import of CoPaw trajectories did, for the printed report."""

    read: int = 0
    converted: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    unstepped: Counter[str] = field(default_factory=Counter)
    followups: int = 0

    def add(self, raw: Any, outcome: Conversion, kept: bool = False) -> None:
        self.read += 1
        self.calls.update(count_calls(raw))
        if outcome.messages is None:
            self.rejected[outcome.why] += 1
            return
        self.kept += int(kept)
        self.converted += int(not kept)
        self.unstepped.update(outcome.unstepped)
        self.followups += outcome.followups

    def lines(self) -> list[str]:
        """The report: rows read, converted (or kept), rejected by reason, calls per tool."""
        done = f"{self.converted} converted cleanly"
        if self.kept:
            done = f"{self.kept} kept in the copaw dialect"
        lines = [f"copaw: {self.read} read, {done}, {sum(self.rejected.values())} rejected"]
        lines += [f"  rejected {n}: {why}" for why, n in self.rejected.most_common()]
        tools = [*copaw.TOOLS, *sorted(set(self.calls) - set(copaw.TOOLS))]
        lines.append("copaw calls: " + ", ".join(f"{t} {self.calls[t]}" for t in tools))
        if self.unstepped:
            lines.append(
                "calls with no step of their own (converted trajectories): "
                + ", ".join(f"{n} {why}" for why, n in self.unstepped.most_common())
            )
        if self.followups:
            lines.append(f"follow-up questions not converted (first episode only): {self.followups}")
        return lines


# -- reading the collector's messages -------------------------------------------------------


def _messages(raw: Any) -> list[dict[str, str]]:
    """``role``/``content`` pairs with text content; raises ``Rejected`` when unreadable."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise Rejected("messages is a string that is not JSON") from None
    if not isinstance(raw, list) or not raw:
        raise Rejected("no messages")
    out = []
    for m in raw:
        if not isinstance(m, Mapping) or m.get("role") not in ("system", "user", "assistant"):
            raise Rejected("a message that is not system, user or assistant")
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(str(p.get("text") or "") if isinstance(p, Mapping) else str(p) for p in content)
        out.append({"role": str(m["role"]), "content": "" if content is None else str(content)})
    return out


def is_copaw(raw: Any) -> bool:
    """Whether messages look like the collector's: the system prompt second, or ``<tool_response>``
    user turns (and no ``tool`` role, which is the OpenAI form)."""
    try:
        msgs = _messages(raw)
    except Rejected:
        return False
    if [m["role"] for m in msgs[:2]] == ["user", "system"]:
        return True
    return any(m["role"] == "user" and copaw.is_tool_response(m["content"]) for m in msgs[1:])


def _split_header(msgs: list[dict[str, str]]) -> tuple[str, str, list[dict[str, str]]]:
    """(system prompt, question, the rest): what comes before the first assistant turn."""
    first = next((i for i, m in enumerate(msgs) if m["role"] == "assistant"), len(msgs))
    head = msgs[:first]
    system = "\n\n".join(m["content"] for m in head if m["role"] == "system")
    question = "\n\n".join(m["content"].strip() for m in head if m["role"] == "user").strip()
    if not question:
        raise Rejected("no question before the first reply")
    if first == len(msgs):
        raise Rejected("no assistant reply")
    return system, question, msgs[first:]


def _calls(content: str) -> tuple[str, list[ToolCall]]:
    """(prose, calls) of an assistant turn, ``<think>`` removed; a block that can't be read rejects."""
    parsed = parse_tool_calls(content)
    _, rest = split_reasoning(content)
    if parsed.error or rest.count("<tool_call>") > len(parsed.calls):
        raise Rejected("unparseable call JSON")
    return parsed.content, parsed.calls


def count_calls(raw: Any) -> Counter[str]:
    """Calls per tool name in every assistant turn (blocks that can't be read are not counted)."""
    try:
        msgs = _messages(raw)
    except Rejected:
        return Counter()
    return Counter(
        c.name for m in msgs if m["role"] == "assistant" for c in parse_tool_calls(m["content"]).calls
    )


def _results(content: str, calls: list[ToolCall]) -> list[str]:
    """One result per call. Only a ``Bash`` result can hold the ``---`` joiner itself (``Read``
    numbers its lines, ``Glob``/``Grep`` list paths, ``Write``/``Edit`` say one line), so extra
    parts belong to the turn's one ``Bash`` call; with two or more, the turn can't be aligned."""
    body = copaw.response_body(content.strip())[0]
    if len(calls) == 1:
        return [body]
    parts = body.split(copaw.JOINER)
    extra = len(parts) - len(calls)
    if extra == 0:
        return parts
    bash = [i for i, c in enumerate(calls) if c.name == "Bash"]
    if extra < 0 or len(bash) != 1:
        raise Rejected("results don't align with calls")
    i = bash[0]
    return [*parts[:i], copaw.JOINER.join(parts[i : i + extra + 1]), *parts[i + extra + 1 :]]


@dataclass
class _Turn:
    text: str
    calls: list[ToolCall]
    results: list[str]


def _first_episode(body: list[dict[str, str]]) -> tuple[list[_Turn], str, int]:
    """(the turns with calls, the final reply, follow-up questions after it) of the first episode."""
    turns: list[_Turn] = []
    i = 0
    while i < len(body):
        if body[i]["role"] != "assistant":
            raise Rejected("messages out of order (a user turn where a reply was due)")
        text, calls = _calls(body[i]["content"])
        if not calls:
            later = body[i + 1 :]
            asked = sum(1 for m in later if m["role"] == "user" and not copaw.is_tool_response(m["content"]))
            return turns, text, asked
        answer = body[i + 1] if i + 1 < len(body) else None
        if answer is None:
            raise Rejected("no final reply")
        if answer["role"] != "user" or not copaw.is_tool_response(answer["content"]):
            raise Rejected("a call without its result")
        turns.append(_Turn(text, calls, _results(answer["content"], calls)))
        i += 2
    raise Rejected("no final reply")


# -- conversion -------------------------------------------------------------------------------


def _task(question: str) -> str:
    """The task as ``render_task`` writes its question part (no facts: the collector's are
    unknown); a question already in that form (a live CoPaw run of ours) is kept as it is."""
    return question if question.startswith("Task: ") else render_question(question)


def _refusal_kind(text: str) -> str:
    for word, kind in (("installing", "install"), ("deleting", "change files"), ("network", "network")):
        if word in text:
            return kind
    return "other command"


def _python_failure(command: str, action: copaw.BashAction) -> str:
    """Why a ``python`` command the policy doesn't run as a cell rejects the trajectory."""
    if "<<" in command:
        return "a python heredoc (the command policy runs only script files)"  # an unclosed one
    if action.kind == "error" and "can't open file" in action.text:
        return "a run of a script never written"
    if action.kind == "error":
        return "an unreadable Bash command"
    return "a python run the command policy refuses (pipe, redirect or chain)"


class _Converter:
    """Walks one episode's calls with a ``copaw.Workspace`` and writes our messages."""

    def __init__(self) -> None:
        self.workspace = copaw.Workspace()
        self.messages: list[Message] = []
        self.unstepped: Counter[str] = Counter()
        self.ran: set[str] = set()
        self.markdown: set[str] = set()
        self.code_cells = 0
        self._ids = 0

    def step(self, text: str, name: str, arguments: dict[str, str], observation: str) -> None:
        """One assistant turn with one call, and its ``tool`` message (what ``record_run`` holds)."""
        self._ids += 1
        call_id = f"call_{self._ids}"
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        self.messages.append({"role": "assistant", "content": text, "tool_calls": [call]})
        self.messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": observation})
        self.code_cells += int(name == CODE_TOOL)

    def turn(self, turn: _Turn) -> None:
        text = turn.text
        for call, result in zip(turn.calls, turn.results, strict=True):
            found = self.map(call, result)
            if found is not None:
                self.step(text, *found)
                text = ""  # the turn's prose goes with its first step

    def map(self, call: ToolCall, result: str) -> tuple[str, dict[str, str], str] | None:
        """(our tool, arguments, observation) of one call; None when it gets no step."""
        name, args = call.name, call.arguments
        if name not in copaw.TOOLS:
            raise Rejected(f"a call to an unknown tool ({name[:40]})")
        if copaw.missing_arguments(name, args):
            self.unstepped[f"{name} with missing arguments"] += 1
            return None
        if name in _READS:
            self.unstepped[name] += 1
            return None
        if name == "Write":
            return self._write(str(args["file_path"]), str(args["content"]), result)
        if name == "Edit":
            _, changed = self.workspace.edit(
                str(args["file_path"]), str(args["old_string"]), str(args["new_string"])
            )
            if changed == result.lstrip().startswith("Error"):
                raise Rejected("an Edit that doesn't replay as the collector ran it")
            self.unstepped["Edit (in the next run's code)"] += 1
            return None
        command = str(args["command"])
        action = copaw.bash_action(command, self.workspace)
        if action.kind in ("run", "shell"):
            if action.kind == "run" and "can't open file" in "\n".join(result.splitlines()[:3]):
                self.unstepped["Bash run that failed to start"] += 1
                return None
            if action.script:
                self.ran.add(action.script)
            return CODE_TOOL, {"code": action.code}, result
        if _RUNS_PYTHON.search(command) or action.kind == "error":
            raise Rejected(_python_failure(command, action))
        self.unstepped[f"refused Bash ({_refusal_kind(action.text)})"] += 1
        return None

    def _write(self, path: str, content: str, result: str) -> tuple[str, dict[str, str], str] | None:
        if result.lstrip().startswith("Error"):
            self.unstepped["Write that failed"] += 1
            return None
        self.workspace.write(path, content)
        found = self.workspace.script(path)
        if path.lower().endswith(_MARKDOWN):
            if found is not None:
                self.markdown.add(found[0])
            return MARKDOWN_TOOL, {"text": content}, MARKDOWN_OK
        return None

    def finish(self) -> None:
        """Count the scripts' Writes: in a run's code, or never run."""
        for key in self.workspace.files:
            if key in self.markdown:
                continue
            self.unstepped["Write (in its run's code)" if key in self.ran else "Write never run"] += 1


def data_paths(messages: list[Message]) -> list[str]:
    """The data files the converted cells read (quoted paths in code, file arguments of ``!``)."""
    found: dict[str, None] = {}
    for m in messages:
        for call in m.get("tool_calls") or []:
            code = str(call["function"]["arguments"].get("code", ""))
            if code.startswith("!"):
                found.update(dict.fromkeys(_DATA_ARG.findall(code[1:])))
                continue
            for hit in _DATA_PATH.finditer(code):
                if not _WRITES.search(code[max(0, hit.start() - 30) : hit.start()]):  # a file it writes
                    found[hit.group(1)] = None
    return list(found)[:10]


def convert(raw: Any) -> Conversion:
    """One CoPaw trajectory -> our messages (first episode), or None with the reason."""
    try:
        _, question, body = _split_header(_messages(raw))
        turns, final, followups = _first_episode(body)
        if not turns:
            raise Rejected("no tool call at all")
        conv = _Converter()
        conv.messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _task(question)},
        ]
        for turn in turns:
            conv.turn(turn)
        if not conv.code_cells:
            raise Rejected("nothing left after conversion (no code cell)")
        if not final.strip():
            raise Rejected("an empty final reply")
        conv.step("", FINAL_TOOL, {"answer": final.strip()}, FINAL_OK)
        conv.finish()
    except Rejected as exc:
        return Conversion(None, str(exc))
    paths = data_paths(conv.messages)
    meta: dict[str, Any] = {
        "converted_from": DIALECT,
        "task_note": TASK_NOTE,
        "question": question,
        "data_paths": paths,
        "calls_without_step": dict(conv.unstepped),
        "followups_dropped": followups,
    }
    if paths:  # as record_run names the data file
        meta["data"] = PurePosixPath(paths[0]).name
    return Conversion(conv.messages, "", meta, conv.unstepped, followups)


# -- keeping the dialect ----------------------------------------------------------------------


def keep(raw: Any, require_final: bool = True) -> Conversion:
    """The trajectory in its own dialect: the same turns, word for word, with the system prompt
    moved first; calls must be readable and of the six tools (else it teaches broken calls)."""
    try:
        msgs = _messages(raw)
        system, question, body = _split_header(msgs)
        if not system:
            raise Rejected("no system prompt")
        if any(m["role"] == "system" for m in body):
            raise Rejected("a system message after the first reply")
        calls = [c for m in body if m["role"] == "assistant" for c in _calls(m["content"])[1]]
        if not calls:
            raise Rejected("no tool call at all")
        unknown = next((c.name for c in calls if c.name not in copaw.TOOLS), None)
        if unknown is not None:
            raise Rejected(f"a call to an unknown tool ({unknown[:40]})")
        first = next(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        head = msgs[:first]
        out: list[Message] = [m for m in head if m["role"] == "system"][:1]
        out += [m for m in head if m["role"] == "user"] + body
        if require_final and not ends_with_reply(out):
            raise Rejected("no final reply")
    except Rejected as exc:
        return Conversion(None, str(exc))
    asked = sum(1 for m in body if m["role"] == "user" and not copaw.is_tool_response(m["content"]))
    meta = {"dialect": DIALECT, "question": question, "followups": asked}
    return Conversion(out, "", meta)
