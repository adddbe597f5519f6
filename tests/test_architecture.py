"""The package's layering, checked on its imports (late imports inside functions count too).

- no import cycles between modules;
- shells stay thin: the CLI module is imported by nothing but ``__main__``, and the
  shells (cli, magic, server, eval.cli, training.collect) never import one another;
- no module imports another module's ``_private`` names;
- ``agent/`` stays free of tornado, jupyter_server and torch.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jupyter_analyst"
SHELLS = (
    "jupyter_analyst.cli",
    "jupyter_analyst.magic",
    "jupyter_analyst.server",
    "jupyter_analyst.eval.cli",
)
SHELLS_ALSO = ("jupyter_analyst.training.collect",)
ENTRY_POINTS = ("jupyter_analyst", "jupyter_analyst.__main__")
"""They hand out the shells (the server extension's and IPython's hooks, ``python -m``)."""


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = modules()


def imports(module: str) -> Iterator[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import in ``module``."""
    path = MODULES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub, None) if sub in MODULES else (target, alias.name)


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        for target, _ in imports(module):
            if target in MODULES and target not in (module, "jupyter_analyst"):
                graph.setdefault(module, set()).add(target)
    return graph


def shell_of(module: str) -> str | None:
    return next((s for s in SHELLS + SHELLS_ALSO if module == s or module.startswith(s + ".")), None)


def test_no_import_cycles() -> None:
    graph = edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in MODULES:
        if module not in index:
            visit(module)
    assert cycles == []


def test_shells_do_not_import_each_other_or_private_names() -> None:
    breaches = []
    for module in MODULES:
        mine = shell_of(module)
        for target, name in imports(module):
            if target not in MODULES:
                continue
            theirs = shell_of(target)
            if theirs is not None and theirs != mine and module not in ENTRY_POINTS:
                breaches.append(f"{module} imports the shell {target}")
            if name and name.startswith("_") and not name.startswith("__") and target != module:
                breaches.append(f"{module} imports {target}.{name}")
    assert breaches == []


def test_the_core_stays_free_of_servers_and_torch() -> None:
    heavy = ("tornado", "jupyter_server", "torch", "transformers", "peft")
    found = [
        f"{module} imports {target}"
        for module in MODULES
        if module.startswith(("jupyter_analyst.agent", "jupyter_analyst.session", "jupyter_analyst.kernel"))
        for target, _ in imports(module)
        if target.split(".")[0] in heavy
    ]
    assert found == []
