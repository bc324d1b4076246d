"""Parsing one endpoint for the validator: a literal ZeroMQ endpoint or a ``node.socket`` reference.

Pure. ``parse_literal`` returns a ``Literal`` whose ``key`` is what two binds
collide on and what a literal connect is matched against, or raises
``BadEndpoint`` with the code (E126 malformed, E125 transport) and a sentence.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from orchestrator.paths import IPC_PATH_MAX
from orchestrator.spec import zmqrules

REFERENCE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_-]*)\.([A-Za-z0-9_][A-Za-z0-9_-]*)(?:@(\w+))?$")
WILDCARD_HOSTS = frozenset({"*", "0.0.0.0", "[::]", "::", "[0:0:0:0:0:0:0:0]"})
WILDCARD_PORTS = frozenset({"*", "0"})
# Transports whose address is host:port.
HOST_PORT = frozenset({"tcp", "udp", "ws", "wss"})


class BadEndpoint(ValueError):
    def __init__(self, code: str, message: str, hint: str):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


@dataclass(frozen=True)
class Literal:
    transport: str
    host: str  # host:port transports: normalised host, "*" for every interface
    port: str  # "*" for an ephemeral port; "" where there is no port
    address: str  # ipc: the resolved path; inproc: the name; others: the text after ://

    @property
    def wildcard(self) -> bool:
        """Bound to an address chosen at bind time: never collides, never matched literally."""
        return self.port == "*" or (self.transport == "ipc" and self.address == "*")

    @property
    def key(self) -> tuple[str, str]:
        """Two binds with the same key (hosts aside, see ``host``) take the same address."""
        return (self.transport, self.port if self.transport in HOST_PORT else self.address)


def parse_reference(text: str) -> tuple[str, str, str | None]:
    m = REFERENCE.match(text)
    if not m:
        raise BadEndpoint("E126", f"'{text}' is neither an endpoint like tcp://host:port nor a "
                          "reference like node.socket",
                          "write a literal endpoint (tcp://127.0.0.1:5555, ipc://name, "
                          "inproc://name) or node.socket, optionally node.socket@tcp")
    transport = m.group(3)
    if transport is not None and transport.lower() not in zmqrules.KNOWN_TRANSPORTS:
        raise BadEndpoint("E126", f"'{text}' asks for the unknown transport '{transport}'",
                          "pick one of the target's binds with @tcp, @ipc or @inproc")
    return m.group(1), m.group(2), transport.lower() if transport else None


def parse_literal(text: str, *, connect: bool, socket_type: str | None,
                  run_dir: Path | None) -> Literal:
    """``socket_type`` None skips E125 (what this libzmq and the socket can use); ``run_dir``
    None keeps relative ipc paths relative, which is enough to compare them."""
    transport, sep, address = text.partition("://")
    transport = transport.lower()
    if not sep:
        raise BadEndpoint("E126", f"'{text}' is not an endpoint", "write transport://address, "
                          "like tcp://127.0.0.1:5555")
    if transport not in zmqrules.KNOWN_TRANSPORTS:
        raise BadEndpoint("E126", f"'{text}' uses the unknown transport '{transport}'",
                          "ZeroMQ transports are " + ", ".join(zmqrules.KNOWN_TRANSPORTS))
    if not address:
        raise BadEndpoint("E126", f"'{text}' has nothing after '{transport}://'",
                          _ADDRESS_HINTS.get(transport, "write the address after ://"))
    if transport in HOST_PORT:
        lit = _host_port(text, transport, address, connect)
    elif transport == "ipc":
        lit = Literal("ipc", "", "", _ipc_path(text, address, run_dir))
    else:
        lit = Literal(transport, "", "", address)
    if socket_type is not None:
        _transport_fits(text, transport, socket_type)
    return lit


_ADDRESS_HINTS = {
    "tcp": "write tcp://HOST:PORT, like tcp://127.0.0.1:5555 or tcp://127.0.0.1:* to bind",
    "ipc": "write ipc://NAME (a path inside the run folder) or ipc:///absolute/path",
    "inproc": "write inproc://NAME",
}


def _host_port(text: str, transport: str, address: str, connect: bool) -> Literal:
    hostport = address.split("/", 1)[0] if transport in ("ws", "wss") else address
    if connect and ";" in hostport:
        hostport = hostport.rsplit(";", 1)[1]  # tcp://SOURCE;DEST: we care about DEST
    if hostport.startswith("["):
        host, close, rest = hostport.partition("]")
        host += close
        port = rest[1:] if rest.startswith(":") else ""
        ok = bool(close) and rest.startswith(":")
    else:
        host, colon, port = hostport.rpartition(":")
        ok = bool(colon)
    hint = _ADDRESS_HINTS["tcp"].replace("tcp://", f"{transport}://")
    if not ok or not host:
        raise BadEndpoint("E126", f"'{text}' needs a host and a port, like "
                          f"{transport}://127.0.0.1:5555", hint)
    if port in WILDCARD_PORTS:
        if connect:
            raise BadEndpoint("E126", f"'{text}' connects to a wildcard port, but only a bind can "
                              "let the system pick a port",
                              "connect to the binding socket by reference (node.socket), "
                              "which resolves to the real port")
        port = "*"
    elif not port.isdigit() or not 0 < int(port) < 65536:
        raise BadEndpoint("E126", f"'{text}' has the port '{port}', which is not a number from 1 "
                          "to 65535", hint)
    else:
        port = str(int(port))
    host = host.lower()
    if host in WILDCARD_HOSTS:
        host = "*"
    elif host == "localhost":
        host = "127.0.0.1"
    if connect and host == "*" and hostport.startswith("*"):
        raise BadEndpoint("E126", f"'{text}' connects to '*', which only means something for a "
                          "bind",
                          "connect to a host, like 127.0.0.1")
    return Literal(transport, host, port, "")


def _ipc_path(text: str, path: str, run_dir: Path | None) -> str:
    if path == "*":
        return "*"
    if path.startswith("@"):  # Linux abstract namespace: no file, same length limit
        resolved = path
    else:
        if not path.startswith("/") and run_dir is not None:
            path = os.path.join(run_dir, path)
        resolved = os.path.normpath(path)
    size = len(resolved.encode("utf-8", "surrogateescape"))
    if size > IPC_PATH_MAX:
        raise BadEndpoint("E124", f"'{text}' becomes the path {resolved}, {size} bytes long, but a "
                          f"Unix socket path holds at most {IPC_PATH_MAX} bytes",
                          "use a shorter name, or set TOPO_STATE_DIR to a shorter folder")
    return resolved


def _transport_fits(text: str, transport: str, socket_type: str) -> None:
    if not zmqrules.transport_available(transport):
        raise BadEndpoint("E125", f"'{text}' uses the {transport} transport, which this libzmq "
                          "was built without", "use tcp, ipc or inproc")
    if transport in ("pgm", "epgm") and socket_type not in zmqrules.PUBSUB_TYPES:
        raise BadEndpoint("E125", f"'{text}' uses {transport}, a multicast transport that only "
                          f"PUB, SUB, XPUB and XSUB sockets can use, not {socket_type}",
                          "use tcp or ipc for this socket")
    if transport == "udp" and socket_type not in zmqrules.UDP_TYPES:
        raise BadEndpoint("E125", f"'{text}' uses udp, which only RADIO and DISH sockets can use, "
                          f"not {socket_type}", "use tcp or ipc for this socket")
    if socket_type == "STREAM" and transport != "tcp":
        raise BadEndpoint("E125", f"'{text}' uses {transport}, but a STREAM socket speaks raw TCP "
                          "and works only over tcp", "use a tcp:// endpoint")
