"""CURVE (``security:``): what it cannot cover, what it leaves plain, and its key files.

    E111  curve: true, but this libzmq has no CURVE
    E129  curve: true with a STREAM socket, or an endpoint on a transport topo's CURVE
          does not cover (pgm, epgm, udp: no handshake; norm, tipc, vmci, ws, wss: topo
          sets CURVE up on tcp and ipc only, as ``spec/security.py`` does for a run)
    E133  a ``security.allow`` entry that is no readable public key certificate
    W209  a command node binds tcp or ipc: its program has no topo ZAP handler
    W210  a connect that reaches no node of the file stays plain
    W211  ``security.allow`` without curve: true
    N301  an inproc bind: never encrypted (nothing to fix)

The links come from the resolution the links pass made (``Context.resolution``), the
same links ``spec/security.py`` secures in a run.
"""

from __future__ import annotations

from pathlib import Path

import zmq

from orchestrator.certs import KeyFileError, read_public
from orchestrator.spec.cache import reads_files
from orchestrator.spec.checks.context import Context
from orchestrator.spec.checks.links import endpoint_path
from orchestrator.spec.links import Bound, Link
from orchestrator.spec.security import protected

# Transports without a ZMTP handshake: CURVE has nothing to run on.
NO_HANDSHAKE = frozenset({"pgm", "epgm", "udp"})
_OUT = ("move this socket into a topology without `security: {curve: true}`, or drop "
        "curve: true")
_OUT_ENDPOINT = ("use tcp or ipc for this socket, move it into a topology without "
                 "`security: {curve: true}`, or drop curve: true")


def check_security(ctx: Context) -> None:
    _check_allow(ctx)
    if not ctx.topology.security.curve:
        return
    if not zmq.has("curve"):
        ctx.emit(("security", "curve"), "E111", "security.curve is on, but this libzmq was "
                 "built without CURVE", "install a pyzmq whose libzmq has CURVE (the wheels "
                 "on PyPI do; a system libzmq needs libsodium), or set curve: false")
    _check_stream(ctx)
    found = ctx.resolution()
    plain_binds: set[tuple[str, str]] = set()
    for b in found.binds:
        _check_bind(ctx, b, plain_binds)
    seen: set[tuple[str, str, int]] = set()
    for link in found.links:
        if link.connector is not None:
            key = (link.connector.node, link.connector.socket, link.index)
            if key not in seen:
                seen.add(key)
                _check_connect(ctx, link)


def _check_allow(ctx: Context) -> None:
    """E133 for each bad key file (`topo up` reads them, curve or not), W211 without curve."""
    allow = ctx.topology.security.allow
    if allow and not ctx.topology.security.curve:
        ctx.emit(("security", "allow"), "W211", "security.allow has no effect without "
                 "curve: true: no socket checks client keys", "set `security: {curve: true}`, "
                 "or remove `allow:`", key=True)
    base = Path(ctx.source.file).parent
    if allow:
        reads_files(ctx.environ)  # the key files can change without the topology changing
    for i, entry in enumerate(allow):
        try:
            read_public(base / entry)
        except KeyFileError as exc:
            ctx.emit(ctx.item(("security", "allow"), i), "E133",
                     f"security.allow cannot use {entry}: {exc}",
                     "list public key files (ZeroMQ certificates with a `public-key` line, "
                     "like the NODE.key files in a run's keys/ folder), relative to the "
                     "topology file's folder")


def _check_stream(ctx: Context) -> None:
    for name, node in ctx.topology.nodes.items():
        for sname, sock in node.sockets.items():
            if sock.type == "STREAM":
                ctx.emit(("nodes", name, "sockets", sname, "type"), "E129",
                         f"socket {name}.{sname} is a STREAM socket, which speaks raw TCP with "
                         "no ZeroMQ handshake, so security.curve cannot encrypt it", _OUT)


def _is_stream(ctx: Context, node: str, sock: str) -> bool:
    return ctx.topology.nodes[node].sockets[sock].type == "STREAM"


def _uncovered(ctx: Context, path: tuple[str | int, ...], who: str, text: str,
               transport: str) -> None:
    """E129 for an endpoint whose transport topo's CURVE does not cover."""
    if transport in NO_HANDSHAKE:
        why = f"{transport} has no ZeroMQ handshake, so CURVE cannot protect it"
    else:
        why = ("topo sets CURVE up on tcp and ipc only, so this link would stay plain under "
               "security.curve")
    ctx.emit(path, "E129", f"{who} {text}, but {why}", _OUT_ENDPOINT)


def _check_bind(ctx: Context, b: Bound, plain_binds: set[tuple[str, str]]) -> None:
    if b.lit is None or _is_stream(ctx, b.sock.node, b.sock.socket):
        return  # a bad endpoint (reported already), or a STREAM (reported as a whole)
    path = endpoint_path(ctx, b.sock.node, b.sock.socket, "bind", b.index)
    transport = b.lit.transport
    if transport == "inproc":
        ctx.emit(path, "N301", f"socket {b.sock} binds {b.text}: inproc links are never "
                 f"encrypted, and stay inside node {b.sock.node}'s process",
                 "nothing to change: inproc traffic never leaves the process, so no other "
                 "program can read or join it")
    elif not protected(transport):
        _uncovered(ctx, path, f"socket {b.sock} binds", b.text, transport)
    elif ctx.topology.nodes[b.sock.node].kind == "command":
        sock = (b.sock.node, b.sock.socket)
        if sock in plain_binds:
            return  # one warning per socket
        plain_binds.add(sock)
        ctx.emit(path, "W209", f"node {b.sock.node} runs a command, and topo cannot put a ZAP "
                 f"handler in its program: socket {b.sock} binds {b.text} with encryption "
                 "only, so any client that has the server's public key gets in",
                 "unless the program is Python and builds its sockets with "
                 "orchestrator.node.from_env() (which checks client keys), make it a run: "
                 "node, or check the clients' keys in the program itself (a ZAP handler)")


def _check_connect(ctx: Context, link: Link) -> None:
    me = link.connector
    assert me is not None
    if _is_stream(ctx, me.node, me.socket):
        return
    literal = "://" in link.endpoint
    if literal and link.fault is not None:
        return  # a bad endpoint, reported already
    path = endpoint_path(ctx, me.node, me.socket, "connect", link.index)
    transport = link.transport
    if literal and transport is not None and transport != "inproc" and not protected(transport):
        _uncovered(ctx, path, f"socket {me} connects to", link.endpoint, transport)
    elif link.binder is None and link.fault is None and protected(transport):
        ctx.emit(path, "W210", f"socket {me} connects to {link.endpoint}, which no node of "
                 "this topology binds, so the link stays plain under security.curve: topo "
                 "does not know that server's public key",
                 "bring the peer into this file (topo then makes and hands out its key), or "
                 "accept a plain link to it")
