"""Check a code cell before it runs, with no kernel round trip.

Two mistakes of small models each cost a whole step and a traceback the model must read:
a syntax error, and a column that does not exist (``df["bil_length"]``). Both show in the
source alone, so the loop asks :class:`Prechecker` before a cell runs; a caught cell is not
run (and not added to the notebook), and the model is told the error line, or the nearest
real column names. (The third check, a cell that would rebind a user's name, is the
loop's own refusal, ``agent.names``.)

A false catch is far worse than a miss: it blocks a correct cell. So the checks speak
only when they are sure.

* **Syntax.** The cell is parsed as IPython parses it (``%magic``, ``!cmd``, ``name?`` and
  top-level ``await`` are fine). Syntax only a newer Python accepts (PEP 701 f-strings when
  this process is older than 3.12, unparenthesised ``except A, B``, ``type X = ...``) is not
  flagged: the kernel may be newer than this process.
* **Columns.** Only the input frames whose every column the facts list (:func:`known_frames`),
  and only these reads of one: a string subscript ``F["x"]``, a list of them ``F[["x", "y"]]``,
  the column part of ``F.loc[rows, "x"]`` / ``F.at[row, "x"]``, and an attribute ``F.x`` that is
  not a DataFrame attribute and is close to a real column (any other attribute may be an
  accessor some library registered). Never: a store or ``del`` target; anything inside a
  function, lambda or class body (its names may be parameters) or a comprehension that
  rebinds the frame's name; anything a ``try`` (or ``with suppress``) guards, or that an
  ``if``/``while``/``x if c else y``/``and``/``or`` test naming the same string guards; a key
  that looks like a date (row selection on a date index).
* **What the run changed.** Strings the run created as columns (store keys, ``insert``,
  in-place ``rename``, ``assign`` keywords, attributes set on a frame) count as columns. A
  frame the run rebinds, or changes in a way the source cannot tell (a store under a
  computed key, ``F.columns = ...``, an in-place method other than those that only drop or
  reorder, ``exec``, most magics, a store through a name that may alias the frame, or any
  of that inside a function) is not checked any more.
* **Second word to the kernel.** A column the check named once is not named again, and a
  cell caught for its syntax runs when it is sent again unchanged: the kernel decides.

What it cannot see: cells the user runs in a live notebook meanwhile, and functions defined
before the run that add columns to the frame.
"""

from __future__ import annotations

import ast
import difflib
import functools
import re
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .names import cell_names

NOT_RUN = "checked before running: the cell was NOT run and was not added to the notebook; nothing changed"

SAFE_INPLACE = frozenset(
    {
        "dropna",
        "fillna",
        "ffill",
        "bfill",
        "interpolate",
        "sort_values",
        "sort_index",
        "drop_duplicates",
        "drop",
        "replace",
        "query",
        "clip",
        "where",
        "mask",
        "set_index",
        "update",
    }
)
"""In-place methods that never add a column (they drop, fill or reorder)."""

SAFE_LINE_MAGICS = frozenset(
    {"matplotlib", "config", "pip", "conda", "load_ext", "reload_ext", "precision", "pprint", "who", "whos"}
)
SAFE_CELL_MAGICS = frozenset({"bash", "sh", "writefile", "html", "markdown", "latex", "javascript", "svg"})
"""Magics that run no Python of the cell (or only configure the shell)."""

_HIDDEN_CODE = frozenset({"exec", "eval", "setattr", "delattr"})
_NAMESPACES = frozenset({"globals", "vars", "locals", "get_ipython"})
_NAMESPACE_WRITERS = frozenset(
    {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__", "push", "del_var"}
)
_PURE = frozenset({"len", "print", "display", "isinstance", "type", "id", "repr", "str", "hasattr"})
"""Builtins that neither keep nor return the object they are given."""
_DUNDER_MUTATORS = frozenset({"__setitem__", "__setattr__", "__delitem__", "__init__", "_set_item"})
_DATE_KEY = re.compile(r"^\d{4}(?:[-/.]\d{1,2}){0,2}(?:[ T].*)?$")
_HEADER = frozenset({"columns", "axes"})
_LABELS = ("loc", "at")
_CONTAINERS = frozenset({"dict", "list", "set", "defaultdict", "OrderedDict", "Counter", "deque"})
_ALL = "*"
"""Marks a change that may concern any frame."""


def known_frames(facts: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """``{frame: columns}`` from the session's frame facts, when they name every column exactly.

    Nothing is checked for a frame with columns left out of the facts (over 60), a name the
    facts shortened (``...``) or a multi-level header (names like ``('a', 'b')``), or when
    the facts don't add up.
    """
    if not facts or facts.get("omitted_columns") or not facts.get("name"):
        return {}
    names = [str(c.get("name", "")) for c in facts.get("columns") or []]
    if not names or len(names) != facts.get("cols"):
        return {}
    if any(n.endswith("...") or (n.startswith("(") and n.endswith(")")) for n in names):
        return {}
    return {str(facts["name"]): names}


@dataclass
class Catch:
    """A cell the checks stopped: which check, and what the model is told."""

    kind: Literal["syntax", "column"]
    observation: str


@dataclass
class _State:
    """What the run's cells changed that the checks must know."""

    dropped: set[str] = field(default_factory=set)
    """Frames no longer checked ("*" for all)."""
    aliases: set[str] = field(default_factory=set)
    """Names that may hold one of the frames."""
    created: set[str] = field(default_factory=set)
    """Strings the run made columns (or attributes) of some frame, normalised."""

    def copy(self) -> _State:
        return _State(set(self.dropped), set(self.aliases), set(self.created))


@dataclass
class Verdict:
    """The outcome of :meth:`Prechecker.check`: a catch, or the state to keep if the cell runs."""

    catch: Catch | None = None
    state: _State | None = None


@dataclass
class _Miss:
    frame: str
    column: str
    line: int
    snippet: str
    attribute: bool
    close: list[str]


def _norm(text: str) -> str:
    return " ".join(text.split())


# -- syntax ------------------------------------------------------------------------------------


def _compile(code: str) -> ast.Module:
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "invalid escape sequence" and the like: the kernel's to say
        tree = compile(code, "<cell>", "exec", flags=flags, dont_inherit=True)
    assert isinstance(tree, ast.Module)
    return tree


def _newer_syntax(exc: SyntaxError) -> bool:
    """Whether a newer Python than this one may accept what failed here."""
    msg = exc.msg or ""
    line = (exc.text or "").strip()
    if sys.version_info < (3, 12) and (msg.startswith("f-string") or line.startswith("type ")):
        return True
    return msg.startswith("multiple exception types must be parenthesized")


def parse_cell(code: str) -> tuple[ast.Module | None, str, SyntaxError | None]:
    """(the cell as IPython would compile it, the text it was parsed from, the syntax error
    to report).

    The tree and the error are both None for a cell this process can't judge: one IPython
    can't transform, null bytes, or syntax only a newer Python has.
    """
    try:
        return _compile(code), code, None
    except SyntaxError as exc:
        first = exc
    except ValueError:
        return None, code, None
    try:  # only cells that aren't plain Python pay for this import
        from IPython.core.inputtransformer2 import TransformerManager

        transformed = TransformerManager().transform_cell(code)
    except Exception:  # noqa: BLE001 - IPython can't read it either: the kernel says why
        return None, code, None
    try:
        return _compile(transformed), transformed, None
    except SyntaxError as exc:
        same_lines = transformed.rstrip("\n").count("\n") == code.rstrip("\n").count("\n")
        error = exc if same_lines else first
    except ValueError:
        return None, code, None
    return None, code, (None if _newer_syntax(error) else error)


def syntax_observation(exc: SyntaxError) -> str:
    """The error line with a caret under the spot, as Python prints it."""
    where = f"line {exc.lineno}; " if exc.lineno else ""
    lines = [f"Error: {type(exc).__name__}: {exc.msg} ({where}{NOT_RUN})."]
    text = (exc.text or "").rstrip("\r\n")
    if text.strip():
        stripped = text.lstrip()
        indent = len(text) - len(stripped)
        lines.append("    " + stripped)
        if exc.offset:
            start = max(0, exc.offset - 1 - indent)
            end_offset = getattr(exc, "end_offset", None)
            same_line = getattr(exc, "end_lineno", exc.lineno) == exc.lineno
            width = end_offset - exc.offset if end_offset and same_line and end_offset > exc.offset else 1
            lines.append("    " + " " * min(start, len(stripped)) + "^" * max(1, width))
    lines.append("Fix it and send the whole corrected cell.")
    return "\n".join(lines)


# -- what a statement changes ------------------------------------------------------------------


def _root(node: ast.expr) -> ast.expr:
    """The innermost object of ``a.b[c].d``: ``a`` (a call's result, for ``f().b[c]``)."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node


def _chain_attrs(node: ast.expr) -> set[str]:
    attrs = set()
    while isinstance(node, ast.Attribute | ast.Subscript):
        if isinstance(node, ast.Attribute):
            attrs.add(node.attr)
        node = node.value
    return attrs


def _strings(node: ast.AST | None) -> set[str]:
    if node is None:
        return set()
    return {
        _norm(n.value) for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def _constant_keys(node: ast.expr) -> bool:
    """A key that names its columns literally (or rows/positions only)."""
    if isinstance(node, ast.Constant | ast.Slice):
        return True
    if isinstance(node, ast.List | ast.Tuple):
        return all(isinstance(e, ast.Constant) for e in node.elts)
    return False


def _bare_loads(node: ast.AST, names: set[str]) -> bool:
    """Whether ``node`` reads one of ``names`` as a whole object (not ``x.attr`` or ``x[k]``)."""
    inner = {
        id(child.value)
        for child in ast.walk(node)
        if isinstance(child, ast.Attribute | ast.Subscript) and isinstance(child.value, ast.Name)
    }
    inner |= {
        id(arg)
        for child in ast.walk(node)
        if isinstance(child, ast.Call) and isinstance(child.func, ast.Name) and child.func.id in _PURE
        for arg in child.args
    }
    return any(
        isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in names and id(n) not in inner
        for n in ast.walk(node)
    )


def _local_containers(scope: ast.AST) -> set[str]:
    """Names a function body binds to a fresh dict/list/set (stores into them touch no frame)."""
    out: set[str] = set()
    fresh = ast.Dict | ast.List | ast.Set | ast.DictComp | ast.ListComp | ast.SetComp
    for node in ast.walk(scope):
        if not isinstance(node, ast.Assign):
            continue
        value = node.value
        is_fresh = isinstance(value, fresh) or (
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in _CONTAINERS
        )
        if is_fresh:
            out.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return out


class _Changes(ast.NodeVisitor):
    """Reads one top-level statement for what it creates, and which frames it may change."""

    def __init__(self, state: _State, frames: Iterable[str]) -> None:
        self.state = state
        self.frames = set(frames)
        self.scopes: list[set[str]] = []

    def drop(self, target: str | None) -> None:
        if target is not None:
            self.state.dropped.add(target)

    def target(self, node: ast.expr) -> str | None:
        """Which frame a change through ``node`` may concern: a name, "*" (any) or None."""
        root = _root(node)
        if not isinstance(root, ast.Name):  # a call's result may be a frame; a literal is not
            return (
                None if isinstance(root, ast.Constant | ast.List | ast.Dict | ast.Tuple | ast.Set) else _ALL
            )
        if self.scopes:
            return None if any(root.id in s for s in self.scopes) else _ALL
        if root.id in self.frames:
            return root.id
        return _ALL if root.id in self.state.aliases else None

    # -- scopes: a function may be called with a frame -------------------------------------
    def _scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef) -> None:
        self.scopes.append(_local_containers(node))
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = visit_ClassDef = _scope

    # -- stores ----------------------------------------------------------------------------
    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Store):
            self.state.created |= _strings(node.slice)
            self._store(node)
        self.generic_visit(node)

    def _store(self, node: ast.Subscript) -> None:
        target = self.target(node)
        if target is None:
            return
        base = node.value
        if isinstance(base, ast.Name):  # F[key] = ...
            if not _constant_keys(node.slice):
                self.drop(target)
        elif (
            isinstance(base, ast.Attribute)
            and isinstance(base.value, ast.Name)
            and base.attr in ("loc", "at")
        ):
            key = node.slice
            columns = key.elts[1] if isinstance(key, ast.Tuple) and len(key.elts) == 2 else None
            if columns is not None and not _constant_keys(columns):
                self.drop(target)
        elif not isinstance(_root(base), ast.Name):
            self.drop(target)  # globals()[...] = ..., get_ipython().user_ns[...] = ...
        elif _chain_attrs(base) & _HEADER or any(a.startswith("_") for a in _chain_attrs(base)):
            self.drop(target)  # F.columns.values[0] = ...
        elif target == _ALL and not _constant_keys(node.slice):
            self.drop(target)  # frames[0][name] = ... may add a column; F["a"][mask] = 0 can't

    def visit_Attribute(self, node: ast.Attribute) -> None:
        target = self.target(node) if isinstance(node.ctx, ast.Store) else None
        if target is not None:
            if node.attr in _HEADER or node.attr.startswith("_") or _chain_attrs(node.value) & _HEADER:
                self.drop(target)  # F.columns = ...; F.index.name = ... changes no column
            elif isinstance(node.value, ast.Name):
                self.state.created.add(node.attr)  # F.x = 1 sets an attribute F.x reads back
        self.generic_visit(node)

    # -- calls -----------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in _HIDDEN_CODE:
            self.drop(_ALL)
        elif isinstance(func, ast.Attribute):
            self._method(node, func)
        self.generic_visit(node)

    def _method(self, node: ast.Call, func: ast.Attribute) -> None:
        method = func.attr
        if method in ("run_line_magic", "run_cell_magic"):
            name = node.args[0] if node.args else None
            magic = name.value if isinstance(name, ast.Constant) else None
            safe = SAFE_LINE_MAGICS if method == "run_line_magic" else SAFE_CELL_MAGICS
            if magic not in safe:
                self.drop(_ALL)
            return
        if method in ("run_cell", "ex", "ev"):
            self.drop(_ALL)
            return
        namespace = _root(func.value)
        if (
            method in _NAMESPACE_WRITERS
            and isinstance(namespace, ast.Call)
            and isinstance(namespace.func, ast.Name)
            and namespace.func.id in _NAMESPACES
        ):
            self.drop(_ALL)  # globals().update(...), get_ipython().push(...)
            return
        if method == "rename":
            self.state.created |= _strings(node)
        if method == "assign":
            self.state.created |= {_norm(k.arg) for k in node.keywords if k.arg}
        target = self.target(func.value)
        if target is None:
            return
        if method in _DUNDER_MUTATORS:
            self.drop(target)
        elif method == "insert" and isinstance(func.value, ast.Name):
            column = node.args[1] if len(node.args) > 1 else None
            column = column or next((k.value for k in node.keywords if k.arg == "column"), None)
            if isinstance(column, ast.Constant):
                self.state.created |= _strings(column)
            else:
                self.drop(target)
        inplace = next((k.value for k in node.keywords if k.arg == "inplace"), None)
        if inplace is None or (isinstance(inplace, ast.Constant) and not inplace.value):
            return
        self.state.created |= _strings(node)
        if method in SAFE_INPLACE:
            return
        if method == "rename" and self._literal_rename(node):
            return
        self.drop(target)

    @staticmethod
    def _literal_rename(node: ast.Call) -> bool:
        """``rename(columns={"a": "b"}, inplace=True)``: every new name is a literal."""
        maps = [k.value for k in node.keywords if k.arg in ("columns", "index", "mapper")] + node.args[:1]
        return bool(maps) and all(
            isinstance(m, ast.Dict) and all(isinstance(v, ast.Constant) for v in m.values) for m in maps
        )


def _learn(stmt: ast.stmt, state: _State, frames: Iterable[str]) -> None:
    """Fold what one top-level statement does into ``state`` (before it is checked, so a
    statement that both changes and reads a frame is judged by what it changes)."""
    frames = set(frames)
    try:
        names = cell_names(ast.unparse(stmt))
    except (ValueError, RecursionError):  # pragma: no cover - unparse of a parsed tree
        state.dropped.add(_ALL)
        return
    bound = set(names.origins)
    state.dropped |= bound & frames
    if names.star_imports or not names.parsed:
        state.dropped.add(_ALL)
    if bound - frames and _bare_loads(stmt, frames | state.aliases):
        state.aliases |= bound - frames
    _Changes(state, frames).visit(stmt)


# -- reads -------------------------------------------------------------------------------------


@functools.cache
def _frame_attributes() -> frozenset[str] | None:
    """Every attribute of ``pandas.DataFrame`` (None when pandas can't be imported here)."""
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is a dependency
        return None
    return frozenset(dir(pandas.DataFrame))


def _close(name: str, columns: Sequence[str]) -> list[str]:
    same_case = [c for c in columns if c.lower() == name.lower()]
    fuzzy = difflib.get_close_matches(name, columns, n=3, cutoff=0.6)
    lowered = {c.lower(): c for c in columns}
    fuzzy += [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)]
    return list(dict.fromkeys([*same_case, *fuzzy]))[:3]


class _Reads(ast.NodeVisitor):
    """Finds reads of columns a checked frame does not have (see the module docstring)."""

    def __init__(self, code: str, frames: Mapping[str, Sequence[str]], created: set[str]) -> None:
        self.code = code
        self.frames = frames
        self.columns = {name: {_norm(c) for c in cols} for name, cols in frames.items()}
        self.created = created
        self.guards: list[set[str]] = []
        self.shadowed: set[str] = set()
        self.unsafe = 0
        self.misses: list[_Miss] = []

    def frame(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name) and node.id in self.frames and node.id not in self.shadowed:
            return node.id
        return None

    def known(self, frame: str, column: str) -> bool:
        key = _norm(column)
        return key in self.columns[frame] or key in self.created or any(key in g for g in self.guards)

    def miss(self, frame: str, column: str, node: ast.expr, attribute: bool) -> None:
        snippet = ast.get_source_segment(self.code, node) or column
        close = _close(column, self.frames[frame])
        self.misses.append(_Miss(frame, column, node.lineno, _norm(snippet)[:80], attribute, close))

    # -- where nothing is checked ----------------------------------------------------------
    def _skip(self, node: ast.AST) -> None:
        return None

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = visit_ClassDef = visit_Match = _skip

    def _guarded(self, nodes: Iterable[ast.AST], strings: set[str] | None = None) -> None:
        if strings is None:
            self.unsafe += 1
        else:
            self.guards.append(strings)
        for node in nodes:
            self.visit(node)
        if strings is None:
            self.unsafe -= 1
        else:
            self.guards.pop()

    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:
        if node.handlers:
            self._guarded(node.body)
        else:
            for stmt in node.body:
                self.visit(stmt)
        for part in [*node.handlers, *node.orelse, *node.finalbody]:
            self.visit(part)

    visit_TryStar = visit_Try

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item)
        suppressing = any("suppress" in ast.unparse(item.context_expr) for item in node.items)
        if suppressing:
            self._guarded(node.body)
        else:
            for stmt in node.body:
                self.visit(stmt)

    visit_AsyncWith = visit_With

    def visit_If(self, node: ast.If | ast.While) -> None:
        self.visit(node.test)
        self._guarded([*node.body, *node.orelse], _strings(node.test))

    visit_While = visit_If

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.visit(node.test)
        self._guarded([node.body, node.orelse], _strings(node.test))

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for i, value in enumerate(node.values):
            self._guarded([value], set().union(*(_strings(v) for v in node.values[:i])))

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        bound = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        if bound & set(self.frames):
            return
        conditions = set().union(*(_strings(c) for g in node.generators for c in g.ifs))
        for g in node.generators:
            self.visit(g.iter)
            for condition in g.ifs:
                self.visit(condition)
        parts = [getattr(node, p) for p in ("elt", "key", "value") if getattr(node, p, None) is not None]
        self._guarded(parts, conditions)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension

    # -- the reads -------------------------------------------------------------------------
    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Load) and not self.unsafe:
            self._subscript(node)
        self.generic_visit(node)

    def _subscript(self, node: ast.Subscript) -> None:
        base = node.value
        frame = self.frame(base)
        keys: ast.expr | None = node.slice if frame else None
        if frame is None and isinstance(base, ast.Attribute) and base.attr in ("loc", "at"):
            frame = self.frame(base.value)
            key = node.slice
            keys = key.elts[1] if frame and isinstance(key, ast.Tuple) and len(key.elts) == 2 else None
        if frame is None or keys is None:
            return
        elts = keys.elts if isinstance(keys, ast.List) else [keys]
        for elt in elts:
            if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                column = elt.value
                if not _DATE_KEY.match(column.strip()) and not self.known(frame, column):
                    self.miss(frame, column, node, attribute=False)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        frame = self.frame(node.value)
        if frame and isinstance(node.ctx, ast.Load) and not self.unsafe and not node.attr.startswith("_"):
            attributes = _frame_attributes()
            if attributes is not None and node.attr not in attributes and not self.known(frame, node.attr):
                if _close(node.attr, self.frames[frame]):
                    self.miss(frame, node.attr, node, attribute=True)
        self.generic_visit(node)


def _frame_list(columns: Sequence[str], limit: int = 40) -> str:
    shown = ", ".join(repr(c) for c in columns[:limit])
    return shown + (f", ... (+{len(columns) - limit} more)" if len(columns) > limit else "")


def column_observation(misses: Sequence[_Miss], frames: Mapping[str, Sequence[str]]) -> str:
    """What the model is told: each missing column, where, and the nearest real names."""
    lines = [f"Error: the cell reads columns that do not exist ({NOT_RUN}):"]
    unmatched: dict[str, None] = {}
    for m in misses:
        kind = "AttributeError" if m.attribute else "KeyError"
        what = f"- line {m.line}, `{m.snippet}`: {kind}: `{m.frame}` has no column {m.column!r}"
        if m.close:
            what += "; did you mean " + " or ".join(repr(c) for c in m.close) + "?"
        else:
            unmatched.setdefault(m.frame)
        lines.append(what)
    for frame in unmatched:
        lines.append(f"The columns of `{frame}` are: {_frame_list(frames[frame])}.")
    lines.append("Fix the names and send the whole corrected cell.")
    return "\n".join(lines)


class Prechecker:
    """The checks of one run: ``check`` a cell before it runs, ``ran`` once it did.

    ``frames`` maps each input frame's name to its columns (:func:`known_frames`); without
    frames only the syntax is checked.
    """

    def __init__(self, frames: Mapping[str, Sequence[str]] | None = None) -> None:
        self.frames = {str(name): [str(c) for c in cols] for name, cols in (frames or {}).items()}
        self.state = _State()
        self.told: set[tuple[str, str]] = set()
        self.told_code: set[str] = set()

    def check(self, code: str) -> Verdict:
        tree, source, error = parse_cell(code)
        if tree is None:
            if error is not None and code not in self.told_code:
                self.told_code.add(code)
                return Verdict(Catch("syntax", syntax_observation(error)))
            state = self.state.copy()  # it may still run (a newer kernel): what it changes is unknown
            state.dropped.add(_ALL)
            return Verdict(None, state)
        state = self.state.copy()
        misses: list[_Miss] = []
        for stmt in tree.body:
            _learn(stmt, state, self.frames)
            checked = self._checked(state)
            if checked:
                reads = _Reads(source, checked, state.created)
                reads.visit(stmt)
                misses += reads.misses
        fresh = [m for m in misses if (m.frame, _norm(m.column)) not in self.told]
        if not fresh:
            return Verdict(None, state)
        self.told |= {(m.frame, _norm(m.column)) for m in fresh}
        return Verdict(Catch("column", column_observation(fresh, self.frames)))

    def ran(self, verdict: Verdict) -> None:
        """Keep what a cell that ran (or was sent to the kernel) changed."""
        if verdict.state is not None:
            self.state = verdict.state

    def _checked(self, state: _State) -> dict[str, list[str]]:
        if _ALL in state.dropped:
            return {}
        return {name: cols for name, cols in self.frames.items() if name not in state.dropped}


def iter_catches(checker: Prechecker, cells: Iterable[str]) -> Iterator[tuple[str, Catch | None]]:
    """Check cells in order as if each ran after the one before (tests and audits)."""
    for code in cells:
        verdict = checker.check(code)
        if verdict.catch is None:
            checker.ran(verdict)
        yield code, verdict.catch
