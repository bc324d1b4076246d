"""YAML text -> (Topology, SourceMap, diagnostics), keeping every source position.

``loader_yaml`` builds plain Python values from the YAML event stream so each
key and value keeps its line and column, and interpolates ``${VAR}`` in
scalars; here we apply ``defaults:`` to every node, and only then hand the
data to pydantic. Pydantic's errors come back with a ``loc`` path, which the
SourceMap turns into ``file:line:col``.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .diagnostics import Diagnostic, Position
from .loader_yaml import EventBuilder, YamlError
from .model import NodeSettings, Topology, default_topology_name

PathKey = tuple[str | int, ...]


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
        self.paste(self.subtree(src), dst)

    def subtree(self, src: PathKey) -> list[tuple[dict[PathKey, Position], PathKey, Position]]:
        """Every position at or under ``src``, relative to it (one pass over the map)."""
        n = len(src)
        return [(table, path[n:], pos) for table in (self.keys, self.values)
                for path, pos in table.items() if path[:n] == src]

    def paste(self, entries: list[tuple[dict[PathKey, Position], PathKey, Position]],
              dst: PathKey) -> None:
        for table, rel, pos in entries:
            table.setdefault(dst + rel, pos)


@dataclass
class Loaded:
    topology: Topology | None
    source: SourceMap
    diagnostics: list[Diagnostic]
    raw: Any = None


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Loading builds hundreds of thousands of small acyclic objects; the cyclic collector
    would scan them again and again for nothing (a third of the time on 10,000 nodes)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_text(
    text: str, file: str = "<string>", environ: Mapping[str, str] | None = None
) -> Loaded:
    """Parse and check one topology file's text. Never raises for bad input."""
    with paused_gc():
        return _load_text(text, file, environ)


def _load_text(text: str, file: str, environ: Mapping[str, str] | None) -> Loaded:
    source = SourceMap(file)
    environ = os.environ if environ is None else environ
    builder = EventBuilder(file, source.keys, source.values)
    try:
        found, raw = builder.load(text, environ)
    except YamlError as exc:
        return Loaded(None, source, [Diagnostic.at(exc.pos, "E100", exc.message, exc.hint)])
    if not found:
        return Loaded(None, source, [Diagnostic(file, 1, 1, "error", "E101", "the file is empty",
                                                "a topology needs at least a `nodes:` mapping")])
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
        # A value the loader already reported (say, a failed ${VAR}) needs no second error.
        taken = {(d.line, d.col) for d in diags}
        diags.extend(d for d in _from_pydantic(exc, source) if (d.line, d.col) not in taken)
        return Loaded(None, source, diags, raw)
    except RecursionError:
        diags.append(Diagnostic(file, 1, 1, "error", "E101", "the file nests too deeply",
                                "flatten the nested lists and mappings"))
        return Loaded(None, source, diags, raw)
    return Loaded(topology if not any(d.is_error for d in diags) else None, source, diags, raw)


def load_file(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Loaded:
    """Read and check a file. Raises ``OSError`` for a file that cannot be read."""
    p = Path(path)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        diag = Diagnostic(str(path), 1, 1, "error", "E100",
                          f"the file is not UTF-8 text ({exc.reason})", "save the file as UTF-8")
        return Loaded(None, SourceMap(str(path)), [diag])
    return load_text(text, str(path), environ)


def _apply_defaults(raw: dict[str, Any], source: SourceMap) -> None:
    defaults, nodes = raw.get("defaults"), raw.get("nodes")
    if not isinstance(defaults, dict) or not isinstance(nodes, dict):
        return
    # Positions under defaults: are gathered once, so applying them stays linear in the nodes.
    under: dict[str, list[Any]] = {key: [] for key in defaults}
    for table in (source.keys, source.values):
        for path, pos in table.items():
            if len(path) >= 2 and path[0] == "defaults" and path[1] in under:
                under[path[1]].append((table, path[1:], pos))
    for name, node in nodes.items():
        if not isinstance(node, dict):
            continue
        for key, value in defaults.items():
            if key not in NodeSettings.model_fields:
                continue  # reported once, at defaults
            if key == "env" and isinstance(value, dict) and isinstance(node.get("env"), dict):
                node["env"] = {**value, **node["env"]}
                source.paste(under[key], ("nodes", name))
            elif key not in node:
                node[key] = value
                source.paste(under[key], ("nodes", name))


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
            where = ".".join(map(str, loc[:-1])) or "the top level"
            text = f"{where} is missing the required key '{loc[-1]}'"
            diags.append(Diagnostic.at(pos, "E101", text, f"add `{loc[-1]}:`"))
            continue
        code = "E101"
        if len(loc) >= 3 and loc[0] == "ipc" and loc[2] in _IPC_VALUE_FIELDS:
            code = "E130"
        if kind == "string_pattern_mismatch" and loc == ("name",):
            msg = ("a topology name uses lower-case letters, digits, '_' and '-', "
                   "starting with a letter or digit")
        elif kind.startswith(("int_", "float_", "string_", "bool_", "list_", "dict_", "model_",
                              "literal_")):
            got = err.get("input")
            shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
            msg = f"{msg[0].lower()}{msg[1:]} (got {shown})"
        diags.append(Diagnostic.at(source.value(*loc), code, f"{where}: {msg}",
                                   _hint(kind, loc)))
    return diags


def _hint(kind: str, loc: tuple[str | int, ...]) -> str:
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    return _HINTS.get(kind) or _FIELD_HINTS.get(field) or (
        f"see the `{field}:` entry in the topology format (`topo schema`)" if field
        else "see the topology format (`topo schema`)")


_FIELD_HINTS = {
    "size": "write a number of bytes or a size like 64KiB, 1MiB, 1GiB",
    "max_bytes": "write a number of bytes or a size like 64KiB, 1MiB, 1GiB",
    "mode": "write permission bits in octal, like 0o600",
    "key": "write auto, a positive integer, or ftok:PATH:CHAR",
    "stop_signal": "write a signal name like SIGTERM or SIGINT",
    "name": "use lower-case letters, digits, '_' and '-'",
    "run": "write module:function, like examples.rr:worker",
}
for _duration in ("stop_timeout", "restart_window", "timeout", "initial", "max"):
    _FIELD_HINTS[_duration] = "write a duration like 250ms, 5s or 1m"

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
