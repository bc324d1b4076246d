"""Who talks to whom: the one link resolver, shared by the validator, `topo graph` and `explain`.

A link joins a connecting socket to the socket that binds the endpoint it
connects to. ``connect: node.socket[@transport]`` names the binder; a literal
``connect: tcp://...`` finds every socket that binds the same address. A
connect that no socket binds, and a bind marked ``external: true``, is a link
with one side outside the topology.

Pure and linear: binds are parsed once and indexed by the address they take,
so each literal connect is one dict lookup. Why an endpoint does not link is
kept as a ``Fault`` (data, not words), so the validator and the drawings can
each say it their own way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.spec import endpoints as ep
from orchestrator.spec.endpoints import BadEndpoint, Literal
from orchestrator.spec.model import SocketSpec, Topology

AddressKey = tuple[str, str]  # Literal.key


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
class Fault:
    """Why an endpoint does not link.

    ``reason`` is ``endpoint`` (the text itself is wrong: ``error`` says how),
    ``no-node``, ``no-socket``, ``itself`` or ``no-bind`` (the reference's
    target is missing or binds nothing it can use; ``target`` is the reference).
    """

    reason: str
    target: Reference | None = None
    error: BadEndpoint | None = None


@dataclass(frozen=True)
class Bound:
    """One ``bind:`` entry; ``lit`` is None when its text is wrong (``error`` says why)."""

    sock: SocketRef
    index: int
    text: str
    external: bool
    lit: Literal | None
    error: BadEndpoint | None = None


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
    problem: str = ""  # why the connect does not work, in words; "" when it does
    fault: Fault | None = None  # the same as data

    @property
    def internal(self) -> bool:
        """Both ends are sockets of the topology."""
        return self.connector is not None and self.binder is not None


@dataclass(frozen=True)
class Resolution:
    binds: list[Bound]  # every bind entry, in file order
    index: dict[AddressKey, list[Bound]]  # the good, fixed-address binds by address
    links: list[Link]  # per socket in file order: its connects, then its external binds


def links(topology: Topology) -> list[Link]:
    """Every link of the topology, in file order (node, socket, connect index)."""
    return resolve(topology).links


def resolve(topology: Topology, run_dir: Path | None = None) -> Resolution:
    """Resolve every bind and connect. ``run_dir`` places relative ipc paths (and checks their
    length); without it they are compared as written."""
    binds: list[Bound] = []
    by_sock: dict[SocketRef, list[Bound]] = defaultdict(list)
    index: dict[AddressKey, list[Bound]] = defaultdict(list)
    sockets = list(_sockets(topology))  # read twice, and a SocketRef is not free to make
    for me, sock in sockets:
        for i, e in enumerate(sock.bind):
            b = _bind(me, i, e.endpoint, e.external, e.is_reference, sock.type, run_dir)
            binds.append(b)
            if b.lit is not None:
                by_sock[me].append(b)
                if not b.lit.wildcard:
                    index[b.lit.key].append(b)
    resolver = _Connects(topology, by_sock, index, run_dir)
    found: list[Link] = []
    for me, sock in sockets:
        for i, e in enumerate(sock.connect):
            if e.is_reference:
                found.append(resolver.reference(me, sock.type, e.endpoint, i, e.external))
            else:
                found.extend(resolver.literal(me, sock.type, e.endpoint, i, e.external))
        for i, e in enumerate(sock.bind):
            if e.external:
                found.append(Link(None, me, e.endpoint, None, sock.type, e.endpoint, e.transport,
                                  True, i))
    return Resolution(binds, index, found)


def _sockets(topology: Topology) -> Iterator[tuple[SocketRef, SocketSpec]]:
    for node, spec in topology.nodes.items():
        for sname, sock in spec.sockets.items():
            yield SocketRef(node, sname), sock


def _bind(me: SocketRef, i: int, text: str, external: bool, is_reference: bool, stype: str,
          run_dir: Path | None) -> Bound:
    try:
        if is_reference:
            raise BadEndpoint("E126", f"socket {me} binds '{text}', but a bind needs a literal "
                              "endpoint", "bind on tcp://127.0.0.1:*, ipc://NAME or "
                              "inproc://NAME; references like node.socket are for connect")
        lit = ep.parse_literal(text, connect=False, socket_type=stype, run_dir=run_dir)
    except BadEndpoint as exc:
        return Bound(me, i, text, external, None, exc)
    return Bound(me, i, text, external, lit)


class _Connects:
    def __init__(self, topology: Topology, by_sock: dict[SocketRef, list[Bound]],
                 index: dict[AddressKey, list[Bound]], run_dir: Path | None) -> None:
        self.nodes = topology.nodes
        self.by_sock, self.index, self.run_dir = by_sock, index, run_dir

    def _type(self, ref: SocketRef) -> str:
        return self.nodes[ref.node].sockets[ref.socket].type

    def literal(self, me: SocketRef, stype: str, text: str, i: int, external: bool) -> list[Link]:
        transport = text.split("://", 1)[0].lower()
        try:
            lit = ep.parse_literal(text, connect=True, socket_type=stype, run_dir=self.run_dir)
        except BadEndpoint as exc:
            return [Link(me, None, text, stype, None, None, transport, external, i,
                         exc.message, Fault("endpoint", error=exc))]
        return [Link(me, b.sock, text, stype, self._type(b.sock), b.text, lit.transport,
                     external, i) for b in _reaching(self.index, lit, me)] \
            or [Link(me, None, text, stype, None, None, lit.transport, external, i)]

    def reference(self, me: SocketRef, stype: str, text: str, i: int, external: bool) -> Link:
        def broken(fault: Fault, problem: str, binder: SocketRef | None = None) -> Link:
            btype = self._type(binder) if binder is not None else None
            return Link(me, binder, text, stype, btype, None, None, external, i, problem, fault)

        try:
            target = Reference(*ep.parse_reference(text))
        except BadEndpoint as exc:
            return broken(Fault("endpoint", error=exc), exc.message)
        node = self.nodes.get(target.node)
        if node is None:
            return broken(Fault("no-node", target), f"there is no node named '{target.node}'")
        if target.socket not in node.sockets:
            return broken(Fault("no-socket", target),
                          f"node '{target.node}' has no socket named '{target.socket}'")
        binder = SocketRef(target.node, target.socket)
        if binder == me:
            return broken(Fault("itself", target), "a socket cannot connect to itself")
        bind = _pick_bind(self.by_sock.get(binder, []), target.transport,
                          other_node=binder.node != me.node)
        if bind is None or bind.lit is None:
            how = f" over {target.transport}" if target.transport else ""
            return broken(Fault("no-bind", target),
                          f"socket {binder} binds nothing{how}, so nothing can connect to it",
                          binder)
        return Link(me, binder, text, stype, self._type(binder), bind.text, bind.lit.transport,
                    external, i)


def _pick_bind(candidates: list[Bound], want: str | None, *, other_node: bool) -> Bound | None:
    if want is not None:
        candidates = [b for b in candidates if b.lit is not None and b.lit.transport == want]
    elif other_node:
        # Another process cannot reach an inproc bind: take one it can reach, if any.
        reachable = [b for b in candidates if b.lit is not None and b.lit.transport != "inproc"]
        candidates = reachable or candidates
    return candidates[0] if candidates else None


def _reaching(index: dict[AddressKey, list[Bound]], lit: Literal, me: SocketRef) -> list[Bound]:
    """The binds a connect to ``lit`` reaches, other than the connecting socket's own."""
    return [b for b in index.get(lit.key, [])
            if b.sock != me and b.lit is not None and _host_fits(b.lit, lit)]


def _host_fits(bind: Literal, connect: Literal) -> bool:
    if connect.transport not in ep.HOST_PORT or connect.host == "*":
        return True
    return bind.host in (connect.host, "*")


def parse_reference(text: str) -> Reference | None:
    """``node.socket``, ``node.socket@tcp`` -> Reference; None when it is not that shape."""
    try:
        return Reference(*ep.parse_reference(text))
    except BadEndpoint:
        return None


def binds_match(bind: str, connect: str) -> bool:
    """Whether a connect to ``connect`` reaches a socket bound to ``bind``."""
    try:
        b = ep.parse_literal(bind, connect=False, socket_type=None, run_dir=None)
        c = ep.parse_literal(connect, connect=True, socket_type=None, run_dir=None)
    except BadEndpoint:
        return False
    return not b.wildcard and b.key == c.key and _host_fits(b, c)


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
