"""Which nodes must share a host, and the fixed tcp ports a multi-host run uses.

Nodes joined by an ipc:// or inproc:// link, by a System V resource, a socket
pair or a fifo they list form one *group* (connected components, in file order).
On one machine this changes nothing; exported to Kubernetes
(``topo export kubernetes``) each group is one workload, and ``topo up FILE
--group G`` runs one group, reaching the others over tcp. A group that is one
replicated node ``spreads``, one pod per replica, unless its replicas must share a
host (``Group.together``): an IPC resource they all open, or an ipc or inproc link
from the node to itself (each replica connects to every replica's bind). Replicas
that link to one another over tcp do spread: they reach each other as they reach
another group (``group_run``).

A group's name is its first node's name, made a DNS label (``Worker_Pool`` ->
``worker-pool``) since it names a Service and its pods: a Service name must be a
DNS-1035 label (a letter first), and a StatefulSet's name at most 52 characters
(its pods' ``controller-revision-hash`` label adds 11 more). Ports: every wildcard
tcp bind (``tcp://HOST:*``) gets a fixed port, per replica, counted up from
``PORT_BASE`` in file order over the ports the file names itself (in binds and in
literal connects): the same file always gives the same ports, so a manifest diffs
well and every group of a run agrees on them without talking.

Each ``Join`` says why a node is in its group: when two sets of nodes meet, the
node on the side that is merged into the earlier set (in file order) joins its
peer on the other side, so a group's joins are a spanning tree of its nodes.

Pure and linear: links come from ``links.resolve`` (the validator's resolver),
the components from a union-find.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.errors import RunError
from orchestrator.spec.links import Link, resolve
from orchestrator.spec.model import Topology
from orchestrator.spec.run_endpoints import literal_ports

PORT_BASE = 5550
PORT_MAX = 65535
# A StatefulSet's name: its pods carry `controller-revision-hash: NAME-<10 characters>`,
# a label value of at most 63.
LABEL_MAX = 52
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
    # Why the replicas of its one node must share a host, after "they": "share IPC resource
    # jobs", "link to each other over ipc://out"; "" when they need not (or it has one).
    together: str = ""

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
    """``Worker_Pool`` -> ``worker-pool``: a DNS-1035 label of at most ``LABEL_MAX``.

    Lower case, ``-`` for anything else, a letter first (``1st`` -> ``n-1st``).
    """
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if label[:1].isdigit():
        label = "n-" + label
    return label[:LABEL_MAX].rstrip("-") or "node"


def group_nodes(topology: Topology, links: Sequence[Link] | None = None) -> Grouping:
    """The groups of ``topology``, in the order of their first nodes."""
    names = list(topology.nodes)
    parent = {n: n for n in names}
    joins: list[Join] = []

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    order = {n: i for i, n in enumerate(names)}

    def join(a: str, b: str, why: str) -> None:
        ra, rb = root(a), root(b)
        if ra == rb:
            return
        if order[rb] < order[ra]:
            a, b, ra, rb = b, a, rb, ra
        parent[rb] = ra  # b's set (the later one) joins a's
        joins.append(Join(b, a, why))

    linked: dict[str, str] = {}  # node -> a host link between its own replicas
    for link in resolve(topology).links if links is None else links:
        c, b = link.connector, link.binder
        if c is None or b is None or link.transport not in HOST_TRANSPORTS \
                or link.bind_endpoint is None:
            continue
        if c.node == b.node:
            linked.setdefault(c.node, link.bind_endpoint)
        else:
            join(c.node, b.node, link.bind_endpoint)
    listed: dict[str, list[str]] = {}  # resource -> the nodes that list it, in file order
    for n in names:
        for res_name in dict.fromkeys(topology.nodes[n].ipc):
            listed.setdefault(res_name, []).append(n)
    for name, res in topology.ipc.items():
        users = list(listed.get(name, ()))
        users += [n for n in dict.fromkeys(res.between or ()) if n in parent and n not in users]
        for other in users[1:]:
            join(users[0], other, f"{res.type} {name}")

    members: dict[str, list[str]] = {}
    for n in names:
        members.setdefault(root(n), []).append(n)
    groups: list[Group] = []
    of: dict[str, str] = {}
    taken: set[str] = set()
    for first, nodes in members.items():
        label = _unique(dns_label(first), taken)
        mine = set(nodes)
        together = ""
        spec = topology.nodes[first]
        if len(nodes) == 1 and spec.replicas > 1:
            if spec.ipc:
                together = f"share IPC resource {spec.ipc[0]}"
            elif first in linked:
                together = f"link to each other over {linked[first]}"
        groups.append(Group(label, tuple(nodes), tuple(j for j in joins if j.node in mine),
                            together))
        of.update(dict.fromkeys(nodes, label))
    return Grouping(groups, of)


def spreads(topology: Topology, group: Group) -> bool:
    """Whether ``group`` may run one pod per replica: it is one node with several replicas,
    and nothing ties them to one host (``Group.together``: a queue, segment, semaphore set
    or fifo that every replica opens is one object on one host; an ipc path, one file)."""
    node = group.single
    return node is not None and topology.nodes[node].replicas > 1 and not group.together


def _unique(label: str, taken: set[str]) -> str:
    out, i = label, 2
    while out in taken:
        suffix = f"-{i}"
        out, i = label[:LABEL_MAX - len(suffix)] + suffix, i + 1
    taken.add(out)
    return out


def fixed_ports(topology: Topology) -> dict[tuple[str, str, int, int], int]:
    """(node, socket, bind index, replica) -> port for every wildcard tcp bind, in file order.

    ``RunError`` when they do not fit below port 65536.
    """
    # Every port the file names, a literal connect's too: a peer outside the topology on
    # this machine must not find a fixed port on its own.
    used = literal_ports(topology, connects=True)
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
                    if port > PORT_MAX:
                        raise RunError(
                            f"the wildcard tcp binds of {topology.name} (one port per replica) "
                            f"do not fit in the ports {PORT_BASE} to {PORT_MAX}; socket "
                            f"{name}.{sname} is one too many: give some binds a port of their "
                            "own, or fewer replicas")
                    ports[(name, sname, i, replica)] = port
                    used.add(port)
    return ports
