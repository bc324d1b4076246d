"""Pydantic's validation errors -> diagnostics with ``file:line:col``, a sentence and a hint.

Pydantic reports a ``loc`` path through its own model tree (union branches,
validator labels included); here that path is cleaned back to the path through
the data, which the loader's ``source.SourceMap`` turns into a position.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.model import Topology
from orchestrator.spec.phrases import did_you_mean, quote_boolean
from orchestrator.spec.source import PathKey, SourceMap

_IPC_VALUE_FIELDS = {"size", "mode", "value", "max_bytes", "key"}


def from_pydantic(exc: ValidationError, source: SourceMap) -> list[Diagnostic]:
    """One diagnostic per pydantic error, placed at the key or value it is about."""
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
        if kind == "extra_forbidden":
            key = str(loc[-1]) if loc else "?"
            allowed = _allowed_keys(loc[:-1])
            text = (f"unknown key '{key}' in {'.'.join(map(str, loc[:-1])) or 'the top level'}"
                    f"{did_you_mean(key, allowed)}")
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
        hint = _hint(kind, loc)
        if kind == "string_pattern_mismatch" and loc == ("name",):
            msg = ("a topology name uses lower-case letters, digits, '_' and '-', "
                   "starting with a letter or digit")
        elif kind.startswith(("int_", "float_", "string_", "bool_", "list_", "dict_", "model_",
                              "literal_")):
            got = err.get("input")
            shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
            written = source.written_boolean(*loc) if isinstance(got, bool) else None
            if written is not None:
                shown = _as_written(written, bool(got))
                if kind in ("string_type", "list_type"):
                    hint = quote_boolean(written, as_list=kind == "list_type")
            msg = f"{msg[0].lower()}{msg[1:]} (got {shown})"
        diags.append(Diagnostic.at(source.value(*loc), code, f"{where}: {msg}", hint))
    return diags


def _as_written(written: str, value: bool) -> str:
    """A value YAML read as a boolean, named as the file spells it: for `command: [yes]`,
    "got True" would not be what the user sees."""
    if written.lower() == str(value).lower():
        return f"the boolean {written}"
    if "$" in written:
        return f"{written}, which became the boolean {str(value).lower()}"
    return f"{written}, which YAML reads as the boolean {str(value).lower()}"


def _hint(kind: str, loc: PathKey) -> str:
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


def _clean_loc(loc: tuple[Any, ...], source: SourceMap) -> PathKey:
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


def _allowed_keys(loc: PathKey) -> list[str]:
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
