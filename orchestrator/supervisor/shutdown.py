"""The end of a run: deciding that it is over, and stopping its nodes tier by tier.

A run ends when every node has finished (or the ``--exit-code-from`` node has),
on ``--timeout``, on ``--abort-on-failure``, or on a signal (SPEC §3). Nodes then
stop in reverse dependency order, one tier at a time: every live replica of the
tier gets its stop signal at once, then SIGKILL after its ``stop_timeout``; the
next tier starts only when the last one is empty. A second interrupt kills
everything at once.

``Shutdown`` is mixed into ``supervisor.Supervisor``, which owns the state it
reads and its timers; it is split out only to keep each module to one idea.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrator.supervisor.output import Printer
from orchestrator.supervisor.replica import TERMINAL, Options, Replica, node_code

if TYPE_CHECKING:
    from orchestrator.supervisor.supervisor import SpawnerLike


class Shutdown:
    # Set up by ``Supervisor.__init__``; declared here for the type checker.
    spawner: SpawnerLike
    printer: Printer
    clock: Callable[[], float]
    options: Options
    replicas: dict[str, Replica]
    nodes: dict[str, list[Replica]]
    tiers: list[list[str]]
    by_pid: dict[int, Replica]
    probe_pids: dict[int, Replica]
    stopping: bool
    done: bool
    code: int | None
    _tier: int
    _tier_signalled: bool

    if TYPE_CHECKING:  # Supervisor's own, which these call (declared, not defined: a
        # definition here would shadow the real one of a class later in the MRO)
        def _at(self, when: float, kind: str, name: str, gen: int = -1) -> None:
            raise NotImplementedError

        def _stop_probe(self, r: Replica) -> None:
            raise NotImplementedError

    def _timer_timeout(self, _: Replica | None) -> None:
        self._begin_shutdown(124, f"timeout after {self.options.timeout:g}s; stopping")

    def _check_end(self) -> None:
        if self.stopping:
            return
        target = self.options.exit_code_from
        if target is not None and target in self.nodes:
            reps = self.nodes[target]
            if all(r.status in TERMINAL for r in reps):
                self._begin_shutdown(node_code(reps), f"{target} finished")
            return
        if all(r.status in TERMINAL for r in self.replicas.values()):
            ok = all(r.status == "exited" and r.exit_code == 0 for r in self.replicas.values())
            self._begin_shutdown(0 if ok else 1, "no node is left to run")

    def _interrupt(self, code: int, why: str) -> None:
        if self.stopping:
            self.printer.event(f"{why} again: killing every node now")
            for r in self.replicas.values():
                if r.proc is not None:
                    self.spawner.signal_group(r.proc.pid, signal.SIGKILL)
            return
        self._begin_shutdown(code, f"{why}; stopping")

    def _begin_shutdown(self, code: int, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.code = code
        self.printer.event(why)
        for r in self.replicas.values():
            r.gen += 1
            self._stop_probe(r)
        self._tier = len(self.tiers) - 1
        self._tier_signalled = False
        self._advance_shutdown()

    def _advance_shutdown(self) -> None:
        while self._tier >= 0:
            live = [r for n in self.tiers[self._tier] for r in self.nodes.get(n, [])
                    if r.proc is not None]
            if live and not self._tier_signalled:
                self._tier_signalled = True
                now = self.clock()
                for r in live:
                    self.spawner.signal_group(r.proc.pid, r.stop_signal)  # type: ignore[union-attr]
                    self._at(now + r.stop_timeout, "kill", r.name, r.gen)
            if live:
                return
            self._tier -= 1
            self._tier_signalled = False
        if not self.by_pid and not self.probe_pids:
            self.done = True

    def _timer_kill(self, r: Replica) -> None:
        if r.proc is not None:
            self.printer.event(f"{r.name} still running {r.stop_timeout:g}s after "
                               f"{signal.Signals(r.stop_signal).name}; sending SIGKILL")
            self.spawner.signal_group(r.proc.pid, signal.SIGKILL)
