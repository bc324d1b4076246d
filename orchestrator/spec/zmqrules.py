"""What ZeroMQ allows: socket types, which types can be peers, transports, options.

Pure data plus small lookups. The peer table is checked against libzmq itself
by ``tests/spec/test_peer_matrix.py``.
"""

from __future__ import annotations

import zmq

STANDARD_TYPES: tuple[str, ...] = (
    "PAIR", "PUB", "SUB", "REQ", "REP", "DEALER", "ROUTER", "PULL", "PUSH", "XPUB", "XSUB",
)
"""The 11 non-draft ZMTP socket types (STREAM speaks raw TCP, not ZMTP)."""

DRAFT_TYPES: tuple[str, ...] = ("SERVER", "CLIENT", "RADIO", "DISH", "GATHER", "SCATTER", "DGRAM",
                                "PEER", "CHANNEL")
ALL_TYPES: tuple[str, ...] = STANDARD_TYPES + ("STREAM",) + DRAFT_TYPES

PEERS: dict[str, frozenset[str]] = {
    "PAIR": frozenset({"PAIR"}),
    "PUB": frozenset({"SUB", "XSUB"}),
    "SUB": frozenset({"PUB", "XPUB"}),
    "REQ": frozenset({"REP", "ROUTER"}),
    "REP": frozenset({"REQ", "DEALER"}),
    "DEALER": frozenset({"REP", "DEALER", "ROUTER"}),
    "ROUTER": frozenset({"REQ", "DEALER", "ROUTER"}),
    "PULL": frozenset({"PUSH"}),
    "PUSH": frozenset({"PULL"}),
    "XPUB": frozenset({"SUB", "XSUB"}),
    "XSUB": frozenset({"PUB", "XPUB"}),
    "STREAM": frozenset(),
    # draft pairs
    "SERVER": frozenset({"CLIENT"}),
    "CLIENT": frozenset({"SERVER"}),
    "RADIO": frozenset({"DISH"}),
    "DISH": frozenset({"RADIO"}),
    "SCATTER": frozenset({"GATHER"}),
    "GATHER": frozenset({"SCATTER"}),
    "PEER": frozenset({"PEER"}),
    "CHANNEL": frozenset({"CHANNEL"}),
    "DGRAM": frozenset(),
}

SUBSCRIBERS = frozenset({"SUB", "XSUB"})
PUBLISHERS = frozenset({"PUB", "XPUB"})
PUBSUB_TYPES = SUBSCRIBERS | PUBLISHERS
UDP_TYPES = frozenset({"RADIO", "DISH", "DGRAM"})
KNOWN_TRANSPORTS = ("tcp", "ipc", "inproc", "pgm", "epgm", "norm", "tipc", "vmci", "udp", "ws",
                    "wss")


def can_peer(a: str, b: str) -> bool:
    return b in PEERS.get(a, frozenset())


def valid_peers(a: str) -> list[str]:
    return sorted(PEERS.get(a, frozenset()))


def is_available(socket_type: str) -> bool:
    """Whether the installed libzmq can make sockets of this type."""
    if socket_type not in ALL_TYPES:
        return False
    return hasattr(zmq, socket_type) and (socket_type not in DRAFT_TYPES or zmq.has("draft"))


def transport_available(transport: str) -> bool:
    if transport in ("tcp", "inproc"):
        return True
    try:
        return bool(zmq.has(transport))
    except Exception:  # noqa: BLE001 - zmq.has raises for names it never heard of
        return False


def socket_type_number(socket_type: str) -> int:
    return int(getattr(zmq, socket_type))


def _option_names() -> dict[str, zmq.SocketOption]:
    # __members__ keeps the aliases too (identity is routing_id).
    return {name.lower(): opt for name, opt in zmq.SocketOption.__members__.items()}


SOCKET_OPTIONS: dict[str, zmq.SocketOption] = _option_names()
"""Socket options by their pyzmq names, lower case (``sndhwm``, ``router_mandatory``, ...)."""

# What each type does with the messages it sends and receives, in plain words.
PATTERNS: dict[str, str] = {
    "PAIR": "exclusive pair: talks to exactly one peer",
    "PUB": "fan-out: every message goes to every subscriber whose subscription matches",
    "SUB": "fair-queue: receives from all publishers, filtered by its subscriptions",
    "XPUB": "fan-out like PUB, and it also sees subscription messages",
    "XSUB": "fair-queue like SUB, and it sends subscriptions upstream itself",
    "REQ": "round-robin requests, strictly one request then one reply",
    "REP": "fair-queue requests, strictly one reply per request",
    "DEALER": "round-robin out, fair-queue in, with no lockstep",
    "ROUTER": "explicit addressing: every message starts with the identity of its peer",
    "PUSH": "round-robin: each message goes to one puller, in turn",
    "PULL": "fair-queue: takes messages from all pushers in turn",
    "STREAM": "raw TCP: each message is the peer id and a chunk of bytes",
}
