"""CURVE in the plan (spec/security.py via the planner): who may connect where, with which key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import RunError
from orchestrator.plan import Plan
from orchestrator.spec.planner import plan_run
from tests.spec.test_planner import FILE, RUN_DIR, Ports, sock, topo

KEYS = {name: f"{name[:1].upper()}" * 40 for name in
        ("broker", "worker", "client", "tool", "spy", "hub", "a", "b")}
OUTSIDE = "O" * 40


def curve_plan(nodes: dict[str, Any], allow: tuple[str, ...] = (), **top: Any) -> Plan:
    return plan_run(topo(nodes, security={"curve": True}, **top), FILE, "app", RUN_DIR,
                    environ={}, allocate_port=Ports(), curve_keys=KEYS, allow=allow)


NODES: dict[str, Any] = {
    "broker": {"role": "proxy", "sockets": {
        "frontend": {"type": "ROUTER", "bind": ["tcp://127.0.0.1:*", "inproc://front"]},
        "backend": {"type": "DEALER", "bind": "ipc://backend"}}},
    "worker": {"role": "echo", "replicas": 2, "sockets": {
        "jobs": {"type": "REP", "connect": "broker.backend"}}},
    "client": {"run": "m:f", "sockets": {
        "server": {"type": "REQ", "connect": ["broker.frontend@tcp",
                                              {"endpoint": "tcp://10.0.0.9:7000",
                                               "external": True}]}}},
    "tool": {"command": ["php", "tool.php"], "sockets": {
        "server": {"type": "REQ", "connect": "broker.frontend@tcp"}}},
}


def test_binders_allow_exactly_their_connectors_plus_outside_keys() -> None:
    p = curve_plan(NODES, allow=(OUTSIDE,))
    front, back = sock(p, "broker", "frontend"), sock(p, "broker", "backend")
    assert front.curve_server and back.curve_server
    assert front.allow == (KEYS["client"], KEYS["tool"], OUTSIDE)
    assert back.allow == (KEYS["worker"], OUTSIDE)  # one key for both replicas


def test_each_connect_gets_the_key_of_the_node_it_reaches_or_stays_plain() -> None:
    p = curve_plan(NODES)
    client = sock(p, "client", "server")
    assert client.connect[1] == "tcp://10.0.0.9:7000"
    assert client.serverkeys == (KEYS["broker"], "")  # the external peer: plain
    for i in (0, 1):
        assert sock(p, f"worker.{i}", "jobs").serverkeys == (KEYS["broker"],)
    assert not sock(p, "client", "server").curve_server


def test_a_socket_joined_to_two_nodes_gets_each_ones_key_and_inproc_stays_plain() -> None:
    nodes = {
        "a": {"run": "m:f", "sockets": {"out": {"type": "PUB", "bind": "ipc://a"}}},
        "b": {"run": "m:f", "sockets": {"out": {"type": "PUB", "bind": "tcp://127.0.0.1:5001"}}},
        "hub": {"run": "m:f", "sockets": {
            "in": {"type": "SUB", "subscribe": "", "connect": [
                "a.out", "tcp://localhost:5001", "inproc://mine"]},
            "mine": {"type": "PUB", "bind": "inproc://mine"}}},
    }
    p = curve_plan(nodes)
    hub = sock(p, "hub", "in")
    assert hub.connect == (f"ipc://{RUN_DIR}/a", "tcp://localhost:5001", "inproc://mine")
    assert hub.serverkeys == (KEYS["a"], KEYS["b"], "")
    assert not sock(p, "hub", "mine").curve_server  # inproc only: nothing to protect
    assert sock(p, "b", "out").allow == (KEYS["hub"],)


def test_command_nodes_get_key_paths_and_server_keys() -> None:
    p = curve_plan(NODES)
    tool = next(r for r in p.replicas if r.node == "tool")
    secret_file = f"{RUN_DIR}/keys/tool.key_secret"
    assert tool.curve_secret_file == secret_file and tool.curve_public_key == KEYS["tool"]
    assert tool.env["TOPO_CURVE_SECRET_FILE"] == secret_file
    assert tool.env["TOPO_CURVE_PUBLIC_KEY"] == KEYS["tool"]
    assert tool.env["TOPO_SOCKET_SERVER_SERVERKEY"] == KEYS["broker"]
    client = next(r for r in p.replicas if r.node == "client")
    assert client.env["TOPO_SOCKET_SERVER_SERVERKEY"] == f"{KEYS['broker']},"  # one per connect
    assert Plan.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_without_curve_nothing_changes() -> None:
    p = plan_run(topo(NODES), FILE, "app", RUN_DIR, environ={}, allocate_port=Ports())
    assert not p.curve
    for r in p.replicas:
        assert not r.curve_secret_file and not any(k.startswith("TOPO_CURVE") for k in r.env)
        assert all(not s.curve and not s.allow and not s.serverkeys for s in r.sockets)
    with pytest.raises(RunError, match="no keys"):
        plan_run(topo(NODES, security={"curve": True}), FILE, "app", RUN_DIR, environ={},
                 allocate_port=Ports())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "hub"]), st.sampled_from(["a", "b", "hub"]),
                          st.sampled_from(["ipc", "tcp", "inproc"])), max_size=8))
def test_every_allowed_key_is_a_connector_of_that_socket(links: list[tuple[str, str, str]]) -> None:
    """Whatever the wiring: a bind socket allows exactly the nodes whose connects reach it,
    and a connect carries its server's key unless it is inproc."""
    nodes: dict[str, Any] = {n: {"run": "m:f", "sockets": {}} for n in ("a", "b", "hub")}
    for n in nodes:
        nodes[n]["sockets"]["in"] = {"type": "PULL", "bind": [
            f"ipc://{n}", f"tcp://127.0.0.1:{6000 + len(n)}", f"inproc://{n}"]}
    wanted: dict[str, set[str]] = {n: set() for n in nodes}
    for i, (src, dst, transport) in enumerate(links):
        nodes[src]["sockets"][f"out{i}"] = {"type": "PUSH", "connect": f"{dst}.in@{transport}"}
        wanted[dst].add(src)
    p = curve_plan(nodes)
    for n in nodes:
        assert set(sock(p, n, "in").allow) == {KEYS[w] for w in wanted[n]}
    for i, (src, dst, transport) in enumerate(links):
        s = sock(p, src, f"out{i}")
        assert s.serverkeys == (() if transport == "inproc" else (KEYS[dst],))
