"""One replica's record, its states, and the small pure rules read off its node's replicas.

A replica's ``status`` changes in one place, ``Replica.move``, and only along
the edges of ``MOVES``::

    waiting ──> starting ──> ready
       │          │ │          │
       │          │ └──────────┴──> restarting ──> starting
       │          └───────────────> exited | failed ──> starting   (`topo restart`)
       └──> failed   (a node it depends on failed)

A start that cannot even fork goes ``starting`` and then, at once, the way of
any exit. The supervisor (``supervisor.py``) decides the moves; this module
holds the state they change, the run's options, and the judgements made from
a node's replicas: may dependents still wait for it, what code did it finish with.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, cast

from orchestrator.plan import NodePlan, Plan, ReplicaPlan
from orchestrator.runs.procinfo import proc_start
from orchestrator.structs import field, struct
from orchestrator.supervisor.policy import History, Mode, RestartPolicy
from orchestrator.supervisor.readiness import Probe, make_probe
from orchestrator.supervisor.spawn import Proc
from orchestrator.supervisor.timers import Timer


class Status(str, Enum):
    """What `topo ps` shows of a replica (its ``value``) and the JSON events are named after."""

    WAITING = "waiting"  # for the nodes it depends on
    STARTING = "starting"  # started, not ready yet
    READY = "ready"
    RESTARTING = "restarting"  # exited; its policy starts it again (maybe after a backoff)
    EXITED = "exited"  # finished, and its policy does not restart it
    FAILED = "failed"  # for good: restarts exhausted, a failure under `never`, or never started

    @property
    def terminal(self) -> bool:
        return self in (Status.EXITED, Status.FAILED)


S = Status
MOVES: Mapping[Status, frozenset[Status]] = {
    S.WAITING: frozenset({S.STARTING, S.FAILED}),
    S.STARTING: frozenset({S.READY, S.RESTARTING, S.EXITED, S.FAILED}),
    S.READY: frozenset({S.RESTARTING, S.EXITED, S.FAILED}),
    S.RESTARTING: frozenset({S.STARTING}),
    S.EXITED: frozenset({S.STARTING}),
    S.FAILED: frozenset({S.STARTING}),
}


@struct
class Options:
    timeout: float | None = None
    exit_code_from: str | None = None
    abort_on_failure: bool = False


@struct(eq=False)
class Replica:
    plan: ReplicaPlan
    policy: RestartPolicy
    probe: Probe
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 5.0
    proc: Proc | None = None
    started_at: float = 0.0
    ever_ready: bool = False
    not_ready: bool = False  # killed for missing its ready timeout (this start)
    history: History = field(default_factory=History)
    exit_code: int | None = None
    restarts: int = 0
    manual_restart: bool = False  # `topo restart` asked: start again once it has exited
    restart_timer: Timer | None = None  # the backoff before its next start
    kill_timer: Timer | None = None  # SIGKILL once its stop_timeout is over
    _status: Status = Status.WAITING
    name: str = field(init=False)  # the plan's ``node.N``, made once: it is read on every event

    def __post_init__(self) -> None:
        self.name = self.plan.name

    @property
    def status(self) -> Status:
        return self._status

    @property
    def ready(self) -> bool:
        return self._status is Status.READY

    def move(self, to: Status) -> None:
        """The one place a replica changes state; a move ``MOVES`` does not allow is a bug."""
        if to not in MOVES[self._status]:
            raise ValueError(f"{self.name}: no move from {self._status.value} to {to.value}")
        self._status = to

    def cancel_timers(self) -> None:
        for timer in (self.restart_timer, self.kill_timer):
            if timer is not None:
                timer.cancel()
        self.restart_timer = self.kill_timer = None


def replicas_of(plan: Plan) -> list[Replica]:
    """A waiting replica for each of the plan's, with its node's policy and readiness."""
    out = []
    # The policy and the probe are frozen: a node's replicas share one of each (and its stop
    # timeout), not one per replica in the pages every forked node maps.
    made: dict[tuple[str, str], tuple[RestartPolicy, Probe, float]] = {}
    for rp in plan.replicas:
        shared = made.get((rp.node, rp.cwd))
        if shared is None:
            node = plan.nodes[rp.node]
            if rp.kind == "command":
                probe = make_probe(node.ready, cwd=rp.cwd, run_dir=plan.run_dir)
            else:  # ready when its b"R" arrives; `ready:` may only bound the wait
                probe = Probe("ready-byte", node.ready.timeout if node.ready else float("inf"))
            shared = made[rp.node, rp.cwd] = (policy_of(node), probe, float(node.stop_timeout))
        policy, probe, stop_timeout = shared
        out.append(Replica(rp, policy, probe, stop_signal=int(rp.stop_signal),
                           stop_timeout=stop_timeout))
    return out


def by_node(replicas: Iterable[Replica]) -> dict[str, list[Replica]]:
    nodes: dict[str, list[Replica]] = {}
    for r in replicas:
        nodes.setdefault(r.plan.node, []).append(r)
    return nodes


def never_ready(r: Replica) -> bool:
    """A replica its dependents can no longer wait for."""
    return r.status is Status.FAILED or (r.status.terminal and not r.ever_ready)


def node_code(reps: Iterable[Replica]) -> int:
    """A finished node's exit code: its first failed replica's code, else 0."""
    for r in reps:
        if r.status is Status.FAILED or (r.exit_code or 0) != 0:
            return r.exit_code if r.exit_code not in (None, 0) else 1
    return 0


def policy_of(node: NodePlan) -> RestartPolicy:
    return RestartPolicy(
        mode=cast(Mode, node.restart),  # one of the three: the file model allows no other
        initial=float(node.backoff.initial),
        factor=float(node.backoff.factor),
        max_delay=float(node.backoff.max),
        max_restarts=int(node.max_restarts),
        window=float(node.restart_window),
    )


def describe(replicas: Iterable[Replica], wall_offset: float) -> dict[str, dict[str, Any]]:
    """Every replica as `topo ps` and the state file show it; ``wall_offset`` = wall - clock."""
    return {
        r.name: {"node": r.plan.node, "pid": r.proc.pid if r.proc else None,
                 "start": _start_of(r.proc), "status": r.status.value,
                 "restarts": r.restarts, "exit_code": r.exit_code,
                 "started": wall_offset + r.started_at if r.started_at else None,
                 "kind": r.plan.kind, "log": r.plan.log_path}
        for r in replicas
    }


def _start_of(proc: Proc | None) -> int | None:
    if proc is None:
        return None
    if proc.start is None:  # read once per process, not on every flush of the state file
        proc.start = proc_start(proc.pid)
    return proc.start
