"""One replica's record and the small pure rules read off it.

The supervisor (``supervisor.py``) owns the transitions; this module holds the
state they move (``Replica``), the run's options, and the judgements made from a
node's replicas: may dependents still wait for it, and what code did it finish with.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from orchestrator.plan import ReplicaPlan
from orchestrator.supervisor.policy import History, RestartPolicy
from orchestrator.supervisor.readiness import Probe
from orchestrator.supervisor.spawn import Proc

TERMINAL = ("exited", "failed")


@dataclass
class Options:
    timeout: float | None = None
    exit_code_from: str | None = None
    abort_on_failure: bool = False


@dataclass
class Replica:
    plan: ReplicaPlan
    policy: RestartPolicy
    probe: Probe
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 5.0
    status: str = "waiting"  # waiting starting ready restarting exited failed
    proc: Proc | None = None
    started_at: float = 0.0
    ready: bool = False
    ever_ready: bool = False
    history: History = field(default_factory=History)
    exit_code: int | None = None
    restarts: int = 0
    gen: int = 0  # bumped to cancel this replica's pending timers
    probe_delay: float | None = None
    probe_proc: Proc | None = None
    not_ready: bool = False
    manual_restart: bool = False  # `topo restart` asked: start again once it has exited

    @property
    def name(self) -> str:
        return self.plan.name


def never_ready(r: Replica) -> bool:
    """A replica its dependents can no longer wait for."""
    return r.status == "failed" or (r.status in TERMINAL and not r.ever_ready)


def node_code(reps: list[Replica]) -> int:
    """A finished node's exit code: its first failed replica's code, else 0."""
    for r in reps:
        if r.status == "failed" or (r.exit_code or 0) != 0:
            return r.exit_code if r.exit_code not in (None, 0) else 1
    return 0


def policy_of(spec: Any) -> RestartPolicy:
    return RestartPolicy(
        mode=spec.restart,
        initial=float(spec.backoff.initial),
        factor=float(spec.backoff.factor),
        max_delay=float(spec.backoff.max),
        max_restarts=int(spec.max_restarts),
        window=float(spec.restart_window),
    )
