"""What the control channel asks of the supervisor: restart replicas, stop the run, its state.

``topo restart`` and the Python API's ``Run.restart`` end in ``restart``,
``topo down`` in ``stop``; ``topo ps`` and the state file read ``state``.
``call_at`` lets the run's other parts (``startup.py``, the owner watch of
``runner.py``) put a deadline in the supervisor's timer heap.

``Commands`` is mixed into ``supervisor.Supervisor``, which owns the state and
the timers it uses; it is split out only to keep each module to one idea.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.plan import Plan
from orchestrator.runs.procinfo import proc_start
from orchestrator.supervisor.replica import Replica
from orchestrator.supervisor.spawn import Proc

if TYPE_CHECKING:
    from orchestrator.supervisor.supervisor import SpawnerLike


class Commands:
    # Set up by ``Supervisor.__init__``; declared here for the type checker.
    plan: Plan
    spawner: SpawnerLike
    clock: Callable[[], float]
    replicas: dict[str, Replica]
    nodes: dict[str, list[Replica]]
    stopping: bool
    _seq: int
    _calls: dict[int, Callable[[], None]]

    if TYPE_CHECKING:  # Supervisor's own, which these call (declared, not defined: a
        # definition here would shadow the real one of a class later in the MRO)
        def _at(self, when: float, kind: str, name: str, gen: int = -1) -> None:
            raise NotImplementedError

        def _spawn(self, *rs: Replica) -> None:
            raise NotImplementedError

        def _begin_shutdown(self, code: int, why: str) -> None:
            raise NotImplementedError

    def restart(self, names: Sequence[str]) -> list[str]:
        """Restart replicas: ``node`` means all of its replicas, ``node.N`` one.

        A live replica gets its stop signal (SIGKILL after its stop_timeout)
        and is started again as soon as it has exited; one that has ended is
        started at once. Raises ``KeyError`` naming what is unknown.
        """
        chosen: list[Replica] = []
        for name in names:
            reps = self.nodes.get(name) or ([self.replicas[name]] if name in self.replicas else [])
            if not reps:
                raise KeyError(name)
            chosen.extend(r for r in reps if r not in chosen)
        if self.stopping:
            return []
        now = self.clock()
        for r in chosen:
            if r.proc is not None:
                if not r.manual_restart:
                    r.manual_restart = True
                    self.spawner.signal_group(r.proc.pid, r.stop_signal)
                    self._at(now + r.stop_timeout, "kill", r.name, r.gen)
            elif r.status in ("exited", "failed", "restarting"):
                r.history = type(r.history)()  # a fresh start: the crash loop is forgotten
                r.restarts += 1
                self._spawn(r)
        return [r.name for r in chosen]

    def stop(self, why: str, code: int = 0) -> None:
        """End the run as `topo down` does: every tier stopped, then the run is over."""
        self._begin_shutdown(code, why)

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Call ``fn`` at monotonic time ``when`` (unless the run is stopping by then)."""
        self._calls[self._seq + 1] = fn
        self._at(when, "call", "", self._seq + 1)

    def _timer_call(self, _: Replica | None) -> None:
        pass  # dispatched in fire_timers, which knows the timer's number

    def state(self) -> dict[str, Any]:
        """Every replica as `topo ps` and the state file show it (times are wall-clock)."""
        wall = time.time() - self.clock()
        return {
            "stopping": self.stopping,
            "replicas": {
                r.name: {"node": r.plan.node, "pid": r.proc.pid if r.proc else None,
                         "start": _start_of(r.proc),
                         "status": r.status, "restarts": r.restarts, "exit_code": r.exit_code,
                         "started": wall + r.started_at if r.started_at else None,
                         "kind": r.plan.kind, "log": r.plan.log_path}
                for r in self.replicas.values()
            },
        }


def _start_of(proc: Proc | None) -> int | None:
    if proc is None:
        return None
    if proc.start is None:  # read once per process, not on every flush of the state file
        proc.start = proc_start(proc.pid)
    return proc.start
