"""The loader: YAML text to a Topology, with every diagnostic at the right line and column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

import orchestrator.spec.yamltext as ly
from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.loader import Loaded, load_file, load_text


def load(text: str, env: dict[str, str] | None = None) -> Loaded:
    return load_text(textwrap.dedent(text).lstrip("\n"), "f.yaml", env or {})


def only(loaded: Loaded) -> Diagnostic:
    assert len(loaded.diagnostics) == 1, [d.format() for d in loaded.diagnostics]
    return loaded.diagnostics[0]


def test_a_good_file() -> None:
    loaded = load("""
        name: demo
        nodes:
          a:
            command: prog --flag
            sockets:
              s: {type: pull, bind: "ipc://a"}
        """)
    assert loaded.diagnostics == []
    assert loaded.topology is not None
    node = loaded.topology.nodes["a"]
    assert node.command == ["prog", "--flag"]
    assert node.sockets["s"].type == "PULL"
    assert loaded.source.value("nodes", "a", "sockets", "s", "bind") == \
        loaded.source.value("nodes", "a", "sockets", "s", "bind", 0)


def test_unknown_key_points_at_the_key_with_did_you_mean() -> None:
    d = only(load("""
        nodes:
          a:
            command: [prog]
            replicsa: 2
        """))
    assert (d.code, d.line, d.col) == ("E101", 4, 5)
    assert "did you mean 'replicas'" in d.message
    assert "replicas" in d.hint


def test_wrong_type_points_at_the_value() -> None:
    d = only(load("""
        nodes:
          a:
            command: [prog]
            replicas: many
        """))
    assert (d.code, d.line, d.col) == ("E101", 4, 15)
    assert "nodes.a.replicas" in d.message and d.hint


def test_missing_field_points_at_the_parent() -> None:
    d = only(load("""
        nodes:
          a:
            command: [prog]
            sockets:
              s: {bind: "ipc://a"}
        """))
    assert (d.code, d.line, d.col) == ("E101", 5, 10)
    assert "missing the required key 'type'" in d.message


def test_nested_value_error_in_a_list() -> None:
    d = only(load("""
        nodes:
          a:
            command: [prog]
            sockets:
              s:
                type: PULL
                bind:
                  - ipc://a
                  - {endpoint: ipc://b, external: maybe}
        """))
    assert (d.line, d.col) == (9, 43)


def test_duplicate_keys() -> None:
    d = only(load("""
        nodes:
          a: {command: [prog]}
          a: {command: [other]}
        """))
    assert (d.code, d.line, d.col) == ("E101", 3, 3)
    assert "duplicate key 'a'" in d.message


def test_yaml_syntax_error_position() -> None:
    d = only(load("""
        nodes:
          a:
            command: "unterminated
        """))
    assert d.code == "E100" and d.line >= 3 and "YAML syntax error" in d.message


@pytest.mark.parametrize(("text", "code"), [
    ("", "E101"),
    ("- a\n- b\n", "E101"),
    ("a: 1\n---\nb: 2\n", "E100"),
    ("nodes: *nothing\n", "E100"),
    ("nodes: {a: {command: !!python/object:os.system x}}\n", "E101"),
    ("[" * 5000, "E100"),
    ("[" * 700 + "]" * 700, "E100"),
    ("nodes: {}\n", "E101"),
    ("nodes: {a.b: {command: x}}\n", "E101"),
    ("nodes: \ud800\n", "E100"),
    ("nodes: \x00\n", "E100"),
    ('nodes: {a: {command: "\\ud800"}}', "E100"),
], ids=lambda v: repr(v)[:30])
def test_bad_files(text: str, code: str) -> None:
    loaded = load_text(text, "f.yaml", {})
    assert loaded.topology is None
    assert code in [d.code for d in loaded.diagnostics]


def test_defaults_are_applied_and_positioned() -> None:
    loaded = load("""
        defaults:
          restart: always
          stop_timeout: 2s
          env: {A: "1", B: "1"}
        nodes:
          a:
            command: [prog]
            env: {B: "2"}
          b:
            command: [prog]
            restart: never
        """)
    assert loaded.topology is not None
    a, b = loaded.topology.nodes["a"], loaded.topology.nodes["b"]
    assert (a.restart, a.stop_timeout, a.env) == ("always", 2.0, {"A": "1", "B": "2"})
    assert (b.restart, b.env) == ("never", {"A": "1", "B": "1"})
    # a default is reported where it is written
    assert loaded.source.value("nodes", "a", "restart").line == 2
    assert loaded.source.value("nodes", "b", "restart").line == 11


def test_bad_default_is_reported_at_defaults() -> None:
    loaded = load("""
        defaults:
          restart: sometimes
        nodes:
          a: {command: [prog]}
        """)
    assert {(d.line, d.col) for d in loaded.diagnostics} >= {(2, 12)}


def test_interpolation_makes_plain_scalars_typed() -> None:
    loaded = load("""
        vars:
          N: 3
          HOST: 127.0.0.1
        nodes:
          a:
            command: [prog, "${HOST}"]
            replicas: ${N}
            env: {QUOTED: "${N}", ESC: $$HOME}
        """, {"HOST": "localhost"})
    assert loaded.topology is not None, loaded.diagnostics
    a = loaded.topology.nodes["a"]
    assert a.replicas == 3 and isinstance(a.replicas, int)
    assert a.command == ["prog", "localhost"]
    assert a.env == {"QUOTED": "3", "ESC": "$HOME"}


def test_interpolation_errors_point_at_the_value() -> None:
    d = only(load("""
        nodes:
          a:
            command: [prog]
            replicas: ${WORKERS:?set WORKERS to the pool size}
        """))
    assert (d.code, d.line, d.col) == ("E101", 4, 15)
    assert "set WORKERS to the pool size" in d.message


def test_anchors_and_merge_keys() -> None:
    loaded = load("""
        nodes:
          a: &base
            command: [prog]
            env: {X: "${V:-1}"}
          b:
            <<: *base
            replicas: 2
          c:
            <<: [*base]
            command: [other]
        """)
    assert loaded.topology is not None, loaded.diagnostics
    nodes = loaded.topology.nodes
    assert nodes["b"].env == {"X": "1"} and nodes["b"].replicas == 2
    assert nodes["c"].command == ["other"] and nodes["c"].env == {"X": "1"}
    assert loaded.source.value("nodes", "b", "env", "X").line == 4


def test_alias_bombs_are_refused() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 12):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    loaded = load_text("\n".join(lines), "f.yaml", {})
    assert loaded.topology is None
    assert any("aliases" in d.message for d in loaded.diagnostics)


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "My Topology.yaml"
    path.write_text("nodes: {a: {command: [prog]}}\n")
    loaded = load_file(path, {})
    assert loaded.topology is not None and loaded.topology.name == "my-topology"
    path.write_bytes(b"nodes: \xff\n")
    assert load_file(path, {}).diagnostics[0].code == "E100"


def test_c_and_python_parsers_agree_on_positions() -> None:
    text = "nodes:\n  a:\n    command: [prog]\n    sockets:\n      s: {type: PULL}\n"
    fast = load_text(text, "f.yaml", {})
    saved = ly._PARSER
    try:
        ly._PARSER = yaml.SafeLoader
        slow = load_text(text, "f.yaml", {})
    finally:
        ly._PARSER = saved
    assert fast.source == slow.source


@pytest.mark.parametrize(("value", "message"), [
    ('!!timestamp "soon"', "cannot read 'soon' as tag:yaml.org,2002:timestamp"),
    ('!!binary "a"', "cannot read 'a' as tag:yaml.org,2002:binary: failed to decode base64"),
    ('!!int "x"', "cannot read 'x' as tag:yaml.org,2002:int"),
    ("!!bool maybe", "cannot read 'maybe' as tag:yaml.org,2002:bool"),
    ("!!float x", "cannot read 'x' as tag:yaml.org,2002:float"),
    ("!!python/name:os.system x", "unsupported YAML tag tag:yaml.org,2002:python/name:os.system"),
])
def test_a_tagged_scalar_that_cannot_be_read_is_e101_at_the_value(value: str,
                                                                  message: str) -> None:
    d = only(load(f"""
        nodes:
          a:
            command: [prog]
            with: {{k: {value}}}
        """))
    assert (d.code, d.line, d.col) == ("E101", 4, 15)
    assert d.message.startswith(message) and "line" not in d.message
