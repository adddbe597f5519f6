"""The contract between ``src/schema.ts`` and the Python wire schema, checked field by field.

The TypeScript file is written by hand (its doc comments are for the frontend's readers),
so instead of generating it this module reads it and compares it with what the server
really sends: the pydantic models of :mod:`jupyter_analyst.server.schema` (their JSON
schema) and the event frames of :func:`jupyter_analyst.agent.wire.event_to_dict`, plus the
``status`` frame of ``server/runs.py``. Both sides are reduced to one small type language
(string, number, boolean, null, string literals, arrays, tuples, inline objects and
references to interfaces), so a missing or extra field, a changed type, nullability,
optionality or literal union shows up as one readable line.

The event side has no declared schema, so it is found by running ``event_to_dict`` on
every event dataclass built with each kind of value its annotations allow (``None`` for
an optional field, every member of a ``Literal`` or enum). A string in a frame counts as
a literal only when it is one of those ``Literal``/enum values (or the frame's ``type``);
any other string, copied from a ``str`` field or computed, is ``string``.

    python tests/schema_ts.py [path/to/schema.ts]

prints the differences (none: exit 0). ``tests/test_schema_contract.py`` runs the same check.
It lives with the tests: a development check, not part of the installed package.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

Atom = Any
"""One member of a union: ``"string"``, ``"number"``, ``"boolean"``, ``"null"``, ``"'lit'"``,
``"ref:Name"``, or a tuple ``("array", T)``, ``("tuple", (T, ...))``, ``("object", fields)``."""

Type = frozenset[Atom]
"""A union of atoms (a single type is a one-atom union)."""

Fields = dict[str, tuple[bool, Type]]
"""Field name -> (optional, type)."""

STRING, NUMBER, BOOLEAN, NULL = "string", "number", "boolean", "null"
EVENT_UNION = "RunEvent"
"""The TypeScript union that must list exactly the event interfaces."""

SCHEMA_TS = Path(__file__).resolve().parents[1] / "src" / "schema.ts"


class SchemaSyntaxError(ValueError):
    """``schema.ts`` uses syntax this reader doesn't know; failing beats silently skipping it."""


# ---- the type language ---------------------------------------------------------------------


def union(*types_: Iterable[Atom]) -> Type:
    """The union of several types, merging arrays (and same-keyed objects) into one atom."""
    atoms: set[Atom] = set()
    for t in types_:
        atoms.update(t)
    arrays = [a for a in atoms if isinstance(a, tuple) and a[0] == "array"]
    if len(arrays) > 1:
        atoms -= set(arrays)
        atoms.add(("array", union(*(a[1] for a in arrays))))
    objects: dict[frozenset[str], list[Atom]] = {}
    for a in atoms:
        if isinstance(a, tuple) and a[0] == "object":
            objects.setdefault(frozenset(name for name, _, _ in a[1]), []).append(a)
    for same in objects.values():
        if len(same) > 1:
            atoms -= set(same)
            merged: Fields = {}
            for obj in same:
                for name, optional, t in obj[1]:
                    prev = merged.get(name, (False, frozenset()))
                    merged[name] = (prev[0] or optional, union(prev[1], t))
            atoms.add(_object(merged))
    return frozenset(atoms)


def _object(fields: Fields) -> Atom:
    return ("object", frozenset((name, opt, t) for name, (opt, t) in fields.items()))


def _literal(value: str) -> Atom:
    return "'" + value + "'"


def render(t: Type) -> str:
    """TypeScript-like text of a type, members sorted, for messages."""
    if not t:
        return "never"
    return " | ".join(sorted((_render_atom(a) for a in t), key=lambda text: (text == NULL, text)))


def _render_atom(a: Atom) -> str:
    if isinstance(a, str):
        return a[4:] if a.startswith("ref:") else a
    kind, inner = a
    if kind == "array":
        text = render(inner)
        return f"({text})[]" if len(inner) > 1 else f"{text}[]"
    if kind == "tuple":
        return "[" + ", ".join(render(t) for t in inner) + "]"
    body = "; ".join(f"{n}{'?' if o else ''}: {render(t)}" for n, o, t in sorted(inner, key=lambda x: x[0]))
    return "{ " + body + " }"


# ---- reading schema.ts ----------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s+|//[^\n]*|/\*.*?\*/|(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
    r"""|(?P<num>\d+(?:\.\d+)?)|(?P<id>[A-Za-z_$][\w$]*)|(?P<punct>=>|[{}\[\]()<>:;,|?=&.*+\-!/%])""",
    re.S,
)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise SchemaSyntaxError(f"line {line}: cannot read {text[pos : pos + 20]!r}")
        pos = m.end()
        if m.lastgroup:
            out.append(m.group(m.lastgroup))
    return out


@dataclass
class TsSchema:
    """What ``schema.ts`` declares: interfaces (fields as written) and type aliases."""

    interfaces: dict[str, Fields] = field(default_factory=dict)
    aliases: dict[str, Type] = field(default_factory=dict)


class _Parser:
    """A reader for the declaration subset a wire-types file uses; anything else is an error."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, k: int = 0) -> str:
        return self.toks[self.i + k] if self.i + k < len(self.toks) else ""

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if not tok or (expected is not None and tok != expected):
            raise SchemaSyntaxError(
                f"expected {expected or 'more'!r}, found {tok or 'the end'!r} near {self._near()}"
            )
        self.i += 1
        return tok

    def _near(self) -> str:
        return " ".join(self.toks[max(0, self.i - 4) : self.i + 4])

    def skip_balanced(self, open_: str, close: str) -> None:
        self.take(open_)
        depth = 1
        while depth:
            tok = self.take()
            depth += (tok == open_) - (tok == close)

    def parse(self) -> TsSchema:
        out = TsSchema()
        while self.peek():
            if self.peek() == "export":
                self.take()
            word = self.take()
            if word == "interface":
                name = self.take()
                if self.peek() != "{":
                    raise SchemaSyntaxError(f"interface {name}: only plain `interface X {{ ... }}` is read")
                if name in out.interfaces or name in out.aliases:
                    raise SchemaSyntaxError(f"{name} is declared twice")
                out.interfaces[name] = self.members()
            elif word == "type":
                name = self.take()
                self.take("=")
                if name in out.interfaces or name in out.aliases:
                    raise SchemaSyntaxError(f"{name} is declared twice")
                out.aliases[name] = self.type_()
                self.take(";")
            elif word in ("const", "let", "import"):
                while self.peek() != ";":  # a value, not a type: skip to the end of the statement
                    tok = self.take()
                    if tok in ("{", "[", "("):
                        self.i -= 1
                        self.skip_balanced(tok, {"{": "}", "[": "]", "(": ")"}[tok])
                self.take(";")
            elif word == "function":
                self.take()
                self.skip_balanced("(", ")")
                if self.peek() == ":":
                    self.take()
                    self.type_()
                self.skip_balanced("{", "}")
            else:
                raise SchemaSyntaxError(f"unexpected {word!r} at the top level near {self._near()}")
        return out

    def members(self) -> Fields:
        self.take("{")
        fields: Fields = {}
        while self.peek() != "}":
            if self.peek() == "readonly":
                self.take()
            name = self.take()
            if not re.fullmatch(r"[A-Za-z_$][\w$]*", name):
                raise SchemaSyntaxError(f"only named fields are read, not {name!r} near {self._near()}")
            optional = self.peek() == "?"
            if optional:
                self.take()
            self.take(":")
            if name in fields:
                raise SchemaSyntaxError(f"field {name} is declared twice near {self._near()}")
            fields[name] = (optional, self.type_())
            if self.peek() in (";", ","):
                self.take()
        self.take("}")
        return fields

    def type_(self) -> Type:
        if self.peek() == "|":
            self.take()
        parts = [self.postfix()]
        while self.peek() == "|":
            self.take()
            parts.append(self.postfix())
        return union(*parts)

    def postfix(self) -> Type:
        t = self.primary()
        while self.peek() == "[" and self.peek(1) == "]":
            self.take()
            self.take()
            t = frozenset({("array", t)})
        return t

    def primary(self) -> Type:
        tok = self.take()
        if tok in (STRING, NUMBER, BOOLEAN, NULL):
            return frozenset({tok})
        if tok[0] in "'\"":
            return frozenset({_literal(tok[1:-1])})
        if tok == "(":
            t = self.type_()
            self.take(")")
            return t
        if tok == "[":
            items = [self.type_()]
            while self.peek() == ",":
                self.take()
                items.append(self.type_())
            self.take("]")
            return frozenset({("tuple", tuple(items))})
        if tok == "{":
            self.i -= 1
            return frozenset({_object(self.members())})
        if re.fullmatch(r"[A-Za-z_$][\w$]*", tok):
            if self.peek() == "<":
                self.take()
                arg = self.type_()
                self.take(">")
                if tok not in ("Array", "ReadonlyArray"):
                    raise SchemaSyntaxError(f"generic type {tok}<...> is not read")
                return frozenset({("array", arg)})
            return frozenset({"name:" + tok})
        raise SchemaSyntaxError(f"unexpected {tok!r} in a type near {self._near()}")


def py_name(ts_interface: str) -> str:
    """The Python model name of a TS interface: ``IRunStatus`` -> ``RunStatus``."""
    return ts_interface[1:] if re.fullmatch(r"I[A-Z]\w*", ts_interface) else ts_interface


def parse_ts(text: str) -> TsSchema:
    """``schema.ts`` with alias names expanded and interface names turned into references."""
    raw = _Parser(text).parse()

    def resolve(t: Type, seen: tuple[str, ...] = ()) -> Type:
        out: list[Type] = []
        for a in t:
            if isinstance(a, str) and a.startswith("name:"):
                name = a[5:]
                if name in raw.aliases:
                    if name in seen:
                        raise SchemaSyntaxError(f"type alias {name} refers to itself")
                    out.append(resolve(raw.aliases[name], (*seen, name)))
                elif name in raw.interfaces:
                    out.append(frozenset({"ref:" + py_name(name)}))
                else:
                    raise SchemaSyntaxError(f"unknown type {name}")
            elif isinstance(a, tuple) and a[0] == "array":
                out.append(frozenset({("array", resolve(a[1], seen))}))
            elif isinstance(a, tuple) and a[0] == "tuple":
                out.append(frozenset({("tuple", tuple(resolve(x, seen) for x in a[1]))}))
            elif isinstance(a, tuple) and a[0] == "object":
                out.append(frozenset({_object({n: (o, resolve(x, seen)) for n, o, x in a[1]})}))
            else:
                out.append(frozenset({a}))
        return union(*out)

    return TsSchema(
        {
            name: {f: (o, resolve(t)) for f, (o, t) in fields.items()}
            for name, fields in raw.interfaces.items()
        },
        {name: resolve(t, (name,)) for name, t in raw.aliases.items()},
    )


# ---- the Python side ----------------------------------------------------------------------


@dataclass
class PySchema:
    """What the server sends: model fields, event frames (by ``type``) and literal aliases."""

    models: dict[str, Fields] = field(default_factory=dict)
    events: dict[str, Fields] = field(default_factory=dict)
    aliases: dict[str, Type] = field(default_factory=dict)
    mirrored: frozenset[str] = frozenset()
    """Aliases schema.ts must declare under the same name (those of ``server/schema.py``)."""


def _from_json_schema(s: dict[str, Any], defs: dict[str, Any]) -> Type:
    if "$ref" in s:
        name = s["$ref"].rsplit("/", 1)[-1]
        target = defs[name]
        return frozenset({"ref:" + name}) if "properties" in target else _from_json_schema(target, defs)
    if "anyOf" in s:
        return union(*(_from_json_schema(x, defs) for x in s["anyOf"]))
    if "const" in s or "enum" in s:
        values = [s["const"]] if "const" in s else s["enum"]
        if not all(isinstance(v, str) for v in values):
            raise TypeError(f"only string literals are mirrored, not {values}")
        return frozenset(_literal(v) for v in values)
    kind = s.get("type")
    if kind == "string":
        return frozenset({STRING})
    if kind in ("integer", "number"):
        return frozenset({NUMBER})
    if kind in ("boolean", "null"):
        return frozenset({kind})
    if kind == "array" and "prefixItems" in s:
        return frozenset({("tuple", tuple(_from_json_schema(x, defs) for x in s["prefixItems"]))})
    if kind == "array" and "items" in s:
        return frozenset({("array", _from_json_schema(s["items"], defs))})
    raise TypeError(f"no TypeScript mirror for the JSON schema {s}")


def model_fields(model: Any) -> Fields:
    """A pydantic model's fields as the wire sees them; a field with a default may be left out."""
    schema = model.model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    return {
        name: (name not in required, _from_json_schema(prop, defs))
        for name, prop in schema.get("properties", {}).items()
    }


_MARK = "\x00plain-string"
"""The value every plain ``str`` field gets, so copies of it read as ``string``."""


def _samples(tp: Any, literals: set[str]) -> list[Any]:
    """One value of each kind ``tp`` allows (the first is the baseline); Literal values go to ``literals``."""
    origin = typing.get_origin(tp)
    if tp is str:
        return [_MARK]
    if tp is bool:
        return [True]
    if tp is int:
        return [1]
    if tp is float:
        return [1.5]
    if tp is type(None):
        return [None]
    if origin is Literal or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        values = list(typing.get_args(tp)) if origin is Literal else list(tp)
        literals.update(v.value if isinstance(v, enum.Enum) else v for v in values)
        return values
    if origin in (Union, types.UnionType):
        return [v for arg in typing.get_args(tp) for v in _samples(arg, literals)]
    if origin is list:
        return [[v] for v in _samples(typing.get_args(tp)[0], literals)]
    if origin is dict:
        return [{}]
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return list(instances(tp, literals))
    raise TypeError(f"cannot build a sample of {tp!r}")


def instances(cls: type, literals: set[str]) -> Iterator[Any]:
    """``cls`` built with baseline values, then once more for every other kind of each field.

    Varying one field at a time is enough for a serializer that maps fields to keys; every
    ``Literal``/enum value met is added to ``literals``.
    """
    hints = typing.get_type_hints(cls)
    options = {f.name: _samples(hints[f.name], literals) for f in dataclasses.fields(cls) if f.init}
    base = {name: values[0] for name, values in options.items()}
    yield cls(**base)
    for name, values in options.items():
        for value in values[1:]:
            yield cls(**{**base, name: value})


def json_type(value: Any, literals: Iterable[str] = ()) -> Type:
    """The type of one JSON value; a string is a literal only when it is one of ``literals``.

    So a copied ``str`` field (it carries ``_MARK``) and a string computed from other values
    both read as ``string``, and a ``Literal``/enum value as itself.
    """
    if value is None:
        return frozenset({NULL})
    if isinstance(value, bool):
        return frozenset({BOOLEAN})
    if isinstance(value, int | float):
        return frozenset({NUMBER})
    if isinstance(value, str):
        literal = _MARK not in value and value in set(literals)
        return frozenset({_literal(value) if literal else STRING})
    if isinstance(value, list | tuple):
        return frozenset({("array", union(*(json_type(v, literals) for v in value)))})
    if isinstance(value, dict):
        return frozenset({_object({k: (False, json_type(v, literals)) for k, v in value.items()})})
    raise TypeError(f"not a JSON value: {value!r}")


def frame_fields(frames: Iterable[dict[str, Any]], literals: Iterable[str] = ()) -> dict[str, Fields]:
    """Fields of each frame ``type`` (always a literal): the union over the frames of that type;
    a key some of them lack is optional."""
    known = set(literals)
    seen: dict[str, list[dict[str, Any]]] = {}
    for frame in frames:
        seen.setdefault(frame["type"], []).append(frame)
    out: dict[str, Fields] = {}
    for kind, group in seen.items():
        names = {k for f in group for k in f}
        out[kind] = {
            name: (
                any(name not in f for f in group),
                union(*(json_type(f[name], known | {kind}) for f in group if name in f)),
            )
            for name in names
        }
    return out


def alias_type(value: Any) -> Type | None:
    """The literal union of a ``Literal[...]`` or a string enum class (None for anything else)."""
    if typing.get_origin(value) is Literal:
        return frozenset(_literal(v) for v in typing.get_args(value))
    if isinstance(value, type) and issubclass(value, enum.Enum):
        return frozenset(_literal(m.value) for m in value)
    return None


def _literal_aliases(module: Any) -> dict[str, Type]:
    """The module's own ``Literal`` aliases and enums, by name."""
    out: dict[str, Type] = {}
    for name, value in vars(module).items():
        own = not isinstance(value, type) or value.__module__ == module.__name__
        if own and (t := alias_type(value)) is not None:
            out[name] = t
    return out


def python_schema(
    models: Iterable[Any] | None = None,
    to_dict: Callable[[Any], dict[str, Any]] | None = None,
    aliases: dict[str, Any] | None = None,
) -> PySchema:
    """The server's side of the contract; the arguments replace parts of it (tests mutate them).

    ``models``: pydantic classes (default: every model of ``server/schema.py``);
    ``to_dict``: the event serializer (default ``event_to_dict``); ``aliases``: name ->
    ``Literal`` or enum, merged over those found in ``server/schema.py`` and ``agent/types.py``.
    """
    from pydantic import BaseModel

    from jupyter_analyst.agent import types as agent_types
    from jupyter_analyst.agent.wire import event_to_dict
    from jupyter_analyst.server import schema

    if models is None:
        models = [
            v
            for v in vars(schema).values()
            if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == schema.__name__
        ]
    to_dict = to_dict or event_to_dict
    literals: set[str] = set()
    frames = [to_dict(e) for cls in typing.get_args(agent_types.Event) for e in instances(cls, literals)]
    events = frame_fields(frames, literals)
    # server/runs.py: Run.emit_status sends {"type": "status", "status": RunStatus.model_dump()}
    events["status"] = {
        "type": (False, frozenset({_literal("status")})),
        "status": (False, frozenset({"ref:RunStatus"})),
    }
    # server/runs.py adds copy_of to a cell_executed frame whose cell the user edited mid-run
    events["cell_executed"]["copy_of"] = (True, frozenset({STRING}))
    mirrored = _literal_aliases(schema)
    found = {**_literal_aliases(agent_types), **mirrored}
    for name, value in (aliases or {}).items():
        t = alias_type(value)
        if t is None:
            raise TypeError(f"{name} is not a Literal or an enum")
        found[name] = t
    return PySchema({m.__name__: model_fields(m) for m in models}, events, found, frozenset(mirrored))


# ---- the comparison -------------------------------------------------------------------------


def _compare_fields(where: str, ts: Fields, py: Fields) -> Iterator[str]:
    for name in sorted(set(py) - set(ts)):
        yield f"{where}.{name}: missing in schema.ts (Python sends {render(py[name][1])})"
    for name in sorted(set(ts) - set(py)):
        yield f"{where}.{name}: in schema.ts but not sent by the server"
    for name in sorted(set(ts) & set(py)):
        (ts_opt, ts_type), (py_opt, py_type) = ts[name], py[name]
        if ts_type != py_type:
            yield f"{where}.{name}: schema.ts says {render(ts_type)}, Python sends {render(py_type)}"
        if ts_opt != py_opt:
            yield (
                f"{where}.{name}: {'optional' if ts_opt else 'required'} in schema.ts, "
                f"{'may be left out' if py_opt else 'always present'} in Python"
            )


def _event_kind(fields: Fields) -> str | None:
    """The ``type`` literal of an event interface (None for an interface that isn't one)."""
    optional, t = fields.get("type", (True, frozenset()))
    (atom,) = t if len(t) == 1 else (None,)
    if optional or not isinstance(atom, str) or not atom.startswith("'"):
        return None
    return atom[1:-1]


def compare(ts: TsSchema, py: PySchema) -> list[str]:
    """Every disagreement between the two sides, one line each (empty: they agree)."""
    problems: list[str] = []
    by_model = {py_name(name): name for name in ts.interfaces}
    by_event = {kind: name for name, f in ts.interfaces.items() if (kind := _event_kind(f)) is not None}
    matched: set[str] = set()
    for model, fields in sorted(py.models.items()):
        ts_name = by_model.get(model)
        if ts_name is None or ts_name in by_event.values():
            problems.append(f"interface I{model} (pydantic model {model}) is missing in schema.ts")
            continue
        matched.add(ts_name)
        problems += _compare_fields(ts_name, ts.interfaces[ts_name], fields)
    for kind, fields in sorted(py.events.items()):
        ts_name = by_event.get(kind)
        if ts_name is None:
            problems.append(f"no interface in schema.ts has type: '{kind}' (a frame the server sends)")
            continue
        matched.add(ts_name)
        problems += _compare_fields(ts_name, ts.interfaces[ts_name], fields)
    for name in sorted(set(ts.interfaces) - matched):
        problems.append(f"interface {name} in schema.ts matches no pydantic model and no event frame")
    wanted = frozenset("ref:" + py_name(by_event[k]) for k in py.events if k in by_event)
    have = ts.aliases.get(EVENT_UNION)
    if have is None:
        problems.append(f"schema.ts has no {EVENT_UNION} union of the event interfaces")
    elif have != wanted:
        problems.append(
            f"{EVENT_UNION} in schema.ts is {render(have)}, but the server sends {render(wanted)}"
        )
    for name, t in sorted(ts.aliases.items()):
        if name == EVENT_UNION or not all(isinstance(a, str) and a.startswith("'") for a in t):
            continue
        if name not in py.aliases:
            problems.append(f"type {name} in schema.ts has no Literal or enum of that name in Python")
        elif py.aliases[name] != t:
            problems.append(
                f"type {name}: schema.ts says {render(t)}, Python says {render(py.aliases[name])}"
            )
    for name in sorted(py.mirrored - set(ts.aliases)):
        problems.append(f"type {name} (a Literal of server/schema.py) is missing in schema.ts")
    return problems


def check(ts_text: str | None = None, py: PySchema | None = None) -> list[str]:
    """Compare ``ts_text`` (default: ``src/schema.ts``) with ``py`` (default: the real server)."""
    text = SCHEMA_TS.read_text(encoding="utf-8") if ts_text is None else ts_text
    try:
        ts = parse_ts(text)
    except SchemaSyntaxError as exc:
        return [f"schema.ts could not be read: {exc}"]
    return compare(ts, py if py is not None else python_schema())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else SCHEMA_TS
    problems = check(path.read_text(encoding="utf-8"))
    for line in problems:
        print(line)
    if not problems:
        print(f"{path} agrees with the Python wire schema")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
