"""The end of a run: deciding that it is over, and the order its nodes stop in.

A run ends when every node has finished (or the ``--exit-code-from`` node has),
on ``--timeout``, on ``--abort-on-failure``, or on a signal
(docs/reference.md#exit-codes). Nodes then stop in reverse dependency order,
one tier at a time (docs/reference.md#restarts-and-guarantees): every live
replica of the tier is stopped at once (its stop signal, then SIGKILL after its
``stop_timeout``), and the next tier only when the last one is empty. A second
interrupt kills everything at once. `topo restart` stops a replica the same way.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence

from orchestrator.supervisor.ports import Clock, Output, SpawnerLike
from orchestrator.supervisor.replica import Options, Replica, Status, node_code
from orchestrator.supervisor.spawn import Proc
from orchestrator.supervisor.timers import Timers


def run_over(options: Options, nodes: Mapping[str, Sequence[Replica]]) -> tuple[int, str] | None:
    """(code, why) once the run has nothing left to wait for; None while it has."""
    target = options.exit_code_from
    if target is not None and target in nodes:
        reps = nodes[target]
        if all(r.status.terminal for r in reps):
            return node_code(reps), f"{target} finished"
        return None
    every = nodes.values()  # all() stops at the first live replica: cheap while the run runs
    if all(r.status.terminal for reps in every for r in reps):
        ok = all(r.status is Status.EXITED and r.exit_code == 0 for reps in every for r in reps)
        return 0 if ok else 1, "no node is left to run"
    return None


def tiers_of(order: Sequence[Sequence[str]], nodes: Sequence[str]) -> list[list[str]]:
    """The plan's dependency tiers, with any node they do not list put in the last one."""
    tiers = [list(t) for t in order] or [list(nodes)]
    listed = {n for t in tiers for n in t}
    tiers[-1].extend(n for n in nodes if n not in listed)
    return tiers


class Shutdown:
    """Stopping replicas: one (``stop``), a tier at a time (``advance``), or all (``kill_all``)."""

    def __init__(self, tiers: list[list[str]], nodes: Mapping[str, Sequence[Replica]], *,
                 spawner: SpawnerLike, timers: Timers, clock: Clock, printer: Output) -> None:
        self.tiers = tiers
        self._nodes = nodes
        self._spawner = spawner
        self._timers = timers
        self._clock = clock
        self._printer = printer
        self._tier = -1
        self._stopped: list[Replica] | None = None  # the live replicas of the tier stopping now
        self._gone = 0  # how many of them, from the first, have exited

    def stop(self, r: Replica) -> None:
        """Its stop signal now, SIGKILL once its ``stop_timeout`` is over (unless it exited)."""
        proc = r.proc
        if proc is None:
            return
        self._spawner.signal_group(proc.pid, r.stop_signal)
        r.kill_timer = self._timers.at(self._clock() + r.stop_timeout,
                                       lambda: self._kill(r, proc))

    def _kill(self, r: Replica, proc: Proc) -> None:
        if r.proc is proc:
            self._printer.event(f"{r.name} still running {r.stop_timeout:g}s after "
                                f"{signal.Signals(r.stop_signal).name}; sending SIGKILL")
            self._spawner.signal_group(proc.pid, signal.SIGKILL)

    def kill_all(self) -> None:
        for reps in self._nodes.values():
            for r in reps:
                if r.proc is not None:
                    self._spawner.signal_group(r.proc.pid, signal.SIGKILL)

    def begin(self) -> None:
        self._tier = len(self.tiers) - 1
        self._stopped = None

    def advance(self) -> bool:
        """Stop the last tier that still has live replicas; True once every tier is empty."""
        while self._tier >= 0:
            if self._stopped is None:
                live = [r for n in self.tiers[self._tier] for r in self._nodes.get(n, ())
                        if r.proc is not None]
                if not live:
                    self._tier -= 1
                    continue
                self._stopped, self._gone = live, 0
                for r in live:
                    self.stop(r)
            # Nothing starts while the run stops: a replica seen gone stays gone, so each
            # exit only looks past the ones counted already.
            while self._gone < len(self._stopped) and self._stopped[self._gone].proc is None:
                self._gone += 1
            if self._gone < len(self._stopped):
                return False
            self._tier -= 1
            self._stopped = None
        return True

    def budget(self) -> float:
        """How long stopping may take at most: each tier's longest ``stop_timeout``, summed."""
        return sum(max((r.stop_timeout for n in tier for r in self._nodes.get(n, ())),
                       default=0.0) for tier in self.tiers)
