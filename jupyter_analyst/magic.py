"""``%analyst df "question" [--max-steps N] [--profile P] [--keep-failed-cells]``: start an analysis;
``%analyst --follow-up "question"``: continue the latest one.

``%load_ext jupyter_analyst`` registers the magic. Inside a Jupyter server (the kernel of
a notebook session, which jupyter_server marks with ``JPY_SESSION_NAME``) it asks the
server extension, over its REST API, to run the analyst on this very notebook, placing
the cells after the magic's cell, and returns at once: the server drives the run, so the
cell doesn't block the kernel the agent needs. Elsewhere (plain IPython, a headless
nbclient run) it runs the analysis right here, in this kernel's namespace, and writes a
report notebook (the same ``Session`` as every run, with this shell as its executor).
Bad input gets one printed line and touches nothing.

A follow-up continues the notebook's latest run in the same kernel, with that run's
conclusions and a summary of its cells in the model's context (``agent.followup``): on
the server it goes after the magic's cell; here it appends to the same report notebook.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AnalystError, InputError

if TYPE_CHECKING:
    from .kernel import InProcessExecutor

PREFIX = "analyst:"


@dataclass
class MagicArgs:
    variable: str | None
    """None for a follow-up: its earlier run's frame."""
    question: str | None
    max_steps: int
    profile: str | None
    keep_failed_cells: bool = False
    follow_up: bool = False


USAGE = (
    'usage: %analyst VARIABLE ["question"] [--max-steps N] [--profile P] [--keep-failed-cells], '
    'or %analyst --follow-up "question" [options]'
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # never SystemExit inside a kernel
        raise InputError(message)


def parse_line(line: str) -> MagicArgs:
    """Parse the magic's line; ``InputError`` with a one-line reason when it can't."""
    parser = _Parser(prog="%analyst", add_help=False)
    parser.add_argument("words", nargs="*")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--keep-failed-cells", action="store_true")
    parser.add_argument("--follow-up", action="store_true")
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise InputError(f"cannot parse the arguments: {exc}") from None
    if not words:
        raise InputError(USAGE)
    ns = parser.parse_intermixed_args(words)
    if not 1 <= ns.max_steps <= 200:
        raise InputError("--max-steps must be between 1 and 200")
    if ns.follow_up:  # every word is the question: the frame is the earlier run's
        question = " ".join(ns.words).strip()
        if not question:
            raise InputError('a follow-up needs its question: %analyst --follow-up "now by month"')
        return MagicArgs(None, question, ns.max_steps, ns.profile, ns.keep_failed_cells, True)
    if not ns.words:
        raise InputError(USAGE)
    variable: str = ns.words[0]
    if not variable.isidentifier():
        raise InputError(f"not a variable name: {variable!r}")
    asked = " ".join(ns.words[1:]).strip() or None
    return MagicArgs(variable, asked, ns.max_steps, ns.profile, ns.keep_failed_cells)


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


def own_kernel_id() -> str | None:
    """This kernel's id, from the connection file jupyter_server named after it
    (``kernel-<id>.json``); None outside a server-started kernel."""
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).stem
    except Exception:  # plain IPython, no kernel app
        return None
    return name[len("kernel-") :] if name.startswith("kernel-") and len(name) > 7 else None


def start_remote(
    target: ServerTarget, args: MagicArgs, after_cell_id: str | None, kernel_id: str | None = None
) -> dict[str, Any]:
    """POST the run to the extension; return its RunStatus, or raise AnalystError.

    With ``kernel_id`` the server runs on the notebook whose session runs this kernel now:
    ``target.path`` comes from ``JPY_SESSION_NAME``, which a rename leaves stale."""
    body: dict[str, Any] = {
        "path": target.path,
        "question": args.question,
        "max_steps": args.max_steps,
        "profile": args.profile,
        "after_cell_id": after_cell_id,
    }
    if args.follow_up:  # only when asked: an older server refuses unknown fields
        body["follow_up"] = "latest"
    else:
        body["variable"] = args.variable
    if args.keep_failed_cells:  # only when asked: an older server refuses unknown fields
        body["keep_failed_cells"] = True
    if kernel_id:
        body["kernel_id"] = kernel_id
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
    except TimeoutError:  # a server is there and got the request: never run a second analysis here
        raise AnalystError(NO_ANSWER) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise AnalystError(NO_ANSWER) from None
        raise _NoExtension(str(exc)) from None
    except OSError as exc:
        raise _NoExtension(str(exc)) from None


NO_ANSWER = "the Jupyter server did not answer in 30 s; the run may still start: see the Analyst panel"
"""A server that got the request but did not answer in time: never analyse here as well."""


class _NoExtension(Exception):
    """The server can't be reached or has no jupyter-analyst extension: run here instead."""


# --------------------------------------------------------------------------- the in-process path


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


@dataclass
class HereRun:
    """The latest run this shell ran itself: what a follow-up here continues."""

    report: Path
    variable: str
    run_id: str
    question: str | None
    answer: str | None
    outcome: str
    created: list[str]


_HERE: dict[int, HereRun] = {}
"""Per shell (``id``): its latest in-process run."""


def run_here(
    shell: Any,
    args: MagicArgs,
    executor: InProcessExecutor,
    facts: dict[str, Any],
    earlier: HereRun | None = None,
) -> Path:
    """Run the whole analysis in this kernel and write the report notebook (a follow-up:
    append to its earlier run's report); return its path."""
    import nbformat

    from . import __version__
    from .agent import Budget, CellAdded, CellExecuted, Event, RunFinished
    from .agent.followup import EarlierRun, cell_lines
    from .models.select import PolicyChoice, build_policy
    from .notebook import META_KEY, NotebookWriter
    from .session import RunSpec, Session

    variable = earlier.variable if earlier is not None else args.variable
    assert variable is not None
    output = earlier.report if earlier is not None else report_path(variable)
    context, start = None, None
    if earlier is not None:
        start = nbformat.read(output, as_version=4)
        mine = [
            c
            for c in start.cells
            if (c.get("metadata", {}).get(META_KEY) or {}).get("run_id") == earlier.run_id
        ]
        context = EarlierRun(
            earlier.question, earlier.answer, earlier.outcome, cell_lines(mine), earlier.created, variable
        )
    spec = RunSpec(
        variable=variable,
        question=args.question,
        budget=Budget(max_steps=args.max_steps),
        source=f"variable `{variable}`",
        subject=variable if earlier is None else None,
        keep_failed_cells=args.keep_failed_cells,
        earlier=context,
        workdir=Path.cwd(),
    )
    with warnings.catch_warnings():  # e.g. tqdm's IProgress warning from huggingface_hub
        warnings.simplefilter("ignore")
        handle = build_policy(PolicyChoice(profile=args.profile))
    with handle:
        what = "following up the analysis of" if earlier is not None else "analysing"
        print(f"{PREFIX} {what} `{variable}` here with {handle.label}; report: {output}", flush=True)
        with NotebookWriter(
            output,
            spec.run_id,
            {
                "question": args.question,
                "variable": variable,
                "policy": handle.label,
                "version": __version__,
            },
            notebook=start,
        ) as writer:  # a failure still saves what the run wrote
            if earlier is not None:  # the follow-up's question, where the report's reader sees it
                title = f"## Follow-up: {' '.join((args.question or '').split())}"
                writer.handle(CellAdded(0, f"followup-{spec.run_id[:8]}", "markdown", title, "header"))

            def progress(event: Event) -> None:
                if isinstance(event, CellExecuted):
                    what = "ok" if event.result.ok else f"{event.result.error_name}"
                    print(
                        f"{PREFIX} step {event.step}: cell {what} ({event.result.duration:.1f}s)", flush=True
                    )

            session = Session(executor, writer, spec, on_event=progress)
            session.facts = facts  # already read by the magic's check
            finished: RunFinished = session.run(handle.policy, handle.label).finished
    _HERE[id(shell)] = HereRun(
        output,
        variable,
        spec.run_id,
        args.question,
        finished.answer,
        "ended with the conclusions below"
        if finished.answer
        else f"ended without conclusions ({finished.reason.value})",
        [*(earlier.created if earlier is not None else []), *finished.created],
    )
    ended = "with conclusions" if finished.reason.natural else f"({finished.reason.value})"
    print(f"{PREFIX} finished {ended} after {finished.steps} steps; report written to {output}", flush=True)
    return output


# --------------------------------------------------------------------------- the magic


def analyst_magic(line: str) -> None:
    """%analyst VARIABLE ["question"] [--max-steps N] [--profile P] [--keep-failed-cells]: analyse.

    In a notebook served by Jupyter the run happens in this notebook, cells appearing
    after this one; elsewhere it runs here and writes ``*-analysis-report.ipynb``.
    """
    from IPython import get_ipython

    from .kernel import InProcessExecutor
    from .session import read_frame_facts

    shell = get_ipython()
    executor = InProcessExecutor(shell)
    earlier = _HERE.get(id(shell))
    facts: dict[str, Any] | None = None
    try:
        args = parse_line(line)
        if not args.follow_up:  # the check every run makes, here first (a follow-up's: below)
            facts = read_frame_facts(executor, str(args.variable))
    except AnalystError as exc:
        print(f"{PREFIX} error: {exc}")
        return
    try:
        target = find_server()
    except Exception:
        target = None
    if target is not None:
        try:
            status = start_remote(target, args, current_cell_id(shell), own_kernel_id())
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
        if args.follow_up:
            if earlier is None:
                raise InputError(
                    "no earlier analysis in this kernel to follow up: run %analyst VARIABLE first"
                )
            facts = read_frame_facts(executor, earlier.variable)
        assert facts is not None
        run_here(shell, args, executor, facts, earlier if args.follow_up else None)
    except AnalystError as exc:
        print(f"{PREFIX} error: {exc}")


def register(shell: Any) -> None:
    """Register ``%analyst`` on an IPython shell (called by ``%load_ext jupyter_analyst``)."""
    shell.register_magic_function(analyst_magic, magic_kind="line", magic_name="analyst")
