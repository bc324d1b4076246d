"""`topo schema`: the JSON Schema (draft 2020-12) of the topology file, for editors.

It is pydantic's schema of ``model.Topology`` with what the model accepts
*before* its validators normalise a value written back in: durations as
``"5s"``, sizes as ``"1MiB"``, modes as ``"0o600"``, signals by name, one
endpoint or a list, an endpoint as a plain string, a command as one string,
and ``${VAR}`` anywhere a number or a boolean goes. Every before-validator the
model uses must be known here: ``unhandled_validators`` lists the ones that
are not, and a test keeps that list empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from orchestrator import units
from orchestrator.spec import zmqrules
from orchestrator.spec.model import Topology

DIALECT = "https://json-schema.org/draft/2020-12/schema"
TITLE = "topo topology file"

Json = dict[str, Any]

VARIABLE: Json = {"type": "string", "pattern": r"\$\{", "description": "a ${VAR} reference"}


def _number_or_text(number: Json, pattern: str, description: str, *more: Json) -> Json:
    """A value the file may write as a number or as text in ``pattern``."""
    return {"anyOf": [number, {"type": "string", "pattern": pattern}, *more],
            "description": description}


DURATION = _number_or_text(
    {"type": "number", "minimum": 0}, units.DURATION_PATTERN,
    "a duration: seconds, or a number with ms, s, m, h (250ms, 5s, 1m)", VARIABLE)
SIZE = _number_or_text(
    {"type": "integer", "minimum": 1}, r"^\s*0*[1-9]\d*\s*(B|KiB|MiB|GiB|KB|MB|GB|K|M|G)?\s*$",
    "a size in bytes, or with KiB, MiB, GiB (64KiB, 1MiB)", VARIABLE)
MODE = _number_or_text(
    {"type": "integer", "minimum": 0, "maximum": 0o777}, r"^\s*(0[oO])?[0-7]{1,4}\s*$",
    "permission bits in octal: 0o600", VARIABLE)
SIGNAL = _number_or_text(
    {"type": "integer", "minimum": 1}, r"^\s*([Ss][Ii][Gg])?[A-Za-z0-9+-]+\s*$",
    "a signal by name (SIGTERM, TERM) or number")
SCALAR_TEXT: Json = {"type": ["string", "number", "boolean"]}

# Before-validators by qualified name -> the schema of what the file may hold there,
# given the schema pydantic made of the value after the validator.
_BEFORE: dict[str, Callable[[JsonSchemaValue], JsonSchemaValue]] = {
    "orchestrator.units.parse_duration": lambda _inner: dict(DURATION),
    "orchestrator.units.parse_size": lambda _inner: dict(SIZE),
    "orchestrator.units.parse_mode": lambda _inner: dict(MODE),
    "orchestrator.units.parse_signal": lambda _inner: dict(SIGNAL),
    "orchestrator.spec.model._to_str": lambda _inner: dict(SCALAR_TEXT),
    "orchestrator.spec.model._one_or_many": lambda inner: {
        "anyOf": [inner.get("items", {}), inner, {"type": "null"}]},
    "orchestrator.spec.model.Endpoint._from_string": lambda inner: {
        "anyOf": [{"type": "string", "description": "an endpoint (tcp://127.0.0.1:*, ipc://name) "
                   "or, for connect, a reference node.socket[@tcp|@ipc]"}, inner]},
    "orchestrator.spec.model.BackoffSpec._shorthand": lambda inner: {
        "anyOf": [DURATION, inner], "description": "an initial delay, or {initial, factor, max}"},
    "orchestrator.spec.model.NodeSpec._split": lambda inner: {
        "anyOf": [{"type": "string", "description": "split like a shell does"}, inner]},
    "orchestrator.spec.model.ReadySpec._split": lambda inner: {
        "anyOf": [{"type": "string", "description": "split like a shell does"}, inner]},
    "orchestrator.spec.model.SocketSpec._upper": lambda _inner: {
        "type": "string", "anyOf": [{"enum": list(zmqrules.ALL_TYPES)}, {"type": "string"}],
        "description": "a ZeroMQ socket type, any case"},
}

_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "Topology": {
        "name": "the topology's name; default: the file stem",
        "description": "one sentence that says what the topology does",
        "pythonpath": "folders, relative to this file, where `run` modules are imported from",
        "vars": "defaults for ${VAR}; the environment overrides them",
        "defaults": "node keys applied to every node that does not set them",
        "ipc": "IPC resources, created before any node starts",
        "nodes": "the processes of the topology, by name",
    },
    "NodeSpec": {
        "role": "a built-in role: proxy, echo, printer, ticker",
        "run": "a Python function to call in a forked process: module:function",
        "command": "a program to exec: a list of strings, or one string split like a shell",
        "with": "the role's parameters",
        "replicas": "how many identical processes: node.0, node.1, ...",
        "depends_on": "nodes that must be ready before this one starts",
        "ipc": "names of the ipc: resources this node uses",
        "sockets": "the node's ZeroMQ sockets, by name",
    },
    "SocketSpec": {
        "bind": "where this socket waits for peers: one endpoint or a list",
        "connect": "where this socket goes: endpoints or node.socket references",
        "subscribe": "topic prefixes (SUB, XSUB); \"\" means everything",
        "options": "ZeroMQ socket options by their pyzmq names, lower case",
    },
    "NodeSettings": {
        "restart": "when topo starts the node again after it ends",
        "stop_timeout": "how long after stop_signal before SIGKILL",
        "ready": "when the node counts as ready, for depends_on",
    },
}


class _TopoSchema(GenerateJsonSchema):
    """Pydantic's generator, with the file's shorthands and ``${VAR}`` put back in."""

    unhandled: set[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unhandled = set()

    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema
                               ) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        func = schema["function"]["function"]
        name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"
        if name in _BEFORE:
            return _BEFORE[name](inner)
        self.unhandled.add(name)
        return inner

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        return {"anyOf": [super().int_schema(schema), VARIABLE]}

    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        return {"anyOf": [super().float_schema(schema), VARIABLE]}

    def bool_schema(self, schema: core_schema.BoolSchema) -> JsonSchemaValue:
        return {"anyOf": [super().bool_schema(schema), VARIABLE]}


def _generate() -> tuple[Json, set[str]]:
    generator = _TopoSchema(by_alias=True)
    schema = generator.generate(Topology.__pydantic_core_schema__, mode="validation")
    return schema, generator.unhandled


def unhandled_validators() -> set[str]:
    """Before-validators of the model that the schema does not translate (should be empty)."""
    return _generate()[1]


def json_schema() -> Json:
    """The JSON Schema of a topology file, as a dict ready for ``json.dumps``."""
    body, _ = _generate()
    defs = body.get("$defs", {})
    # The loader fills in `name` from the file stem, so the file need not have it.
    body["required"] = [r for r in body.get("required", []) if r != "name"]
    for model, fields in _DESCRIPTIONS.items():
        props = defs.get(model, body if model == "Topology" else {}).get("properties", {})
        for field, text in fields.items():
            if field in props:
                props[field]["description"] = text
    node = defs.get("NodeSpec", {})
    node["oneOf"] = [{"required": [k]} for k in ("role", "run", "command")]
    node.setdefault("description", "a node: exactly one of role, run or command")
    ready = defs.get("ReadySpec", {})
    ready["oneOf"] = [{"required": [k]} for k in ("tcp", "ipc", "file", "log", "command")]
    # Show defaults the way a file writes them, not as the numbers they become.
    _set_default(defs, "IpcSpec", "mode", "0o600")
    for model in ("NodeSettings", "NodeSpec"):
        _set_default(defs, model, "stop_signal", "SIGTERM")
        _set_default(defs, model, "stop_timeout", "5s")
        _set_default(defs, model, "restart_window", "1m")
    socket_options = defs.get("SocketSpec", {}).get("properties", {}).get("options")
    if socket_options is not None:
        socket_options["propertyNames"] = {"enum": sorted(zmqrules.SOCKET_OPTIONS)}
    for definition in defs.values():
        _push_object_keywords(definition)
    body.pop("title", None)
    return {
        "$schema": DIALECT,
        "title": TITLE,
        "description": "A topo topology: nodes (processes), their ZeroMQ sockets and the IPC "
                       "resources they share. See `topo validate` for the checks a schema "
                       "cannot express.",
        **body,
    }


def _set_default(defs: Json, model: str, field: str, value: object) -> None:
    prop = defs.get(model, {}).get("properties", {}).get(field)
    if prop is not None and "default" in prop:
        prop["default"] = value


def _push_object_keywords(definition: Json) -> None:
    """Move model-level object keywords into the object branch of a shorthand ``anyOf``.

    Pydantic puts ``additionalProperties`` next to the ``anyOf`` that a model's
    before-validator made; there it would forbid every key, since the outer
    schema has no ``properties`` of its own.
    """
    branches = definition.get("anyOf")
    if not branches or "additionalProperties" not in definition:
        return
    extra = definition.pop("additionalProperties")
    for branch in branches:
        if branch.get("type") == "object":
            branch.setdefault("additionalProperties", extra)
