"""Which nodes must share a host, and the fixed tcp ports a multi-host run uses.

Nodes joined by an ipc:// or inproc:// link, by a System V resource, a socket
pair or a fifo they list form one *group* (connected components, in file order).
On one machine this changes nothing; exported to Kubernetes
(``topo export kubernetes``) each group is one workload, and ``topo up FILE
--group G`` runs one group, reaching the others over tcp.

A group's name is its first node's name, made a DNS-1123 label (``worker_pool``
-> ``worker-pool``) since it names a Service and its pods. Ports: every wildcard
tcp bind (``tcp://HOST:*``) gets a fixed port, per replica, counted up from
``PORT_BASE`` in file order over the ports the file names itself: the same file
always gives the same ports, so a manifest diffs well and every group of a run
agrees on them without talking.

Pure and linear: links come from ``links.resolve`` (the validator's resolver),
the components from a union-find.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrator.spec.links import resolve
from orchestrator.spec.model import Topology

PORT_BASE = 5550
# Links that cannot leave a host: they put their two nodes in one group.
HOST_TRANSPORTS = frozenset({"ipc", "inproc"})


@dataclass(frozen=True)
class Join:
    """Why ``node`` is in the group of ``other``: ``worker joins broker: ipc://backend``."""

    node: str
    other: str
    why: str  # ``ipc://backend``, ``msgqueue jobs``, ...

    def __str__(self) -> str:
        return f"{self.node} joins {self.other}: {self.why}"


@dataclass(frozen=True)
class Group:
    name: str  # DNS-1123 label
    nodes: tuple[str, ...]  # file order
    joins: tuple[Join, ...] = ()

    @property
    def single(self) -> str | None:
        """The node, when the group is one node."""
        return self.nodes[0] if len(self.nodes) == 1 else None


@dataclass
class Grouping:
    groups: list[Group]
    of: dict[str, str] = field(default_factory=dict)  # node -> group name

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)


def dns_label(name: str) -> str:
    """``Worker_Pool`` -> ``worker-pool``: lower case, ``-`` for anything else, at most 63."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].rstrip("-")
    return label or "node"


def group_nodes(topology: Topology) -> Grouping:
    """The groups of ``topology``, in the order of their first nodes."""
    names = list(topology.nodes)
    parent = {n: n for n in names}
    joins: list[Join] = []

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    def join(a: str, b: str, why: str) -> None:
        ra, rb = root(a), root(b)
        if ra == rb:
            return
        first, second = sorted((ra, rb), key=names.index)
        parent[second] = first
        later, earlier = sorted((a, b), key=names.index, reverse=True)
        joins.append(Join(later, earlier, why))

    for link in resolve(topology).links:
        c, b = link.connector, link.binder
        if c is None or b is None or c.node == b.node:
            continue
        if link.transport in HOST_TRANSPORTS and link.bind_endpoint is not None:
            join(c.node, b.node, link.bind_endpoint)
    for name, res in topology.ipc.items():
        users = [n for n in names if name in topology.nodes[n].ipc]
        users += [n for n in res.between or () if n in parent and n not in users]
        for other in users[1:]:
            join(other, users[0], f"{res.type} {name}")

    members: dict[str, list[str]] = {}
    for n in names:
        members.setdefault(root(n), []).append(n)
    groups: list[Group] = []
    of: dict[str, str] = {}
    taken: set[str] = set()
    for first, nodes in members.items():
        label = _unique(dns_label(first), taken)
        mine = set(nodes)
        groups.append(Group(label, tuple(nodes), tuple(j for j in joins if j.node in mine)))
        of.update(dict.fromkeys(nodes, label))
    return Grouping(groups, of)


def _unique(label: str, taken: set[str]) -> str:
    out, i = label, 2
    while out in taken:
        suffix = f"-{i}"
        out, i = label[:63 - len(suffix)] + suffix, i + 1
    taken.add(out)
    return out


def fixed_ports(topology: Topology) -> dict[tuple[str, str, int, int], int]:
    """(node, socket, bind index, replica) -> port for every wildcard tcp bind, in file order."""
    used = set(_literal_ports(topology))
    ports: dict[tuple[str, str, int, int], int] = {}
    port = PORT_BASE
    for name, node in topology.nodes.items():
        for sname, spec in node.sockets.items():
            for i, ep in enumerate(spec.bind):
                if ep.transport != "tcp" or ep.endpoint.rpartition(":")[2] not in ("*", "0"):
                    continue
                for replica in range(node.replicas):
                    while port in used:
                        port += 1
                    ports[(name, sname, i, replica)] = port
                    used.add(port)
    return ports


def _literal_ports(topology: Topology) -> Iterable[int]:
    for node in topology.nodes.values():
        for spec in node.sockets.values():
            for ep in spec.bind:
                if ep.transport == "tcp":
                    port = ep.endpoint.rpartition(":")[2]
                    if port.isdigit() and int(port):
                        yield int(port)
