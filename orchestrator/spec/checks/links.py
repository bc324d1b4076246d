"""Endpoints, binds and links: who talks to whom (E120-E128, W202-W206, W208).

The links themselves come from ``links.resolve``, the resolver `topo graph`
and `topo explain` use too; this module turns what it found into diagnostics.
Binds are indexed by address there, so all of this is linear in the number
of endpoints.
"""

from __future__ import annotations

from collections import defaultdict

from orchestrator.spec import zmqrules
from orchestrator.spec.checks.context import Context
from orchestrator.spec.links import Bound, Link, Resolution, SocketRef
from orchestrator.spec.phrases import did_you_mean, words
from orchestrator.spec.security import protected
from orchestrator.spec.source import PathKey


def endpoint_path(ctx: Context, node: str, sock: str, kind: str, index: int) -> PathKey:
    path = ctx.item(("nodes", node, "sockets", sock, kind), index)
    return path + ("endpoint",) if path + ("endpoint",) in ctx.source.values else path


def check_links(ctx: Context) -> None:
    links, external, broken = collect_links(ctx)
    _check_link_types(ctx, links)
    _count_peers(ctx, links, external, broken)


def collect_links(ctx: Context) -> tuple[list[Link], set[SocketRef], set[SocketRef]]:
    """The links between sockets of the topology, the sockets with an outside peer, and those
    already reported as broken (their endpoint problems are emitted here: E120 E122
    E124-E126, W204 W206 W208)."""
    found = ctx.resolution()
    external = {b.sock for b in found.binds if b.external}
    bad_binds = {b.sock for b in found.binds if b.lit is None}
    broken = set(bad_binds)  # sockets already reported for a bad or dangling endpoint
    for b in found.binds:
        _check_bind(ctx, b)
    _check_collisions(ctx, found)
    links: list[Link] = []
    for link in found.links:
        if link.connector is None:
            continue
        if link.external:
            external.add(link.connector)
        if link.binder is None or link.fault is not None:
            if _check_connect(ctx, link, bad_binds):
                broken.add(link.connector)
            continue
        if "://" in link.endpoint and (not links or links[-1].connector != link.connector
                                       or links[-1].index != link.index):
            _pair_over_tcp(ctx, link.connector, _connect_path(ctx, link), link.transport)
        links.append(link)
    return links, external, broken


def _connect_path(ctx: Context, link: Link) -> PathKey:
    assert link.connector is not None
    return endpoint_path(ctx, link.connector.node, link.connector.socket, "connect", link.index)


def _check_bind(ctx: Context, b: Bound) -> None:
    path = endpoint_path(ctx, b.sock.node, b.sock.socket, "bind", b.index)
    if b.lit is None:
        assert b.error is not None
        ctx.emit(path, b.error.code, b.error.message, b.error.hint)
        return
    if b.lit.transport in ("tcp", "udp", "ws", "wss") and b.lit.host == "*":
        ctx.emit(path, "W206", f"socket {b.sock} binds {b.text} on every network interface, so "
                 "other machines can reach it", _every_interface_hint(ctx, b))
    _pair_over_tcp(ctx, b.sock, path, b.lit.transport)


def _every_interface_hint(ctx: Context, b: Bound) -> str:
    """W206's hint: what CURVE does (or would do) for a bind other hosts can reach."""
    hint = "bind on 127.0.0.1 unless other hosts should connect"
    node = ctx.topology.nodes[b.sock.node]
    assert b.lit is not None
    if not protected(b.lit.transport) or node.sockets[b.sock.socket].type == "STREAM":
        return hint  # CURVE cannot cover it (E129 says so when curve is on)
    if not ctx.topology.security.curve:
        return (f"{hint}; if they should, set `security: {{curve: true}}` so the link is "
                "encrypted and only known keys get in")
    if node.kind == "command":
        return (f"{hint}: with security.curve the link is encrypted, but a command node's "
                "program checks no client keys (W209), and any machine can reach the port")
    return (f"{hint}: with security.curve the link is encrypted and only the file's nodes and "
            "the `allow:` keys get in, but any machine can still reach the port")


def _pair_over_tcp(ctx: Context, sock: SocketRef, path: PathKey, transport: str | None) -> None:
    if transport == "tcp" and ctx.topology.nodes[sock.node].sockets[sock.socket].type == "PAIR":
        ctx.emit(path, "W208", f"PAIR socket {sock} uses tcp, and a PAIR does not reconnect "
                 "after its peer restarts", "use ipc or inproc for PAIR sockets, or a "
                 "DEALER/ROUTER pair over tcp")


def _check_connect(ctx: Context, link: Link, bad_binds: set[SocketRef]) -> bool:
    """Report a connect that links nowhere; True when its socket counts as broken."""
    assert link.connector is not None
    me, text, fault = link.connector, link.endpoint, link.fault
    path = _connect_path(ctx, link)
    if fault is None:  # a literal that parsed
        _pair_over_tcp(ctx, me, path, link.transport)
        if link.external:
            return False
        ctx.emit(path, "W204", f"socket {me} connects to {text}, which no node in this "
                 "topology binds", "connect by reference (node.socket) to a socket of this "
                 "topology, or mark an outside peer with `{endpoint: ..., external: true}`")
        return True
    if fault.error is not None:
        ctx.emit(path, fault.error.code, fault.error.message, fault.error.hint)
        return True
    assert fault.target is not None
    tnode, tsock, want = fault.target.node, fault.target.socket, fault.target.transport
    nodes = ctx.topology.nodes
    if fault.reason == "no-node":
        problem = f"there is no node {tnode}{did_you_mean(tnode, nodes)}"
        hint = "a reference names a node and one of its sockets: node.socket"
    elif fault.reason == "no-socket":
        problem = f"node {tnode} has no socket {tsock}{did_you_mean(tsock, nodes[tnode].sockets)}"
        hint = f"node {tnode}'s sockets are " + (", ".join(nodes[tnode].sockets) or "none")
    elif fault.reason == "itself":
        problem, hint = "a socket cannot connect to itself", "name the socket of another node"
    elif SocketRef(tnode, tsock) in bad_binds and not want:
        return True  # its binds were reported already
    else:
        kind = f"no {want} endpoint" if want else "nothing"
        problem = f"{tnode}.{tsock} binds {kind}, so there is nothing to connect to"
        hint = (f"give {tnode}.{tsock} a `bind:`" + (f" on {want}" if want else "")
                + ", or connect the other way round")
    ctx.emit(path, "E120", f"socket {me} connects to {text}, but {problem}", hint)
    return True


def _check_collisions(ctx: Context, found: Resolution) -> None:
    """E122 for every bind that takes a taken address."""
    for entries in found.index.values():
        first_any: Bound | None = None
        first_wild: Bound | None = None
        by_host: dict[str, Bound] = {}
        for b in entries:
            assert b.lit is not None
            node = b.sock.node
            n = ctx.replicas(node)
            path = endpoint_path(ctx, node, b.sock.socket, "bind", b.index)
            if b.lit.transport == "inproc":
                # Every process has its own inproc namespace: only one node can collide with itself.
                other = by_host.get(node)
                by_host.setdefault(node, b)
            else:
                other = first_any if b.lit.host == "*" else (first_wild or by_host.get(b.lit.host))
                by_host.setdefault(b.lit.host, b)
                # A relative ipc path is per replica: the planner binds `name.<replica>`.
                per_replica = b.lit.transport == "ipc" and not b.text.startswith("ipc:///")
                if n > 1 and not per_replica:
                    ctx.emit(path, "E122",
                             f"node {node} has {n} replicas and each would bind {b.text}, but "
                             "only one process can bind an address",
                             "let the replicas connect to one binding node instead, or bind "
                             "on tcp port * (topo gives each replica its own port)")
            if other is not None:
                where = endpoint_path(ctx, other.sock.node, other.sock.socket, "bind", other.index)
                ctx.emit(path, "E122",
                         f"socket {b.sock} binds {b.text}, which socket {other.sock} already "
                         f"binds (line {ctx.source.value(*where).line})",
                         "give each bind its own address, or use port * and connect by reference")
            first_any = first_any or b
            if b.lit.host == "*" and b.lit.transport != "inproc":
                first_wild = first_wild or b


def _check_link_types(ctx: Context, links: list[Link]) -> None:
    """E121 E123 E128. Where a link's connect sits is looked up only for a link that is wrong:
    two source-map look-ups per link, and nearly every link is right."""
    for link in links:
        assert link.connector is not None and link.binder is not None
        a_type, b_type = link.connector_type, link.binder_type
        a, b = link.connector, link.binder
        if "STREAM" in (a_type, b_type):
            if a_type != b_type:
                ctx.emit(_connect_path(ctx, link), "E128", f"{a_type} socket {a} cannot talk to "
                         f"{b_type} socket {b}: a STREAM socket speaks raw TCP, not ZeroMQ",
                         "join a STREAM socket only to plain TCP programs or another STREAM")
        elif (a_type in zmqrules.PEERS and b_type in zmqrules.PEERS
              and not zmqrules.can_peer(a_type, b_type)):
            peers = zmqrules.valid_peers(a_type)
            ctx.emit(_connect_path(ctx, link), "E121",
                     f"{a_type} socket {a} cannot talk to {b_type} socket {b}",
                     f"a {a_type} socket's peers are {words(peers)}" if peers
                     else f"a {a_type} socket has no peers")
        if link.transport == "inproc" and a.node != b.node:
            ctx.emit(_connect_path(ctx, link), "E123", f"socket {a} reaches {b} over inproc, "
                     f"but inproc only works inside one process and nodes {a.node} and {b.node} "
                     "are different processes",
                     "use ipc:// (or tcp://) between nodes")


def _count_peers(ctx: Context, links: list[Link], external: set[SocketRef],
                 broken: set[SocketRef]) -> None:
    """E127, W202, W203, W205: what each socket's set of peers adds up to."""
    nodes = ctx.topology.nodes
    # Counted by (node, socket) names: a SocketRef key hashes through its dataclass __hash__,
    # a Python call, and this runs four times per link and again for every socket.
    peers: dict[tuple[str, str], int] = defaultdict(int)
    pullers: dict[tuple[str, str], int] = defaultdict(int)
    subscribed: set[tuple[str, str]] = set()
    for link in links:
        assert link.connector is not None and link.binder is not None
        a, b = link.connector, link.binder
        a_key, b_key, a_type, b_type = (a.node, a.socket), (b.node, b.socket), \
            link.connector_type, link.binder_type
        a_n, b_n = ctx.replicas(a.node), ctx.replicas(b.node)
        peers[a_key] += b_n
        peers[b_key] += a_n
        if a_type == "PUSH" and b_type == "PULL":
            pullers[a_key] += b_n
        if b_type == "PUSH" and a_type == "PULL":
            pullers[b_key] += a_n
        if a_type in zmqrules.PUBLISHERS and b_type in zmqrules.SUBSCRIBERS:
            subscribed.add(a_key)
        if b_type in zmqrules.PUBLISHERS and a_type in zmqrules.SUBSCRIBERS:
            subscribed.add(b_key)
    for me in external:
        peers[me.node, me.socket] += 1
    unlinked = {(me.node, me.socket) for me in broken}
    for node, spec in nodes.items():
        for sname, sock in spec.sockets.items():
            key, path = (node, sname), ("nodes", node, "sockets", sname)
            full = f"{node}.{sname}"  # str(SocketRef(node, sname))
            count, pulled = peers.get(key, 0), pullers.get(key, 0)
            if sock.type == "PAIR" and count > 1:
                ctx.emit(path, "E127", f"PAIR socket {full} has {count} peers, counting "
                         "replicas, but a PAIR talks to exactly one",
                         "use DEALER/ROUTER for one-to-many, or give the PAIR a single "
                         "single-replica peer", key=True)
            if pulled > 1:
                ctx.emit(path, "W203", f"PUSH socket {full} feeds {pulled} PULL sockets "
                         "(counting replicas): the first to connect gets a burst of messages "
                         "before the others join", "start the pullers first (depends_on) or "
                         "accept an uneven start", key=True)
            if key in subscribed:
                ctx.emit(path, "W202", f"{sock.type} socket {full} may send before its "
                         "subscribers have joined (slow joiner): early messages are lost",
                         "let subscribers join first (depends_on plus a short wait, or a "
                         "REQ/REP handshake), or accept losing the first messages", key=True)
            if not count and key not in unlinked:
                ctx.emit(path, "W205", f"socket {full} has no peer in this topology",
                         "connect it to a socket of another node, or mark an outside peer "
                         "with `external: true`", key=True)
