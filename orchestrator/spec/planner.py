"""Topology -> Plan: every endpoint, folder and variable resolved before anything starts.

Pure except for the injected port allocator: the same topology, run id, run
folder and allocator give the same plan. The topology is assumed valid (the
validator ran first); what cannot be planned still raises ``RunError`` with a
sentence rather than a ``KeyError``.

Endpoint rules (SPEC §1):
- ``tcp://HOST:*`` or ``tcp://HOST:0`` binds get a port from ``allocate_port(HOST)``,
  one per replica; a plan never hands out the same port twice.
- a relative ``ipc://name`` becomes ``ipc://<run_dir>/name``; a node with more than
  one replica binds ``name.<replica>`` so the replicas do not collide. ``ipc://*``
  gets a name of its own in the run folder.
- a connect reference ``node.socket[@transport]`` resolves to the bind endpoints
  of every replica of that socket (filtered by transport), in replica order.
- literal connects stay, except relative ipc paths, which resolve like binds do
  (and to every replica's path when the binder has replicas).
"""

from __future__ import annotations

import os
import posixpath
import socket
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from orchestrator.errors import RunError
from orchestrator.paths import IPC_PATH_MAX
from orchestrator.plan import (
    BackoffPlan,
    IpcPlan,
    NodePlan,
    Plan,
    ReadyPlan,
    ReplicaPlan,
    SocketPlan,
)
from orchestrator.spec.depgraph import dependency_order
from orchestrator.spec.model import Endpoint, IpcSpec, NodeSpec, SocketSpec, Topology

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


def plan_run(
    topology: Topology,
    file: Path,
    run_id: str,
    run_dir: Path,
    *,
    environ: Mapping[str, str] | None = None,
    allocate_port: PortAllocator = free_tcp_port,
) -> Plan:
    """Resolve ``topology`` into a ``Plan`` for run ``run_id`` living in ``run_dir``.

    ``environ`` only serves ``~`` in ``cwd`` and ``pythonpath`` (HOME); node
    environments hold the node's ``env`` plus ``TOPO_*``, never the caller's
    environment (the spawner merges that underneath).
    """
    environ = os.environ if environ is None else environ
    file = Path(os.path.abspath(file))
    base = str(file.parent)
    rdir = os.path.abspath(run_dir)
    binds = _Binds(topology, rdir, allocate_port)
    replicas: list[ReplicaPlan] = []
    for name, node in topology.nodes.items():
        cwd = _folder(node.cwd or ".", base, environ)
        for i in range(node.replicas):
            sockets = tuple(
                SocketPlan(
                    name=sname,
                    type=spec.type,
                    bind=binds.of(name, sname, i),
                    connect=_connects(spec, name, sname, binds, rdir),
                    subscribe=tuple(spec.subscribe or ()),
                    options=dict(spec.options),
                )
                for sname, spec in node.sockets.items()
            )
            replicas.append(_replica(run_id, rdir, name, i, node, cwd, sockets))
    _check_ipc_lengths(replicas, run_id)
    return Plan(
        run_id=run_id,
        run_dir=rdir,
        file=str(file),
        replicas=tuple(replicas),
        ipc={name: ipc_plan(name, spec, base, rdir, environ)
             for name, spec in topology.ipc.items()},
        tiers=dependency_tiers(topology),
        pythonpath=_pythonpath(topology, base, environ),
        nodes={name: node_plan(node) for name, node in topology.nodes.items()},
    )


def node_plan(node: NodeSpec) -> NodePlan:
    """The supervisor's view of a node: restart policy, stop timeout, depends_on, readiness."""
    ready = None
    if node.ready is not None:
        r = node.ready
        ready = ReadyPlan(kind=r.kind, timeout=float(r.timeout), tcp=r.tcp, ipc=r.ipc,
                          file=r.file, log=r.log,
                          command=tuple(r.command) if r.command is not None else None)
    b = node.backoff
    return NodePlan(
        restart=node.restart, backoff=BackoffPlan(float(b.initial), float(b.factor), float(b.max)),
        max_restarts=int(node.max_restarts), restart_window=float(node.restart_window),
        stop_timeout=float(node.stop_timeout), depends_on=tuple(node.depends_on), ready=ready)


def _check_ipc_lengths(replicas: list[ReplicaPlan], run_id: str) -> None:
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


def dependency_tiers(topology: Topology) -> tuple[tuple[str, ...], ...]:
    """Topological levels of ``depends_on``: tier 0 depends on nothing; file order within a tier."""
    order = dependency_order({name: node.depends_on for name, node in topology.nodes.items()})
    if order.unknown:
        raise RunError(f"depends_on names node {order.unknown[0].name}, which does not exist")
    if order.cycles:
        raise RunError(f"depends_on forms a cycle through node {order.cycles[0].nodes[0]}")
    return order.tiers


def ipc_plan(
    name: str, spec: IpcSpec, base: str, run_dir: str, environ: Mapping[str, str]
) -> IpcPlan:
    """One ``ipc:`` resource planned: explicit keys kept, ``auto`` and ``ftok:`` resolved at
    creation (they depend on the machine), an ftok path made absolute, a fifo in the run folder.
    """
    key, key_from = (spec.key, "") if isinstance(spec.key, int) else (None, spec.key)
    if key_from.startswith("ftok:"):
        path, _, char = key_from[len("ftok:"):].rpartition(":")
        key_from = f"ftok:{_folder(path, base, environ)}:{char}"
    sysv = spec.type in ("msgqueue", "shm", "semaphore")
    return IpcPlan(
        name=name,
        type=spec.type,
        key=key if sysv else None,
        key_from=key_from if sysv else "",
        mode=spec.mode,
        size=spec.size,
        max_bytes=spec.max_bytes,
        value=spec.value,
        path=posixpath.join(run_dir, "fifo", name) if spec.type == "fifo" else None,
        between=tuple(spec.between or ()),
    )


def socket_env_name(socket_name: str) -> str:
    """``in-jobs`` -> ``TOPO_SOCKET_IN_JOBS``."""
    return "TOPO_SOCKET_" + socket_name.upper().replace("-", "_")


# -- endpoints ------------------------------------------------------------------------------------


class _Binds:
    """Every replica's resolved bind endpoints, made in one pass so ports stay unique."""

    def __init__(self, topology: Topology, run_dir: str, allocate_port: PortAllocator):
        self._run_dir = run_dir
        self._allocate = allocate_port
        self._used = _literal_ports(topology)
        self.table: dict[tuple[str, str], list[tuple[str, ...]]] = {}
        # A literal connect to `ipc://name` reaches every replica's `name.<i>`.
        self.by_declared: dict[str, list[str]] = {}
        for name, node in topology.nodes.items():
            for sname, spec in node.sockets.items():
                self.table[(name, sname)] = [
                    tuple(self._bind(ep, name, sname, i, node) for ep in spec.bind)
                    for i in range(node.replicas)
                ]

    def of(self, node: str, sock: str, replica: int) -> tuple[str, ...]:
        return self.table[(node, sock)][replica]

    def _bind(self, ep: Endpoint, node: str, sock: str, replica: int, spec: NodeSpec) -> str:
        text = ep.endpoint
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
    spec: SocketSpec, node: str, sock: str, binds: _Binds, run_dir: str
) -> tuple[str, ...]:
    out: list[str] = []
    for ep in spec.connect:
        if ep.is_reference:
            out.extend(_reference(ep.endpoint, node, sock, binds))
            continue
        text = ep.endpoint
        transport, _, rest = text.partition("://")
        if transport.lower() == "ipc" and _is_relative_ipc(rest) and rest != "*":
            resolved = ipc_in_run_dir(rest, run_dir)
            out.extend(binds.by_declared.get(resolved, [resolved]))
        else:
            out.append(text)
    return tuple(dict.fromkeys(out))  # one connect per endpoint, order kept


def _reference(ref: str, node: str, sock: str, binds: _Binds) -> list[str]:
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


def _literal_ports(topology: Topology) -> set[int]:
    ports = set()
    for node in topology.nodes.values():
        for spec in node.sockets.values():
            for ep in spec.bind:
                if ep.transport == "tcp":
                    port = ep.endpoint.rpartition(":")[2]
                    if port.isdigit() and int(port):
                        ports.add(int(port))
    return ports


# -- the rest of a replica ------------------------------------------------------------------------


def _replica(
    run_id: str, run_dir: str, name: str, i: int, node: NodeSpec, cwd: str,
    sockets: tuple[SocketPlan, ...],
) -> ReplicaPlan:
    spec_path = posixpath.join(run_dir, "spec", f"{name}.{i}.json")
    env = dict(node.env)
    env.update(
        TOPO_RUN=run_id,
        TOPO_NODE=name,
        TOPO_REPLICA=str(i),
        TOPO_RUN_DIR=run_dir,
        TOPO_SPEC=spec_path,
    )
    for s in sockets:
        key = socket_env_name(s.name)
        env[key] = ",".join(s.bind + s.connect)
        env[key + "_TYPE"] = s.type
        env[key + "_MODE"] = s.mode
        if s.bind and s.connect:  # both: say which is which
            env[key + "_BIND"] = ",".join(s.bind)
            env[key + "_CONNECT"] = ",".join(s.connect)
    return ReplicaPlan(
        node=name,
        replica=i,
        kind=node.kind,
        role=node.role,
        run=node.run,
        argv=tuple(node.command) if node.command is not None else None,
        params=dict(node.with_),
        cwd=cwd,
        env=env,
        sockets=sockets,
        ipc=tuple(node.ipc),
        log_path=posixpath.join(run_dir, "logs", f"{name}.{i}.log"),
        spec_path=spec_path,
        stop_signal=node.stop_signal,
    )


def _folder(path: str, base: str, environ: Mapping[str, str]) -> str:
    home = environ.get("HOME")
    if home and (path == "~" or path.startswith("~/")):
        path = home + path[1:]
    return os.path.normpath(os.path.join(base, path))


def _pythonpath(topology: Topology, base: str, environ: Mapping[str, str]) -> tuple[str, ...]:
    if topology.pythonpath is None:
        folders = [base, os.getcwd()]
    else:
        folders = [_folder(p, base, environ) for p in topology.pythonpath]
    return tuple(dict.fromkeys(folders))
