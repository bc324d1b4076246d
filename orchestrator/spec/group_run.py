"""One group of a topology, run on its own host: `topo up FILE --group GROUP`.

What an exported container runs (``topo export kubernetes``), and what a test
runs on one machine to play every group side by side. Inside the group nothing
changes. Across groups (``groups.py``):

- a tcp bind that another group connects to listens on every interface
  (``tcp://*:PORT``), since its peers are on other hosts; wildcard ports are the
  fixed ports of ``groups.fixed_ports``, so every group agrees on them;
- a connect to a socket of another group goes to ``tcp://HOST:PORT`` for each
  replica's tcp bind, where HOST is the group's Service name (``broker``), or
  ``GROUP-N.GROUP`` for the replicas of a group exported one pod per replica
  (a StatefulSet, ``groups.spreads``), unless ``--resolve GROUP=HOST`` says otherwise;
- in such a group, the replicas of its node that connect to one another over tcp
  (``connect: peer.out`` from node ``peer``) are in pods of their own too: each
  connects to ``GROUP-N.GROUP`` for replica N, and binds on every interface.

Pure: the planner asks this for endpoints (``run_endpoints.RunEndpoints``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.errors import UsageError
from orchestrator.spec.groups import Group, Grouping, fixed_ports, group_nodes, spreads
from orchestrator.spec.links import resolve
from orchestrator.spec.model import Topology


@dataclass(frozen=True)
class GroupChoice:
    """What `topo up --group NAME [--replica N] [--resolve GROUP=HOST ...]` asked for."""

    name: str
    replica: int | None = None
    resolve: tuple[tuple[str, str], ...] = ()

    def of(self, topology: Topology) -> GroupRun:
        return GroupRun(topology, self.name, resolve_hosts=dict(self.resolve),
                        replica=self.replica)


@dataclass(frozen=True)
class Remote:
    """A connect entry that reaches a socket of another group."""

    node: str
    socket: str
    bind_index: int | None  # the one bind a literal connect reached; None: every tcp bind


class GroupRun:
    """The endpoints of group ``name`` when each group runs on its own host."""

    def __init__(self, topology: Topology, name: str, *,
                 resolve_hosts: Mapping[str, str] | None = None,
                 replica: int | None = None) -> None:
        self.topology = topology
        # The validator's links, resolved once for the groups, the endpoints and CURVE.
        self.links = resolve(topology).links
        self.grouping: Grouping = group_nodes(topology, self.links)
        names = [g.name for g in self.grouping.groups]
        if name not in names:
            member = self.grouping.of.get(name)
            where = f"node {name} is in group {member}; " if member is not None else ""
            raise UsageError(f"--group {name}: the topology has no group by that name "
                             f"({where}its groups: {', '.join(names)}; `topo export kubernetes "
                             "--explain` shows them)")
        unknown = sorted(set(resolve_hosts or {}) - set(names))
        if unknown:
            raise UsageError(f"--resolve {unknown[0]}=...: the topology has no group by that "
                             f"name (its groups: {', '.join(names)})")
        self.name = name
        self.group = self.grouping.group(name)
        self.nodes = frozenset(self.group.nodes)
        self.replica = replica
        if replica is not None:
            _check_replica(topology, self.group, replica)
        self.hosts = dict(resolve_hosts or {})
        self.ports = fixed_ports(topology)
        self.per_pod = {g.name for g in self.grouping.groups if spreads(topology, g)}
        # Binder sockets that other pods connect to: from other groups (crossing), or from
        # the other replicas of a node that runs one pod per replica (meshed).
        self.crossing: set[tuple[str, str]] = set()
        self.meshed: set[tuple[str, str]] = set()
        self.remote: dict[tuple[str, str, int], Remote] = {}
        for link in self.links:
            c, b = link.connector, link.binder
            if c is None or b is None or link.bind_endpoint is None:
                continue
            if self.grouping.of[c.node] != self.grouping.of[b.node]:
                self.crossing.add((b.node, b.socket))
            elif c.node == b.node and self.grouping.of[c.node] in self.per_pod \
                    and link.transport == "tcp":
                self.meshed.add((b.node, b.socket))
            else:
                continue
            index = None
            if "://" in link.endpoint:  # a literal connect reaches one bind
                binds = [e.endpoint for e in topology.nodes[b.node].sockets[b.socket].bind]
                index = binds.index(link.bind_endpoint) if link.bind_endpoint in binds else None
            self.remote.setdefault((c.node, c.socket, link.index), Remote(b.node, b.socket, index))
        self.exposed = self.crossing | self.meshed

    def run_id(self, topology_name: str) -> str:
        """The default run id: ``TOPOLOGY-GROUP``, ``TOPOLOGY-GROUP-N`` with ``--replica N``
        (the replicas of one group can then run side by side on one machine)."""
        head = f"{topology_name}-{self.name}"
        return head if self.replica is None else f"{head}-{self.replica}"

    def runs(self, node: str, replica: int) -> bool:
        """Whether this group's run starts replica ``replica`` of ``node``."""
        return node in self.nodes and (self.replica is None or replica == self.replica)

    def host(self, node: str, replica: int) -> str:
        group = self.grouping.of[node]
        if group in self.hosts:
            return self.hosts[group]
        return f"{group}-{replica}.{group}" if group in self.per_pod else group

    def bind(self, node: str, sock: str, index: int, replica: int, text: str) -> str | None:
        """The endpoint a tcp bind takes in a group run; None: as on one machine."""
        transport, _, rest = text.partition("://")
        if transport.lower() != "tcp":
            return None
        host, _, port = rest.rpartition(":")
        fixed = self.ports.get((node, sock, index, replica))
        if (node, sock) in self.exposed:
            host = "*"
        if fixed is None and host == rest.rpartition(":")[0]:
            return None
        return f"tcp://{host}:{fixed if fixed is not None else port}"

    def connects(self, node: str, sock: str, index: int) -> list[str] | None:
        """The endpoints of connect entry ``index`` when it reaches another group, else None."""
        remote = self.remote.get((node, sock, index))
        if remote is None:
            return None
        peer = self.topology.nodes[remote.node]
        binds = peer.sockets[remote.socket].bind
        out = []
        for r in range(peer.replicas):
            for i, ep in enumerate(binds):
                if ep.transport != "tcp" or remote.bind_index not in (None, i):
                    continue
                port = self.ports.get((remote.node, remote.socket, i, r))
                if port is None:
                    port = int(ep.endpoint.rpartition(":")[2])
                out.append(f"tcp://{self.host(remote.node, r)}:{port}")
        return out


def _check_replica(topology: Topology, group: Group, replica: int) -> None:
    nodes, name = group.nodes, group.name
    if len(nodes) > 1:
        raise UsageError(f"--replica {replica}: group {name} has {len(nodes)} nodes "
                         f"({', '.join(nodes)}), which run in one pod; --replica is for a "
                         "group of one replicated node")
    count = topology.nodes[nodes[0]].replicas
    if group.together:
        raise UsageError(f"--replica {replica}: the replicas of node {nodes[0]} (group {name}) "
                         f"{group.together}, so they run in one pod; run the group without "
                         "--replica")
    if not 0 <= replica < count:
        has = "1 replica, 0" if count == 1 else f"{count} replicas, 0 to {count - 1}"
        raise UsageError(f"--replica {replica}: group {name} is node {nodes[0]}, which has "
                         f"{has}")
