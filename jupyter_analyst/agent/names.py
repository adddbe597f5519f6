"""Which names an agent cell would bind, read statically, so a run never overwrites the user's.

The analyst works in the user's live kernel: a cell that assigns ``summary`` or ``fig``
would silently replace the user's own ``summary`` or ``fig``. The session snapshots the
names bound before the run (``kernel.facts.USER_NAMES_CODE``); before a cell runs, the
loop reads the names it binds with :func:`cell_names` and refuses it when one of them is
protected, telling the model a free alternative (:func:`alternative`) instead.

What counts as binding a name at module level: assignment targets (plain, augmented,
annotated with a value, unpacking, starred), ``for``/``async for`` targets, ``with ... as``,
``except ... as`` (which also deletes the name afterwards), ``import a.b`` (binds ``a``),
``import a.b as x``, ``from m import y [as z]``, ``def``/``class`` names, the walrus
operator (also inside a comprehension, where it binds the enclosing scope), match-pattern
captures, ``del``, and assignments inside functions or classes to names they declare
``global``. Comprehension variables don't leak in Python 3 and are not counted.

Importing the very object a protected name already holds is no rebinding: ``import pandas
as pd`` over the user's ``pd`` (the pandas module) is harmless, ``pd = 3`` is not. So each
protected name carries its *origins*, the dotted import paths that give exactly its value
(``"pandas"`` for the module, ``"scipy.stats.pearsonr"`` for that function), and an import
whose path is one of them is allowed.

What static reading cannot see: ``exec``/``eval`` of strings, ``globals()[...] = ...``,
``setattr`` on the module, magics that bind names (``%run``, ``%store -r``), and
``from m import *`` (the loop refuses star imports outright for that reason). In-place
changes (``df["x"] = ...``, ``df.dropna(inplace=True)``) mutate a value without rebinding
its name and are not caught either. A function that declares ``global x`` is counted as
binding ``x`` whether or not it is ever called (the safe side).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

CLASH_ERROR = "NameClashError"
"""The ``error_name`` of a cell refused because it would overwrite the user's names."""

Protected = Mapping[str, Collection[str]]
"""A protected name -> its origins (dotted import paths that give exactly its value)."""


def protect(names: Protected | Iterable[str] | None) -> dict[str, frozenset[str]]:
    """Normalise protected names: a mapping keeps its origins, plain names get none."""
    if names is None:
        return {}
    if isinstance(names, Mapping):
        return {str(n): frozenset(str(o) for o in origins) for n, origins in names.items()}
    return {str(n): frozenset() for n in names}


@dataclass
class CellNames:
    """The module-level names one cell binds or deletes, in the order they appear."""

    origins: dict[str, str | None] = field(default_factory=dict)
    """Every name the cell binds or deletes -> the import path it binds it to, when every
    binding of the name in the cell is that same import; else None."""
    final: dict[str, bool] = field(default_factory=dict)
    """Name -> whether it is bound after the cell (False: its last mention deletes it)."""
    star_imports: list[str] = field(default_factory=list)
    """Modules imported with ``from m import *`` (their names can't be known here)."""
    parsed: bool = True
    """False when the cell isn't Python (even after IPython's magic transforms)."""

    def clashes(self, protected: Mapping[str, Collection[str]]) -> list[str]:
        """The names this cell would rebind or delete among ``protected``, in order."""
        out = []
        for name, origin in self.origins.items():
            if name in protected and (origin is None or origin not in protected[name]):
                out.append(name)
        return out

    def _bind(self, name: str, origin: str | None) -> None:
        if name in self.origins and self.origins[name] != origin:
            origin = None  # bound two different ways: not a plain re-import
        self.origins[name] = origin
        self.final[name] = True

    def _delete(self, name: str) -> None:
        self.origins[name] = None
        self.final[name] = False


class _Binder(ast.NodeVisitor):
    """Collects module-level bindings; with ``only`` set, just those names (the ``global``
    names of a function or class body, whose other names are local)."""

    def __init__(self, names: CellNames, only: frozenset[str] | None = None) -> None:
        self.names = names
        self.only = only

    def bind(self, name: str, origin: str | None = None) -> None:
        if self.only is None or name in self.only:
            self.names._bind(name, origin)

    def delete(self, name: str) -> None:
        if self.only is None or name in self.only:
            self.names._delete(name)

    # -- plain bindings ------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self.bind(node.id)
        elif isinstance(node.ctx, ast.Del):
            self.delete(node.id)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None or not isinstance(node.target, ast.Name):
            self.visit(node.target)  # ``x: int`` alone binds nothing
        self.visit(node.annotation)
        if node.value is not None:
            self.visit(node.value)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bind(node.name)
        for stmt in node.body:
            self.visit(stmt)
        if node.name:
            self.delete(node.name)  # Python deletes the name when the handler ends

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.bind(alias.asname, alias.name)
            else:
                top = alias.name.split(".")[0]
                self.bind(top, top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module if not node.level else None  # relative: no absolute path
        for alias in node.names:
            if alias.name == "*":
                if self.only is None:
                    self.names.star_imports.append("." * node.level + (node.module or ""))
                continue
            self.bind(alias.asname or alias.name, f"{module}.{alias.name}" if module else None)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self.bind(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.generic_visit(node)
        if node.rest:
            self.bind(node.rest)

    # -- scopes --------------------------------------------------------------------------
    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        """Loop variables stay inside; a walrus anywhere else binds the enclosing scope."""
        for part in ("elt", "key", "value"):
            child = getattr(node, part, None)
            if child is not None:
                self.visit(child)
        for gen in node.generators:
            self.visit(gen.iter)
            for cond in gen.ifs:
                self.visit(cond)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for default in [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]:
            self.visit(default)  # the body is the lambda's own scope

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in [*node.decorator_list, *node.args.defaults]:
            self.visit(expr)
        for default in node.args.kw_defaults:
            if default is not None:
                self.visit(default)
        self.bind(node.name)
        self._body(node)

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        self.bind(node.name)
        self._body(node)

    def _body(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        """A function or class body binds module names only through ``global`` (declared
        anywhere inside it: nested scopes are counted with it, the safe side)."""
        declared = {name for sub in ast.walk(node) if isinstance(sub, ast.Global) for name in sub.names}
        if self.only is not None:
            declared |= self.only
        if declared:
            inner = _Binder(self.names, frozenset(declared))
            for stmt in node.body:
                inner.visit(stmt)


def _parse(code: str) -> ast.Module | None:
    """The cell as Python, after IPython's transforms (magics, ``!cmd``) when it needs them."""
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):
        pass
    try:  # only cells that aren't plain Python pay for this import
        from IPython.core.inputtransformer2 import TransformerManager

        return ast.parse(TransformerManager().transform_cell(code))
    except Exception:  # noqa: BLE001 - not Python either way: the kernel reports it
        return None


def cell_names(code: str) -> CellNames:
    """The module-level names ``code`` binds or deletes (see the module docstring).

    A cell that isn't valid Python binds nothing here: the kernel will refuse it with its
    own ``SyntaxError`` before anything runs.
    """
    names = CellNames()
    tree = _parse(code)
    if tree is None:
        names.parsed = False
        return names
    _Binder(names).visit(tree)
    return names


_SUFFIX = re.compile(r"_(\d+)$")


def alternative(name: str, taken: Collection[str]) -> str:
    """A name like ``name`` that is free in ``taken``: ``summary`` -> ``summary_2``,
    ``df_2`` -> ``df_3`` (the suffix counts on rather than stacking ``_2_2``)."""
    match = _SUFFIX.search(name)
    stem, n = (name[: match.start()], int(match.group(1)) + 1) if match and match.start() else (name, 2)
    while f"{stem}_{n}" in taken:
        n += 1
    return f"{stem}_{n}"


def alternatives(clashes: Iterable[str], taken: Collection[str]) -> dict[str, str]:
    """A distinct free alternative for each clashing name."""
    used = set(taken)
    out: dict[str, str] = {}
    for name in clashes:
        out[name] = alternative(name, used)
        used.add(out[name])
    return out


def _names(names: Iterable[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def refusal(renames: Mapping[str, str], star_imports: Iterable[str] = ()) -> tuple[str, str]:
    """(error value, observation) of a refused cell: what it would overwrite, what to use."""
    values, advice = [], []
    if renames:
        which = "variable" if len(renames) == 1 else "variables"
        values.append(f"the cell would overwrite the user's {which} {_names(renames)}")
        use = ", ".join(f"`{old}` -> `{new}`" for old, new in renames.items())
        advice.append(
            f"Use other names for what this cell creates, e.g. {use}. The user's variables "
            "may be read, never reassigned or deleted."
        )
    stars = [f"`from {m} import *`" for m in star_imports]
    if stars:
        values.append(f"{', '.join(stars)} could overwrite the user's variables")
        advice.append("Import the names you need explicitly, or the module under an alias.")
    value = "; ".join(values)
    observation = f"Error: {CLASH_ERROR}: {value}. The cell was NOT run; nothing changed. {' '.join(advice)}"
    return value, observation


def commented(code: str, value: str) -> str:
    """The source a refused cell keeps in the notebook: commented out, so re-running the
    notebook can never do what the run refused, with the reason on top."""
    lines = [f"# Not run by the analyst: {value}."]
    lines += [f"# {line}" if line.strip() else "#" for line in code.splitlines()]
    return "\n".join(lines)
