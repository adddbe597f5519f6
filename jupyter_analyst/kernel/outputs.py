"""Cell outputs and outcomes, the same for every executor of the family.

Whether the code ran in a kernel we started, in the notebook's own kernel on a Jupyter
server, or in this very IPython shell, its iopub-like messages are folded into nbformat
outputs by one ``OutputAccumulator`` and the way the wait ended is turned into a
``CellResult`` by one ``classify``: the model reads the same words for the same event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..agent.observe import strip_ansi
from ..agent.types import CellResult
from .facts import FACTS_MIMES


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 form fits in ``limit`` bytes."""
    if limit <= 0:
        return ""
    cut = text[:limit]
    while _utf8_len(cut) > limit:
        cut = cut[: max(0, len(cut) - (_utf8_len(cut) - limit + 3) // 4 - 1)]
    return cut


def _bundle_sizes(data: dict[str, Any]) -> tuple[int, int]:
    """(text bytes, total bytes) of a mime bundle; images count only towards the total."""
    text = total = 0
    for mime, value in data.items():
        size = _utf8_len(value) if isinstance(value, str) else _utf8_len(repr(value))
        total += size
        if not mime.startswith("image/"):
            text += size
    return text, total


class OutputAccumulator:
    """Builds a cell's nbformat outputs from iopub messages, as a notebook front end would.

    Consecutive stream chunks of one name are merged, ``clear_output`` (including
    ``wait=True``) is honoured, text is capped at ``cap`` bytes and the private facts
    mime types are moved out into ``facts``.
    """

    def __init__(self, cap: int, single_cap: int) -> None:
        self.cap = cap
        self.single_cap = single_cap
        self.outputs: list[dict[str, Any]] = []
        self.facts: list[dict[str, Any]] = []
        self.used = 0
        self.omitted = 0
        self.dropped_large = 0
        self.clear_pending = False
        self.execution_count: int | None = None
        self.error: dict[str, Any] | None = None
        self._chunks: list[str] | None = None  # pending text of outputs[-1] when it is a stream
        self._displays: dict[str, list[int]] = {}

    # -- helpers -------------------------------------------------------------------------
    def flush(self) -> None:
        if self._chunks is not None:
            self.outputs[-1]["text"] = "".join(self._chunks)
            self._chunks = None

    def snapshot(self) -> list[dict[str, Any]]:
        """The outputs so far, copied so a live view on another thread may keep them."""
        self.flush()
        return [dict(o) for o in self.outputs]

    def _clear(self) -> None:
        self.outputs.clear()
        self.facts.clear()  # facts describe what is visible, as the notebook shows it
        self._chunks = None
        self._displays.clear()
        self.used = 0
        self.omitted = 0
        self.dropped_large = 0
        self.clear_pending = False

    def _take_text(self, text: str) -> str:
        """Charge ``text`` against the cap; return the part that may be stored."""
        size = _utf8_len(text)
        room = self.cap - self.used
        if size <= room:
            self.used += size
            return text
        kept = _cut_utf8(text, room)
        kept_size = _utf8_len(kept)
        self.used += kept_size
        self.omitted += size - kept_size
        return kept

    def _extract_facts(self, data: dict[str, Any]) -> None:
        for mime, kind in FACTS_MIMES.items():
            value = data.pop(mime, None)
            fact = {"type": kind, **value} if isinstance(value, dict) else None
            if fact is not None and fact not in self.facts:  # `fig` as last line shows twice
                self.facts.append(fact)

    def _append(self, output: dict[str, Any]) -> None:
        self.flush()
        self.outputs.append(output)

    # -- message handling ----------------------------------------------------------------
    def handle(self, msg: dict[str, Any]) -> None:
        """Fold one iopub message (already filtered to our request) into the outputs."""
        import nbformat  # here, not at import: see jupyter_analyst.notebook

        msg_type = msg["msg_type"]
        content = msg["content"]
        if msg_type == "execute_input":
            self.execution_count = content.get("execution_count")
            return
        if msg_type == "clear_output":
            if content.get("wait"):
                self.clear_pending = True
            else:
                self._clear()
            return
        if msg_type == "update_display_data":
            self._update_display(content)
            return
        if msg_type not in ("stream", "display_data", "execute_result", "error"):
            return
        if self.clear_pending:
            self._clear()
        if msg_type == "execute_result":
            self.execution_count = content.get("execution_count", self.execution_count)
        if msg_type == "stream":
            self._stream(content.get("name", "stdout"), content.get("text", ""))
            return
        output = nbformat.v4.output_from_msg(msg)
        if msg_type == "error":
            self.error = content
            self._append(output)
            return
        data = output.get("data", {})
        self._extract_facts(data)
        metadata = output.get("metadata", {})
        for mime in FACTS_MIMES:
            metadata.pop(mime, None)
        if not data:
            return
        text_size, total = _bundle_sizes(data)
        if total > self.single_cap:
            self.dropped_large += 1
            self.omitted += text_size
            return
        if text_size > self.cap - self.used:
            self.omitted += text_size
            self.used = self.cap  # later smaller text must not slip in out of order
            return
        self.used += text_size
        display_id = content.get("transient", {}).get("display_id")
        if display_id:
            self._displays.setdefault(display_id, []).append(len(self.outputs))
        self._append(output)

    def _stream(self, name: str, text: str) -> None:
        import nbformat  # here, not at import: see jupyter_analyst.notebook

        kept = self._take_text(text)
        if not kept:
            return
        last = self.outputs[-1] if self.outputs else None
        if last is not None and last.get("output_type") == "stream" and last.get("name") == name:
            if self._chunks is None:
                self._chunks = [last["text"]]
            self._chunks.append(kept)
            return
        self._append(nbformat.v4.new_output("stream", name=name, text=""))
        self._chunks = [kept]

    def _update_display(self, content: dict[str, Any]) -> None:
        import nbformat  # here, not at import: see jupyter_analyst.notebook

        display_id = content.get("transient", {}).get("display_id")
        data = dict(content.get("data", {}))
        self._extract_facts(data)
        self.flush()
        for index in self._displays.get(display_id or "", []):
            if index < len(self.outputs):
                self.outputs[index]["data"] = nbformat.from_dict(data)
                self.outputs[index]["metadata"] = nbformat.from_dict(content.get("metadata", {}))

    def finish(self) -> tuple[list[dict[str, Any]], bool]:
        """Final outputs (with a truncation note when text was dropped) and ``truncated``."""
        import nbformat  # here, not at import: see jupyter_analyst.notebook

        self.flush()
        notes = []
        if self.omitted:
            notes.append(f"[... output truncated: {self.omitted} bytes omitted ...]")
        if self.dropped_large:
            notes.append(f"[... {self.dropped_large} output(s) over {self.single_cap} bytes omitted ...]")
        if notes:
            note = "\n" + "\n".join(notes) + "\n"
            last = self.outputs[-1] if self.outputs else None
            if last is not None and last.get("output_type") == "stream" and last.get("name") == "stdout":
                last["text"] += note
            else:
                self.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=note.lstrip("\n")))
        return self.outputs, bool(notes)


@dataclass
class Ending:
    """How the wait for one request ended; ``classify`` reads it."""

    idle: bool = False
    """The kernel went idle after the request (it finished, well or not)."""
    reply: dict[str, Any] | None = None
    """The shell reply's content, when one came."""
    timed_out: bool = False
    flooded: bool = False
    """The cell printed far more than can be kept and was interrupted."""
    stopped: bool = False
    """The run was stopped while the cell ran (the cell was interrupted)."""
    died: bool = False
    restarted: bool = False
    """The cell ignored the interrupt and the kernel (ours) was restarted: state lost."""
    lost: bool = False
    """... and the restart failed too: the kernel is gone."""
    abandoned: bool = False
    """The cell ignored the interrupt in a kernel that is not ours to restart: left running."""
    exit_detail: str = ""
    """e.g. `` (exit code -9)`` when the kernel process died."""


def classify(
    acc: OutputAccumulator, ending: Ending, *, duration: float, timeout: float, flood_limit: float
) -> CellResult:
    """The ``CellResult`` of one agent cell from its outputs and how the wait ended."""
    outputs, truncated = acc.finish()
    reply = ending.reply or {}
    count = reply.get("execution_count", acc.execution_count)
    result = CellResult(
        status="ok",
        outputs=outputs,
        execution_count=count,
        duration=duration,
        truncated=truncated,
        facts=acc.facts,
    )
    error = acc.error or (reply if reply.get("status") == "error" else None)
    if error:
        result.error_name = str(error.get("ename", ""))
        result.error_value = str(error.get("evalue", ""))
        result.traceback = [strip_ansi(line) for line in error.get("traceback", [])]

    def fail(status: str, name: str, value: str) -> None:
        result.status, result.error_name, result.error_value = status, name, value  # type: ignore[assignment]

    if ending.died:
        fail(
            "dead",
            "DeadKernelError",
            f"the kernel died while running this cell{ending.exit_detail}; all variables are lost",
        )
    elif ending.timed_out:
        fail("timeout", "CellTimeoutError", f"cell exceeded {timeout:g}s and was interrupted")
        if ending.restarted or ending.lost:
            result.error_value = (
                f"cell exceeded {timeout:g}s and did not stop when interrupted, so the kernel was "
                "restarted; all variables are lost"
            )
            if ending.lost:
                result.status = "dead"
        elif ending.abandoned:
            result.error_value = (
                f"cell exceeded {timeout:g}s and did not stop when interrupted; it may still be "
                "running in the kernel"
            )
    elif ending.flooded and (ending.restarted or ending.lost or reply.get("status") != "ok"):
        fail(
            "dead" if ending.lost else "error",
            "OutputLimitError",
            f"cell printed more than {int(flood_limit):,} bytes of output and was interrupted"
            + ("; the kernel had to be restarted and all variables are lost" if ending.restarted else "")
            + "; print summaries (df.head(), describe()) instead",
        )
    elif ending.stopped and not ending.idle:
        fail("error", "KeyboardInterrupt", "the run was stopped")
    elif error or reply.get("status") == "error":
        result.status = "error"
    elif not ending.idle and ending.reply is None:
        # Idle never came and no reply either, yet the kernel lives: treat as lost.
        fail("error", "KernelProtocolError", "no reply from the kernel for this cell")
    return result
