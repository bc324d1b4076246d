"""The topology file as a strict pydantic model (docs/reference.md#the-topology-file).

Unknown keys are errors. Values are normalised on the way in: durations to
seconds, sizes to bytes, modes to ints, signals to numbers, socket types to
upper case, endpoint shorthands to ``Endpoint`` objects. Cross-references
(sockets that name other nodes, ipc names, depends_on) are the validator's
business, not the model's: the model only knows the shape of one file.
"""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from orchestrator import units

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"
TOPOLOGY_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
# Compiled once: every node and socket name is checked, and so is every `run:` (``re.fullmatch``
# with a pattern string looks its compiled form up again on each call).
_NAME = re.compile(NAME_PATTERN)
_MODULE_FUNCTION = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

Duration = Annotated[float, BeforeValidator(units.parse_duration)]
Size = Annotated[int, BeforeValidator(units.parse_size)]
Mode = Annotated[int, BeforeValidator(units.parse_mode)]
Signal = Annotated[int, BeforeValidator(units.parse_signal)]
RestartPolicy = Literal["never", "on-failure", "always"]
IpcType = Literal["msgqueue", "shm", "semaphore", "socketpair", "fifo"]


def _to_str(value: object) -> object:
    # env values and vars may be written as numbers or booleans in YAML.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_to_str)]


def _one_or_many(value: object) -> object:
    if value is None:
        return []
    if isinstance(value, str | dict):
        return [value]
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)


class Endpoint(Strict):
    """A bind or connect target: a literal endpoint or a ``node.socket[@transport]`` reference."""

    endpoint: str
    external: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: object) -> object:
        return {"endpoint": value} if isinstance(value, str) else value

    @property
    def is_reference(self) -> bool:
        return "://" not in self.endpoint

    @property
    def transport(self) -> str | None:
        return self.endpoint.split("://", 1)[0].lower() if "://" in self.endpoint else None


Endpoints = Annotated[list[Endpoint], BeforeValidator(_one_or_many)]


class SocketSpec(Strict):
    type: str
    bind: Endpoints = Field(default_factory=list)
    connect: Endpoints = Field(default_factory=list)
    subscribe: Annotated[list[Text], BeforeValidator(_one_or_many)] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


class BackoffSpec(Strict):
    initial: Duration = 0.1
    factor: float = Field(default=2.0, ge=1.0)
    max: Duration = 10.0

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        # `backoff: 250ms` is the initial delay with the default factor and cap.
        return {"initial": value} if isinstance(value, str | int | float) else value


# The ways a node can say it is ready; a `ready:` block uses exactly one.
READY_KINDS = ("tcp", "ipc", "file", "log", "command")


class ReadySpec(Strict):
    tcp: int | None = Field(default=None, ge=1, le=65535)
    ipc: str | None = None
    file: str | None = None
    log: str | None = None
    command: list[str] | None = None
    timeout: Duration = 30.0

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("log")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"ready.log is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ReadySpec:
        given = [k for k in READY_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "ready needs exactly one of tcp, ipc, file, log, command (plus timeout)"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in READY_KINDS if getattr(self, k) is not None)


class NodeSettings(Strict):
    """The keys a node may inherit from the top-level ``defaults:``."""

    env: dict[str, Text] = Field(default_factory=dict)
    cwd: str | None = None
    restart: RestartPolicy = "on-failure"
    backoff: BackoffSpec = Field(default_factory=BackoffSpec)
    max_restarts: int = Field(default=5, ge=0)
    restart_window: Duration = 60.0
    stop_signal: Signal = 15
    stop_timeout: Duration = 5.0
    ready: ReadySpec | None = None


class NodeSpec(NodeSettings):
    role: str | None = None
    run: str | None = None
    command: list[str] | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    replicas: int = Field(default=1, ge=1, le=100_000)
    depends_on: Annotated[list[str], BeforeValidator(_one_or_many)] = Field(default_factory=list)
    ipc: Annotated[list[str], BeforeValidator(_one_or_many)] = Field(default_factory=list)
    sockets: dict[str, SocketSpec] = Field(default_factory=dict)

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"command cannot be split like a shell would: {exc}") from None
        return value

    @field_validator("command")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("command must name a program to run")
        return value

    @field_validator("run")
    @classmethod
    def _module_function(cls, value: str | None) -> str | None:
        if value is not None and not _MODULE_FUNCTION.fullmatch(value):
            raise ValueError(
                f"run must be 'module:function', like 'examples.rr:worker', not {value!r}"
            )
        return value

    @field_validator("sockets")
    @classmethod
    def _socket_names(cls, value: dict[str, SocketSpec]) -> dict[str, SocketSpec]:
        for name in value:
            _check_name(name, "socket")
        return value

    @property
    def kind(self) -> str:
        """``role``, ``run`` or ``command`` (the validator guarantees exactly one)."""
        return "role" if self.role is not None else "run" if self.run is not None else "command"


class IpcSpec(Strict):
    type: IpcType
    key: int | str = "auto"
    mode: Mode = 0o600
    max_bytes: Size | None = None
    size: Size | None = None
    value: int | None = Field(default=None, ge=0)
    between: list[str] | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if not 0 < value < 2**31:
                raise ValueError("a SysV key is a positive integer below 2**31 (0 is IPC_PRIVATE)")
        elif value != "auto" and not re.fullmatch(r"ftok:.+:.", value):
            raise ValueError(f"key must be auto, an integer or 'ftok:<path>:<char>', not {value!r}")
        return value


class SecuritySpec(Strict):
    """``security:``: CURVE on every tcp and ipc link, and who else may connect."""

    curve: bool = False
    # Public key files (ZeroMQ certificates) of clients from outside the topology.
    allow: Annotated[list[str], BeforeValidator(_one_or_many)] = Field(default_factory=list)


def _check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{what} name {name!r} may hold only letters, digits, '_' and '-' "
            "(no dots: a dot separates node and socket in references)"
        )


class Topology(Strict):
    name: str = Field(pattern=TOPOLOGY_NAME_PATTERN)
    description: str = ""
    pythonpath: Annotated[list[str], BeforeValidator(_one_or_many)] | None = None
    vars: dict[str, Text] = Field(default_factory=dict)
    defaults: NodeSettings = Field(default_factory=NodeSettings)
    ipc: dict[str, IpcSpec] = Field(default_factory=dict)
    security: SecuritySpec = Field(default_factory=SecuritySpec)
    nodes: dict[str, NodeSpec]

    @field_validator("nodes")
    @classmethod
    def _node_names(cls, value: dict[str, NodeSpec]) -> dict[str, NodeSpec]:
        if not value:
            raise ValueError("a topology needs at least one node")
        for name in value:
            _check_name(name, "node")
        return value

    @field_validator("ipc")
    @classmethod
    def _ipc_names(cls, value: dict[str, IpcSpec]) -> dict[str, IpcSpec]:
        for name in value:
            _check_name(name, "ipc resource")
        return value


def default_topology_name(stem: str) -> str:
    """The file stem made into a valid topology name."""
    name = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_")
    return name or "topology"
