"""The supervisor's side of readiness: arming probes, retrying them, and a replica turning ready.

A ``run`` node is ready when its ready byte arrives (``Supervisor.on_ready``); a
``command`` node when its probe (``readiness.py``) says so: ``tcp``, ``ipc``,
``file`` checks retried with growing delays, a ``command`` run until it exits 0,
or a ``log`` line. A replica that is not ready within its timeout is killed and
counted as a failed start.

``Readying`` is mixed into ``supervisor.Supervisor``, which owns the state and
the timers it uses; it is split out only to keep each module to one idea.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from orchestrator.plan import ReplicaPlan
from orchestrator.supervisor.output import Printer
from orchestrator.supervisor.readiness import next_retry
from orchestrator.supervisor.replica import Replica

if TYPE_CHECKING:
    from orchestrator.supervisor.supervisor import SpawnerLike, Watcher

INF = float("inf")


class Readying:
    # Set up by ``Supervisor.__init__``; declared here for the type checker.
    spawner: SpawnerLike
    printer: Printer
    watcher: Watcher
    clock: Callable[[], float]
    probe_pids: dict[int, Replica]
    stopping: bool
    ready_hook: Callable[[Replica], None] | None

    if TYPE_CHECKING:  # Supervisor's own, which these call (declared, not defined: a
        # definition here would shadow the real one of a class later in the MRO)
        def _at(self, when: float, kind: str, name: str, gen: int = -1) -> None:
            raise NotImplementedError

        def _changed(self) -> None:
            raise NotImplementedError

        def _start_eligible(self) -> None:
            raise NotImplementedError

        def _command_env(self, rp: ReplicaPlan) -> Mapping[str, str]:
            raise NotImplementedError

    def _arm_readiness(self, r: Replica) -> None:
        if r.probe.immediate:
            self._mark_ready(r)
            return
        if r.probe.timed:
            r.probe_delay = next_retry(None)
            self._at(r.started_at + r.probe_delay, "probe", r.name, r.gen)
        if r.probe.timeout != INF:
            self._at(r.started_at + r.probe.timeout, "ready_timeout", r.name, r.gen)

    def _mark_ready(self, r: Replica) -> None:
        r.ready = r.ever_ready = True
        r.status = "ready"
        self.printer.record("ready", r.name)
        r.gen += 1  # cancels probe and ready timeout
        self._stop_probe(r)
        self._changed()
        if self.ready_hook is not None:
            self.ready_hook(r)
        self._start_eligible()

    def _timer_probe(self, r: Replica) -> None:
        if r.probe.kind == "command":
            if r.probe_proc is None:
                try:
                    r.probe_proc = self.spawner.exec_command(
                        r.probe.argv, self._command_env(r.plan), r.plan.cwd, capture=False)
                except OSError:
                    self._retry_probe(r)
                    return
                self.probe_pids[r.probe_proc.pid] = r
                self.watcher.watch(r.probe_proc, r.name)
            return
        if r.probe.check():
            self._mark_ready(r)
        else:
            self._retry_probe(r)

    def _retry_probe(self, r: Replica) -> None:
        r.probe_delay = next_retry(r.probe_delay)
        self._at(self.clock() + r.probe_delay, "probe", r.name, r.gen)

    def _probe_exited(self, r: Replica, code: int) -> None:
        r.probe_proc = None
        if r.proc is None or r.ready or self.stopping:
            return
        if code == 0:
            self._mark_ready(r)
        else:
            self._retry_probe(r)

    def _stop_probe(self, r: Replica) -> None:
        if r.probe_proc is not None:
            self.spawner.signal_group(r.probe_proc.pid, signal.SIGKILL)

    def _timer_ready_timeout(self, r: Replica) -> None:
        if r.proc is not None and not r.ready:
            self.printer.event(
                f"{r.name} did not become ready within {r.probe.timeout:g}s "
                f"({r.probe.kind}); killing it")
            r.not_ready = True
            self.spawner.signal_group(r.proc.pid, signal.SIGKILL)
