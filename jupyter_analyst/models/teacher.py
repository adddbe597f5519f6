"""A teacher that makes plausible mistakes and fixes them from the kernel's error.

A model trained only on clean runs never sees an error and its fix, yet small models make
mistakes the kernel reports, and a good analyst reads the traceback and repairs the cell.
:class:`TeacherPolicy` wraps a policy (the baseline): on a seeded fraction of its code
steps it first sends a flawed version of the cell, one the pre-execution checks let
through and the kernel rejects:

* ``missing_import``: it calls ``numpy.`` where the analysis imported it as ``np``
  (``NameError: name 'numpy' is not defined``);
* ``text_mean``: it averages a text column (``TypeError``), or uses ``.dt`` on a date
  column still held as text (``AttributeError``);
* ``wrong_case``: a column name with the wrong case passed to a method (``KeyError``; a
  literal ``df["Name"]`` would be caught before running by the column check).

The flaw is a first line that fails, so the failed cell binds nothing: the finished
notebook drops it (``agent.tidy``) and a re-run of the notebook is clean.

The next step sends the wrapped policy's own cell with a ``# Fix:`` line saying what the
error showed. The wrapped policy never sees the mistakes (they are taken out of the
conversation it is given), so its plan is unchanged, and like the baseline the teacher keeps
no state: which steps go wrong is a hash of the seed, the task message and the step's
number, so any prefix of a run gets the same next reply (runs resume).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Any

from ..agent.tools import CODE_TOOL, TOOL_ARGUMENT
from ..agent.types import AssistantTurn, Message, Policy, ToolCall, ToolSpec
from .baseline_names import SUFFIX_LINE
from .baseline_task import Column, message_text, parse_task

MISTAKE_ID = "call_teacher_mistake_"
"""Id prefix of a mistake's tool call: how the teacher finds its mistakes in a conversation."""
KINDS = ("missing_import", "text_mean", "wrong_case")
_ERROR_RE = re.compile(r"^Error: ", re.MULTILINE)


@dataclass(frozen=True)
class Mistake:
    kind: str
    code: str
    fix_note: str
    fix_lines: tuple[str, ...] = ()
    """Lines the fix adds before the cell (what the error taught)."""


def _wrong_case(name: str, taken: set[str]) -> str | None:
    for variant in (name.upper(), name.lower(), name.title(), name.replace("_", " "), name.capitalize()):
        if variant != name and variant not in taken:
            return variant
    return None


def make_mistake(code: str, columns: list[Column], frame: str, rng: random.Random) -> Mistake | None:
    """A flawed version of ``code`` the kernel will reject, or None when none fits the cell.

    The flaw is a first line that fails, so the failed cell binds nothing (the finished
    notebook drops it, and its re-run is clean); the fix runs the line corrected, then the cell.
    """
    options: list[Mistake] = []
    quoted = set(re.findall(r"'([^'\\]+)'", code))
    numeric = [c.name for c in columns if c.kind == "numeric" and c.unique >= 2]
    texts = [c for c in columns if c.kind in ("categorical", "text") and c.unique >= 2]
    names = {c.name for c in columns}
    alias = re.search(r"\bnp(_\w+)?(?=\.)", code)
    if alias and numeric:
        m = next((n for n in numeric if n in quoted), rng.choice(numeric))
        line = f'print(f"Median of {m}: {{{{ALIAS}}.nanmedian({frame}[{m!r}]):.3f}}")'
        options.append(
            Mistake(
                "missing_import",
                f"{line.replace('{ALIAS}', 'numpy')}\n{code}",
                f"numpy was never imported as `numpy`; import it as `{alias.group(0)}`",
                (f"import numpy as {alias.group(0)}", line.replace("{ALIAS}", alias.group(0))),
            )
        )
    dates = [c for c in texts if re.search(r"\d{4}-\d\d-\d\d", c.example)]
    if dates:
        d = rng.choice(dates).name
        options.append(
            Mistake(
                "text_mean",
                f"print({frame}[{d!r}].dt.year.value_counts().sort_index().head())\n{code}",
                f"{d} holds text, so it is parsed as dates before using .dt",
                (f"print(pd.to_datetime({frame}[{d!r}]).dt.year.value_counts().sort_index().head())",),
            )
        )
    elif texts:
        t = rng.choice(texts).name
        options.append(
            Mistake(
                "text_mean",
                f'print(f"Mean {t}: {{{frame}[{t!r}].mean()}}")\n{code}',
                f"{t} holds text, which has no mean; count its values instead",
                (f"print({frame}[{t!r}].value_counts().head())",),
            )
        )
    used = [c for c in columns if c.name in quoted] or columns
    col = rng.choice(used) if used else None
    wrong = _wrong_case(col.name, names) if col else None
    if col and wrong:
        if col.kind == "numeric":
            line = f"print({frame}.nlargest(3, {{NAME}}))"
        else:
            line = f"print({frame}.groupby({{NAME}}).size())"
        options.append(
            Mistake(
                "wrong_case",
                f"{line.replace('{NAME}', repr(wrong))}\n{code}",
                f"the column is {col.name!r}, not {wrong!r}",
                (line.replace("{NAME}", repr(col.name)),),
            )
        )
    return rng.choice(options) if options else None


def _is_mistake(message: Message) -> bool:
    return message.get("role") == "assistant" and any(
        str(tc.get("id", "")).startswith(MISTAKE_ID) for tc in message.get("tool_calls") or []
    )


def without_mistakes(messages: list[Message]) -> list[Message]:
    """The conversation as the wrapped policy sees it: the teacher's mistakes and their
    observations taken out."""
    ids = {tc.get("id") for m in messages if _is_mistake(m) for tc in m.get("tool_calls") or []}
    return [
        m
        for m in messages
        if not _is_mistake(m) and not (m.get("role") == "tool" and m.get("tool_call_id") in ids)
    ]


class TeacherPolicy:
    """Wraps ``inner``: a seeded ``rate`` of its code steps are sent wrong first, then fixed."""

    def __init__(self, inner: Policy, rate: float = 0.2, seed: int = 0) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("the teacher's error rate is a fraction between 0 and 1")
        self.inner, self.rate, self.seed = inner, rate, seed
        self.name = f"{getattr(inner, 'name', 'policy')} (teacher, errors {rate:g})"

    def __getattr__(self, name: str) -> Any:
        """What the run core reads of a policy (its window, its tool dialect) is the inner one's."""
        if name in ("context_tokens", "dialect"):
            return getattr(self.inner, name, None)
        raise AttributeError(name)

    def _mistake_for(self, messages: list[Message], code: str) -> Mistake | None:
        """The mistake planned for this step (the same for the same conversation)."""
        task_text = next((message_text(m.get("content")) for m in messages if m.get("role") == "user"), "")
        step = sum(1 for m in messages if m.get("role") == "assistant")
        digest = hashlib.sha256(f"{self.seed}\0{task_text}\0{step}".encode()).digest()
        rng = random.Random(digest)
        if rng.random() >= self.rate or SUFFIX_LINE in code:
            return None
        task = parse_task(messages)
        return make_mistake(code, task.columns, task.var, rng)

    def __call__(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        clean = without_mistakes(messages)
        turn = self.inner(clean, tools)
        if len(turn.tool_calls) != 1 or turn.tool_calls[0].name != CODE_TOOL:
            return turn
        call = turn.tool_calls[0]
        code = str(call.arguments.get(TOOL_ARGUMENT[CODE_TOOL], ""))
        mistake = self._mistake_for(clean, code)
        if mistake is None:
            return turn
        own = [m for m in messages if m.get("role") == "assistant"]
        if own and _is_mistake(own[-1]):  # the fix: the policy's own cell, told what the error showed
            last_id = own[-1]["tool_calls"][0].get("id")
            seen = next(
                (message_text(m.get("content")) for m in messages if m.get("tool_call_id") == last_id), ""
            )
            if not _ERROR_RE.search(seen):
                return turn
            fixed = "\n".join([f"# Fix: {mistake.fix_note}", *mistake.fix_lines, code])
            return AssistantTurn(
                content=turn.content,
                tool_calls=[ToolCall(CODE_TOOL, {TOOL_ARGUMENT[CODE_TOOL]: fixed}, id=call.id)],
                model=turn.model,
            )
        step = sum(1 for m in messages if m.get("role") == "assistant") + 1
        bad = ToolCall(CODE_TOOL, {TOOL_ARGUMENT[CODE_TOOL]: mistake.code}, id=f"{MISTAKE_ID}{step:02d}")
        return AssistantTurn(content=turn.content, tool_calls=[bad], model=turn.model)
