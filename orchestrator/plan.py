"""A run's plan: every endpoint, path and environment resolved before the first node starts.

These classes (``structs.py``: made as ``dataclasses`` would, for less) are the contract
between the planner (``planner.py``, pure), the supervisor (which starts what a plan
says) and the node side (``node.py``, which builds sockets from a ``ReplicaPlan`` inside
the child). A plan is JSON-serialisable: the state file and each node's ``TOPO_SPEC``
hold it. ``to_dict`` gives what ``dataclasses.asdict`` would, sharing the plan's
own mappings instead of deep-copying them (it is only ever dumped): a tenth of the
time on a plan of 1,000 replicas, which `topo up` writes before every start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.structs import field, struct


@struct(frozen=True)
class SocketPlan:
    name: str
    type: str  # upper case, e.g. "ROUTER"
    bind: tuple[str, ...] = ()  # resolved endpoints: tcp ports real, ipc paths absolute
    connect: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    # CURVE (``security: {curve: true}``): the binds are CURVE servers that let in the
    # public keys in ``allow`` (Z85); ``serverkeys[i]`` is the server key for ``connect[i]``,
    # "" for a connect that stays plain (a peer outside the topology, or inproc).
    curve_server: bool = False
    allow: tuple[str, ...] = ()
    serverkeys: tuple[str, ...] = ()

    @property
    def curve(self) -> bool:
        """Whether any link of this socket uses CURVE."""
        return self.curve_server or any(self.serverkeys)

    @property
    def mode(self) -> str:
        """``bind``, ``connect`` or ``bind,connect`` (TOPO_SOCKET_<NAME>_MODE)."""
        return ",".join(m for m, eps in (("bind", self.bind), ("connect", self.connect)) if eps)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SocketPlan:
        fields = dict(data)
        for key in ("bind", "connect", "subscribe", "allow", "serverkeys"):
            fields[key] = tuple(fields.get(key, ()))
        return cls(**fields)


@struct(frozen=True)
class IpcPlan:
    name: str
    type: str  # msgqueue | shm | semaphore | socketpair | fifo
    key: int | None = None  # an explicit SysV key; None: see key_from (or socketpair / fifo)
    # "auto" or "ftok:<absolute path>:<char>": resolved when created (ipc/resources.py)
    key_from: str = ""
    mode: int = 0o600
    size: int | None = None
    max_bytes: int | None = None
    value: int | None = None
    path: str | None = None  # fifo: absolute path inside the run folder
    between: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IpcPlan:
        fields = dict(data)
        fields["between"] = tuple(fields.get("between", ()))
        return cls(**fields)


@struct(frozen=True)
class ReadyPlan:
    """A node's ``ready:``: exactly one of tcp / ipc / file / log / command, and its timeout."""

    kind: str
    timeout: float
    tcp: int | None = None
    ipc: str | None = None
    file: str | None = None
    log: str | None = None
    command: tuple[str, ...] | None = None


@struct(frozen=True)
class BackoffPlan:
    initial: float
    factor: float
    max: float


@struct(frozen=True)
class NodePlan:
    """What the supervisor needs of a node beyond its replicas: how it restarts, stops, waits.

    The attribute names are the topology file's, so a ``model.NodeSpec`` and a
    ``NodePlan`` read alike; a plan needs no pydantic to be run.
    """

    restart: str = "on-failure"
    backoff: BackoffPlan = field(default_factory=lambda: BackoffPlan(0.1, 2.0, 30.0))
    max_restarts: int = 5
    restart_window: float = 60.0
    stop_timeout: float = 5.0
    depends_on: tuple[str, ...] = ()
    ready: ReadyPlan | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["backoff"] = dict(vars(self.backoff))
        d["ready"] = dict(vars(self.ready)) if self.ready is not None else None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodePlan:
        fields = dict(data)
        fields["backoff"] = BackoffPlan(**fields["backoff"])
        fields["depends_on"] = tuple(fields.get("depends_on", ()))
        ready = fields.get("ready")
        if ready is not None:
            command = ready.get("command")
            fields["ready"] = ReadyPlan(**{**ready, "command": tuple(command) if command else None})
        return cls(**fields)


@struct(frozen=True)
class ReplicaPlan:
    node: str
    replica: int
    kind: str  # role | run | command
    role: str | None = None
    run: str | None = None  # "module:function"
    argv: tuple[str, ...] | None = None  # command nodes
    params: Mapping[str, Any] = field(default_factory=dict)  # the node's `with:`
    cwd: str = "."  # absolute
    # The node's env: and the TOPO_* variables (docs/reference.md#the-node-contract).
    env: Mapping[str, str] = field(default_factory=dict)
    sockets: tuple[SocketPlan, ...] = ()
    ipc: tuple[str, ...] = ()
    log_path: str = ""
    spec_path: str = ""  # TOPO_SPEC: JSON of this ReplicaPlan plus run facts
    stop_signal: int = 15  # the node's stop_signal, a number
    # CURVE: the node's key pair; the secret stays in its 0600 file, never in a plan or env.
    curve_secret_file: str = ""
    curve_public_key: str = ""

    @property
    def name(self) -> str:
        return f"{self.node}.{self.replica}"

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["sockets"] = [dict(vars(s)) for s in self.sockets]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplicaPlan:
        """The inverse of ``to_dict`` (after a JSON round trip: lists back to tuples)."""
        fields = dict(data)
        fields["sockets"] = tuple(SocketPlan.from_dict(s) for s in fields.get("sockets", ()))
        fields["ipc"] = tuple(fields.get("ipc", ()))
        if fields.get("argv") is not None:
            fields["argv"] = tuple(fields["argv"])
        return cls(**fields)


@struct(frozen=True)
class Plan:
    run_id: str
    run_dir: str
    file: str  # absolute path of the topology file
    replicas: tuple[ReplicaPlan, ...]
    ipc: Mapping[str, IpcPlan] = field(default_factory=dict)
    tiers: tuple[tuple[str, ...], ...] = ()  # node names; tier 0 has no depends_on
    pythonpath: tuple[str, ...] = ()  # absolute folders for `run` modules
    nodes: Mapping[str, NodePlan] = field(default_factory=dict)
    curve: bool = False  # security.curve: key pairs in keys/ of the run folder

    def replicas_of(self, node: str) -> list[ReplicaPlan]:
        return [r for r in self.replicas if r.node == node]

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["replicas"] = [r.to_dict() for r in self.replicas]
        d["ipc"] = {name: i.to_dict() for name, i in self.ipc.items()}
        d["nodes"] = {name: n.to_dict() for name, n in self.nodes.items()}
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """The inverse of ``to_dict`` (after a JSON round trip), e.g. for a state file."""
        fields = dict(data)
        fields["replicas"] = tuple(ReplicaPlan.from_dict(r) for r in fields.get("replicas", ()))
        fields["ipc"] = {name: IpcPlan.from_dict(i) for name, i in fields.get("ipc", {}).items()}
        fields["tiers"] = tuple(tuple(t) for t in fields.get("tiers", ()))
        fields["pythonpath"] = tuple(fields.get("pythonpath", ()))
        fields["nodes"] = {n: NodePlan.from_dict(v) for n, v in fields.get("nodes", {}).items()}
        return cls(**fields)
