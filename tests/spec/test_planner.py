"""The planner: a topology in, every endpoint, folder and variable of the run out (no I/O)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import RunError
from orchestrator.plan import Plan
from orchestrator.spec.model import Topology
from orchestrator.spec.planner import dependency_tiers, plan_run, socket_env_name
from orchestrator.spec.run_endpoints import connectable, free_tcp_port
from orchestrator.structs import fields

FILE = Path("/srv/topos/app.yaml")
RUN_DIR = Path("/run/user/1000/topo/app")


class Ports:
    """A fake allocator: counts up from 20000 and remembers what it was asked."""

    def __init__(self, start: int = 20000, repeat: int = 1):
        self.hosts: list[str] = []
        self._ports: Iterator[int] = itertools.chain.from_iterable(
            itertools.repeat(p, repeat) for p in itertools.count(start)
        )

    def __call__(self, host: str) -> int:
        self.hosts.append(host)
        return next(self._ports)


def topo(nodes: dict[str, Any], **top: Any) -> Topology:
    return Topology.model_validate({"name": "app", "nodes": nodes, **top})


def plan(nodes: dict[str, Any], ports: Callable[[str], int] | None = None, **top: Any) -> Plan:
    return plan_run(topo(nodes, **top), FILE, "app", RUN_DIR, environ={},
                    allocate_port=ports or Ports())


def sock(p: Plan, name: str, socket_name: str) -> Any:
    node, _, replica = name.partition(".")
    r = next(r for r in p.replicas if r.node == node and r.replica == int(replica or 0))
    return next(s for s in r.sockets if s.name == socket_name)


BROKER = {
    "broker": {
        "role": "proxy",
        "sockets": {
            "frontend": {"type": "router", "bind": "tcp://127.0.0.1:*"},
            "backend": {"type": "DEALER", "bind": ["ipc://backend", "tcp://*:0"]},
        },
    },
}


# -- endpoints ------------------------------------------------------------------------------------


def test_wildcard_tcp_binds_get_ports_from_the_allocator() -> None:
    ports = Ports()
    p = plan(BROKER, ports)
    assert sock(p, "broker", "frontend").bind == ("tcp://127.0.0.1:20000",)
    assert sock(p, "broker", "backend").bind == (f"ipc://{RUN_DIR}/backend", "tcp://*:20001")
    assert ports.hosts == ["127.0.0.1", "*"]
    assert sock(p, "broker", "frontend").type == "ROUTER"


def test_references_resolve_to_connectable_endpoints_with_transport_filter() -> None:
    def connecting(kind: str, ref: str) -> dict[str, Any]:
        return {"run": "m:f", "sockets": {"s": {"type": kind, "connect": ref}}}

    p = plan({**BROKER,
              "client": connecting("REQ", "broker.frontend"),
              "w1": connecting("REP", "broker.backend"),
              "w2": connecting("REP", "broker.backend@tcp"),
              "w3": connecting("REP", "broker.backend@ipc")})
    assert sock(p, "client", "s").connect == ("tcp://127.0.0.1:20000",)
    # `*` is every interface when binding; a peer on this machine connects to loopback.
    assert sock(p, "w1", "s").connect == (f"ipc://{RUN_DIR}/backend", "tcp://127.0.0.1:20001")
    assert sock(p, "w2", "s").connect == ("tcp://127.0.0.1:20001",)
    assert sock(p, "w3", "s").connect == (f"ipc://{RUN_DIR}/backend",)


def test_replicas_bind_their_own_endpoints_and_connectors_reach_all() -> None:
    p = plan({
        "worker": {"run": "m:f", "replicas": 3,
                   "sockets": {"out": {"type": "PUSH", "bind": ["ipc://out", "tcp://127.0.0.1:*"]}}},
        "sink": {"run": "m:f", "replicas": 2,
                 "sockets": {"in": {"type": "PULL", "connect": "worker.out@ipc"},
                             "lit": {"type": "PULL", "connect": "ipc://out"}}},
    })
    binds = [sock(p, f"worker.{i}", "out").bind for i in range(3)]
    assert binds == [(f"ipc://{RUN_DIR}/out.{i}", f"tcp://127.0.0.1:{20000 + i}") for i in range(3)]
    expected = tuple(f"ipc://{RUN_DIR}/out.{i}" for i in range(3))
    for i in range(2):
        assert sock(p, f"sink.{i}", "in").connect == expected
        # A literal path reaches every replica too.
        assert sock(p, f"sink.{i}", "lit").connect == expected


def test_ipc_and_inproc_forms() -> None:
    p = plan({
        "a": {"run": "m:f", "sockets": {
            "abs": {"type": "PUB", "bind": "ipc:///tmp/elsewhere.sock"},
            "abstract": {"type": "PUB", "bind": "ipc://@hidden"},
            "wild": {"type": "PUB", "bind": "ipc://*"},
            "nested": {"type": "PUB", "bind": "ipc://sub/dir/x"},
            "inp": {"type": "PAIR", "bind": "inproc://pipe", "connect": "inproc://pipe"},
        }},
        "b": {"run": "m:f", "sockets": {
            "s": {"type": "SUB", "subscribe": "", "connect": ["a.wild", "a.abs", "ipc://rel",
                                                            "tcp://example.org:5555"]}}},
    })
    assert sock(p, "a", "abs").bind == ("ipc:///tmp/elsewhere.sock",)
    assert sock(p, "a", "abstract").bind == ("ipc://@hidden",)
    assert sock(p, "a", "wild").bind == (f"ipc://{RUN_DIR}/a.wild",)
    assert sock(p, "a", "nested").bind == (f"ipc://{RUN_DIR}/sub/dir/x",)
    assert sock(p, "a", "inp").bind == sock(p, "a", "inp").connect == ("inproc://pipe",)
    assert sock(p, "b", "s").connect == (f"ipc://{RUN_DIR}/a.wild", "ipc:///tmp/elsewhere.sock",
                                         f"ipc://{RUN_DIR}/rel", "tcp://example.org:5555")


def test_literal_ports_are_never_handed_out_and_duplicates_are_skipped() -> None:
    ports = Ports(start=7000, repeat=2)  # 7000 is taken by a literal bind; every port comes twice
    p = plan({"a": {"run": "m:f", "replicas": 2, "sockets": {
        "fixed": {"type": "PUB", "bind": "tcp://127.0.0.1:7000"},
        "wild": {"type": "PUB", "bind": "tcp://127.0.0.1:*"},
    }}}, ports)
    assert [sock(p, f"a.{i}", "wild").bind for i in range(2)] == [
        ("tcp://127.0.0.1:7001",), ("tcp://127.0.0.1:7002",)]
    assert sock(p, "a.1", "fixed").bind == ("tcp://127.0.0.1:7000",)


def test_an_allocator_stuck_on_one_port_is_an_error() -> None:
    with pytest.raises(RunError, match="kept returning ports"):
        plan({"a": {"run": "m:f", "replicas": 2,
                    "sockets": {"s": {"type": "PUB", "bind": "tcp://127.0.0.1:*"}}}},
             lambda host: 5000)


@pytest.mark.parametrize(("ref", "message"), [
    ("nobody.s", "not a socket of the topology"),
    ("a.nothing", "not a socket of the topology"),
    ("a.s@ipc", "binds no ipc endpoint"),
    ("a.c", "binds no endpoint"),
])
def test_unresolvable_references_are_errors_with_a_sentence(ref: str, message: str) -> None:
    with pytest.raises(RunError, match=message):
        plan({"a": {"run": "m:f", "sockets": {"s": {"type": "PUB", "bind": "tcp://127.0.0.1:*"},
                                              "c": {"type": "PUB", "connect": "tcp://h:1"}}},
              "b": {"run": "m:f", "sockets": {"s": {"type": "SUB", "connect": ref}}}})


def test_connectable() -> None:
    assert connectable("tcp://*:5") == "tcp://127.0.0.1:5"
    assert connectable("tcp://0.0.0.0:5") == "tcp://127.0.0.1:5"
    assert connectable("tcp://[::]:5") == "tcp://[::1]:5"
    assert connectable("tcp://10.0.0.1:5") == "tcp://10.0.0.1:5"
    assert connectable("ipc:///x") == "ipc:///x"


# -- the rest of a replica ------------------------------------------------------------------------


def test_replica_fields_env_and_paths() -> None:
    p = plan({
        "cli": {"command": "php client.php --n 3", "env": {"GREETING": "hello"}, "cwd": "../work",
                "stop_signal": "SIGINT", "ipc": ["frame"],
                "sockets": {"in-jobs": {"type": "DEALER", "bind": "ipc://jobs",
                                        "connect": "tcp://127.0.0.1:9"}}},
        "tick": {"role": "ticker", "with": {"count": 3}, "cwd": "/abs",
                 "sockets": {"out": {"type": "PUB", "bind": "tcp://*:*",
                                     "options": {"sndhwm": 5}}}},
        "sub": {"run": "pkg.mod:main", "sockets": {"s": {"type": "SUB", "subscribe": ["a", ""],
                                                          "connect": "tick.out"}}},
    })
    cli, tick, sub = p.replicas
    assert cli.kind == "command" and cli.argv == ("php", "client.php", "--n", "3")
    assert cli.cwd == "/srv/work" and tick.cwd == "/abs" and sub.cwd == "/srv/topos"
    assert cli.stop_signal == signal.SIGINT and tick.stop_signal == signal.SIGTERM
    assert cli.ipc == ("frame",)
    assert tick.kind == "role" and tick.role == "ticker" and tick.params == {"count": 3}
    assert sub.kind == "run" and sub.run == "pkg.mod:main"
    assert cli.log_path == f"{RUN_DIR}/logs/cli.0.log"
    assert cli.spec_path == f"{RUN_DIR}/spec/cli.0.json"
    # A forked node has its plan in memory: no spec file is written for it.
    assert tick.spec_path == sub.spec_path == ""
    assert "TOPO_SPEC" not in tick.env and "TOPO_SPEC" not in sub.env
    assert cli.env == {
        "GREETING": "hello",
        "TOPO_RUN": "app", "TOPO_NODE": "cli", "TOPO_REPLICA": "0", "TOPO_RUN_DIR": str(RUN_DIR),
        "TOPO_SPEC": cli.spec_path,
        "TOPO_SOCKET_IN_JOBS": f"ipc://{RUN_DIR}/jobs,tcp://127.0.0.1:9",
        "TOPO_SOCKET_IN_JOBS_TYPE": "DEALER",
        "TOPO_SOCKET_IN_JOBS_MODE": "bind,connect",
        "TOPO_SOCKET_IN_JOBS_BIND": f"ipc://{RUN_DIR}/jobs",
        "TOPO_SOCKET_IN_JOBS_CONNECT": "tcp://127.0.0.1:9",
    }
    assert "PATH" not in sub.env  # the spawner merges the supervisor's environment, not the plan
    assert sub.env["TOPO_SOCKET_S"] == "tcp://127.0.0.1:20000"
    assert sub.env["TOPO_SOCKET_S_MODE"] == "connect"
    assert tick.env["TOPO_SOCKET_OUT"] == "tcp://*:20000"
    assert sock(p, "sub", "s").subscribe == ("a", "")
    assert sock(p, "tick", "out").options == {"sndhwm": 5}


def test_plan_level_facts_and_pythonpath() -> None:
    p = plan(BROKER)
    assert (p.run_id, p.run_dir, p.file) == ("app", str(RUN_DIR), str(FILE))
    assert p.pythonpath == tuple(dict.fromkeys(["/srv/topos", os.getcwd()]))
    assert p.ipc == {}
    p = plan(BROKER, pythonpath=[".", "../lib", "/opt/x", "~/py"])
    assert p.pythonpath == ("/srv/topos", "/srv/lib", "/opt/x", "/srv/topos/~/py")
    home = plan_run(topo(BROKER, pythonpath=["~/py"]), FILE, "app", RUN_DIR,
                    environ={"HOME": "/home/me"}, allocate_port=Ports())
    assert home.pythonpath == ("/home/me/py",)


def test_plan_survives_a_json_round_trip() -> None:
    p = plan({**BROKER, "w": {"command": ["x"], "replicas": 2, "ipc": ["q"], "with": {"a": [1]},
                              "ready": {"log": "^up$"},
                              "sockets": {"s": {"type": "REP", "connect": "broker.backend",
                                                "subscribe": None}}}},
             ipc={"q": {"type": "msgqueue"}})
    assert Plan.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    # The fast to_dict says exactly what dataclasses.asdict would, nested plans included.
    assert json.dumps(p.to_dict(), sort_keys=True) == json.dumps(asdict(p), sort_keys=True)
    assert p.nodes and p.ipc and any(n.ready for n in p.nodes.values())


def asdict(obj: Any) -> Any:
    """What ``dataclasses.asdict`` does, for the plan's structs: fields first to last, deeply."""
    if hasattr(type(obj), "__struct_fields__"):
        return {name: asdict(getattr(obj, name)) for name in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return type(obj)(asdict(v) for v in obj)
    if isinstance(obj, dict):
        return {k: asdict(v) for k, v in obj.items()}
    return obj


def test_socket_env_name() -> None:
    assert socket_env_name("in-jobs") == "TOPO_SOCKET_IN_JOBS"


# -- tiers ----------------------------------------------------------------------------------------


def test_tiers_are_topological_levels_in_file_order() -> None:
    t = topo({"d": {"run": "m:f", "depends_on": ["b", "c"]},
              "c": {"run": "m:f", "depends_on": ["a"]},
              "b": {"run": "m:f"},
              "a": {"run": "m:f"},
              "e": {"run": "m:f", "depends_on": "a"}})
    assert dependency_tiers(t) == (("b", "a"), ("c", "e"), ("d",))


def test_tier_errors() -> None:
    with pytest.raises(RunError, match="cycle"):
        dependency_tiers(topo({"a": {"run": "m:f", "depends_on": "b"},
                               "b": {"run": "m:f", "depends_on": "a"}}))
    with pytest.raises(RunError, match="does not exist"):
        dependency_tiers(topo({"a": {"run": "m:f", "depends_on": "zz"}}))


# -- the real allocator ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "*", "0.0.0.0", "localhost", "no-such-interface0"])
def test_free_tcp_port_is_bindable(host: str) -> None:
    port = free_tcp_port(host)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_free_tcp_port_never_repeats_in_one_process() -> None:
    ports = [free_tcp_port("127.0.0.1") for _ in range(200)]
    assert len(set(ports)) == len(ports)


# -- properties -----------------------------------------------------------------------------------

BIND_FORMS = ["tcp://127.0.0.1:*", "tcp://*:0", "ipc://{n}-{s}-{j}", "inproc://{n}-{s}-{j}",
              "ipc:///tmp/abs-{n}-{s}-{j}"]


@st.composite
def topologies(draw: st.DrawFn) -> dict[str, Any]:
    n_nodes = draw(st.integers(1, 5))
    nodes: dict[str, Any] = {}
    for n in range(n_nodes):
        replicas = draw(st.integers(1, 3))
        sockets = {}
        for s in range(draw(st.integers(0, 3))):
            forms = draw(st.lists(st.sampled_from(BIND_FORMS if replicas == 1 else BIND_FORMS[:4]),
                                  max_size=3))
            sockets[f"s{s}"] = {"type": "PAIR",
                                "bind": [f.format(n=n, s=s, j=j) for j, f in enumerate(forms)]}
        nodes[f"n{n}"] = {"run": "m:f", "replicas": replicas, "sockets": sockets}
    bound = [(n, s, spec["bind"]) for n, node in nodes.items()
             for s, spec in node["sockets"].items() if spec["bind"]]
    for node in nodes.values():
        if not bound:
            break
        for k in range(draw(st.integers(0, 2))):
            peer, psock, binds = draw(st.sampled_from(bound))
            transports = sorted({b.split("://")[0] for b in binds})
            suffix = draw(st.sampled_from(["", *("@" + t for t in transports)]))
            node["sockets"][f"c{k}"] = {"type": "PAIR", "connect": f"{peer}.{psock}{suffix}"}
    return nodes


@settings(max_examples=150, deadline=None)
@given(topologies())
def test_every_reference_resolves_and_nothing_is_bound_twice(nodes: dict[str, Any]) -> None:
    ports = Ports(repeat=2)
    p = plan(nodes, ports)
    assert len(p.replicas) == sum(n["replicas"] for n in nodes.values())
    wildcard = sum(n["replicas"] * sum(b.startswith("tcp") for s in n["sockets"].values()
                                       for b in s.get("bind", []))
                   for n in nodes.values())
    tcp = [ep for r in p.replicas for s in r.sockets for ep in s.bind if ep.startswith("tcp")]
    assert len(tcp) == wildcard and len({ep.rsplit(":", 1)[1] for ep in tcp}) == wildcard
    ipc = [ep for r in p.replicas for s in r.sockets for ep in s.bind if ep.startswith("ipc")]
    assert len(set(ipc)) == len(ipc)
    assert all(ep.startswith((f"ipc://{RUN_DIR}/", "ipc:///tmp/abs-")) for ep in ipc)
    for r in p.replicas:
        for s in r.sockets:
            assert not any(ep.endswith((":*", ":0")) for ep in s.bind)
            spec = nodes[r.node]["sockets"][s.name]
            if "connect" not in spec:
                continue
            target, _, transport = spec["connect"].partition("@")
            peer, _, psock = target.partition(".")
            expected = [connectable(ep) for q in p.replicas_of(peer)
                        for ep in next(x for x in q.sockets if x.name == psock).bind
                        if not transport or ep.startswith(transport + "://")]
            assert s.connect == tuple(dict.fromkeys(expected)) and s.connect
            assert r.env[socket_env_name(s.name)] == ",".join(s.connect)


@settings(max_examples=50, deadline=None)
@given(topologies())
def test_two_runs_of_one_file_share_no_ipc_path_and_no_port(nodes: dict[str, Any]) -> None:
    ports = Ports()  # one allocator for both, like free_tcp_port in one process
    t = topo(nodes)
    a = plan_run(t, FILE, "one", Path("/tmp/topo/one"), allocate_port=ports)
    b = plan_run(t, FILE, "two", Path("/tmp/topo/two"), allocate_port=ports)

    def binds(p: Plan, transport: str) -> set[str]:
        return {ep for r in p.replicas for s in r.sockets for ep in s.bind
                if ep.startswith(transport) and "/abs-" not in ep}

    assert not binds(a, "ipc") & binds(b, "ipc")
    assert not binds(a, "tcp") & binds(b, "tcp")


def test_an_ipc_path_too_long_for_the_run_id_is_refused_before_anything_starts() -> None:
    nodes = {"a": {"run": "m:f", "sockets": {"s": {"type": "PULL", "bind": "ipc://" + "x" * 60}}}}
    t = topo(nodes)
    plan_run(t, Path("/tmp/t.yaml"), "short", Path("/tmp/r/short"), allocate_port=Ports())
    long_dir = Path("/tmp/r/" + "y" * 50)
    with pytest.raises(RunError, match=r"a.0.s: ipc:///tmp/r/y+/x+ is 118 bytes long in run "
                                        r"yy+'s folder; a Unix socket path holds at most 107"):
        plan_run(t, Path("/tmp/t.yaml"), "y" * 50, long_dir, allocate_port=Ports())
