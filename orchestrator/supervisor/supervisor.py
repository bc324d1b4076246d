"""The supervisor's state machine (docs/reference.md#restarts-and-guarantees), one event at a time.

Events: a child exited, a run node wrote its ready byte or output, a signal came,
time passed (``fire_timers``), and requests (``restart``, ``stop``, ``state``,
``call_at``). The event loop (``eventloop.py``) makes these calls; tests script
them with the fakes of ``tests/fakes.py``. What the ``Supervisor`` owns does one
thing each: ``Timers`` (deadlines, with cancel handles), ``Launcher`` (a replica
becomes a process), ``Gate`` (``depends_on``), ``Readying`` (until a replica is
ready), ``Shutdown`` (how replicas stop). The world it talks to is the protocols
of ``ports.py``; a replica's state changes only through ``Replica.move``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from orchestrator.ipc.resources import Resources
from orchestrator.plan import Plan
from orchestrator.supervisor.depends import Gate
from orchestrator.supervisor.launch import Launcher, RunChild
from orchestrator.supervisor.policy import History, Outcome, decide
from orchestrator.supervisor.ports import Clock, NoWatcher, Output, SpawnerLike, Watcher
from orchestrator.supervisor.readying import Readying
from orchestrator.supervisor.replica import Options, Replica, Status, by_node, describe, replicas_of
from orchestrator.supervisor.shutdown import Shutdown, run_over, tiers_of
from orchestrator.supervisor.spawn import Proc
from orchestrator.supervisor.timers import Timers
from orchestrator.supervisor.watching import Watching

# Options and Replica are re-exported: callers build and read them with a Supervisor.
__all__ = ["Options", "Replica", "Status", "Supervisor"]

_EVENT = {Status.STARTING: "started"}  # the JSON event of a move; else the status's own name
_SIGNALS: dict[int, tuple[int, str]] = {signal.SIGINT: (130, "interrupted"),
                                         signal.SIGTERM: (143, "terminated"),
                                         signal.SIGHUP: (129, "hung up")}


class Supervisor:
    def __init__(
        self,
        plan: Plan,
        *,
        spawner: SpawnerLike,
        printer: Output,
        clock: Clock = time.monotonic,
        options: Options | None = None,
        targets: Mapping[str, Callable[..., Any]] | None = None,
        run_child: RunChild | None = None,
        environ: Mapping[str, str] | None = None,
        on_change: Callable[[Supervisor], None] | None = None,
        ipc: Resources | None = None,
        ready_hook: Callable[[Replica], None] | None = None,
    ) -> None:
        self.plan = plan
        self.spawner = spawner
        self.printer = printer
        self.clock = clock
        self.options = options or Options()
        self.on_change = on_change  # the state file writer; called when pids change
        self.ready_hook = ready_hook  # benchmarks and tests
        self.watcher: Watcher = NoWatcher()  # the event loop puts itself here
        self.timers = Timers()
        self.launcher = Launcher(plan, spawner, environ=os.environ if environ is None else environ,
                                 targets=targets or {}, run_child=run_child, ipc=ipc)
        self.replicas: dict[str, Replica] = {r.name: r for r in replicas_of(plan)}
        self.nodes = by_node(self.replicas.values())
        self.gate = Gate(self.nodes, {n: plan.nodes[n].depends_on for n in self.nodes})
        self.readying = Readying(self.timers, clock, spawner, printer,
                                 run_probe=self._run_probe, ready=self._mark_ready)
        self.shutdown = Shutdown(tiers_of(plan.tiers, list(self.nodes)), self.nodes,
                                 spawner=spawner, timers=self.timers, clock=clock, printer=printer)
        self.watching = Watching(self.replicas, printer, self.timers, clock)
        self.by_pid: dict[int, Replica] = {}
        self._starting = False  # _start_eligible is looping (further up the stack)
        self.stopping = False
        self.done = False
        # How many replicas are finished (exited or failed for good), kept by _step: the
        # run is over only once all are, which is then looked at, not after every event.
        self.finished = sum(r.status.terminal for r in self.replicas.values())
        self.code: int | None = None

    # -- events --------------------------------------------------------------------------------
    def start(self) -> None:
        timeout = self.options.timeout
        if timeout is not None:
            self.timers.at(self.clock() + timeout, lambda: self._begin_shutdown(
                124, f"timeout after {timeout:g}s; stopping"))
        self._start_eligible(self.nodes)

    def on_signal(self, signum: int) -> None:
        if signum in _SIGNALS:
            self._interrupt(*_SIGNALS[signum])

    def handle_term(self) -> None:
        self.on_signal(signal.SIGTERM)

    def on_ready(self, pid: int) -> None:
        r = self.by_pid.get(pid)
        if r is not None and r.status is Status.STARTING:
            self._mark_ready(r)

    def on_record(self, pid: int, data: bytes) -> None:
        """A record from a run node's watch (a socket event, its counts)."""
        r = self.by_pid.get(pid)
        if r is not None:
            self.watching.on_record(r, data)

    def on_output(self, pid: int, name: str, data: bytes) -> None:
        lines = self.printer.feed(name, data)
        r = self.replicas.get(name)
        if r is not None and r.status is Status.STARTING and r.proc is not None \
                and r.proc.pid == pid:
            self.readying.output(r, lines)

    def on_output_closed(self, name: str) -> None:
        self.printer.flush(name)

    def on_exit(self, pid: int, code: int) -> None:
        if self.readying.probe_exited(pid, code):
            if self.stopping:
                self._advance_shutdown()  # the probe may have been the last process
            return
        r = self.by_pid.pop(pid, None)
        if r is None or r.proc is None or r.proc.pid != pid:
            return
        # Whatever the leader left in its group (a node's own children) goes with it.
        self.spawner.signal_group(pid, signal.SIGKILL)
        self.spawner.group_gone(pid)
        r.proc = None
        self.watching.on_exited(r)
        if r.not_ready and code == 0:
            code = 1
        self._changed()
        self._after_exit(r, code)

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def fire_timers(self) -> None:
        self.timers.fire(self.clock())

    # -- requests (the control channel, the Python API, the run's other parts) -------------------
    def restart(self, names: Sequence[str]) -> list[str]:
        """Restart ``node`` (all its replicas) or ``node.N``: a live one is stopped and started
        again once it has exited, one that has ended at once. ``KeyError``: unknown names."""
        chosen: list[Replica] = []
        for name in names:
            reps = self.nodes.get(name) or ([self.replicas[name]] if name in self.replicas else [])
            if not reps:
                raise KeyError(name)
            chosen.extend(r for r in reps if r not in chosen)
        if self.stopping:
            return []
        for r in chosen:
            if r.proc is not None:
                if not r.manual_restart:
                    r.manual_restart = True
                    self.shutdown.stop(r)
            elif r.status in (Status.EXITED, Status.FAILED, Status.RESTARTING):
                r.history = History()  # a fresh start: the crash loop is forgotten
                r.restarts += 1
                self._spawn(r)
        return [r.name for r in chosen]

    def stop(self, why: str, code: int = 0) -> None:
        """End the run as `topo down` does: every tier stopped, then the run is over."""
        self._begin_shutdown(code, why)

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Call ``fn`` at monotonic time ``when``, unless the run is stopping by then."""
        if not self.stopping:  # and the timers are cleared when it begins to stop
            self.timers.at(when, fn)

    def state(self) -> dict[str, Any]:
        """Every replica as `topo ps` and the state file show it (times are wall-clock)."""
        return {"stopping": self.stopping,
                "replicas": describe(self.replicas.values(), time.time() - self.clock())}

    # -- starting ------------------------------------------------------------------------------
    def _start_eligible(self, nodes: Iterable[str]) -> None:
        """Start each of ``nodes`` whose dependencies are all ready; fail those that never can.

        A loop, not a recursion: a node ready at once (a command without ``ready:``)
        has its dependents looked at in this same call, down a chain of any length.
        """
        self.gate.look_at(nodes)
        if self._starting:
            return  # the loop below, further up the stack, takes them
        self._starting = True
        try:
            while not self.stopping:
                start, doomed = self.gate.take()
                if not start and not doomed:
                    break
                for r in doomed:
                    self.printer.event(f"{r.name} not started: a node it depends on failed")
                    self._move(r, Status.FAILED, reason="a node it depends on failed")
                if start:
                    self._spawn(*start)
        finally:
            self._starting = False
            self.gate.clear()
        self._end_if_over()  # a failure in the loop may have ended the last node

    def _spawn(self, *rs: Replica) -> None:
        """Start replicas in one batch; a start that could not fork is an exit with 127."""
        born = self.launcher.start(rs)
        now = self.clock()
        failed: list[tuple[Replica, OSError]] = []
        for r, proc in born:
            r.cancel_timers()
            r.started_at = now
            r.not_ready = False
            if isinstance(proc, OSError):
                self._step(r, Status.STARTING)  # and at once, below, the way of any exit
                failed.append((r, proc))
                continue
            r.proc = proc
            self.by_pid[proc.pid] = r
            self.watcher.watch(proc, r.name)
            self.watching.on_started(r)
            self._move(r, Status.STARTING, pid=proc.pid)
        self._changed()
        for r, exc in failed:
            self.printer.event(f"{r.name} could not start: {exc.strerror or exc}")
            self._after_exit(r, 127)
        for r, proc in born:
            if not self.stopping and r.proc is proc:
                self.readying.arm(r)

    def _run_probe(self, r: Replica) -> Proc:
        proc = self.launcher.probe(r)
        self.watcher.watch(proc, r.name)
        return proc

    def _mark_ready(self, r: Replica) -> None:
        r.ever_ready = True
        self.readying.disarm(r)
        self._move(r, Status.READY)
        self._changed()
        if self.ready_hook is not None:
            self.ready_hook(r)
        self._start_eligible(self.gate.dependents[r.plan.node])

    # -- exits and restarts ----------------------------------------------------------------------
    def _after_exit(self, r: Replica, code: int) -> None:
        was_ready = r.ready and not r.not_ready
        r.exit_code = code
        r.cancel_timers()
        self.readying.disarm(r)
        if self.stopping:
            self._move(r, Status.EXITED, code=code)
            self._advance_shutdown()
            return
        if r.manual_restart:  # `topo restart`: a new replica now, whatever the policy
            r.manual_restart = False
            r.restarts += 1
            self._move(r, Status.RESTARTING, code=code, delay=0, reason="topo restart")
            self._spawn(r)
            return
        d = decide(r.policy, r.history, code=code, started_at=r.started_at, ready=was_ready,
                   now=self.clock())
        r.history = d.history
        if d.outcome is Outcome.RESTART:
            r.restarts += 1
            when = "now" if d.delay == 0 else f"in {d.delay:.2g}s"
            self.printer.event(f"{r.name} exited with code {code}; restarting {when}")
            self._move(r, Status.RESTARTING, code=code, delay=d.delay)
            if d.delay == 0:
                self._spawn(r)
            else:
                r.restart_timer = self.timers.at(self.clock() + d.delay, lambda: self._spawn(r))
            return
        if d.outcome is Outcome.FINISHED:
            self.printer.event(f"{r.name} exited with code {code}")
            self._move(r, Status.EXITED, code=code)
        else:
            self.printer.event(f"{r.name} exited with code {code}; failed ({d.reason})")
            self._move(r, Status.FAILED, code=code, reason=d.reason)
            if self.options.abort_on_failure:
                self._begin_shutdown(1, f"{r.name} failed; stopping (--abort-on-failure)")
                return
        self._start_eligible(self.gate.dependents[r.plan.node])  # those that now never can: failed

    # -- the end of the run ----------------------------------------------------------------------
    def _end_if_over(self) -> None:
        if self.stopping or (self.options.exit_code_from is None
                             and self.finished < len(self.replicas)):
            return  # (run_over would look at every replica to say so: this is called
            # after every start, ready and exit, and a run of 1,000 made it quadratic)
        over = run_over(self.options, self.nodes)
        if over is not None:
            self._begin_shutdown(*over)

    def _interrupt(self, code: int, why: str) -> None:
        if self.stopping:
            self.printer.event(f"{why} again: killing every node now")
            self.shutdown.kill_all()
        else:
            self._begin_shutdown(code, f"{why}; stopping")

    def _begin_shutdown(self, code: int, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.code = code
        self.printer.event(why)
        self.timers.clear()  # no backoff, probe, --timeout or call_at fires from now on
        self.watching.stop()
        for r in self.replicas.values():
            r.cancel_timers()
            self.readying.disarm(r)
        self.shutdown.begin()
        self._advance_shutdown()

    def _advance_shutdown(self) -> None:
        if self.shutdown.advance() and not self.by_pid and not self.readying.pids:
            self.done = True

    # -- plumbing --------------------------------------------------------------------------------
    def _move(self, r: Replica, to: Status, **fields: object) -> None:
        self._step(r, to)
        self.printer.record(_EVENT.get(to, to.value), r.name, **fields)

    def _step(self, r: Replica, to: Status) -> None:
        before = r.status.terminal
        r.move(to)
        self.finished += to.terminal - before

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)
