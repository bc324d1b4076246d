"""Who talks to whom: the links between sockets, computed from the file alone.

A link joins a connecting socket to the socket that binds the endpoint it
connects to. ``connect: node.socket[@tcp]`` names the binder; a literal
``connect: tcp://...`` finds it by matching the endpoints sockets bind. A
connect that no socket binds, and a bind marked ``external: true``, is a link
with one side outside the topology. Pure: the graph, ``explain`` and the
validator share it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from .model import SocketSpec, Topology

_ANY_HOSTS = frozenset({"*", "0.0.0.0", "::", "[::]"})


@dataclass(frozen=True, order=True)
class SocketRef:
    node: str
    socket: str

    def __str__(self) -> str:
        return f"{self.node}.{self.socket}"


@dataclass(frozen=True)
class Reference:
    """A parsed ``node.socket[@transport]`` connect target."""

    node: str
    socket: str
    transport: str | None = None


@dataclass(frozen=True)
class Link:
    """One connect (or one external bind), with both ends as far as the file tells."""

    connector: SocketRef | None  # None: a peer outside the topology connects to an external bind
    binder: SocketRef | None  # None: no socket of the topology binds the endpoint
    endpoint: str  # as written: the connect target, or the external bind
    connector_type: str | None
    binder_type: str | None
    bind_endpoint: str | None  # the bind the link lands on, when there is one
    transport: str | None  # tcp, ipc, inproc, ...; None when it cannot be known
    external: bool = False  # the endpoint is marked `external: true`
    index: int = 0  # position in the socket's connect (or bind) list
    problem: str = ""  # why a reference did not resolve; "" when it did

    @property
    def internal(self) -> bool:
        """Both ends are sockets of the topology."""
        return self.connector is not None and self.binder is not None


def parse_reference(text: str) -> Reference | None:
    """``node.socket``, ``node.socket@tcp`` -> Reference; None when it is not that shape."""
    ref, at, transport = text.partition("@")
    node, dot, socket = ref.partition(".")
    if not dot or not node or not socket or "." in socket or (at and not transport):
        return None
    return Reference(node, socket, transport.lower() or None)


def split_tcp(endpoint: str) -> tuple[str, str] | None:
    """``tcp://host:port`` -> (host, port), lower case host; None for other endpoints."""
    if not endpoint.lower().startswith("tcp://"):
        return None
    rest = endpoint[len("tcp://"):]
    # tcp://source;host:port connects from a given source address: only the target matters.
    rest = rest.rsplit(";", 1)[-1]
    host, colon, port = rest.rpartition(":")
    if not colon:
        return None
    return host.lower(), port


def binds_match(bind: str, connect: str) -> bool:
    """Whether a connect to ``connect`` reaches a socket bound to ``bind``."""
    b, c = split_tcp(bind), split_tcp(connect)
    if b is None or c is None:
        return "://" in bind and _normal(bind) == _normal(connect)
    (bhost, bport), (chost, cport) = b, c
    if not bport.isdigit() or not cport.isdigit() or int(bport) != int(cport) or int(bport) == 0:
        return False
    return bhost in _ANY_HOSTS or _host(bhost) == _host(chost)


def _host(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


def _normal(endpoint: str) -> str:
    transport, _, address = endpoint.partition("://")
    if transport.lower() == "ipc" and not address.startswith("@"):
        address = posixpath.normpath(address)
    return f"{transport.lower()}://{address}"


def sockets(topology: Topology) -> Iterator[tuple[SocketRef, SocketSpec]]:
    for node_name, node in topology.nodes.items():
        for socket_name, spec in node.sockets.items():
            yield SocketRef(node_name, socket_name), spec


def links(topology: Topology) -> list[Link]:
    """Every link of the topology, in file order (node, socket, connect index)."""
    result: list[Link] = []
    for ref, spec in sockets(topology):
        for index, endpoint in enumerate(spec.connect):
            if endpoint.is_reference:
                result.append(_resolve_reference(topology, ref, spec, endpoint.endpoint, index))
            else:
                result.extend(_resolve_literal(topology, ref, spec, endpoint.endpoint,
                                               endpoint.external, index))
        for index, endpoint in enumerate(spec.bind):
            if endpoint.external:
                result.append(Link(None, ref, endpoint.endpoint, None, spec.type,
                                   endpoint.endpoint, endpoint.transport, True, index))
    return result


def _resolve_reference(
    topology: Topology, ref: SocketRef, spec: SocketSpec, text: str, index: int
) -> Link:
    def broken(problem: str, binder: SocketRef | None = None, btype: str | None = None) -> Link:
        return Link(ref, binder, text, spec.type, btype, None, None, False, index, problem)

    target = parse_reference(text)
    if target is None:
        return broken(f"'{text}' is neither an endpoint like tcp://host:port "
                      "nor a reference like node.socket")
    node = topology.nodes.get(target.node)
    if node is None:
        return broken(f"there is no node named '{target.node}'")
    bspec = node.sockets.get(target.socket)
    if bspec is None:
        return broken(f"node '{target.node}' has no socket named '{target.socket}'")
    binder = SocketRef(target.node, target.socket)
    if binder == ref:
        return broken("a socket cannot connect to itself")
    binds = [e.endpoint for e in bspec.bind
             if target.transport is None or e.transport == target.transport]
    if target.transport is None and target.node != ref.node:
        # Another process cannot reach an inproc bind: take one it can reach, if any.
        binds = [b for b in binds if not b.lower().startswith("inproc://")] or binds
    if not binds:
        how = f" over {target.transport}" if target.transport else ""
        return broken(f"socket {binder} binds nothing{how}, so nothing can connect to it",
                      binder, bspec.type)
    bind = binds[0]
    transport = bind.split("://", 1)[0].lower()
    return Link(ref, binder, text, spec.type, bspec.type, bind, transport, False, index)


def _resolve_literal(
    topology: Topology, ref: SocketRef, spec: SocketSpec, text: str, external: bool, index: int
) -> list[Link]:
    transport = text.split("://", 1)[0].lower()
    found = [
        Link(ref, other, text, spec.type, ospec.type, bind.endpoint, transport, external, index)
        for other, ospec in sockets(topology)
        for bind in ospec.bind
        if other != ref and binds_match(bind.endpoint, text)
    ]
    return found or [Link(ref, None, text, spec.type, None, None, transport, external, index)]
