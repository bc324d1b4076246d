"""The endpoints of one run: tcp ports picked, ipc paths put in the run folder, references
expanded to the binds they name. The rules (docs/reference.md#the-topology-file):

- ``tcp://HOST:*`` or ``tcp://HOST:0`` binds get a port from ``allocate_port(HOST)``,
  one per replica; a plan never hands out the same port twice.
- a relative ``ipc://name`` becomes ``ipc://<run_dir>/name``; a node with more than
  one replica binds ``name.<replica>`` so the replicas do not collide. ``ipc://*``
  gets a name of its own in the run folder.
- a connect reference ``node.socket[@transport]`` resolves to the bind endpoints
  of every replica of that socket (filtered by transport), in replica order.
- literal connects stay, except relative ipc paths, which resolve like binds do
  (and to every replica's path when the binder has replicas).

Pure except for the port allocator, which the planner is given.
"""

from __future__ import annotations

import posixpath
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrator.errors import RunError
from orchestrator.paths import IPC_PATH_MAX
from orchestrator.plan import ReplicaPlan, SocketPlan
from orchestrator.spec.model import Endpoint, NodeSpec, SocketSpec, Topology

if TYPE_CHECKING:
    from orchestrator.spec.group_run import GroupRun
    from orchestrator.spec.security import CurveLinks

PortAllocator = Callable[[str], int]

_ALL_INTERFACES = {"*", "0.0.0.0", "", "[::]", "::"}
_MAX_PORT_TRIES = 64
# Ports this process handed out lately: two plans made one after the other must not share one.
_recent_ports: deque[int] = deque(maxlen=4096)


def free_tcp_port(host: str) -> int:
    """A TCP port that is free on ``host`` now: bind to (host, 0), read the port, close."""
    family, addr = socket.AF_INET, host
    if host in _ALL_INTERFACES:
        family, addr = (socket.AF_INET6, "::") if ":" in host else (socket.AF_INET, "")
    elif host.startswith("["):
        family, addr = socket.AF_INET6, host.strip("[]")
    for _ in range(_MAX_PORT_TRIES):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((addr, 0))
            except OSError:
                # An interface name (tcp://eth0:*) or an unresolvable host: any free port will do.
                sock.bind(("", 0))
            port = int(sock.getsockname()[1])
        if port not in _recent_ports:
            _recent_ports.append(port)
            return port
    raise RunError(f"could not find a free TCP port on {host!r}")


class RunEndpoints:
    """Every replica's resolved bind endpoints, made in one pass so ports stay unique, and
    the sockets of each replica built from them."""

    def __init__(self, topology: Topology, run_dir: str, allocate_port: PortAllocator,
                 group: GroupRun | None = None):
        self._run_dir = run_dir
        self._allocate = allocate_port
        self._used = literal_ports(topology)
        self.group = group  # `topo up --group`: one group of a multi-host run
        if group is not None:
            self._used |= set(group.ports.values())
        self.table: dict[tuple[str, str], list[tuple[str, ...]]] = {}
        # A literal connect to `ipc://name` reaches every replica's `name.<i>`.
        self.by_declared: dict[str, list[str]] = {}
        for name, node in topology.nodes.items():
            for sname, spec in node.sockets.items():
                self.table[(name, sname)] = [
                    tuple(self._bind(ep, name, sname, i, node, b)
                          for b, ep in enumerate(spec.bind))
                    for i in range(node.replicas)
                ]

    def sockets(self, name: str, node: NodeSpec, replica: int,
                curve: CurveLinks | None = None) -> tuple[SocketPlan, ...]:
        """The sockets of replica ``replica`` of node ``name``, endpoints resolved.

        ``curve``: the run's CURVE links, when ``security.curve`` is on.
        """
        out = []
        for sname, spec in node.sockets.items():
            connects = _connects(spec, name, sname, self, self._run_dir)
            plan = SocketPlan(
                name=sname,
                type=spec.type,
                bind=self.table[(name, sname)][replica],
                connect=tuple(ep for ep, _ in connects),
                subscribe=tuple(spec.subscribe or ()),
                options=dict(spec.options),
            )
            out.append(plan if curve is None else curve.secure(name, plan, connects))
        return tuple(out)

    def _bind(self, ep: Endpoint, node: str, sock: str, replica: int, spec: NodeSpec,
              index: int) -> str:
        text = ep.endpoint
        if self.group is not None:
            fixed = self.group.bind(node, sock, index, replica, text)
            if fixed is not None:
                return fixed
        transport, _, rest = text.partition("://")
        transport = transport.lower()
        if transport == "tcp":
            host, _, port = rest.rpartition(":")
            if port in ("*", "0"):
                return f"tcp://{host}:{self._port(host)}"
            return text
        if transport == "ipc" and _is_relative_ipc(rest):
            # `ipc://*` would make libzmq pick a random path no peer could know: name it here.
            declared = ipc_in_run_dir(f"{node}.{sock}" if rest == "*" else rest, self._run_dir)
            resolved = f"{declared}.{replica}" if spec.replicas > 1 else declared
            self.by_declared.setdefault(declared, []).append(resolved)
            return resolved
        return text

    def _port(self, host: str) -> int:
        for _ in range(_MAX_PORT_TRIES):
            port = self._allocate(host)
            if port not in self._used:
                self._used.add(port)
                return port
        raise RunError(f"the port allocator kept returning ports already in use on {host!r}")


def _connects(
    spec: SocketSpec, node: str, sock: str, binds: RunEndpoints, run_dir: str
) -> list[tuple[str, int]]:
    """Each resolved connect endpoint with the index of the ``connect:`` entry it comes from."""
    out: dict[str, int] = {}
    for i, ep in enumerate(spec.connect):
        remote = binds.group.connects(node, sock, i) if binds.group is not None else None
        if remote is not None:
            found = remote
        elif ep.is_reference:
            found = _reference(ep.endpoint, node, sock, binds)
        else:
            text = ep.endpoint
            transport, _, rest = text.partition("://")
            if transport.lower() == "ipc" and _is_relative_ipc(rest) and rest != "*":
                resolved = ipc_in_run_dir(rest, run_dir)
                found = binds.by_declared.get(resolved, [resolved])
            else:
                found = [text]
        for e in found:
            out.setdefault(e, i)  # one connect per endpoint, order kept
    return list(out.items())


def _reference(ref: str, node: str, sock: str, binds: RunEndpoints) -> list[str]:
    target, _, transport = ref.partition("@")
    peer, _, peer_sock = target.partition(".")
    if (peer, peer_sock) not in binds.table:
        raise RunError(
            f"socket {node}.{sock} connects to {ref}, which is not a socket of the topology")
    found = [
        connectable(ep)
        for replica_binds in binds.table[(peer, peer_sock)]
        for ep in replica_binds
        if not transport or ep.split("://", 1)[0].lower() == transport.lower()
    ]
    if not found:
        what = f"no {transport} endpoint" if transport else "no endpoint"
        raise RunError(f"socket {node}.{sock} connects to {ref}, but {target} binds {what}")
    return found


def connectable(bind_endpoint: str) -> str:
    """The endpoint a peer connects to for a bind: `*` and `0.0.0.0` mean this machine."""
    transport, _, rest = bind_endpoint.partition("://")
    if transport.lower() != "tcp":
        return bind_endpoint
    host, _, port = rest.rpartition(":")
    if host in ("*", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"tcp://{host}:{port}"


def ipc_in_run_dir(path: str, run_dir: str) -> str:
    return "ipc://" + posixpath.normpath(posixpath.join(run_dir, path))


def _is_relative_ipc(path: str) -> bool:
    # `@name` is Linux's abstract namespace: no file, so nothing to put in the run folder.
    return not path.startswith(("/", "@"))


def literal_ports(topology: Topology, *, connects: bool = False) -> set[int]:
    """Every tcp port the file's binds name (``connects``: its literal connects' too)."""
    ports = set()
    for node in topology.nodes.values():
        for spec in node.sockets.values():
            for ep in (*spec.bind, *spec.connect) if connects else spec.bind:
                if ep.transport == "tcp" and not ep.is_reference:
                    port = ep.endpoint.rpartition(":")[2]
                    if port.isdigit() and int(port):
                        ports.add(int(port))
    return ports


def check_ipc_lengths(replicas: list[ReplicaPlan], run_id: str) -> None:
    """E124 at run time: `validate` measured paths in a folder named after the topology."""
    for r in replicas:
        for sock in r.sockets:
            for ep in (*sock.bind, *sock.connect):
                path = ep[len("ipc://"):] if ep.startswith("ipc://") else ""
                if len(path.encode()) > IPC_PATH_MAX and not path.startswith("@"):
                    raise RunError(
                        f"{r.name}.{sock.name}: {ep} is {len(path.encode())} bytes long in run "
                        f"{run_id}'s folder; a Unix socket path holds at most {IPC_PATH_MAX} "
                        "(use a shorter -p RUN, or set TOPO_STATE_DIR to a shorter folder)")
