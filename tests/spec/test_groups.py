"""Groups: which nodes must share a host, why, and the fixed ports of a multi-host run (pure)."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given, settings

from orchestrator.errors import RunError
from orchestrator.spec.groups import (
    LABEL_MAX,
    PORT_BASE,
    Group,
    Join,
    dns_label,
    fixed_ports,
    group_nodes,
    spreads,
)
from orchestrator.spec.links import resolve
from orchestrator.spec.model import Topology
from tests.topo_samples import topologies

# What a Kubernetes Service name must be (a DNS-1035 label).
SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def topo(nodes: dict[str, Any], **top: Any) -> Topology:
    return Topology.model_validate({"name": "app", "nodes": nodes, **top})


def cmd(**more: Any) -> dict[str, Any]:
    return {"command": ["prog"], **more}


def member_sets(t: Topology) -> list[tuple[str, ...]]:
    return [g.nodes for g in group_nodes(t).groups]


# -- what joins two nodes --------------------------------------------------------------------------


def test_an_ipc_link_joins_its_two_nodes() -> None:
    t = topo({
        "broker": cmd(sockets={"back": {"type": "ROUTER", "bind": "ipc://backend"}}),
        "worker": cmd(sockets={"s": {"type": "DEALER", "connect": "broker.back"}}),
    })
    g = group_nodes(t)
    assert member_sets(t) == [("broker", "worker")]
    assert [str(j) for j in g.groups[0].joins] == ["worker joins broker: ipc://backend"]
    assert g.of == {"broker": "broker", "worker": "broker"}


def test_a_literal_ipc_connect_joins_too() -> None:
    t = topo({
        "a": cmd(sockets={"s": {"type": "PULL", "bind": "ipc:///tmp/x.sock"}}),
        "b": cmd(sockets={"s": {"type": "PUSH", "connect": "ipc:///tmp/x.sock"}}),
    })
    assert member_sets(t) == [("a", "b")]
    assert group_nodes(t).groups[0].joins == (Join("b", "a", "ipc:///tmp/x.sock"),)


def test_an_inproc_link_joins_its_two_nodes() -> None:
    # Two processes cannot share inproc (E123), but such a file must still group sanely.
    t = topo({
        "a": cmd(sockets={"s": {"type": "PULL", "bind": "inproc://jobs"}}),
        "b": cmd(sockets={"s": {"type": "PUSH", "connect": "a.s"}}),
    })
    assert member_sets(t) == [("a", "b")]
    assert str(group_nodes(t).groups[0].joins[0]) == "b joins a: inproc://jobs"


@pytest.mark.parametrize("kind", ["msgqueue", "shm", "semaphore", "fifo"])
def test_a_resource_two_nodes_list_joins_them(kind: str) -> None:
    res: dict[str, Any] = {"type": kind, **({"size": 4096} if kind == "shm" else {})}
    t = topo({"writer": cmd(ipc=["jobs"]), "loner": cmd(), "reader": cmd(ipc=["jobs"])},
             ipc={"jobs": res})
    g = group_nodes(t)
    assert member_sets(t) == [("writer", "reader"), ("loner",)]
    assert [str(j) for j in g.groups[0].joins] == [f"reader joins writer: {kind} jobs"]
    assert g.groups[1].joins == ()


def test_a_resource_one_node_lists_joins_nothing() -> None:
    t = topo({"a": cmd(ipc=["q"]), "b": cmd()}, ipc={"q": {"type": "msgqueue"}})
    assert member_sets(t) == [("a",), ("b",)]


def test_a_socketpair_joins_the_nodes_it_is_between() -> None:
    # `between` alone joins them, even when a node forgot to list it (E130 says so).
    t = topo({"worker": cmd(), "other": cmd(), "collector": cmd(ipc=["results"])},
             ipc={"results": {"type": "socketpair", "between": ["worker", "collector"]}})
    g = group_nodes(t)
    assert member_sets(t) == [("worker", "collector"), ("other",)]
    assert [str(j) for j in g.groups[0].joins] == ["collector joins worker: socketpair results"]


def test_a_socketpair_between_an_unknown_node_is_ignored() -> None:
    t = topo({"a": cmd(ipc=["p"]), "b": cmd()},
             ipc={"p": {"type": "socketpair", "between": ["a", "ghost"]}})
    assert member_sets(t) == [("a",), ("b",)]


def test_tcp_links_do_not_join() -> None:
    t = topo({
        "server": cmd(sockets={"s": {"type": "REP", "bind": ["tcp://127.0.0.1:*",
                                                             "tcp://*:5555"]}}),
        "client": cmd(sockets={"s": {"type": "REQ", "connect": "server.s"}}),
        "other": cmd(sockets={"s": {"type": "REQ", "connect": "tcp://localhost:5555"}}),
    })
    assert member_sets(t) == [("server",), ("client",), ("other",)]


def test_a_tcp_reference_to_a_socket_that_also_binds_ipc_does_not_join() -> None:
    t = topo({
        "server": cmd(sockets={"s": {"type": "REP", "bind": ["tcp://127.0.0.1:*",
                                                             "ipc://server"]}}),
        "tcp": cmd(sockets={"s": {"type": "REQ", "connect": "server.s@tcp"}}),
        "ipc": cmd(sockets={"s": {"type": "REQ", "connect": "server.s@ipc"}}),
    })
    assert member_sets(t) == [("server", "ipc"), ("tcp",)]


def test_external_and_unbound_endpoints_join_nothing() -> None:
    t = topo({
        "a": cmd(sockets={"s": {"type": "PULL",
                                "bind": {"endpoint": "ipc://in", "external": True}}}),
        "b": cmd(sockets={"s": {"type": "PUSH", "connect": "ipc://nobody"}}),
    })
    assert member_sets(t) == [("a",), ("b",)]


def test_joins_are_transitive_and_the_groups_come_in_file_order() -> None:
    t = topo({
        "solo": cmd(),
        "a": cmd(sockets={"s": {"type": "PULL", "bind": "ipc://a"}}),
        "c": cmd(ipc=["q"]),
        "b": cmd(ipc=["q"], sockets={"s": {"type": "PUSH", "connect": "a.s"}}),
    }, ipc={"q": {"type": "msgqueue"}})
    g = group_nodes(t)
    assert member_sets(t) == [("solo",), ("a", "c", "b")]
    assert [str(j) for j in g.groups[1].joins] == ["b joins a: ipc://a", "c joins b: msgqueue q"]


def test_the_node_merged_in_is_the_one_that_joins() -> None:
    # pubsub: printer and subscriber both connect to sports; subscriber comes second in the
    # file but is the one that joins (sports is in printer's group by then).
    t = topo({
        "printer": cmd(sockets={"s": {"type": "SUB", "connect": "sports.out", "subscribe": ""}}),
        "subscriber": cmd(sockets={"s": {"type": "SUB", "connect": "sports.out",
                                         "subscribe": ""}}),
        "sports": cmd(sockets={"out": {"type": "PUB", "bind": "ipc://sports"}}),
    })
    assert [str(j) for j in group_nodes(t).groups[0].joins] == [
        "sports joins printer: ipc://sports", "subscriber joins sports: ipc://sports"]


def test_two_links_between_the_same_nodes_give_one_join() -> None:
    t = topo({
        "a": cmd(ipc=["q"], sockets={"s": {"type": "PULL", "bind": "ipc://a"}}),
        "b": cmd(ipc=["q"], sockets={"s": {"type": "PUSH", "connect": "a.s"}}),
    }, ipc={"q": {"type": "msgqueue"}})
    assert [str(j) for j in group_nodes(t).groups[0].joins] == ["b joins a: ipc://a"]


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("node", "label"), [
    ("broker", "broker"),
    ("Worker_Pool", "worker-pool"),
    ("tcp_client", "tcp-client"),
    ("_x_", "x"),
    ("__", "node"),
    ("1st", "n-1st"),
    ("a" * 70, "a" * LABEL_MAX),
    ("a" * (LABEL_MAX - 1) + "_b", "a" * (LABEL_MAX - 1)),
])
def test_dns_label(node: str, label: str) -> None:
    assert dns_label(node) == label
    assert SERVICE_NAME.fullmatch(dns_label(node))


def test_a_group_is_named_after_its_first_node() -> None:
    t = topo({"Worker_Pool": cmd(ipc=["q"]), "Boss": cmd(ipc=["q"])},
             ipc={"q": {"type": "msgqueue"}})
    g = group_nodes(t)
    assert [grp.name for grp in g.groups] == ["worker-pool"]
    assert g.of == {"Worker_Pool": "worker-pool", "Boss": "worker-pool"}
    assert g.group("worker-pool").nodes == ("Worker_Pool", "Boss")
    with pytest.raises(KeyError):
        g.group("Worker_Pool")


def test_names_that_collide_are_made_unique_in_file_order() -> None:
    t = topo({"Worker_Pool": cmd(), "worker-pool": cmd(), "worker_pool": cmd(),
              "worker-pool-2": cmd()})
    names = [g.name for g in group_nodes(t).groups]
    assert names == ["worker-pool", "worker-pool-2", "worker-pool-3", "worker-pool-2-2"]
    assert len(set(names)) == len(names)


def test_a_long_name_stays_unique_and_short() -> None:
    long = "x" * 60
    names = [g.name for g in group_nodes(topo({long: cmd(), long + "_": cmd()})).groups]
    assert names == ["x" * LABEL_MAX, "x" * (LABEL_MAX - 2) + "-2"]


def test_single() -> None:
    assert Group("a", ("a",)).single == "a"
    assert Group("a", ("a", "b")).single is None


def test_spreads_only_a_replicated_node_that_shares_nothing() -> None:
    t = topo({"pool": cmd(replicas=3), "one": cmd(), "sharing": cmd(replicas=2, ipc=["q"]),
              "a": cmd(ipc=["p"]), "b": cmd(ipc=["p"], replicas=2)},
             ipc={"q": {"type": "semaphore"}, "p": {"type": "msgqueue"}})
    g = group_nodes(t)
    assert {grp.name: spreads(t, grp) for grp in g.groups} == {
        "pool": True, "one": False, "sharing": False, "a": False}


def test_replicas_linked_to_each_other_by_ipc_stay_together_by_tcp_spread() -> None:
    def mesh(bind: str) -> dict[str, Any]:
        return cmd(replicas=3, sockets={"out": {"type": "PUB", "bind": bind},
                                        "in": {"type": "SUB", "subscribe": "",
                                               "connect": "peer.out"}})

    (ipc,) = group_nodes(t := topo({"peer": mesh("ipc://out")})).groups
    assert (ipc.together, spreads(t, ipc)) == ("link to each other over ipc://out", False)
    (tcp,) = group_nodes(t := topo({"peer": mesh("tcp://127.0.0.1:*")})).groups
    assert (tcp.together, spreads(t, tcp)) == ("", True)


# -- fixed ports -----------------------------------------------------------------------------------


PORTS = {
    "a": cmd(replicas=2, sockets={"s": {"type": "PUSH", "bind": ["tcp://127.0.0.1:*",
                                                                 "tcp://*:5551", "ipc://x"]}}),
    "b": cmd(sockets={"s": {"type": "PULL", "bind": "tcp://0.0.0.0:0"},
                      "t": {"type": "PULL", "connect": "tcp://10.0.0.1:5553"}}),
    "c": cmd(sockets={"s": {"type": "PULL", "connect": "a.s"}}),
}


def test_every_wildcard_tcp_bind_gets_a_port_per_replica_over_the_literal_ones() -> None:
    assert fixed_ports(topo(PORTS)) == {
        ("a", "s", 0, 0): PORT_BASE, ("a", "s", 0, 1): PORT_BASE + 2,  # 5551 is a's own
        ("b", "s", 0, 0): PORT_BASE + 4,  # 5553 is a port b connects to
    }


def test_fixed_ports_are_deterministic() -> None:
    assert fixed_ports(topo(PORTS)) == fixed_ports(topo(PORTS))
    again = topo({**PORTS, "z": cmd(sockets={"s": {"type": "PUB", "bind": "tcp://h:*"}})})
    assert {k: v for k, v in fixed_ports(again).items() if k[0] != "z"} == fixed_ports(topo(PORTS))


def test_no_wildcard_no_ports() -> None:
    t = topo({"a": cmd(sockets={"s": {"type": "PUB", "bind": ["tcp://*:7000", "ipc://a"]}})})
    assert fixed_ports(t) == {}


def test_ports_past_65535_are_refused_with_a_sentence() -> None:
    t = topo({"pool": cmd(replicas=60_000,
                          sockets={"s": {"type": "PUB", "bind": "tcp://127.0.0.1:*"}})})
    with pytest.raises(RunError, match=r"do not fit in the ports 5550 to 65535; socket pool.s"):
        fixed_ports(t)


# -- properties over any loadable topology ------------------------------------------------------


def host_edges(t: Topology) -> dict[str, set[str]]:
    """What must share a host, found the slow obvious way: ipc/inproc links, shared resources."""
    edges: dict[str, set[str]] = defaultdict(set)
    for link in resolve(t).links:
        c, b = link.connector, link.binder
        if c and b and link.bind_endpoint and link.transport in ("ipc", "inproc"):
            edges[c.node].add(b.node)
            edges[b.node].add(c.node)
    for name, res in t.ipc.items():
        users = {n for n, spec in t.nodes.items() if name in spec.ipc}
        users |= {n for n in res.between or () if n in t.nodes}
        for u in users:
            edges[u] |= users - {u}
    return edges


def components(t: Topology) -> set[frozenset[str]]:
    edges, seen, out = host_edges(t), set[str](), set[frozenset[str]]()
    for start in t.nodes:
        if start in seen:
            continue
        todo, comp = [start], {start}
        while todo:
            for peer in edges[todo.pop()] - comp:
                comp.add(peer)
                todo.append(peer)
        seen |= comp
        out.add(frozenset(comp))
    return out


@settings(max_examples=150, deadline=None)
@given(topologies())
def test_groups_partition_the_nodes_along_host_links_only(t: Topology) -> None:
    g = group_nodes(t)
    # A partition: every node in exactly one group.
    assert sorted(n for grp in g.groups for n in grp.nodes) == sorted(t.nodes)
    assert g.of == {n: grp.name for grp in g.groups for n in grp.nodes}
    # Every ipc or inproc link has both ends in one group.
    for link in resolve(t).links:
        if link.internal and link.bind_endpoint and link.transport in ("ipc", "inproc"):
            assert link.connector is not None and link.binder is not None
            assert g.of[link.connector.node] == g.of[link.binder.node], link
    # Nothing else joins: the groups are exactly the components of the host links and the
    # shared resources, so a pair linked by tcp only is apart unless another path joins it.
    assert {frozenset(grp.nodes) for grp in g.groups} == components(t)
    # File order, of the groups and inside each.
    order = list(t.nodes)
    firsts = [grp.nodes[0] for grp in g.groups]
    assert firsts == sorted(firsts, key=order.index)
    assert all(list(grp.nodes) == sorted(grp.nodes, key=order.index) for grp in g.groups)
    # Names are Service names, unique; the joins of a group are a spanning tree of it.
    assert len({grp.name for grp in g.groups}) == len(g.groups)
    for grp in g.groups:
        assert SERVICE_NAME.fullmatch(grp.name) and len(grp.name) <= LABEL_MAX
        assert len(grp.joins) == len(grp.nodes) - 1 and all(j.why for j in grp.joins)
        reached = {grp.nodes[0]}
        for _ in grp.joins:  # each pass reaches at least one more node
            reached |= {j.node for j in grp.joins if j.other in reached}
            reached |= {j.other for j in grp.joins if j.node in reached}
        assert reached == set(grp.nodes)


@settings(max_examples=80, deadline=None)
@given(topologies())
def test_fixed_ports_are_unique_fresh_and_cover_every_wildcard_replica(t: Topology) -> None:
    ports = fixed_ports(t)
    assert ports == fixed_ports(t)
    assert len(set(ports.values())) == len(ports)
    named = {int(e.endpoint.rpartition(":")[2]) for n in t.nodes.values()
             for s in n.sockets.values() for e in (*s.bind, *s.connect)
             if e.transport == "tcp" and e.endpoint.rpartition(":")[2].isdigit()}
    assert not set(ports.values()) & named
    assert all(PORT_BASE <= p <= 65535 for p in ports.values())
    wildcard = {(name, sname, i, r) for name, n in t.nodes.items()
                for sname, s in n.sockets.items() for i, e in enumerate(s.bind)
                if e.transport == "tcp" and e.endpoint.rpartition(":")[2] in ("*", "0")
                for r in range(n.replicas)}
    assert set(ports) == wildcard
