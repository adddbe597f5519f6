"""``%analyst df "question" [--max-steps N] [--profile P]``: start an analysis from a cell.

``%load_ext jupyter_analyst`` registers the magic. Inside a Jupyter server (the kernel of
a notebook session, which jupyter_server marks with ``JPY_SESSION_NAME``) it asks the
server extension, over its REST API, to run the analyst on this very notebook, placing
the cells after the magic's cell, and returns at once: the server drives the run, so the
cell doesn't block the kernel the agent needs. Elsewhere (plain IPython, a headless
nbclient run) it runs the analysis right here, in this kernel's namespace, and writes a
report notebook. Bad input gets one printed line and touches nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AnalystError, InputError

PREFIX = "analyst:"


@dataclass
class MagicArgs:
    variable: str
    question: str | None
    max_steps: int
    profile: str | None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # never SystemExit inside a kernel
        raise InputError(message)


def parse_line(line: str) -> MagicArgs:
    """Parse the magic's line; ``InputError`` with a one-line reason when it can't."""
    parser = _Parser(prog="%analyst", add_help=False)
    parser.add_argument("variable")
    parser.add_argument("question", nargs="*")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--profile", default=None)
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise InputError(f"cannot parse the arguments: {exc}") from None
    if not words:
        raise InputError('usage: %analyst VARIABLE ["question"] [--max-steps N] [--profile P]')
    ns = parser.parse_args(words)
    if not ns.variable.isidentifier():
        raise InputError(f"not a variable name: {ns.variable!r}")
    if not 1 <= ns.max_steps <= 200:
        raise InputError("--max-steps must be between 1 and 200")
    question = " ".join(ns.question).strip() or None
    return MagicArgs(ns.variable, question, ns.max_steps, ns.profile)


def check_variable(user_ns: dict[str, Any], name: str) -> str | None:
    """Why ``name`` can't be analysed (missing, not a DataFrame, empty), or None."""
    if name not in user_ns:
        return f"name {name!r} is not defined"
    value = user_ns[name]
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(value, pd.DataFrame):
        return f"{name!r} is a {type(value).__name__}, not a pandas DataFrame"
    if value.shape[0] == 0 or value.shape[1] == 0:
        return f"{name!r} is an empty DataFrame ({value.shape[0]} rows x {value.shape[1]} columns)"
    return None


# --------------------------------------------------------------------------- the server path


@dataclass
class ServerTarget:
    url: str
    token: str
    path: str
    """API path of this notebook on that server."""


def running_servers() -> list[dict[str, Any]]:
    """The ``jpserver-*.json`` runtime files of live servers.

    What ``jupyter_server.serverapp.list_running_servers`` reads, without importing the
    server (seconds of CPU inside the user's kernel) and without deleting stale files.
    """
    from jupyter_core.paths import jupyter_runtime_dir

    found = []
    for path in sorted(Path(jupyter_runtime_dir()).glob("jpserver-*.json")):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            os.kill(int(info["pid"]), 0)  # raises when that process is gone
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found.append(info)
    return found


def find_server(session_name: str | None = None) -> ServerTarget | None:
    """The running Jupyter server whose root holds this kernel's notebook, if any."""
    session_name = session_name if session_name is not None else os.environ.get("JPY_SESSION_NAME")
    if not session_name or not session_name.endswith(".ipynb"):
        return None
    best: ServerTarget | None = None
    best_depth = -1
    for info in running_servers():
        root = Path(info.get("root_dir") or ".").resolve()
        notebook = Path(session_name)
        notebook = notebook if notebook.is_absolute() else root / notebook
        try:
            rel = notebook.resolve().relative_to(root)
        except ValueError:
            continue
        depth = len(root.parts)
        if depth > best_depth and info.get("url"):  # the most specific root wins
            best = ServerTarget(str(info["url"]), str(info.get("token") or ""), rel.as_posix())
            best_depth = depth
    return best


def current_cell_id(shell: Any) -> str | None:
    """The id of the cell being run, as JupyterLab sends it in the request metadata."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else None
    except Exception:
        parent = None
    parent = parent or getattr(shell, "parent_header", None) or {}
    metadata = parent.get("metadata") or {}
    cell_id = metadata.get("cellId") or metadata.get("cell_id")
    return str(cell_id) if cell_id else None


def start_remote(target: ServerTarget, args: MagicArgs, after_cell_id: str | None) -> dict[str, Any]:
    """POST the run to the extension; return its RunStatus, or raise AnalystError."""
    body = {
        "path": target.path,
        "variable": args.variable,
        "question": args.question,
        "max_steps": args.max_steps,
        "profile": args.profile,
        "after_cell_id": after_cell_id,
    }
    request = urllib.request.Request(
        target.url.rstrip("/") + "/jupyter-analyst/runs",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"token {target.token}"} if target.token else {}),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status: dict[str, Any] = json.loads(response.read())
            return status
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("message") or exc.reason
        except ValueError:  # not our JSON: the route doesn't exist, no extension there
            if exc.code == 404:
                raise _NoExtension() from None
            message = exc.reason
        raise AnalystError(f"the server refused the run ({exc.code}): {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _NoExtension(str(exc)) from None


class _NoExtension(Exception):
    """The server can't be reached or has no jupyter-analyst extension: run here instead."""


# --------------------------------------------------------------------------- the in-process path


class _Stream:
    def __init__(self, sink: list[dict[str, Any]], name: str) -> None:
        self.sink, self.name = sink, name

    def write(self, text: str) -> int:
        if text:
            self.sink.append({"msg_type": "stream", "content": {"name": self.name, "text": text}})
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class _Displays(list):  # type: ignore[type-arg]
    """What IPython's capturing publisher and display hook append to, as iopub-like messages."""

    def __init__(self, sink: list[dict[str, Any]]) -> None:
        super().__init__()
        self.sink = sink

    def append(self, item: Any) -> None:
        content = {
            "data": item.get("data") or {},
            "metadata": item.get("metadata") or {},
            "transient": item.get("transient") or {},
        }
        self.sink.append({"msg_type": "display_data", "content": content})


class _CellTimeout(Exception):
    pass


class InProcessExecutor:
    """Runs the agent's cells in this kernel's namespace (``Executor``), capturing outputs.

    We are inside the magic's own cell, so output would otherwise land under it: stdout,
    stderr, displays and the last expression are captured, and tracebacks too (ipykernel
    would publish them straight to the front end).
    """

    def __init__(self, shell: Any, timeout: float = 120.0, max_output_bytes: int = 1_000_000) -> None:
        self.shell = shell
        self.timeout = timeout
        self.max_output_bytes = max_output_bytes

    def run_silent(self, code: str) -> str:
        """Run IPython-syntax helper code without history; return what it printed."""
        sink: list[dict[str, Any]] = []
        self._run(code, sink, silent=True)
        return "".join(m["content"]["text"] for m in sink if m["msg_type"] == "stream")

    def _run(self, code: str, sink: list[dict[str, Any]], silent: bool = False) -> tuple[Any, Any, bool]:
        from IPython.core.displayhook import CapturingDisplayHook
        from IPython.core.displaypub import CapturingDisplayPublisher

        shell = self.shell
        errors: list[tuple[Any, Any, list[str]]] = []
        saved_trap_hook = shell.display_trap.hook
        saved = (
            sys.stdout,
            sys.stderr,
            shell.display_pub,
            sys.displayhook,
            shell.__dict__.get("_showtraceback"),
        )
        publisher = CapturingDisplayPublisher()
        publisher.outputs = _Displays(sink)
        alarm = (
            not silent
            and self.timeout > 0
            and hasattr(signal, "SIGALRM")
            and threading.current_thread() is threading.main_thread()
        )
        previous_handler: Any = None

        def on_alarm(signum: int, frame: Any) -> None:
            raise _CellTimeout(f"cell exceeded {self.timeout:g}s and was interrupted")

        try:
            sys.stdout, sys.stderr = _Stream(sink, "stdout"), _Stream(sink, "stderr")  # type: ignore[assignment]
            shell.display_pub = publisher
            sys.displayhook = hook = CapturingDisplayHook(shell=shell, outputs=_Displays(sink))
            shell.display_trap.hook = hook  # run_cell's trap installs this hook when not nested
            shell._showtraceback = lambda etype, evalue, stb: errors.append((etype, evalue, stb))
            if alarm:
                previous_handler = signal.signal(signal.SIGALRM, on_alarm)
                signal.setitimer(signal.ITIMER_REAL, self.timeout)
            result = shell.run_cell(code, store_history=False, silent=silent)
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous_handler)
            sys.stdout, sys.stderr, shell.display_pub, sys.displayhook = saved[:4]
            shell.display_trap.hook = saved_trap_hook
            if saved[4] is None:
                shell.__dict__.pop("_showtraceback", None)
            else:
                shell._showtraceback = saved[4]
        error = result.error_in_exec or result.error_before_exec
        if silent and error is not None:
            raise AnalystError(f"helper code failed: {type(error).__name__}: {error}")
        return result, errors[0] if errors else None, isinstance(error, _CellTimeout)

    def execute(self, code: str) -> Any:
        """Run one agent cell; return a ``CellResult`` like the kernel executor's."""
        from .agent.observe import strip_ansi
        from .agent.types import CellResult
        from .kernel.executor import _Outputs

        sink: list[dict[str, Any]] = []
        started = time.monotonic()
        result, error, timed_out = self._run(code, sink)
        acc = _Outputs(self.max_output_bytes, 10 * self.max_output_bytes)
        for msg in sink:
            acc.handle(
                {
                    "msg_type": msg["msg_type"],
                    "header": {"msg_type": msg["msg_type"]},
                    "content": msg["content"],
                }
            )
        exc = result.error_in_exec or result.error_before_exec
        stb = [strip_ansi(line) for line in (error[2] if error else [])]
        if exc is not None:
            ename = type(exc).__name__ if not timed_out else "CellTimeoutError"
            content = {"ename": ename, "evalue": str(exc), "traceback": stb}
            acc.handle({"msg_type": "error", "header": {"msg_type": "error"}, "content": content})
        outputs, truncated = acc.finish()
        cell = CellResult(
            status="ok",
            outputs=outputs,
            duration=time.monotonic() - started,
            truncated=truncated,
            facts=acc.facts,
        )
        if exc is not None:
            cell.status = "timeout" if timed_out else "error"
            cell.error_name = "CellTimeoutError" if timed_out else type(exc).__name__
            cell.error_value = str(exc)
            cell.traceback = stb
        return cell


def report_path(variable: str) -> Path:
    """``<notebook stem>-analysis-report.ipynb`` beside this notebook, else in the cwd; never
    overwriting an existing file."""
    session = os.environ.get("JPY_SESSION_NAME", "")
    notebook = Path(session) if session.endswith(".ipynb") else None
    if notebook is not None and notebook.is_absolute() and notebook.parent.is_dir():
        base = notebook.with_name(f"{notebook.stem}-analysis-report.ipynb")
    else:
        base = Path.cwd() / f"{variable}-analysis-report.ipynb"
    candidate, n = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{base.stem}-{n}.ipynb")
        n += 1
    return candidate


def run_here(shell: Any, args: MagicArgs) -> Path:
    """Run the whole analysis in this kernel and write the report notebook; return its path."""
    from . import __version__
    from .agent import AgentLoop, Budget, RunFinished
    from .agent.prompts import render_task
    from .agent.types import CellAdded, CellExecuted, StopReason
    from .kernel.facts import SETUP_CODE, frame_facts_code, parse_facts
    from .models.select import PolicyChoice, build_policy
    from .notebook import NotebookWriter
    from .runner import STOP_NOTES, RunConfig, header_source
    from .server.kernelio import TEARDOWN_CODE

    executor = InProcessExecutor(shell)
    output = report_path(args.variable)
    run_id = uuid.uuid4().hex[:12]
    executor.run_silent(SETUP_CODE)
    try:
        facts = parse_facts(executor.run_silent(frame_facts_code(args.variable)))
        facts["source"] = f"variable `{args.variable}`"
        with warnings.catch_warnings():  # e.g. tqdm's IProgress warning from huggingface_hub
            warnings.simplefilter("ignore")
            handle = build_policy(PolicyChoice(profile=args.profile))
        with handle:
            print(
                f"{PREFIX} analysing `{args.variable}` here with {handle.label}; report: {output}", flush=True
            )
            writer = NotebookWriter(
                output,
                run_id,
                {
                    "question": args.question,
                    "variable": args.variable,
                    "policy": handle.label,
                    "version": __version__,
                },
            )
            config = RunConfig(data=Path(args.variable), output=output, question=args.question)
            writer.add_cell(
                "markdown", header_source(config, handle.policy, facts, run_id), "header", 0, "header"
            )
            writer.save()
            loop = AgentLoop(handle.policy, executor, Budget(max_steps=args.max_steps))
            finished: RunFinished | None = None
            for event in loop.run(render_task(facts, args.question)):
                writer.handle(event)
                if isinstance(event, CellExecuted):
                    what = "ok" if event.result.ok else f"{event.result.error_name}"
                    print(
                        f"{PREFIX} step {event.step}: cell {what} ({event.result.duration:.1f}s)", flush=True
                    )
                elif isinstance(event, RunFinished):
                    finished = event
            assert finished is not None
            if finished.reason is not StopReason.FINAL_ANSWER:
                note = f"*Run ended without conclusions: {STOP_NOTES[finished.reason]}.*"
                writer.handle(CellAdded(finished.steps, "stop-note", "markdown", note, "note"))
    finally:
        try:
            executor.run_silent(TEARDOWN_CODE)
        except AnalystError:
            pass
    ended = "with conclusions" if finished.reason is StopReason.FINAL_ANSWER else f"({finished.reason.value})"
    print(f"{PREFIX} finished {ended} after {finished.steps} steps; report written to {output}", flush=True)
    return output


# --------------------------------------------------------------------------- the magic


def analyst_magic(line: str) -> None:
    """%analyst VARIABLE ["question"] [--max-steps N] [--profile P]: analyse a DataFrame.

    In a notebook served by Jupyter the run happens in this notebook, cells appearing
    after this one; elsewhere it runs here and writes ``*-analysis-report.ipynb``.
    """
    from IPython import get_ipython

    shell = get_ipython()
    try:
        args = parse_line(line)
        problem = check_variable(shell.user_ns, args.variable)
        if problem:
            raise InputError(problem)
    except AnalystError as exc:
        print(f"{PREFIX} error: {exc}")
        return
    try:
        target = find_server()
    except Exception:
        target = None
    if target is not None:
        try:
            status = start_remote(target, args, current_cell_id(shell))
        except _NoExtension:
            pass  # no extension there: analyse here instead
        except AnalystError as exc:
            print(f"{PREFIX} error: {exc}")
            return
        else:
            print(
                f"{PREFIX} run {status['run_id']} started on {status['path']} ({status['policy']}); "
                "the analyst's cells will appear below this cell. Stop it from the Analyst panel."
            )
            return
    try:
        run_here(shell, args)
    except AnalystError as exc:
        print(f"{PREFIX} error: {exc}")


def register(shell: Any) -> None:
    """Register ``%analyst`` on an IPython shell (called by ``%load_ext jupyter_analyst``)."""
    shell.register_magic_function(analyst_magic, magic_kind="line", magic_name="analyst")
