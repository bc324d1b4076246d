"""Whatever a file holds, validation only ever answers with diagnostics.

Valid topologies are mutated (keys renamed, values swapped for odd ones,
entries deleted or duplicated), their text is cut and spliced, and random
text is thrown in too. For each: no exception, no internal-error diagnostic,
the same diagnostics twice, and `topo validate` exits 0, 1 or 2 without a
traceback.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main
from orchestrator.spec import checks, links
from orchestrator.spec.checks import links as checks_links
from orchestrator.spec.checks.context import Context
from orchestrator.spec.diagnostics import Position
from orchestrator.spec.loader import load_text
from orchestrator.spec.source import SourceMap
from orchestrator.spec.validate import validate_file
from orchestrator.spec.yamltext import EventBuilder

ENV = {"TOPO_STATE_DIR": "/tmp/topo-fuzz", "WORKERS": "2"}
BUDGET = settings(max_examples=120, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SEEDS = ["""
name: rrbroker
vars: {WORKERS: 3}
defaults: {restart: on-failure, stop_timeout: 5s, env: {LOG: info}}
ipc:
  jobs: {type: msgqueue, key: auto, mode: 0o600, max_bytes: 16384}
  frame: {type: shm, size: 1MiB, key: 4242}
  room: {type: semaphore, value: 1, key: "ftok:/tmp:a"}
  results: {type: socketpair, between: [client, broker]}
  log: {type: fifo}
nodes:
  broker:
    role: proxy
    sockets:
      frontend: {type: ROUTER, bind: "tcp://127.0.0.1:*", options: {router_mandatory: 1}}
      backend: {type: DEALER, bind: ["ipc://backend", "inproc://b"]}
    ipc: [results]
  worker:
    run: examples.rr:worker
    replicas: ${WORKERS}
    sockets:
      jobs: {type: REP, connect: broker.backend@ipc}
    ipc: [frame, room, jobs]
  client:
    command: ["php", "client.php"]
    env: {GREETING: hello}
    sockets:
      server: {type: REQ, connect: broker.frontend}
    restart: never
    depends_on: [broker]
    ipc: [results]
""", """
security: {curve: true, allow: [client.key]}
nodes:
  pub:
    role: ticker
    with: {interval: 100ms, count: 3, topic: t, payload: "tick {n} from {node}"}
    sockets:
      out: {type: PUB, bind: ["tcp://*:5556", {endpoint: "ipc:///tmp/x.sock", external: true}]}
  sub:
    role: printer
    replicas: 2
    sockets:
      news: {type: SUB, connect: "tcp://localhost:5556", subscribe: ["t", ""]}
    depends_on: pub
  pair:
    command: prog --flag
    sockets:
      p: {type: PAIR, bind: "tcp://127.0.0.1:6000"}
      q: {type: PAIR, connect: pair.p}
      raw: {type: STREAM, bind: "tcp://127.0.0.1:6001"}
  echo:
    role: echo
    ready: {log: "ready", timeout: 2s}
    backoff: {initial: 100ms, factor: 2, max: 1s}
    sockets:
      in: {type: PULL, bind: "ipc://in"}
      out: {type: PUSH, connect: "ipc://in"}
"""]
SEED_DATA = [yaml.safe_load(s) for s in SEEDS]

ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70000), st.floats(allow_nan=True),
    st.sampled_from(["", "x", "a.b", "a.b@tcp", "a.b@zz", "broker.backend", "tcp://*:0",
                     "tcp://127.0.0.1:*", "tcp://:1", "tcp://[::1]:5", "ipc://", "ipc://*",
                     "inproc://b", "pgm://eth0;239.1.1.1:1", "udp://*:1", "${WORKERS}",
                     "${NOPE}", "${NOPE:?why}", "$$", "${", "1MiB", "0o777", "SIGKILL", "5s",
                     "PUB", "SUB", "ROUTER", "STREAM", "SERVER", "proxy", "echo", "printer",
                     "ticker", "msgqueue", "shm", "socketpair", "fifo", "semaphore",
                     "ftok:/tmp:a", "examples.rr:worker", "{n}{", "\x00", "é"]),
    st.lists(st.sampled_from(["a", "broker", "worker", "client", "pub", "sub", "", "frame"]),
             max_size=3),
    st.dictionaries(st.sampled_from(["type", "bind", "connect", "x", "size", "endpoint"]),
                    st.sampled_from(["PUB", "ipc://q", 1, None, "shm"]), max_size=3),
)
KEYS = st.sampled_from(["type", "bind", "connect", "role", "run", "command", "sockets", "ipc",
                        "replicas", "with", "options", "subscribe", "depends_on", "between",
                        "size", "value", "key", "mode", "nodes", "name", "vars", "bogus",
                        "security", "curve", "allow",
                        "sndhwm", "linger", "router_mandatory", "external", "endpoint", "a"])


def _containers(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if isinstance(data, dict | list) else []
    items = data.items() if isinstance(data, dict) else enumerate(data) \
        if isinstance(data, list) else []
    for k, v in items:
        found += _containers(v, path + (k,))
    return found


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        data = data[p]
    return data


@st.composite
def mutated(draw: st.DrawFn) -> str:
    data = copy.deepcopy(draw(st.sampled_from(SEED_DATA)))
    for _ in range(draw(st.integers(1, 4))):
        spots = _containers(data)
        target = _at(data, draw(st.sampled_from(spots)))
        if not target:
            continue
        if isinstance(target, dict):
            key = draw(st.sampled_from(sorted(target, key=str)))
        else:
            key = draw(st.integers(0, len(target) - 1))
        action = draw(st.sampled_from(["replace", "delete", "duplicate", "rename", "add"]))
        if action == "replace":
            target[key] = draw(ODD_VALUES)
        elif action == "delete":
            del target[key]
        elif action == "duplicate":
            if isinstance(target, dict):
                target[f"{key}2"] = copy.deepcopy(target[key])
            else:
                target.append(copy.deepcopy(target[key]))
        elif action == "rename" and isinstance(target, dict):
            target[draw(KEYS)] = target.pop(key)
        elif isinstance(target, dict):
            target[draw(KEYS)] = draw(ODD_VALUES)
        else:
            target.insert(key, draw(ODD_VALUES))
    return str(yaml.safe_dump(data, allow_unicode=True))


@st.composite
def spliced(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        text = text[:i] + draw(st.text(max_size=8)) + text[j:]
    return text


ENDPOINTS = ["tcp://127.0.0.1:7001", "tcp://*:7001", "tcp://localhost:7001", "tcp://0.0.0.0:7002",
             "tcp://127.0.0.1:7002", "tcp://127.0.0.1:*", "tcp://[::1]:7003", "ipc://a", "ipc://./a",
             "ipc:///tmp/fuzz.sock", "ipc://*", "inproc://a", "inproc://b", "tcp://127.0.0.1:0",
             "udp://*:7004", "bogus", "tcp://h:x"]


@st.composite
def wired(draw: st.DrawFn) -> str:
    """Small topologies whose sockets bind and connect every which way."""
    names = [f"n{i}" for i in range(draw(st.integers(1, 4)))]
    socks = {n: [f"s{j}" for j in range(draw(st.integers(1, 3)))] for n in names}
    refs = [f"{n}.{s}{at}" for n in names for s in socks[n] for at in ("", "@tcp", "@ipc")]
    targets = st.one_of(st.sampled_from(ENDPOINTS), st.sampled_from(refs))
    nodes: dict[str, Any] = {}
    for n in names:
        sockets: dict[str, Any] = {}
        for s in socks[n]:
            spec: dict[str, Any] = {"type": draw(st.sampled_from(
                ["PAIR", "PUB", "SUB", "REQ", "REP", "DEALER", "ROUTER", "PULL", "PUSH", "XPUB",
                 "XSUB", "STREAM"]))}
            binds = draw(st.lists(st.sampled_from(ENDPOINTS), max_size=2))
            connects: list[Any] = draw(st.lists(targets, max_size=2))
            if draw(st.booleans()) and connects:
                connects[0] = {"endpoint": connects[0], "external": True}
            if binds:
                spec["bind"] = binds
            if connects:
                spec["connect"] = connects
            if spec["type"] in ("SUB", "XSUB") and draw(st.booleans()):
                spec["subscribe"] = [""]
            sockets[s] = spec
        kind: dict[str, Any] = draw(st.sampled_from([{"command": ["prog"]}, {"run": "m:f"}]))
        nodes[n] = {**kind, "replicas": draw(st.integers(1, 3)), "sockets": sockets}
    doc: dict[str, Any] = {"nodes": nodes}
    if draw(st.booleans()):
        doc["security"] = {"curve": True}
    return str(yaml.safe_dump(doc))


RANDOM_TEXT = st.text(st.sampled_from(list("abc:-[]{}&*!|>'\"#%@`,? \n\t.$0123\\")), max_size=200)
ANY_TEXT = st.one_of(mutated(), wired(), spliced(), RANDOM_TEXT)


def _diagnose(text: str) -> list[Any]:
    loaded = load_text(text, "fuzz.yaml", ENV)
    diags = list(loaded.diagnostics)
    if loaded.topology is not None:
        diags += checks.check(loaded.topology, loaded.source, ENV)
    assert all(d.code != "E199" for d in diags), [d.format() for d in diags]
    for d in diags:
        assert d.line >= 1 and d.col >= 1 and d.message and d.hint and d.code[0] in "EWN"
    return diags


@BUDGET
@given(ANY_TEXT)
def test_only_diagnostics_and_always_the_same(text: str) -> None:
    assert _diagnose(text) == _diagnose(text)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(BUDGET, max_examples=60)
@given(text=ANY_TEXT, strict=st.booleans(), fmt=st.sampled_from(["text", "json"]))
def test_cli_never_shows_a_traceback(folder: Path, text: str, strict: bool, fmt: str) -> None:
    path = folder / "t.yaml"
    path.write_text(text, errors="surrogatepass")
    first = validate_file(path).diagnostics  # the environment main() sees
    assert first == validate_file(path).diagnostics
    out, err = io.StringIO(), io.StringIO()
    args = ["validate", str(path), "--format", fmt] + (["--strict"] if strict else [])
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    assert code in (0, 1, 2)
    assert "Traceback" not in out.getvalue() + err.getvalue()
    assert code == (1 if any(d.is_error or (strict and d.is_warning) for d in first) else 0) \
        or code == 2


def _plain(value: Any) -> Any:
    """What the loader makes of yaml.safe_load's output: string keys, basic scalars."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@BUDGET
@given(mutated())
def test_event_builder_reads_what_pyyaml_reads(text: str) -> None:
    text = text.replace("$", "S")  # interpolation aside
    builder = EventBuilder(SourceMap("f.yaml"))
    found, raw = builder.load(text, {})
    expected = _plain(yaml.safe_load(text))
    # NaN is not equal to itself; compare the text forms instead.
    assert found and repr(raw) == repr(expected)


def _marks(node: yaml.Node, path: tuple[Any, ...], keys: dict[Any, Any],
           values: dict[Any, Any]) -> None:
    """Where PyYAML's composer says each key and value starts, as the builder's two tables."""
    values[path] = Position("f.yaml", node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = str(yaml.safe_load(yaml.serialize(k)))
            keys[path + (key,)] = Position("f.yaml", k.start_mark.line + 1,
                                           k.start_mark.column + 1)
            _marks(v, path + (key,), keys, values)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _marks(item, path + (i,), keys, values)


@BUDGET
@given(mutated())
def test_event_builder_places_what_pyyaml_places(text: str) -> None:
    """Every key and value is recorded at the line and column the composer marks it with
    (mutated files have no aliases, merge keys or duplicate keys, which the composer
    would place differently)."""
    text = text.replace("$", "S")  # interpolation aside
    source = SourceMap("f.yaml")
    EventBuilder(source).load(text, {})
    keys: dict[Any, Any] = {}
    values: dict[Any, Any] = {}
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    assert root is not None
    _marks(root, (), keys, values)
    assert source.keys == keys
    assert source.values == values


@BUDGET
@given(wired())
def test_validator_checks_the_links_the_graph_draws(text: str) -> None:
    """Both come from links.resolve: the validator checks every link `topo graph` and `topo
    explain` show, and only those, or `topo graph` would draw an edge nobody checked."""
    loaded = load_text(text, "f.yaml", ENV)
    assert loaded.topology is not None, loaded.diagnostics
    ctx = Context(loaded.topology, loaded.source, ENV)
    rejected = {"E120", "E124", "E125", "E126"}  # endpoints the graph draws as written
    if rejected & {d.code for d in checks.check(loaded.topology, loaded.source, ENV)}:
        return
    checked = checks_links.collect_links(ctx)[0]
    drawn = [link for link in links.links(loaded.topology) if link.internal and not link.problem]
    assert checked == drawn
    for link in drawn:
        assert link.connector != link.binder and link.bind_endpoint is not None
        if "://" in link.endpoint:
            assert links.binds_match(link.bind_endpoint, link.endpoint)
