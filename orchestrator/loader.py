"""YAML text -> (Topology, SourceMap, diagnostics), keeping every source position.

PyYAML's composer gives a node tree with marks; we build plain Python values
from it ourselves so each key and value keeps its line and column, interpolate
``${VAR}`` in scalars, apply ``defaults:`` to every node, and only then hand the
data to pydantic. Pydantic's errors come back with a ``loc`` path, which the
SourceMap turns into ``file:line:col``.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .diagnostics import Diagnostic, Position
from .interpolate import InterpolationError, interpolate
from .model import NodeSettings, Topology, default_topology_name

PathKey = tuple[str | int, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class SourceMap:
    """Where each key and value of the file sits. Paths are tuples of keys and indices."""

    file: str
    keys: dict[PathKey, Position] = field(default_factory=dict)
    values: dict[PathKey, Position] = field(default_factory=dict)

    def value(self, *path: str | int) -> Position:
        """Position of the value at ``path``, or of its nearest ancestor that exists."""
        return self._nearest(self.values, tuple(path))

    def key(self, *path: str | int) -> Position:
        """Position of the key at ``path`` (its value's, for list items)."""
        p = tuple(path)
        while p:
            if p in self.keys:
                return self.keys[p]
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), Position(self.file, 1, 1))

    def _nearest(self, table: Mapping[PathKey, Position], path: PathKey) -> Position:
        while path:
            if path in table:
                return table[path]
            path = path[:-1]
        return table.get((), Position(self.file, 1, 1))

    def copy_subtree(self, src: PathKey, dst: PathKey) -> None:
        n = len(src)
        for table in (self.keys, self.values):
            for path, pos in list(table.items()):
                if path[:n] == src:
                    table.setdefault(dst + path[n:], pos)


@dataclass
class Loaded:
    topology: Topology | None
    source: SourceMap
    diagnostics: list[Diagnostic]
    raw: Any = None


class _Builder:
    def __init__(self, file: str, source: SourceMap):
        self.file = file
        self.source = source
        self.diags: list[Diagnostic] = []
        self.variables: Mapping[str, str] = {}
        self._loader = yaml.SafeLoader("")

    def pos(self, mark: yaml.Mark) -> Position:
        return Position(self.file, mark.line + 1, mark.column + 1)

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.source.values.setdefault(path, self.pos(node.start_mark))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    value = self.build(src, path)
                    if isinstance(value, dict):
                        for k, v in value.items():
                            merged.setdefault(k, v)
                continue
            key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str | int | float | bool) or key is None:
                self.diags.append(
                    Diagnostic.at(self.pos(key_node.start_mark), "E101",
                                  "a mapping key must be a plain word",
                                  "write keys as plain text, like `type:`")
                )
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                self.diags.append(
                    Diagnostic.at(self.pos(key_node.start_mark), "E101",
                                  f"duplicate key '{key}'",
                                  "a key may appear once in a mapping; the later one would silently win")
                )
                continue
            self.source.keys[path + (key,)] = self.pos(key_node.start_mark)
            result[key] = self.build(value_node, path + (key,))
        for k, v in merged.items():
            result.setdefault(k, v)
        return result

    def _scalar(self, node: yaml.Node, path: PathKey) -> Any:
        value = self._loader.construct_object(node, deep=True)
        if isinstance(value, str) and "$" in value and path[:1] != ("vars",):
            try:
                text = interpolate(value, self.variables)
            except InterpolationError as exc:
                self.diags.append(
                    Diagnostic.at(self.pos(node.start_mark), "E101", str(exc),
                                  "variables come from the environment and from vars:")
                )
                return value
            if node.style is None and text != value:
                # A plain scalar becomes what YAML would make of the substituted text,
                # so `replicas: ${WORKERS}` is an integer.
                tag = self._loader.resolve(yaml.ScalarNode, text, (True, False))
                return self._loader.construct_object(yaml.ScalarNode(tag, text), deep=True)
            return text
        if isinstance(value, bytes | bytearray):
            return value.decode("latin-1")
        if not isinstance(value, str | int | float | bool | type(None)):
            return str(value)  # timestamps and the like: keep the text
        return value


def load_text(text: str, file: str = "<string>", environ: Mapping[str, str] | None = None) -> Loaded:
    """Parse and check one topology file's text. Never raises for bad input."""
    source = SourceMap(file)
    environ = os.environ if environ is None else environ
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        return Loaded(None, source, [Diagnostic(file, line, col, "error", "E100",
                                                f"YAML syntax error: {problem}{context}",
                                                "check indentation, colons and quotes around this spot")])
    except yaml.YAMLError as exc:
        return Loaded(None, source, [Diagnostic(file, 1, 1, "error", "E100",
                                                f"YAML syntax error: {exc}", "")])
    except RecursionError:
        return Loaded(None, source, [Diagnostic(file, 1, 1, "error", "E100",
                                                "YAML nesting is too deep", "")])
    builder = _Builder(file, source)
    if root is None:
        return Loaded(None, source, [Diagnostic(file, 1, 1, "error", "E101", "the file is empty",
                                                "a topology needs at least a `nodes:` mapping")])
    # vars first, so every other scalar can be interpolated with them.
    variables: dict[str, str] = {}
    if isinstance(root, yaml.MappingNode):
        for key_node, value_node in root.value:
            if getattr(key_node, "value", None) == "vars" and isinstance(value_node, yaml.MappingNode):
                raw_vars = builder.build(value_node, ("vars",))
                variables = {str(k): _var_text(v) for k, v in raw_vars.items()}
    builder.variables = {**variables, **environ}
    try:
        raw = builder.build(root, ())
    except RecursionError:
        return Loaded(None, source, [Diagnostic(file, 1, 1, "error", "E100", "YAML nesting is too deep", "")])
    diags = builder.diags
    if not isinstance(raw, dict):
        diags.append(Diagnostic.at(source.value(), "E101", "a topology file must be a mapping",
                                   "start with `nodes:` at the top level"))
        return Loaded(None, source, diags, raw)
    raw.setdefault("name", default_topology_name(Path(file).stem))
    _apply_defaults(raw, source)
    try:
        topology = Topology.model_validate(raw)
    except ValidationError as exc:
        diags.extend(_from_pydantic(exc, source))
        return Loaded(None, source, diags, raw)
    except RecursionError:
        diags.append(Diagnostic(file, 1, 1, "error", "E101", "the file nests too deeply", ""))
        return Loaded(None, source, diags, raw)
    return Loaded(topology if not any(d.is_error for d in diags) else None, source, diags, raw)


def load_file(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Loaded:
    """Read and check a file. Raises ``OSError`` for a file that cannot be read."""
    p = Path(path)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Loaded(None, SourceMap(str(path)), [Diagnostic(str(path), 1, 1, "error", "E100",
                                                              f"the file is not UTF-8 text ({exc.reason})", "")])
    return load_text(text, str(path), environ)


def _var_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _apply_defaults(raw: dict[str, Any], source: SourceMap) -> None:
    defaults, nodes = raw.get("defaults"), raw.get("nodes")
    if not isinstance(defaults, dict) or not isinstance(nodes, dict):
        return
    for name, node in nodes.items():
        if not isinstance(node, dict):
            continue
        for key, value in defaults.items():
            if key not in NodeSettings.model_fields:
                continue  # reported once, at defaults
            if key == "env" and isinstance(value, dict) and isinstance(node.get("env"), dict):
                node["env"] = {**value, **node["env"]}
                source.copy_subtree(("defaults", "env"), ("nodes", name, "env"))
            elif key not in node:
                node[key] = value
                source.copy_subtree(("defaults", key), ("nodes", name, key))


# -- pydantic errors -> diagnostics ---------------------------------------------------------------

_IPC_VALUE_FIELDS = {"size", "mode", "value", "max_bytes", "key"}


def _from_pydantic(exc: ValidationError, source: SourceMap) -> list[Diagnostic]:
    diags = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(err["loc"], source)
        kind = err["type"]
        where = ".".join(str(p) for p in loc) or "the file"
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        elif msg.startswith("Assertion failed, "):
            msg = msg[len("Assertion failed, "):]
        hint = ""
        if kind == "extra_forbidden":
            key = str(loc[-1]) if loc else "?"
            allowed = _allowed_keys(loc[:-1])
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            text = f"unknown key '{key}' in {'.'.join(map(str, loc[:-1])) or 'the top level'}"
            if close:
                text += f"; did you mean '{close[0]}'?"
            hint = "allowed keys here: " + ", ".join(sorted(allowed)) if allowed else ""
            diags.append(Diagnostic.at(source.key(*loc), "E101", text, hint))
            continue
        if kind == "missing":
            pos = source.value(*loc[:-1])
            text = f"{'.'.join(map(str, loc[:-1])) or 'the top level'} is missing the required key '{loc[-1]}'"
            diags.append(Diagnostic.at(pos, "E101", text, f"add `{loc[-1]}:`"))
            continue
        code = "E101"
        if len(loc) >= 3 and loc[0] == "ipc" and loc[2] in _IPC_VALUE_FIELDS:
            code = "E130"
        if kind == "string_pattern_mismatch" and loc == ("name",):
            msg = "a topology name uses lower-case letters, digits, '_' and '-', starting with a letter or digit"
        elif kind.startswith(("int_", "float_", "string_", "bool_", "list_", "dict_", "model_", "literal_")):
            got = err.get("input")
            shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
            msg = f"{msg[0].lower()}{msg[1:]} (got {shown})"
        diags.append(Diagnostic.at(source.value(*loc), code, f"{where}: {msg}", _HINTS.get(kind, "")))
    return diags


_HINTS = {
    "literal_error": "pick one of the listed values",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "dict_type": "write a mapping of `key: value` lines",
    "list_type": "write a list, like `[a, b]`",
    "model_type": "write a mapping of `key: value` lines",
}


def _clean_loc(loc: tuple[Any, ...], source: SourceMap) -> tuple[str | int, ...]:
    """Drop pydantic's union-branch and validator labels, keeping the path through the data."""
    out: list[str | int] = []
    for part in loc:
        candidate = tuple(out) + (part,)
        if candidate in source.values or candidate in source.keys:
            out.append(part)
        elif isinstance(part, str) and part.startswith(("function-", "list[", "dict[", "str", "int",
                                                         "float", "bool", "literal[", "Endpoint",
                                                         "ReadySpec", "BackoffSpec", "none")):
            continue
        else:
            out.append(part)  # a missing or extra key: not in the data, still part of the path
    return tuple(out)


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    """The field names (by alias) of the model found at ``loc`` in the Topology model tree."""
    tp: Any = Topology
    for part in loc:
        tp = _descend(tp, part)
        if tp is None:
            return []
    model = _as_model(tp)
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _as_model(tp: Any) -> type[BaseModel] | None:
    """The model a field holds directly (through Optional / Annotated, not inside dict or list)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if typing.get_origin(tp) not in (typing.Annotated, typing.Union, types.UnionType):
        return None
    for arg in typing.get_args(tp):
        m = _as_model(arg)
        if m is not None:
            return m
    return None


def _descend(tp: Any, part: str | int) -> Any:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, f in tp.model_fields.items():
            if part in (name, f.alias):
                return f.annotation
        return None
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _descend(typing.get_args(tp)[0], part)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None) and (found := _descend(arg, part)) is not None:
                return found
        return None
    if origin is dict and isinstance(part, str):
        return typing.get_args(tp)[1]
    if origin is list and isinstance(part, int):
        return typing.get_args(tp)[0]
    return None
