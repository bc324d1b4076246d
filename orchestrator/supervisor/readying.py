"""Waiting for replicas to be ready: arming their probes, retrying them, their timeouts.

A ``run`` node is ready when its ready byte arrives (``Supervisor.on_ready``); a
``command`` node when its probe (``readiness.py``) says so: ``tcp``, ``ipc``,
``file`` checks retried with growing delays, a ``command`` run until it exits 0,
or a ``log`` line (docs/reference.md#readiness). ``Readying`` owns the timers and
probe processes of that wait, and tells the supervisor when a replica is ready
(``ready``). One whose ``ready:`` timeout passes first is killed: a failed start.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence

from orchestrator.supervisor.ports import Clock, Output, SpawnerLike
from orchestrator.supervisor.readiness import next_retry
from orchestrator.supervisor.replica import Replica
from orchestrator.supervisor.spawn import Proc
from orchestrator.supervisor.timers import Timer, Timers

INF = float("inf")


class Readying:
    def __init__(
        self,
        timers: Timers,
        clock: Clock,
        spawner: SpawnerLike,
        printer: Output,
        *,
        run_probe: Callable[[Replica], Proc],
        ready: Callable[[Replica], None],
    ) -> None:
        self._timers = timers
        self._clock = clock
        self._spawner = spawner
        self._printer = printer
        self._run_probe = run_probe  # exec a `ready: {command: ...}` and watch its exit
        self._ready = ready
        self.pids: dict[int, Replica] = {}  # live probe processes (until their exit is seen)
        self._probes: dict[Replica, Proc] = {}  # the probe running for a replica
        self._delays: dict[Replica, float] = {}
        self._armed: dict[Replica, list[Timer]] = {}  # the replicas waited for, their timers

    def arm(self, r: Replica) -> None:
        """``r`` has just started: wait for it (or find it ready at once)."""
        self._cancel(r)
        if r.probe.immediate:
            self._ready(r)
            return
        timers = self._armed[r] = []
        if r.probe.timed:
            self._delays[r] = delay = next_retry(None)
            timers.append(self._timers.at(r.started_at + delay, lambda: self._try(r)))
        if r.probe.timeout != INF:
            timers.append(self._timers.at(r.started_at + r.probe.timeout,
                                          lambda: self._timed_out(r)))

    def disarm(self, r: Replica) -> None:
        """Stop waiting for ``r`` (ready, exited, or the run stops): a running probe is killed."""
        self._cancel(r)
        probe = self._probes.get(r)
        if probe is not None:
            self._spawner.signal_group(probe.pid, signal.SIGKILL)

    def _cancel(self, r: Replica) -> None:
        for timer in self._armed.pop(r, ()):
            timer.cancel()
        self._delays.pop(r, None)

    def output(self, r: Replica, lines: Sequence[bytes]) -> None:
        """Lines ``r`` wrote while it was starting: a ``log`` probe may match one."""
        if r.probe.kind == "log" and any(r.probe.matches(line) for line in lines):
            self._ready(r)

    def probe_exited(self, pid: int, code: int) -> bool:
        """Whether ``pid`` was a probe; if so, exit code 0 means its replica is ready."""
        r = self.pids.pop(pid, None)
        if r is None:
            return False
        if r in self._probes and self._probes[r].pid == pid:
            del self._probes[r]
        if r not in self._armed or r.proc is None or r.ready:
            return True  # nobody waits for this replica any more
        if code == 0:
            self._ready(r)
        else:
            self._retry(r)
        return True

    def _try(self, r: Replica) -> None:
        if r.probe.kind == "command":
            if r in self._probes:
                return  # the last one is still running (its exit re-arms the probe)
            try:
                proc = self._run_probe(r)
            except OSError:
                self._retry(r)
                return
            self._probes[r] = proc
            self.pids[proc.pid] = r
            return
        if r.probe.check():
            self._ready(r)
        else:
            self._retry(r)

    def _retry(self, r: Replica) -> None:
        self._delays[r] = delay = next_retry(self._delays.get(r))
        pending = [t for t in self._armed.get(r, ()) if t.pending]
        pending.append(self._timers.at(self._clock() + delay, lambda: self._try(r)))
        self._armed[r] = pending

    def _timed_out(self, r: Replica) -> None:
        if r.proc is not None and not r.ready:
            self._printer.event(f"{r.name} did not become ready within {r.probe.timeout:g}s "
                                f"({r.probe.kind}); killing it")
            r.not_ready = True  # its exit, whatever the code, is a failed start
            self._spawner.signal_group(r.proc.pid, signal.SIGKILL)
