"""The supervisor's state machine (SPEC §3-§5), fed one event at a time.

Events: a child exited (``on_exit``), a run node wrote its ready byte
(``on_ready``), a node wrote output (``on_output``), a signal arrived
(``on_signal``, dispatched to ``handle_int`` / ``handle_term`` / ... by name),
and time passed (``fire_timers``). The real event loop (``eventloop.py``)
turns pidfds, pipes and the signal wake-up fd into these calls and sleeps
until ``next_deadline()``; tests feed scripted histories with a fake clock and
a fake spawner instead. Clock, spawner and printer are parameters.
"""

from __future__ import annotations

import heapq
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from orchestrator.plan import Plan, ReplicaPlan
from orchestrator.supervisor.commands import Commands
from orchestrator.supervisor.output import Printer
from orchestrator.supervisor.policy import Decision, Outcome, decide
from orchestrator.supervisor.readiness import Probe, make_probe
from orchestrator.supervisor.readying import Readying
from orchestrator.supervisor.replica import Options, Replica, never_ready, policy_of
from orchestrator.supervisor.shutdown import Shutdown
from orchestrator.supervisor.spawn import Proc

# Options and Replica are re-exported: callers build and read them with a Supervisor.
__all__ = ["Options", "Replica", "SpawnerLike", "Supervisor", "Watcher"]

INF = float("inf")


class SpawnerLike(Protocol):
    def fork_functions(self, starts: list[Callable[[int], int]]) -> list[Proc | OSError]: ...
    def exec_commands(
        self, commands: Sequence[tuple[Sequence[str], Mapping[str, str], str]], *,
        capture: bool = True, pass_fds: Sequence[Sequence[int]] | None = None,
    ) -> list[Proc | OSError]: ...
    def exec_command(
        self, argv: tuple[str, ...] | list[str], env: Mapping[str, str], cwd: str, *,
        capture: bool = True,
    ) -> Proc: ...
    def signal_group(self, pgid: int, sig: int) -> None: ...
    def group_gone(self, pgid: int) -> None: ...


class Watcher(Protocol):
    def watch(self, proc: Proc, name: str) -> None: ...


class _NoWatcher:
    def watch(self, proc: Proc, name: str) -> None:
        pass


class Supervisor(Commands, Readying, Shutdown):
    def __init__(
        self,
        plan: Plan,
        *,
        spawner: SpawnerLike,
        printer: Printer,
        clock: Callable[[], float] = time.monotonic,
        options: Options | None = None,
        targets: Mapping[str, Callable[..., Any]] | None = None,
        run_child: Callable[..., int] | None = None,
        environ: Mapping[str, str] | None = None,
        on_change: Callable[[Supervisor], None] | None = None,
        ipc: Any = None,
    ) -> None:
        self.plan = plan
        self.spawner = spawner
        self.printer = printer
        self.clock = clock
        self.options = options or Options()
        self.targets = dict(targets or {})
        self._run_child = run_child
        self.ipc = ipc  # ipcres.Resources of the run, or None
        self.environ = dict(os.environ if environ is None else environ)
        self.on_change = on_change  # the state file writer; called when pids change
        self.watcher: Watcher = _NoWatcher()
        self.replicas: dict[str, Replica] = {}
        self.nodes: dict[str, list[Replica]] = {}
        self.deps: dict[str, list[str]] = {}
        for rp in plan.replicas:
            spec = plan.nodes[rp.node]
            if rp.kind == "command":
                probe = make_probe(spec.ready, cwd=rp.cwd, run_dir=plan.run_dir)
            else:  # ready when its b"R" arrives; `ready:` may only bound the wait
                probe = Probe("ready-byte", float(spec.ready.timeout) if spec.ready else INF)
            r = Replica(
                rp,
                policy_of(spec),
                probe,
                stop_signal=int(rp.stop_signal),
                stop_timeout=float(spec.stop_timeout),
            )
            self.replicas[rp.name] = r
            self.nodes.setdefault(rp.node, []).append(r)
            self.deps[rp.node] = list(spec.depends_on)
        tiers = [list(t) for t in plan.tiers] or [list(self.nodes)]
        listed = {n for t in tiers for n in t}
        tiers[-1].extend(n for n in self.nodes if n not in listed)
        self.tiers = tiers
        self.by_pid: dict[int, Replica] = {}
        self.probe_pids: dict[int, Replica] = {}
        self.started_nodes: set[str] = set()
        self._timers: list[tuple[float, int, str, str, int]] = []
        self._seq = 0
        self._calls: dict[int, Callable[[], None]] = {}
        self.stopping = False
        self.done = False
        self.code: int | None = None
        self._tier = -1
        self._tier_signalled = False
        self.ready_hook: Callable[[Replica], None] | None = None  # benchmarks and tests

    # -- events ------------------------------------------------------------
    def start(self) -> None:
        if self.options.timeout is not None:
            self._at(self.clock() + self.options.timeout, "timeout", "")
        self._start_eligible()
        self._check_end()

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name[3:].lower()
        handler = getattr(self, f"handle_{name}", None)
        if handler is not None:
            handler()

    def handle_int(self) -> None:
        self._interrupt(130, "interrupted")

    def handle_term(self) -> None:
        self._interrupt(143, "terminated")

    def handle_hup(self) -> None:
        self._interrupt(129, "hung up")

    def on_ready(self, pid: int) -> None:
        r = self.by_pid.get(pid)
        if r is not None and not r.ready:
            self._mark_ready(r)

    def on_output(self, pid: int, name: str, data: bytes) -> None:
        lines = self.printer.feed(name, data)
        r = self.replicas.get(name)
        if r is not None and r.probe.kind == "log" and not r.ready and r.proc is not None \
                and r.proc.pid == pid and any(r.probe.matches(line) for line in lines):
            self._mark_ready(r)

    def on_output_closed(self, name: str) -> None:
        self.printer.flush(name)

    def on_exit(self, pid: int, code: int) -> None:
        if pid in self.probe_pids:
            self._probe_exited(self.probe_pids.pop(pid), code)
            return
        r = self.by_pid.pop(pid, None)
        if r is None or r.proc is None or r.proc.pid != pid:
            return
        # Whatever the leader left in its group (a node's own children) goes with it.
        self.spawner.signal_group(pid, signal.SIGKILL)
        self.spawner.group_gone(pid)
        r.proc = None
        if r.not_ready and code == 0:
            code = 1
        self._changed()
        if r.manual_restart and not self.stopping:
            # `topo restart`: a new replica now, whatever the policy; not a crash.
            r.manual_restart = False
            r.exit_code = code
            r.restarts += 1
            r.status = "restarting"
            self.printer.record("restarting", r.name, code=code, delay=0, reason="topo restart")
            self._spawn(r)
            return
        self._after_exit(r, code)

    def next_deadline(self) -> float | None:
        while self._timers and not self._live_timer(self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def fire_timers(self) -> None:
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            timer = heapq.heappop(self._timers)
            if timer[2] == "call":
                fn = self._calls.pop(timer[4], None)
                if fn is not None and not self.stopping:
                    fn()
            elif self._live_timer(timer):
                getattr(self, f"_timer_{timer[2]}")(self.replicas.get(timer[3]))

    # -- starting ------------------------------------------------------------
    def _start_eligible(self) -> None:
        if self.stopping:
            return
        batch: list[Replica] = []
        for node, reps in self.nodes.items():
            if node in self.started_nodes:
                continue
            deps = self.deps[node]
            if any(never_ready(x) for d in deps for x in self.nodes.get(d, [])):
                self.started_nodes.add(node)
                for r in reps:
                    r.status = "failed"
                    self.printer.event(f"{r.name} not started: a node it depends on failed")
                    self.printer.record("failed", r.name, reason="a node it depends on failed")
                continue
            if all(all(x.ever_ready for x in self.nodes.get(d, [])) for d in deps):
                self.started_nodes.add(node)
                batch.extend(reps)
        if batch:
            self._spawn(*batch)

    def _spawn(self, *rs: Replica) -> None:
        """Start replicas in one batch: run nodes forked together, then command nodes."""
        forks = [r for r in rs if r.plan.kind != "command"]
        execs = [r for r in rs if r.plan.kind == "command"]
        born: list[tuple[Replica, Proc | OSError]] = []
        if forks:
            starts = [self._child_main(r.plan) for r in forks]
            born += zip(forks, self.spawner.fork_functions(starts), strict=True)
        if execs:
            cmds = [(r.plan.argv or (), self._command_env(r.plan), r.plan.cwd) for r in execs]
            fds = [self.ipc.fds_for(r.plan) for r in execs] if self.ipc is not None else []
            # pass_fds only when a socket pair end must reach a program: test spawners need not
            # know about it.
            procs = (self.spawner.exec_commands(cmds, pass_fds=fds) if any(fds)
                     else self.spawner.exec_commands(cmds))
            born += zip(execs, procs, strict=True)
        now = self.clock()
        for r, proc in born:
            r.gen += 1
            r.ready = r.not_ready = False
            r.probe_delay = None
            r.status = "starting"
            r.started_at = now
            if isinstance(proc, OSError):
                self.printer.event(f"{r.name} could not start: {proc.strerror or proc}")
                self._after_exit(r, 127)
                continue
            r.proc = proc
            self.by_pid[proc.pid] = r
            self.watcher.watch(proc, r.name)
            self.printer.record("started", r.name, pid=proc.pid)
        self._changed()
        for r, proc in born:
            if not isinstance(proc, OSError) and r.proc is proc:
                self._arm_readiness(r)

    def _child_main(self, rp: ReplicaPlan) -> Callable[[int], int]:
        target = self.targets[rp.run if rp.kind == "run" and rp.run else f"role:{rp.role}"]
        if self._run_child is None:
            from orchestrator.child.node import run_child

            self._run_child = run_child
        child, plan, ipc = self._run_child, self.plan, self.ipc
        if ipc is not None:  # node.ipc, and only this node's socket pair ends kept (in the child)
            return lambda ready_fd: child(plan, rp, target, ready_fd, ipc=ipc.enter_child(rp))
        return lambda ready_fd: child(plan, rp, target, ready_fd)

    def _command_env(self, rp: ReplicaPlan) -> dict[str, str]:
        env = {**self.environ, "PYTHONUNBUFFERED": "1", **rp.env}
        if self.ipc is not None:
            env.update(self.ipc.env_for(rp))
        if rp.spec_path:
            env.setdefault("TOPO_SPEC", rp.spec_path)
        return env

    # -- exits and restarts (the end of a run: shutdown.py) ----------------------------
    def _after_exit(self, r: Replica, code: int) -> None:
        r.exit_code = code
        r.gen += 1
        self._stop_probe(r)
        if self.stopping:
            r.status = "exited"
            self.printer.record("exited", r.name, code=code)
            self._advance_shutdown()
            return
        d: Decision = decide(r.policy, r.history, code=code, started_at=r.started_at,
                             ready=r.ready and not r.not_ready, now=self.clock())
        r.history = d.history
        if d.outcome is Outcome.RESTART:
            r.restarts += 1
            r.status = "restarting"
            when = "now" if d.delay == 0 else f"in {d.delay:.2g}s"
            self.printer.event(f"{r.name} exited with code {code}; restarting {when}")
            self.printer.record("restarting", r.name, code=code, delay=d.delay)
            if d.delay == 0:
                self._spawn(r)
            else:
                self._at(self.clock() + d.delay, "restart", r.name, r.gen)
            return
        if d.outcome is Outcome.FINISHED:
            r.status = "exited"
            self.printer.event(f"{r.name} exited with code {code}")
            self.printer.record("exited", r.name, code=code)
        else:
            r.status = "failed"
            self.printer.event(f"{r.name} exited with code {code}; failed ({d.reason})")
            self.printer.record("failed", r.name, code=code, reason=d.reason)
            if self.options.abort_on_failure:
                self._begin_shutdown(1, f"{r.name} failed; stopping (--abort-on-failure)")
                return
            self._start_eligible()  # dependents that now can never start are failed
        self._check_end()

    def _timer_restart(self, r: Replica) -> None:
        self._spawn(r)

    # -- plumbing ---------------------------------------------------------------
    def _at(self, when: float, kind: str, name: str, gen: int = -1) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, kind, name, gen))

    def _live_timer(self, timer: tuple[float, int, str, str, int]) -> bool:
        _, _, kind, name, gen = timer
        if kind == "timeout":
            return not self.stopping
        if kind == "call":
            return gen in self._calls and not self.stopping
        r = self.replicas[name]
        return gen == r.gen and (kind == "kill" or not self.stopping)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)
