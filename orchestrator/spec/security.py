"""CURVE in a plan (``security: {curve: true}``): who may connect where, and with which key.

From the links of the file (``links.py``, the same resolver the validator and the
drawings use), for every socket on tcp or ipc:

- a socket that binds is the CURVE server of its binds, and lets in the public
  keys of the nodes that the file connects to it, plus the run's ``allow`` keys
  (``security.allow`` and ``topo up --allow``);
- each connect gets the public key of the node it reaches as its server key; a
  connect that reaches no node of the file (a peer outside the topology) and an
  inproc connect stay plain.

Pure: the keys are made by ``start/prepare.py`` and passed in. ``link_security`` says
the same per link, for `topo explain` and `topo graph`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestrator.plan import SocketPlan
from orchestrator.spec.links import Link, resolve
from orchestrator.spec.model import Topology
from orchestrator.structs import replace

# The transports CURVE protects; inproc never leaves the process and has no handshake.
PROTECTED = frozenset({"tcp", "ipc"})


# What CURVE does to one link (``link_security``).
AUTHENTICATED = "authenticated"  # encrypted, and the binder's ZAP handler checks the client
ENCRYPTED = "encrypted"  # encrypted only: the binder is a command node, with no topo ZAP handler
PLAIN = "plain"  # inproc, or a connect to a peer outside the file


def protected(transport: str | None) -> bool:
    return transport in PROTECTED


def link_security(topology: Topology, link: Link) -> str:
    """``AUTHENTICATED``, ``ENCRYPTED`` or ``PLAIN`` for ``link`` in a run of ``topology``;
    "" when the file does not use CURVE or the link does not work.

    As ``CurveLinks`` sets the sockets: a binder on tcp or ipc is a CURVE server (also
    for the outside peers of a bind marked external, which need a key from ``allow``);
    a connect that reaches no node of the file, and any link on inproc, stays plain.
    """
    if not topology.security.curve or link.problem:
        return ""
    if not protected(link.transport) or link.binder is None:
        return PLAIN
    binder = topology.nodes.get(link.binder.node)
    if binder is not None and binder.command is not None:
        return ENCRYPTED
    return AUTHENTICATED


class CurveLinks:
    """The CURVE side of every socket of a run, from its links and its nodes' public keys."""

    def __init__(self, topology: Topology, keys: Mapping[str, str], allow: Sequence[str],
                 links: Sequence[Link] | None = None) -> None:
        self.keys = keys
        self.peers: dict[tuple[str, str, int], str] = {}  # (node, socket, connect index) -> node
        clients: dict[tuple[str, str], dict[str, None]] = {}
        for link in resolve(topology).links if links is None else links:
            c, b = link.connector, link.binder
            if c is None or b is None or link.bind_endpoint is None:
                continue  # a peer outside the file, or a broken link (the validator said so)
            self.peers.setdefault((c.node, c.socket, link.index), b.node)
            clients.setdefault((b.node, b.socket), {})[keys[c.node]] = None
        outside = dict.fromkeys(allow)
        self.allowed = {sock: tuple({**found, **outside}) for sock, found in clients.items()}
        self.outside = tuple(outside)

    def secure(self, node: str, plan: SocketPlan,
               connects: Sequence[tuple[str, int]]) -> SocketPlan:
        """``plan`` with its CURVE fields; ``connects`` pairs each endpoint with its entry."""
        server = any(protected(_transport(ep)) for ep in plan.bind)
        serverkeys = tuple(self._serverkey(node, plan.name, i, ep) for ep, i in connects)
        return replace(
            plan, curve_server=server,
            allow=self.allowed.get((node, plan.name), self.outside) if server else (),
            serverkeys=serverkeys if any(serverkeys) else ())

    def _serverkey(self, node: str, sock: str, index: int, endpoint: str) -> str:
        peer = self.peers.get((node, sock, index))
        if peer is None or not protected(_transport(endpoint)):
            return ""
        return self.keys[peer]


def _transport(endpoint: str) -> str:
    return endpoint.partition("://")[0].lower()
