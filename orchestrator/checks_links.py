"""Endpoints, binds and links: who talks to whom (E120-E128, W202-W206, W208).

A *link* joins a connecting socket to a binding one: a ``node.socket``
reference links to that socket's bind, a literal connect links to every socket
that binds the same address. Binds are indexed by address, so building all
links is linear in the number of endpoints.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import zmqrules
from .checks_endpoints import BadEndpoint, Literal, parse_literal, parse_reference
from .paths import state_root

if TYPE_CHECKING:
    from .checks import Context
    from .loader import PathKey

Sock = tuple[str, str]  # (node, socket)


@dataclass(frozen=True)
class Bind:
    sock: Sock
    path: PathKey
    text: str
    lit: Literal


@dataclass(frozen=True)
class Link:
    connector: Sock
    binder: Sock
    path: PathKey  # the connect endpoint that made it
    transport: str


def endpoint_path(ctx: Context, node: str, sock: str, kind: str, index: int) -> PathKey:
    path = ctx.item(("nodes", node, "sockets", sock, kind), index)
    return path + ("endpoint",) if path + ("endpoint",) in ctx.source.values else path


def check_links(ctx: Context) -> None:
    links, external, broken = collect_links(ctx)
    _check_link_types(ctx, links)
    _count_peers(ctx, links, external, broken)


def collect_links(ctx: Context) -> tuple[list[Link], set[Sock], set[Sock]]:
    """Every link, the sockets with an outside peer, and those already reported as broken
    (their endpoint problems are emitted here: E120 E122 E124-E126, W204 W206 W208)."""
    run_dir = state_root(ctx.environ) / ctx.topology.name
    binds: dict[Sock, list[Bind]] = defaultdict(list)
    external: set[Sock] = set()
    broken: set[Sock] = set()  # sockets already reported for a bad or dangling endpoint
    bad_binds: set[Sock] = set()
    for node, spec in ctx.topology.nodes.items():
        for sname, sock in spec.sockets.items():
            for i, ep in enumerate(sock.bind):
                path = endpoint_path(ctx, node, sname, "bind", i)
                if ep.external:
                    external.add((node, sname))
                try:
                    if ep.is_reference:
                        raise BadEndpoint("E126", f"socket {node}.{sname} binds '{ep.endpoint}', "
                                          "but a bind needs a literal endpoint",
                                          "bind on tcp://127.0.0.1:*, ipc://NAME or inproc://NAME; "
                                          "references like node.socket are for connect")
                    lit = parse_literal(ep.endpoint, connect=False, socket_type=sock.type,
                                        run_dir=run_dir)
                except BadEndpoint as exc:
                    ctx.emit(path, exc.code, exc.message, exc.hint)
                    broken.add((node, sname))
                    bad_binds.add((node, sname))
                    continue
                binds[(node, sname)].append(Bind((node, sname), path, ep.endpoint, lit))
                if lit.transport in ("tcp", "udp", "ws", "wss") and lit.host == "*":
                    ctx.emit(path, "W206", f"socket {node}.{sname} binds {ep.endpoint} on every "
                             "network interface, so other machines can reach it",
                             "bind on 127.0.0.1 unless other hosts should connect")
                _pair_over_tcp(ctx, node, sname, sock.type, path, lit)
    index = _index_binds(ctx, binds)
    links = _resolve_connects(ctx, binds, index, run_dir, external, broken, bad_binds)
    return links, external, broken


def _pair_over_tcp(ctx: Context, node: str, sname: str, stype: str, path: PathKey,
                   lit: Literal) -> None:
    if stype == "PAIR" and lit.transport == "tcp":
        ctx.emit(path, "W208", f"PAIR socket {node}.{sname} uses tcp, and a PAIR does not "
                 "reconnect after its peer restarts", "use ipc or inproc for PAIR sockets, or a "
                 "DEALER/ROUTER pair over tcp")


def _index_binds(ctx: Context, binds: dict[Sock, list[Bind]]) -> dict[tuple[str, str], list[Bind]]:
    """Group binds by address and report E122 for every bind that takes a taken address."""
    index: dict[tuple[str, str], list[Bind]] = defaultdict(list)
    for entries in binds.values():
        for b in entries:
            if not b.lit.wildcard:
                index[b.lit.key].append(b)
    for entries in index.values():
        first_any: Bind | None = None
        first_wild: Bind | None = None
        by_host: dict[str, Bind] = {}
        for b in entries:
            node = b.sock[0]
            n = ctx.replicas(node)
            if b.lit.transport == "inproc":
                # Every process has its own inproc namespace: only one node can collide with itself.
                other = by_host.get(node)
                by_host.setdefault(node, b)
            else:
                other = first_any if b.lit.host == "*" else (first_wild or by_host.get(b.lit.host))
                by_host.setdefault(b.lit.host, b)
                if n > 1:
                    ctx.emit(b.path, "E122",
                             f"node {node} has {n} replicas and each would bind {b.text}, but "
                             "only one process can bind an address",
                             "let the replicas connect to one binding node instead, or bind "
                             "on tcp port * (topo gives each replica its own port)")
            if other is not None:
                ctx.emit(b.path, "E122",
                         f"socket {'.'.join(b.sock)} binds {b.text}, which socket "
                         f"{'.'.join(other.sock)} already binds (line {_line(ctx, other.path)})",
                         "give each bind its own address, or use port * and connect by reference")
            first_any = first_any or b
            if b.lit.host == "*" and b.lit.transport != "inproc":
                first_wild = first_wild or b
    return index


def _line(ctx: Context, path: PathKey) -> int:
    return ctx.source.value(*path).line


def _resolve_connects(ctx: Context, binds: dict[Sock, list[Bind]],
                      index: dict[tuple[str, str], list[Bind]], run_dir: Path,
                      external: set[Sock], broken: set[Sock],
                      bad_binds: set[Sock]) -> list[Link]:
    from .checks import did_you_mean

    links: list[Link] = []
    nodes = ctx.topology.nodes
    for node, spec in nodes.items():
        for sname, sock in spec.sockets.items():
            me = (node, sname)
            for i, ep in enumerate(sock.connect):
                path = endpoint_path(ctx, node, sname, "connect", i)
                if ep.external:
                    external.add(me)
                try:
                    if not ep.is_reference:
                        lit = parse_literal(ep.endpoint, connect=True, socket_type=sock.type,
                                            run_dir=run_dir)
                        _pair_over_tcp(ctx, node, sname, sock.type, path, lit)
                        found = _match_literal(index, lit, me)
                        links.extend(Link(me, b.sock, path, lit.transport) for b in found)
                        if not found and not ep.external:
                            ctx.emit(path, "W204", f"socket {node}.{sname} connects to "
                                     f"{ep.endpoint}, which no node in this topology binds",
                                     "connect by reference (node.socket) to a socket of this "
                                     "topology, or mark an outside peer with `{endpoint: ..., "
                                     "external: true}`")
                            broken.add(me)
                        continue
                    tnode, tsock, want = parse_reference(ep.endpoint)
                except BadEndpoint as exc:
                    ctx.emit(path, exc.code, exc.message, exc.hint)
                    broken.add(me)
                    continue
                problem = ""
                if tnode not in nodes:
                    problem = f"there is no node {tnode}{did_you_mean(tnode, nodes)}"
                    hint = "a reference names a node and one of its sockets: node.socket"
                elif tsock not in nodes[tnode].sockets:
                    problem = (f"node {tnode} has no socket {tsock}"
                               f"{did_you_mean(tsock, nodes[tnode].sockets)}")
                    hint = f"node {tnode}'s sockets are " + (", ".join(nodes[tnode].sockets)
                                                             or "none")
                elif (tnode, tsock) == me:
                    problem = "a socket cannot connect to itself"
                    hint = "name the socket of another node"
                if problem:
                    ctx.emit(path, "E120", f"socket {node}.{sname} connects to {ep.endpoint}, but "
                             f"{problem}", hint)
                    broken.add(me)
                    continue
                target = _pick_bind(binds.get((tnode, tsock), []), want, tnode != node)
                if target is None and (tnode, tsock) in bad_binds and not want:
                    broken.add(me)  # its binds were reported already
                    continue
                if target is None:
                    kind = f"no {want} endpoint" if want else "nothing"
                    ctx.emit(path, "E120", f"socket {node}.{sname} connects to {ep.endpoint}, but "
                             f"{tnode}.{tsock} binds {kind}, so there is nothing to connect to",
                             f"give {tnode}.{tsock} a `bind:`"
                             + (f" on {want}" if want else "") + ", or connect the other way round")
                    broken.add(me)
                    continue
                links.append(Link(me, (tnode, tsock), path, target.lit.transport))
    return links


def _pick_bind(candidates: list[Bind], want: str | None, other_node: bool) -> Bind | None:
    if want is not None:
        candidates = [b for b in candidates if b.lit.transport == want]
    elif other_node:
        # Without @transport a reference from another process takes a bind it can reach.
        reachable = [b for b in candidates if b.lit.transport != "inproc"]
        candidates = reachable or candidates
    return candidates[0] if candidates else None


def _match_literal(index: dict[tuple[str, str], list[Bind]], lit: Literal, me: Sock) -> list[Bind]:
    entries = index.get(lit.key, [])
    if lit.transport in ("tcp", "udp", "ws", "wss") and lit.host != "*":
        entries = [b for b in entries if b.lit.host in (lit.host, "*")]
    return [b for b in entries if b.sock != me]


def _check_link_types(ctx: Context, links: list[Link]) -> None:
    from .checks import words

    for link in links:
        a_type = ctx.topology.nodes[link.connector[0]].sockets[link.connector[1]].type
        b_type = ctx.topology.nodes[link.binder[0]].sockets[link.binder[1]].type
        a, b = ".".join(link.connector), ".".join(link.binder)
        if "STREAM" in (a_type, b_type):
            if a_type != b_type:
                ctx.emit(link.path, "E128", f"{a_type} socket {a} cannot talk to {b_type} socket "
                         f"{b}: a STREAM socket speaks raw TCP, not ZeroMQ",
                         "join a STREAM socket only to plain TCP programs or another STREAM")
        elif (a_type in zmqrules.PEERS and b_type in zmqrules.PEERS
              and not zmqrules.can_peer(a_type, b_type)):
            peers = zmqrules.valid_peers(a_type)
            ctx.emit(link.path, "E121", f"{a_type} socket {a} cannot talk to {b_type} socket {b}",
                     f"a {a_type} socket's peers are {words(peers)}" if peers
                     else f"a {a_type} socket has no peers")
        if link.transport == "inproc" and link.connector[0] != link.binder[0]:
            ctx.emit(link.path, "E123", f"socket {a} reaches {b} over inproc, but inproc only "
                     f"works inside one process and nodes {link.connector[0]} and "
                     f"{link.binder[0]} are different processes",
                     "use ipc:// (or tcp://) between nodes")


def _count_peers(ctx: Context, links: list[Link], external: set[Sock], broken: set[Sock]) -> None:
    """E127, W202, W203, W205: what each socket's set of peers adds up to."""
    nodes = ctx.topology.nodes
    peers: dict[Sock, int] = defaultdict(int)
    pullers: dict[Sock, int] = defaultdict(int)
    subscribed: set[Sock] = set()
    for link in links:
        for me, other in ((link.connector, link.binder), (link.binder, link.connector)):
            n = ctx.replicas(other[0])
            peers[me] += n
            my_type = nodes[me[0]].sockets[me[1]].type
            other_type = nodes[other[0]].sockets[other[1]].type
            if my_type == "PUSH" and other_type == "PULL":
                pullers[me] += n
            if my_type in zmqrules.PUBLISHERS and other_type in zmqrules.SUBSCRIBERS:
                subscribed.add(me)
    for me in external:
        peers[me] += 1
    for node, spec in nodes.items():
        for sname, sock in spec.sockets.items():
            me, path, full = (node, sname), ("nodes", node, "sockets", sname), f"{node}.{sname}"
            if sock.type == "PAIR" and peers[me] > 1:
                ctx.emit(path, "E127", f"PAIR socket {full} has {peers[me]} peers, counting "
                         "replicas, but a PAIR talks to exactly one",
                         "use DEALER/ROUTER for one-to-many, or give the PAIR a single "
                         "single-replica peer", key=True)
            if pullers[me] > 1:
                ctx.emit(path, "W203", f"PUSH socket {full} feeds {pullers[me]} PULL sockets "
                         "(counting replicas): the first to connect gets a burst of messages "
                         "before the others join", "start the pullers first (depends_on) or "
                         "accept an uneven start", key=True)
            if me in subscribed:
                ctx.emit(path, "W202", f"{sock.type} socket {full} may send before its "
                         "subscribers have joined (slow joiner): early messages are lost",
                         "let subscribers join first (depends_on plus a short wait, or a "
                         "REQ/REP handshake), or accept losing the first messages", key=True)
            if not peers[me] and me not in broken:
                ctx.emit(path, "W205", f"socket {full} has no peer in this topology",
                         "connect it to a socket of another node, or mark an outside peer "
                         "with `external: true`", key=True)
