"""Tidy at the end: which failed agent cells a later fix superseded and can leave the notebook.

A run that fixed its errors should leave a notebook that re-runs top to bottom without
one. The failed attempts stay in the run's events (records, trajectories); only the
finished notebook loses them. A failed cell is *superseded* when it belongs to a chain of
failures that a later cell fixed (``CellExecuted.fixed_error``: the next code cell ran
cleanly).

Removing a cell must not break the re-run, and a failed cell is not a cell that did
nothing: its statements before the failing one ran. So a superseded cell is removed only
when that executed prefix is known and harmless:

- the failing line is read from the traceback (ipykernel's ``Cell In[n], line k``, or
  the ``---->`` marker); a cell refused by the protected-name check never ran, and a
  cell Python could not compile never ran either;
- the prefix (and whatever the failing statement itself may have done before it raised)
  binds no name that a later kept cell reads before rebinding it;
- it mutates nothing: no subscript or attribute assignment, augmented assignment,
  ``del``, ``inplace=`` call, method known to change its object in place (``append``,
  ``update``, ``pop``...), file write, random seed, call of a function the run defined
  (its effects are unknown), ``exec``/``setattr``/``globals``, magic or shell command.
  Plotting state (``plt``, ``sns``) is fine to drop.

When unsure (no failing line, a timeout, a dead kernel, an interrupt, a cell magic) the
cell stays, as it always did, tagged ``raises-exception``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .names import CLASH_ERROR, cell_names
from .types import CellAdded, CellExecuted, CellResult, Event

NOT_RUN_ERRORS: frozenset[str] = frozenset({CLASH_ERROR})
"""Error names of cells the loop answered without running them: always removable."""

COMPILE_ERRORS = frozenset({"SyntaxError", "IndentationError", "TabError"})

MUTATING_METHODS = frozenset(
    {
        # containers and frames changed in place
        "append",
        "extend",
        "insert",
        "remove",
        "pop",
        "popitem",
        "clear",
        "update",
        "add",
        "discard",
        "setdefault",
        "sort",
        "reverse",
        "__setitem__",
        "__delitem__",
        "__setattr__",
        # global state later results depend on
        "seed",
        "manual_seed",
        "set_option",
        "reset_option",
    }
)
"""Methods that change their object or global state; a prefix calling one is not removable."""

FILE_WRITERS = frozenset(
    {
        "to_csv",
        "to_parquet",
        "to_excel",
        "to_pickle",
        "to_feather",
        "to_hdf",
        "to_sql",
        "to_stata",
        "to_json",
        "to_orc",
        "write",
        "writelines",
        "write_text",
        "write_bytes",
        "mkdir",
        "makedirs",
        "unlink",
        "rmdir",
        "rmtree",
        "dump",
        "savefig",
    }
)
"""Methods that write files a later cell may read (a figure saved by ``plt`` included)."""

MUTATING_FUNCTIONS = frozenset(
    {"exec", "eval", "setattr", "delattr", "globals", "locals", "vars", "get_ipython"}
)
"""Builtins whose effects can't be read statically."""

PLOT_ROOTS = frozenset({"plt", "sns", "matplotlib", "mpl"})
"""Plotting modules: their state (the current figure, a theme) is fine to drop."""

SAFE_MAGICS = frozenset({"matplotlib"})

_CELL_LINE = re.compile(r"(?:Cell In\s*\[(\d*)\], line (\d+))|(?:Input In \[(\d*)\], in <cell line: (\d+)>)")
_MARKER = re.compile(r"^-*> ?\s*(\d+)\b", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Cell:
    """One agent code cell of the run, as the events tell it."""

    cell_id: str
    source: str
    result: CellResult | None = None
    fixed_error: bool = False


def code_cells(events: Iterable[Event]) -> list[Cell]:
    """The run's agent code cells (role ``code``), in order, with their results."""
    cells: dict[str, Cell] = {}
    for event in events:
        if isinstance(event, CellAdded) and event.cell_type == "code" and event.role == "code":
            cells[event.cell_id] = Cell(event.cell_id, event.source)
        elif isinstance(event, CellExecuted) and event.cell_id in cells:
            cells[event.cell_id].result = event.result
            cells[event.cell_id].fixed_error = event.fixed_error
    return list(cells.values())


def fixed_chains(cells: Sequence[Cell]) -> list[int]:
    """Indices of the failed cells in chains of failures a later cell fixed."""
    found: list[int] = []
    pending: list[int] = []
    for i, cell in enumerate(cells):
        result = cell.result
        if result is None:
            continue
        if not result.ok:
            pending.append(i)
        else:
            if cell.fixed_error:
                found.extend(pending)
            pending = []
    return found


def superseded(events: Iterable[Event]) -> list[str]:
    """Ids of the failed agent cells a later fix superseded that can leave the notebook
    without changing what a re-run of the kept cells does (see the module docstring)."""
    cells = code_cells(events)
    functions = {name for cell in cells for name in _defined_functions(cell.source)}
    removed: set[int] = set()
    for i in reversed(fixed_chains(cells)):  # later decisions first: they decide what stays
        later = [c.source for j, c in enumerate(cells) if j > i and j not in removed]
        result = cells[i].result
        assert result is not None
        if why_kept(cells[i].source, result, later, functions) is None:
            removed.add(i)
    return [cells[i].cell_id for i in sorted(removed)]


def why_kept(
    source: str, result: CellResult, later: Sequence[str] = (), functions: Iterable[str] = ()
) -> str | None:
    """Why the failed cell ``source`` must stay in the notebook; None when it can go.

    ``later`` are the sources of the code cells that stay after it; ``functions`` the
    names of functions the run defined (calling one has effects we cannot see).
    """
    if result.ok:
        return "it did not fail"
    if result.status != "error":
        return f"it ended with {result.status}: where it stopped is unknown"
    if result.error_name in NOT_RUN_ERRORS:
        return None
    if result.error_name == "KeyboardInterrupt":
        return "it was interrupted: where it stopped is unknown"
    tree, plain = _parse(source)
    if tree is None:
        if result.error_name in COMPILE_ERRORS:
            return None  # the kernel could not compile it: nothing ran
        return "it is not Python that can be read here"
    if result.error_name in COMPILE_ERRORS and not _compiles(tree):
        return None
    if not plain and not _line_magics_only(source):
        return "it uses a cell magic: its lines can't be told apart"
    line = failing_line(result.traceback, result.execution_count)
    if line is None:
        return "the failing line is unknown"
    ran = executed(tree, line)
    if ran is None:
        return f"line {line} is not a statement of the cell"
    prefix, failing = ran
    effect = mutation(prefix, failing, set(functions))
    if effect:
        return effect
    for name in bound_names(prefix, failing):
        if reads_before_rebinding(name, later):
            return f"a later cell reads `{name}`, which this cell bound before it failed"
    return None


def failing_line(traceback: Sequence[str], execution_count: int | None = None) -> int | None:
    """The cell's line that raised, from an IPython traceback (its top-level frame).

    The last exception of a chain is the one that reached the cell, so its frames are
    searched; the first frame of the cell itself (``Cell In[n]``, ``n`` the execution
    count when known) is the module level. Without that header the ``---->`` marker of
    the first frame is used.
    """
    entries = [_ANSI.sub("", str(e)) for e in traceback]
    start = max((i for i, e in enumerate(entries) if "Traceback (most recent call last)" in e), default=0)
    headers = [m for m in (_CELL_LINE.search(e) for e in entries[start:]) if m is not None]
    for match in headers:
        count = match.group(1) if match.group(1) is not None else match.group(3)
        if execution_count is not None and count and int(count) != execution_count:
            continue  # a frame of a function an earlier cell defined
        return int(match.group(2) or match.group(4))
    if headers:
        return None  # only other cells' frames: this cell's line is not there
    for entry in entries[start:]:
        marker = _MARKER.search(entry)
        if marker is not None:
            return int(marker.group(1))
    return None


def executed(tree: ast.Module, line: int) -> tuple[list[ast.stmt], ast.stmt] | None:
    """(statements that ran to their end, the statement that raised) for failing ``line``."""
    found = None
    for i, stmt in enumerate(tree.body):
        first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
        if first <= line <= (stmt.end_lineno or stmt.lineno):
            # ``a = 1; b = nope`` share the line: the last is taken, so both count as run
            found = tree.body[:i], stmt
    return found


_ATOMIC = (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Expr, ast.Raise, ast.Assert, ast.Pass, ast.Return)
"""Statements that bind their targets only once everything else in them succeeded."""


def _atomic(stmt: ast.stmt) -> bool:
    return isinstance(stmt, _ATOMIC) and not (isinstance(stmt, ast.Assign) and len(stmt.targets) > 1)


def bound_names(prefix: Sequence[ast.stmt], failing: ast.stmt) -> list[str]:
    """Names the run of the prefix and the failing statement may have bound or deleted.

    A failing simple assignment binds nothing (the value raised first), but a walrus inside
    it did; a failing ``import a, b``, ``del``, ``a = b[k] = v`` or block may have done part.
    """
    names = list(cell_names(ast.unparse(ast.Module(body=list(prefix), type_ignores=[]))).origins)
    if _atomic(failing):
        extra = [n.target.id for n in ast.walk(failing) if isinstance(n, ast.NamedExpr)]
    else:
        extra = list(cell_names(ast.unparse(failing)).origins)
    return list(dict.fromkeys([*names, *extra]))


def mutation(prefix: Sequence[ast.stmt], failing: ast.stmt, functions: set[str]) -> str:
    """What the prefix (or the failing statement before it raised) changed in place; ''
    when nothing. The failing simple assignment's own target is spared: it never got its
    value."""
    for stmt in prefix:
        found = _MutationFinder(functions, spare_targets=False).find(stmt)
        if found:
            return found
    return _MutationFinder(functions, spare_targets=_atomic(failing)).find(failing)


class _MutationFinder(ast.NodeVisitor):
    """Finds the first in-place change in code that ran; function bodies are skipped (they
    run only when called, and calling the run's own functions is itself flagged)."""

    def __init__(self, functions: set[str], spare_targets: bool) -> None:
        self.functions = functions
        self.spare_targets = spare_targets
        self.found = ""

    def find(self, node: ast.AST) -> str:
        self.visit(node)
        return self.found

    def visit(self, node: ast.AST) -> None:
        if not self.found:
            super().visit(node)

    def _targets(self, targets: Iterable[ast.expr], what: str) -> None:
        if self.spare_targets:
            return
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, (ast.Subscript, ast.Attribute)) and isinstance(sub.ctx, ast.Store):
                    self.found = f"it {what} `{ast.unparse(sub)}` in place"
                    return

    def visit_Assign(self, node: ast.Assign) -> None:
        self._targets(node.targets, "assigned to")
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._targets([node.target], "assigned to")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if not self.spare_targets or not isinstance(node.target, ast.Name):
            self.found = f"it changed `{ast.unparse(node.target)}` in place (augmented assignment)"
            return
        self.generic_visit(node)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self._targets([node.target], "assigned to")
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def visit_Delete(self, node: ast.Delete) -> None:
        self.found = f"it deleted `{', '.join(ast.unparse(t) for t in node.targets)}`"

    def visit_Global(self, node: ast.Global) -> None:
        self.found = "it declares globals"

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for default in [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]:
            self.visit(default)
        for decorator in getattr(node, "decorator_list", []):
            self.visit(decorator)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        for kw in node.keywords:
            if kw.arg == "inplace" and not (isinstance(kw.value, ast.Constant) and not kw.value.value):
                self.found = f"`{ast.unparse(node)[:60]}` changes its object in place"
                return
        if isinstance(func, ast.Attribute):
            root = _root(func)
            if root == "get_ipython":
                if not _safe_magic(node):
                    self.found = "it runs a magic or shell command"
                return  # a safe magic's arguments are constants
            if func.attr in FILE_WRITERS:
                self.found = f"`{ast.unparse(func)}` writes a file"
                return
            if func.attr in MUTATING_METHODS and root not in PLOT_ROOTS:
                self.found = f"`{ast.unparse(func)}` changes its object in place"
                return
        elif isinstance(func, ast.Name):
            if func.id in self.functions:
                self.found = f"it calls `{func.id}`, a function the run defined"
                return
            if func.id in MUTATING_FUNCTIONS:
                self.found = f"it calls `{func.id}`"
                return
            if func.id == "open" and _writes(node):
                self.found = "it opens a file for writing"
                return
        self.generic_visit(node)


def _root(node: ast.expr) -> str:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def _safe_magic(call: ast.Call) -> bool:
    """``get_ipython().run_line_magic('matplotlib', ...)``: a magic known to bind nothing."""
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "run_line_magic"
        and bool(call.args)
        and isinstance(call.args[0], ast.Constant)
        and call.args[0].value in SAFE_MAGICS
    )


def _writes(call: ast.Call) -> bool:
    mode: ast.expr | None = call.args[1] if len(call.args) > 1 else None
    for kw in call.keywords:
        if kw.arg == "mode":
            mode = kw.value
    if mode is None:
        return False
    if not (isinstance(mode, ast.Constant) and isinstance(mode.value, str)):
        return True  # a mode we can't read: the safe side
    return any(c in mode.value for c in "wax+")


def reads_before_rebinding(name: str, sources: Iterable[str]) -> bool:
    """True when one of ``sources`` (cells in notebook order) reads ``name`` before a
    statement surely rebinds it; a read anywhere in a statement (a function body, a
    ``query("x > @name")`` string) counts, a binding inside a block does not."""
    for source in sources:
        tree, _ = _parse(source)
        if tree is None:
            continue  # not Python: the kernel runs none of it
        verdict = _first_use(tree.body, name)
        if verdict is not None:
            return verdict
    return False


def _first_use(body: Sequence[ast.stmt], name: str) -> bool | None:
    """True: ``body`` reads ``name`` before surely rebinding it; False: it surely rebinds it
    first; None: neither (or a rebinding that may not happen), so later code decides.

    A ``try`` body runs in order, so a read that follows a binding in it is safe. After the
    ``try`` the binding is sure only when it is the body's first statement and its value
    can't raise (``subset = df``): a later one may have been skipped by an exception.
    """
    for stmt in body:
        if isinstance(stmt, ast.Try) and not stmt.finalbody:
            inner = _first_use(stmt.body, name)
            if inner is True:
                return True
            rest = [*stmt.orelse, *(s for h in stmt.handlers for s in h.body)]
            if any(_reads(s, name) for s in rest):
                return True
            if inner is False and _rebinds(stmt.body[0], name) and _cannot_raise(stmt.body[0]):
                return False
            continue
        if _reads(stmt, name):
            return True
        if _rebinds(stmt, name):
            return False
    return None


def _cannot_raise(stmt: ast.stmt) -> bool:
    """An assignment of a name or a constant: nothing in it can raise (given the name exists)."""
    return isinstance(stmt, ast.Assign) and isinstance(stmt.value, (ast.Name, ast.Constant))


def _reads(stmt: ast.stmt, name: str) -> bool:
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and node.id == name and not isinstance(node.ctx, ast.Store):
            return True
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and f"@{name}" in node.value:
            return True  # df.query("x > @name")
    return False


def _rebinds(stmt: ast.stmt, name: str) -> bool:
    """True when ``stmt`` binds ``name`` unconditionally at module level."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return stmt.name == name
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return cell_names(ast.unparse(stmt)).final.get(name, False)
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        targets = [stmt.target]
    for target in targets:
        stack = [target]
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Name) and node.id == name:
                return True
            if isinstance(node, (ast.Tuple, ast.List)):
                stack.extend(node.elts)
            elif isinstance(node, ast.Starred):
                stack.append(node.value)
    return False


def _defined_functions(source: str) -> list[str]:
    tree, _ = _parse(source)
    if tree is None:
        return []
    return [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _parse(source: str) -> tuple[ast.Module | None, bool]:
    """(the cell as Python, whether it was plain Python); IPython's transforms (magics,
    ``!cmd``) are applied only to a cell that needs them, the way the kernel would."""
    try:
        return ast.parse(source), True
    except (SyntaxError, ValueError):
        pass
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return ast.parse(TransformerManager().transform_cell(source)), False
    except Exception:  # noqa: BLE001 - not Python either way
        return None, False


def _compiles(tree: ast.Module) -> bool:
    try:
        compile(tree, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError:
        return False
    return True


def _line_magics_only(source: str) -> bool:
    """A transformed cell whose lines are the cell's own (line magics, ``!cmd``), not a
    cell magic that moves its whole body into one call."""
    from IPython.core.inputtransformer2 import TransformerManager

    text = TransformerManager().transform_cell(source)
    return "run_cell_magic(" not in text and len(text.splitlines()) == len(source.splitlines())
