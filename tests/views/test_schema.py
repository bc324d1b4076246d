"""`topo schema`: the JSON Schema of the file format, checked as JSON Schema 2020-12.

``jsonschema`` is a test dependency, not one of topo's: it checks the schema itself
and validates files with it, so none of these tests is skipped.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from orchestrator import units
from orchestrator.spec import zmqrules
from orchestrator.views.schema import DIALECT, json_schema, unhandled_validators
from tests.topo_samples import SPEC_EXAMPLE, TEACHING


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json_schema()


@functools.cache
def _validator() -> Any:
    return jsonschema.Draft202012Validator(json_schema())


@pytest.fixture()
def validator() -> Any:
    return _validator()


def test_head(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "topo topology file"
    assert schema["type"] == "object"
    assert schema["required"] == ["nodes"]  # name comes from the file stem
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"name", "description", "pythonpath", "vars",
                                         "defaults", "ipc", "security", "nodes"}
    json.dumps(schema)  # plain JSON all the way down


def test_every_model_validator_is_translated() -> None:
    assert unhandled_validators() == set()


def test_node_keys_use_the_file_names(schema: dict[str, Any]) -> None:
    node = schema["$defs"]["NodeSpec"]
    assert "with" in node["properties"] and "with_" not in node["properties"]
    assert node["oneOf"] == [{"required": ["role"]}, {"required": ["run"]},
                             {"required": ["command"]}]
    assert node["additionalProperties"] is False


def test_every_ref_resolves(schema: dict[str, Any]) -> None:
    refs: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "$ref" in value:
                refs.append(value["$ref"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(schema)
    assert refs
    for ref in refs:
        assert ref.startswith("#/$defs/") and ref.split("/")[-1] in schema["$defs"], ref


def test_is_valid_2020_12(validator: Any) -> None:
    type(validator).check_schema(validator.schema)


def test_accepts_the_spec_example(validator: Any) -> None:
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(SPEC_EXAMPLE))]
    assert errors == []


@pytest.mark.parametrize("path", TEACHING, ids=lambda p: p.stem)
def test_accepts_the_teaching_topologies(validator: Any, path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert [e.message for e in validator.iter_errors(data)] == []


def test_accepts_shorthands(validator: Any) -> None:
    data = yaml.safe_load("""
nodes:
  a:
    command: "php client.php --fast"
    backoff: 250ms
    stop_signal: INT
    stop_timeout: 2.5
    replicas: ${N}
    env: {PORT: 5555, DEBUG: true}
    ready: {command: "test -e x", timeout: 1m}
    sockets:
      s: {type: router, bind: "tcp://127.0.0.1:*", options: {router_mandatory: 1}}
      t: {type: SUB, connect: [a.s, {endpoint: "tcp://10.0.0.1:1", external: true}],
          subscribe: ""}
ipc:
  m: {type: shm, size: 1MiB, mode: "0o640"}
""")
    assert [e.message for e in validator.iter_errors(data)] == []


@pytest.mark.parametrize("bad", [
    "nodes: {a: {run: m:f, replica: 2}}",  # unknown key
    "nodes: {a: {run: m:f, role: echo}}",  # two kinds
    "nodes: {a: {replicas: 2}}",  # no kind
    "nodes: {a: {run: m:f, stop_timeout: soon}}",  # not a duration
    "nodes: {a: {run: m:f, sockets: {s: {type: REQ, options: {lingr: 0}}}}}",  # unknown option
    "nodes: {a: {run: m:f, sockets: {s: {type: REQ, bind: [{endpoint: x, extrnal: true}]}}}}",
    "nodes: {a: {run: m:f, ready: {tcp: 1, log: x}}}",  # two readiness checks
    "nodes: {a: {run: m:f, restart: sometimes}}",
    "ipc: {m: {type: pipe}}\nnodes: {a: {run: m:f}}",
    "ipc: {m: {type: shm, size: lots}}\nnodes: {a: {run: m:f}}",
    "name: x",  # no nodes
])
def test_rejects_mistakes(validator: Any, bad: str) -> None:
    assert list(validator.iter_errors(yaml.safe_load(bad)))


@given(st.one_of(st.from_regex(r"\s?\d{0,3}(\.\d{0,2})?\s?(ms|s|m|h|x|)?\s?", fullmatch=True),
                 st.text(alphabet="0123456789.mshx ", max_size=6)))
def test_duration_pattern_agrees_with_the_parser(text: str) -> None:
    data = {"nodes": {"a": {"run": "m:f", "stop_timeout": text}}}
    try:
        units.parse_duration(text)
        parsed = True
    except ValueError:
        parsed = False
    assert _validator().is_valid(data) == parsed, text


@given(st.text(alphabet="0123456789KMGiB ", max_size=7))
def test_size_pattern_agrees_with_the_parser(text: str) -> None:
    data = {"ipc": {"m": {"type": "shm", "size": text}}, "nodes": {"a": {"run": "m:f"}}}
    try:
        units.parse_size(text)
        parsed = True
    except ValueError:
        parsed = False
    assert _validator().is_valid(data) == parsed, text


def test_socket_types_and_options_are_offered(schema: dict[str, Any]) -> None:
    socket = schema["$defs"]["SocketSpec"]["properties"]
    assert {"enum": list(zmqrules.ALL_TYPES)} in socket["type"]["anyOf"]
    assert set(socket["options"]["propertyNames"]["enum"]) == set(zmqrules.SOCKET_OPTIONS)
