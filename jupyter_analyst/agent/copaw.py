"""The CoPaw dialect's pieces: its tools, its call and response format, mapped onto cells.

The original experiment's LoRA (CoPaw-Flash-9B-DataAnalyst) was trained on trajectories of
a terminal coding agent: six tools (``Bash``, ``Read``, ``Write``, ``Edit``, ``Glob``,
``Grep``), JSON calls inside ``<tool_call>`` in the assistant's text, every result of a
turn in one user message wrapped in ``<tool_response>`` (results joined by ``---``), and the
run's end a reply with no call. It analyses by writing ``.py`` files and running them with
``python file.py``.

Everything here is pure (no kernel, no I/O beyond reading files under a root), so the loop's
dialect (``agent.dialect``) and the trajectory importer share one mapping:

- ``Write`` of a ``.py`` file keeps the file in a ``Workspace``; ``Bash python file.py``
  becomes one code cell with that file's code, run in the notebook's kernel (a script would
  get a fresh process and lose the analysis state);
- ``Edit`` patches the kept file;
- ``Read``, ``Glob`` and ``Grep`` are answered as the collector answered them (100 numbered
  lines, 50 matches), with no cell;
- other ``Bash`` commands pass the command policy (``bash_action``): listing and reading
  files run as a visible ``!command`` cell; installing, deleting and the network are refused;
- ``Write`` of a ``.md`` file becomes a markdown cell.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .observe import head_tail, strip_ansi, trim_traceback
from .types import CellResult

TOOLS = ("Bash", "Read", "Write", "Edit", "Glob", "Grep")
TOOL_ARGS: dict[str, tuple[str, ...]] = {
    "Bash": ("command",),
    "Read": ("file_path",),
    "Write": ("file_path", "content"),
    "Edit": ("file_path", "old_string", "new_string"),
    "Glob": ("pattern",),
    "Grep": ("pattern",),
}
"""The arguments each tool requires (``Grep``'s ``path`` is optional)."""

READ_LINES = 100
"""``Read`` showed the first 100 lines, numbered, then how many more there were."""
MAX_MATCHES = 50
"""``Glob`` and ``Grep`` listed at most 50 matches."""
JOINER = "\n---\n"
"""The results of one turn's calls, in one ``<tool_response>``."""
PYTHON = "python"
"""The interpreter the prompt names: any ``python``/``python3`` path runs in the kernel."""

WORKSPACE = "analysis"
"""The workspace folder the prompt names for scripts (relative to the kernel's folder)."""
SCRIPTS_CELL = (
    "# The analyst works in scripts, as in a terminal: their workspace folder, and each chart\n"
    "# a script saves to a file shown here as well.\n"
    "import os\n"
    "\n"
    "from jupyter_analyst.charts import show_saved_charts\n"
    "\n"
    f"os.makedirs({WORKSPACE!r}, exist_ok=True)\n"
    "show_saved_charts()"
)
"""The cell put before the first script run (``jupyter_analyst.charts``): a terminal agent
writes into its workspace and saves and closes its figures, which would leave the notebook
without charts."""

CALL_FORMAT = '<tool_call>\n{"name": "ToolName", "arguments": {"param": "value"}}\n</tool_call>'


def system_prompt(data_dir: str, workspace: str, frame: str | None = None) -> str:
    """The analyst system prompt of the collector's trajectories, with this run's places.

    The model learned the tools from this text (there is no ``tools`` list in its data). Two
    lines are ours: scripts run in the notebook's Python session, where the data is loaded.
    """
    loaded = (
        f"- The dataset is already loaded in that session as `{frame}`; scripts may use it directly.\n"
        if frame
        else ""
    )
    return f"""You are a professional Data Analyst helping a non-technical user explore and analyze datasets.

IMPORTANT ENVIRONMENT INFO:
- Python executable with pandas/numpy/matplotlib/seaborn: {PYTHON}
- Always use this Python path for running scripts: {PYTHON} script.py
- Dataset directory: {data_dir}
- Workspace for scripts: {workspace}
- Scripts run in the notebook's Python session, one notebook cell each, so what a script
  defines stays available to the next one.
{loaded}
IMPORTANT: You have access to tools for data analysis.
When you need to execute code or read files, use the tools.

Tool call format (use this EXACT format):
{CALL_FORMAT}

Available tools:
- Bash: Execute shell commands. Args: {{"command": "..."}}
  Use this to run Python scripts for data analysis.
  IMPORTANT: Always use {PYTHON} to run Python scripts.

- Read: Read file contents. Args: {{"file_path": "..."}}
  Use this to examine data files (CSV, JSON, etc.)

- Write: Write content to file. Args: {{"file_path": "...", "content": "..."}}
  Use this to create Python analysis scripts in the workspace.

- Glob: Find files matching pattern. Args: {{"pattern": "..."}}
  Use this to discover what data files are available.

- Grep: Search for patterns in files. Args: {{"pattern": "...", "path": "..."}}
  Use this to find specific content in files.

- Edit: Edit existing files. Args: {{"file_path": "...", "old_string": "...", "new_string": "..."}}
  Use this to modify existing scripts.

When analyzing data:
1. First use Glob and Read to understand available data files
2. Write Python scripts using Write tool (save to workspace directory)
3. Execute scripts with: {PYTHON} <script_path>
4. Explain results in simple, non-technical terms

Example for running Python:
<tool_call>
{{"name": "Bash", "arguments": {{"command": "{PYTHON} {workspace}/analysis.py"}}}}
</tool_call>"""


_OPEN, _CLOSE = "<tool_response>\n", "\n</tool_response>"


def tool_response(texts: list[str]) -> str:
    """One user turn holding every result of the turn's calls, as the model saw them."""
    return _OPEN + JOINER.join(texts) + _CLOSE


def is_tool_response(content: object) -> bool:
    """Whether a user message is a ``tool_response`` (the history trim shortens those)."""
    return isinstance(content, str) and content.startswith("<tool_response>")


def response_body(content: str) -> tuple[str, Callable[[str], str]]:
    """The text inside a ``tool_response`` and how to wrap a changed one again (any other
    content: itself, as is), so shortening a result never cuts the wrapper."""
    if content.startswith("<tool_response>") and content.endswith("</tool_response>"):
        inner = content.removeprefix("<tool_response>").removesuffix("</tool_response>")
        return inner.removeprefix("\n").removesuffix("\n"), lambda body: _OPEN + body + _CLOSE
    return content, lambda body: body


def missing_arguments(name: str, arguments: dict[str, object]) -> str:
    """Why a call can't run, in the collector's words; '' when it can."""
    if name not in TOOL_ARGS:
        return f"Unknown tool: {name}"
    missing = [a for a in TOOL_ARGS[name] if not isinstance(arguments.get(a), str)]
    if missing:
        return f"Error: {name} needs the string argument(s) {', '.join(missing)}"
    return ""


# -- the workspace of written files -------------------------------------------------------


def _key(path: str) -> str:
    """A written file's identity: its normalised path (``./a.py`` and ``a.py`` are one)."""
    return os.path.normpath(path.strip()).lstrip("./") if path.strip() else path


@dataclass
class Workspace:
    """The files the model wrote, kept in memory: a script's code goes into a cell."""

    files: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    """Key -> the path as the model wrote it (for messages)."""

    def write(self, path: str, content: str) -> str:
        self.files[_key(path)] = content
        self.names[_key(path)] = path
        return f"Successfully wrote to {path}"

    def edit(self, path: str, old: str, new: str) -> tuple[str, bool]:
        """(observation, whether the file changed); the first occurrence, as the collector did."""
        key = _key(path)
        if key not in self.files:
            key = self._by_name(path) or key
        if key not in self.files:
            return f"Error editing file: ENOENT: no such file or directory, open '{path}'", False
        content = self.files[key]
        if old not in content:
            return "Error: old_string not found in file", False
        self.files[key] = content.replace(old, new, 1)
        return f"Successfully edited {path}", True

    def script(self, path: str) -> tuple[str, str] | None:
        """(key, code) of a written file, found by its path or, failing that, its file name."""
        key = _key(path)
        if key in self.files:
            return key, self.files[key]
        found = self._by_name(path)
        return (found, self.files[found]) if found else None

    def _by_name(self, path: str) -> str | None:
        name = PurePosixPath(path.strip()).name
        matches = [k for k in self.files if PurePosixPath(k).name == name]
        return matches[-1] if len(matches) == 1 else None


# -- Bash: the command policy --------------------------------------------------------------


@dataclass(frozen=True)
class BashAction:
    """What a ``Bash`` command becomes: ``run`` (a code cell of ``code``; ``script`` names the
    file), ``shell`` (a visible ``!command`` cell), or ``refuse``/``error`` (an observation)."""

    kind: str
    code: str = ""
    script: str = ""
    text: str = ""


READ_ONLY = frozenset(
    {
        "ls", "cat", "head", "tail", "wc", "find", "file", "du", "pwd", "echo", "grep", "sort",
        "uniq", "cut", "stat", "tree", "nl", "column", "basename", "dirname", "realpath", "true",
    }
)  # fmt: skip
"""Commands that only list or read files: they run, as a visible cell."""
INSTALLERS = frozenset({"pip", "pip3", "conda", "mamba", "uv", "apt", "apt-get", "yum", "brew", "npm"})
CHANGERS = frozenset(
    {"rm", "rmdir", "mv", "cp", "dd", "shred", "chmod", "chown", "truncate", "ln", "mkdir", "touch", "sed"}
)
NETWORK = frozenset({"curl", "wget", "ssh", "scp", "rsync", "git", "nc", "ftp"})
_SPLIT = re.compile(r"\s*(?:&&|\|\||;|\|)\s*")
_PYTHON = re.compile(r"^(?:.*/)?python(?:3(?:\.\d+)?)?$")


def _refusal(words: list[str]) -> str:
    head = PurePosixPath(words[0]).name
    if head in INSTALLERS or (_PYTHON.match(head) and words[1:3] == ["-m", "pip"]):
        return (
            "Error: refused by the notebook's command policy: installing packages is not allowed "
            "here. Use what is installed (pandas, numpy, matplotlib, seaborn, scipy)."
        )
    if head in CHANGERS:
        return (
            "Error: refused by the notebook's command policy: deleting, moving or changing files is "
            "not allowed. Write scripts with the Write tool instead."
        )
    if head in NETWORK or head == "sudo":
        return "Error: refused by the notebook's command policy: no network, no other users."
    return (
        f"Error: refused by the notebook's command policy: `{head}` is not allowed; Bash may list "
        f"and read files ({', '.join(sorted(READ_ONLY))}) and run Python scripts with {PYTHON}."
    )


_QUOTED = re.compile(r"'[^']*'|\"(?:\\.|[^\"\\])*\"")
_HEREDOC = re.compile(
    r"^\s*(?:cd\s+\S+\s*&&\s*)?(\S*python[\d.]*)\s+(?:-\s+)?<<-?\s*(['\"]?)(\w+)\2[^\n]*\n(.*?)\n\s*\3\s*$",
    re.DOTALL,
)
_TRIMMERS = frozenset({"head", "tail"})


def _parts(text: str) -> list[str]:
    """``text`` split at ``&&``, ``||``, ``;`` and ``|`` outside quotes."""
    masked = _QUOTED.sub(lambda m: "_" * len(m.group()), text)
    parts, start = [], 0
    for m in _SPLIT.finditer(masked):
        parts.append(text[start : m.start()])
        start = m.end()
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def bash_action(command: str, workspace: Workspace) -> BashAction:
    """Map one ``Bash`` command through the command policy (see the module docstring).

    A script piped into ``head``/``tail`` runs whole (the loop shortens long outputs itself),
    and a heredoc fed to ``python`` runs its body.
    """
    text = command.strip()
    heredoc = _HEREDOC.match(text)
    if heredoc:
        return BashAction("run", code=heredoc.group(4))
    masked = _QUOTED.sub(lambda m: "_" * len(m.group()), text)
    if ">" in masked.replace("2>&1", "").replace("2>/dev/null", "").replace("&>/dev/null", ""):
        return BashAction("refuse", text=_refusal(["tee"]))  # a redirect writes a file
    parts = _parts(text)
    while len(parts) > 1 and parts[0].split()[:1] == ["cd"]:
        parts = parts[1:]  # `cd dir && python x.py`: the kernel has its own directory
    try:
        words = [shlex.split(p.replace("2>&1", "").replace("2>/dev/null", "")) for p in parts]
    except ValueError as exc:
        return BashAction("error", text=f"Error: Command failed: {text}\n{exc}")
    if not words or not words[0]:
        return BashAction("error", text="Error: empty command")
    head = PurePosixPath(words[0][0]).name
    trimmed = all(w and PurePosixPath(w[0]).name in _TRIMMERS for w in words[1:])
    if _PYTHON.match(head) and (len(parts) == 1 or ("|" in masked and trimmed)):
        return _python(words[0], text, workspace)
    for w in words:
        if not w or PurePosixPath(w[0]).name not in READ_ONLY:
            return BashAction("refuse", text=_refusal(w or [""]))
    return BashAction("shell", code="!" + text)


def _python(words: list[str], command: str, workspace: Workspace) -> BashAction:
    args = words[1:]
    while args and args[0] in ("-u", "-B", "-W", "ignore"):
        args = args[1:]
    if args[:1] == ["-c"] and len(args) >= 2:
        return BashAction("run", code=args[1])
    if args[:2] == ["-m", "pip"]:
        return BashAction("refuse", text=_refusal(words))
    if not args or args[0].startswith("-"):
        return BashAction("refuse", text=_refusal(words))
    found = workspace.script(args[0])
    if found is None:
        return BashAction(
            "error",
            text=f"Error: Command failed: {command}\n{words[0]}: can't open file '{args[0]}': "
            "[Errno 2] No such file or directory",
        )
    key, code = found
    if args[1:]:  # a script's own arguments: the kernel has no argv for it, so say what they were
        code = f"import sys\nsys.argv = {[args[0], *args[1:]]!r}\n{code}"
    return BashAction("run", code=code, script=key)


_FILE_FRAME = re.compile(r"^File (.+?):(\d+), in (.+?)(?:\(.*\))?$")
_CELL_FRAME = re.compile(r"^(?:Cell In\[\d+\]|Input In \[\d+\]), line (\d+)")
_ARROW = re.compile(r"^-+> ?\d+\s?(.*)$")


def _frame(block: str, script: str) -> str:
    """One IPython frame block as Python's own traceback writes a frame (two lines)."""
    lines = block.splitlines()
    head = lines[0].strip() if lines else ""
    code = next((m.group(1).strip() for m in map(_ARROW.match, lines) if m), "")
    cell = _CELL_FRAME.match(head)
    found = _FILE_FRAME.match(head)
    if cell:
        where = f'  File "{script}", line {cell.group(1)}, in <module>'
    elif found:
        where = f'  File "{found.group(1)}", line {found.group(2)}, in {found.group(3)}'
    else:
        where = "  " + head
    return where + (f"\n    {code}" if code else "")


def _process_traceback(result: CellResult, script: str) -> str:
    """The traceback as ``python script.py`` prints it: the script's own frame (IPython's
    ``Cell In[n]`` named as the file), the innermost frame, then the error line."""
    blocks = [strip_ansi(b).rstrip() for b in result.traceback]
    frames = [
        b
        for b in blocks
        if b.strip() and not set(b.strip()) <= {"-"} and "Traceback (most recent call last)" not in b
    ]
    if frames and frames[-1].strip().startswith(result.error_name or "\0"):
        frames = frames[:-1]
    cells = [f for f in frames if _CELL_FRAME.match(f.lstrip())]
    kept = cells[-1:] + [f for f in frames[-1:] if f not in cells[-1:]]
    error = f"{result.error_name}: {result.error_value}".strip(": ")
    if not kept:
        return error or trim_traceback(result).removeprefix("Error: ")
    return "\n".join(["Traceback (most recent call last):", *(_frame(f, script) for f in kept), error])


def process_output(result: CellResult, command: str, limit: int, script: str = "") -> str:
    """A cell's result as the process would have printed it: stdout and stderr, and on failure
    ``Error: Command failed`` with the traceback (shown values and figures are the notebook's,
    not the script's)."""
    streams = "".join(str(o.get("text", "")) for o in result.outputs if o.get("output_type") == "stream")
    text = strip_ansi(streams)
    if result.ok:
        return head_tail(text, limit) if text else ""
    if result.status == "timeout":
        tail = "the script timed out and was interrupted"
    else:
        tail = _process_traceback(result, script or command)
    return head_tail(f"Error: Command failed: {command}\n{text}{tail}", limit)


# -- Read, Glob, Grep: answered from files under the run's root -----------------------------


def _inside(root: Path, path: str) -> Path | None:
    target = (root / path).resolve() if not os.path.isabs(path) else Path(path).resolve()
    base = root.resolve()
    return target if target == base or base in target.parents else None


def read(root: Path, path: str) -> str:
    """``Read``: the first 100 lines, numbered with a tab, then how many more there were."""
    target = _inside(root, path)
    if target is None:
        return f"Error reading file: {path} is outside the notebook's folder"
    try:
        lines = target.read_text(encoding="utf-8", errors="replace").split("\n")
    except OSError as exc:
        return f"Error reading file: {exc.strerror or exc}"
    text = "\n".join(f"{i + 1}\t{line}" for i, line in enumerate(lines[:READ_LINES]))
    if len(lines) > READ_LINES:
        text += f"\n... ({len(lines) - READ_LINES} more lines)"
    return text


def glob(root: Path, pattern: str) -> str:
    """``Glob``: matching paths under ``root`` (relative), at most 50."""
    base = root.resolve()
    if os.path.isabs(pattern):
        if _inside(root, pattern.split("*", 1)[0] or "/") is None:
            return "No files found"
        pattern = os.path.relpath(pattern, base)
    found = sorted(str(p.relative_to(base)) for p in base.glob(pattern) if p.is_file())
    return "\n".join(found[:MAX_MATCHES]) or "No files found"


def grep(root: Path, pattern: str, path: str | None = None) -> str:
    """``Grep``: ``file:line:text`` of matching lines (a regular expression, else literal), at
    most 50."""
    target = _inside(root, path or ".")
    if target is None:
        return "No matches found"
    try:
        rx = re.compile(pattern)
    except re.error:
        rx = re.compile(re.escape(pattern))
    files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
    hits: list[str] = []
    for f in files:
        if fnmatch.fnmatch(f.name, "*.ipynb") or f.stat().st_size > 20_000_000:
            continue
        try:
            for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if rx.search(line):
                    hits.append(f"{f.relative_to(root.resolve())}:{n}:{line}")
                    if len(hits) >= MAX_MATCHES:
                        return "\n".join(hits)
        except OSError:
            continue
    return "\n".join(hits) or "No matches found"
