"""links.links: who talks to whom, from the file alone."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.spec.links import Link, SocketRef, binds_match, links, parse_reference, split_tcp
from orchestrator.spec.model import Topology
from tests.topo_samples import load, spec_example, topologies


def test_spec_example_links() -> None:
    found = {(str(lk.connector), str(lk.binder), lk.transport) for lk in links(spec_example())}
    assert found == {("worker.jobs", "broker.backend", "ipc"),
                     ("client.server", "broker.frontend", "tcp")}


def test_reference_link_carries_both_types_and_the_bind() -> None:
    (link,) = links(spec_example())[1:]
    assert link == Link(SocketRef("client", "server"), SocketRef("broker", "frontend"),
                        "broker.frontend", "REQ", "ROUTER", "tcp://127.0.0.1:*", "tcp")
    assert link.internal and not link.problem


def test_transport_suffix_picks_a_bind() -> None:
    topo = load("""
nodes:
  a: {run: m:f, sockets: {s: {type: PUB, bind: ["tcp://127.0.0.1:*", "ipc://x"]}}}
  b: {run: m:f, sockets: {s: {type: SUB, subscribe: "", connect: [a.s, a.s@ipc, a.s@TCP]}}}
""")
    assert [(lk.bind_endpoint, lk.transport) for lk in links(topo)] == [
        ("tcp://127.0.0.1:*", "tcp"), ("ipc://x", "ipc"), ("tcp://127.0.0.1:*", "tcp")]


def test_reference_from_another_node_skips_inproc() -> None:
    topo = load("""
nodes:
  a: {run: m:f, sockets: {s: {type: PUSH, bind: ["inproc://x", "ipc://y"]}}}
  b: {run: m:f, sockets: {s: {type: PULL, connect: a.s}}}
""")
    (link,) = links(topo)
    assert link.bind_endpoint == "ipc://y"


def test_broken_references_say_why() -> None:
    topo = load("""
nodes:
  a: {run: m:f, sockets: {s: {type: REQ, connect: [ghost.s, a.nope, b.c, b.c@ipc, a.s, "x..y"]}}}
  b: {run: m:f, sockets: {c: {type: REP, bind: "tcp://127.0.0.1:*"}}}
""")
    problems = [lk.problem for lk in links(topo)]
    assert "no node named 'ghost'" in problems[0]
    assert "no socket named 'nope'" in problems[1]
    assert problems[2] == ""
    assert "binds nothing over ipc" in problems[3]
    assert "itself" in problems[4]
    assert "neither an endpoint" in problems[5]
    assert links(topo)[3].binder == SocketRef("b", "c")  # the socket exists; its bind does not


def test_literal_connects_match_binds() -> None:
    topo = load("""
nodes:
  a: {run: m:f, sockets: {s: {type: REP, bind: "tcp://*:5555"}, t: {type: PULL, bind: "ipc://q"}}}
  b: {run: m:f, sockets: {s: {type: REQ, connect: ["tcp://localhost:5555", "tcp://127.0.0.1:6"]},
                          t: {type: PUSH, connect: ["ipc://./q", {endpoint: "ipc://z",
                                                                 external: true}]}}}
""")
    result = [(str(lk.binder) if lk.binder else None, lk.external) for lk in links(topo)]
    assert result == [("a.s", False), (None, False), ("a.t", False), (None, True)]


def test_external_bind_is_a_link_without_connector() -> None:
    topo = load("""
nodes:
  a: {run: m:f, sockets: {s: {type: ROUTER, bind: [{endpoint: "tcp://127.0.0.1:7000",
                                                   external: true}]}}}
""")
    (link,) = links(topo)
    assert link.connector is None and link.binder == SocketRef("a", "s") and link.external
    assert not link.internal


def test_a_socket_does_not_reach_its_own_bind() -> None:
    topo = load("""
nodes:
  a: {run: m:f, sockets: {s: {type: PAIR, bind: "ipc://p", connect: "ipc://p"}}}
""")
    (link,) = links(topo)
    assert link.binder is None


@given(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,8}", fullmatch=True),
       st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,8}", fullmatch=True),
       st.sampled_from([None, "tcp", "ipc", "inproc"]))
def test_parse_reference_round_trip(node: str, socket: str, transport: str | None) -> None:
    text = f"{node}.{socket}" + (f"@{transport}" if transport else "")
    ref = parse_reference(text)
    assert ref is not None
    assert (ref.node, ref.socket, ref.transport) == (node, socket, transport)


@given(st.sampled_from(["", "a", "a.", ".b", "a.b.c", "a.b@", "tcp://x:1"]))
def test_parse_reference_rejects(text: str) -> None:
    assert parse_reference(text) is None


@given(st.sampled_from(["127.0.0.1", "localhost", "*", "0.0.0.0", "10.0.0.1", "[::1]"]),
       st.sampled_from(["127.0.0.1", "localhost", "10.0.0.1", "[::1]"]),
       st.integers(1, 65535), st.integers(1, 65535))
def test_tcp_matching(bind_host: str, connect_host: str, bport: int, cport: int) -> None:
    match = binds_match(f"tcp://{bind_host}:{bport}", f"tcp://{connect_host}:{cport}")
    same_host = bind_host in ("*", "0.0.0.0") or {bind_host, connect_host} <= {
        "127.0.0.1", "localhost"} or bind_host == connect_host
    assert match == (bport == cport and same_host)


def test_wildcard_ports_never_match_literally() -> None:
    assert not binds_match("tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
    assert not binds_match("tcp://127.0.0.1:0", "tcp://127.0.0.1:0")
    assert split_tcp("tcp://10.0.0.1;127.0.0.1:5") == ("127.0.0.1", "5")
    assert split_tcp("ipc://x") is None


@settings(max_examples=150, deadline=None)
@given(topologies())
def test_every_connect_and_external_bind_makes_a_link(topo: Topology) -> None:
    result = links(topo)
    for node_name, node in topo.nodes.items():
        for sname, sock in node.sockets.items():
            me = SocketRef(node_name, sname)
            mine = [lk for lk in result if lk.connector == me]
            assert {lk.index for lk in mine} == set(range(len(sock.connect)))
            assert all(lk.connector_type == sock.type for lk in mine)
            external_binds = [lk for lk in result if lk.connector is None and lk.binder == me]
            assert len(external_binds) == sum(e.external for e in sock.bind)
    for lk in result:
        if lk.binder is not None and lk.internal and not lk.problem:
            assert lk.connector != lk.binder
            assert lk.bind_endpoint in [e.endpoint for e in
                                        topo.nodes[lk.binder.node].sockets[lk.binder.socket].bind]
