"""How replicas become processes: run nodes forked together, command nodes exec'd.

A ``run`` (or role) node's child calls ``child.node.run_child`` with its
preloaded function; a ``command`` node is exec'd with the supervisor's
environment, its ``env:``, its IPC variables and ``TOPO_SPEC``, and inherits
its own socket-pair ends. A readiness probe is exec'd with the same environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orchestrator.ipc.resources import Resources
from orchestrator.plan import Plan, ReplicaPlan
from orchestrator.supervisor.ports import Command, SpawnerLike
from orchestrator.supervisor.replica import Replica
from orchestrator.supervisor.spawn import Proc

RunChild = Callable[..., int]  # child.node.run_child(plan, replica, target, ready_fd, ipc=...)


class Launcher:
    def __init__(
        self,
        plan: Plan,
        spawner: SpawnerLike,
        *,
        environ: Mapping[str, str],
        targets: Mapping[str, Callable[..., Any]],
        run_child: RunChild | None = None,
        ipc: Resources | None = None,
    ) -> None:
        self.plan = plan
        self.spawner = spawner
        self.environ = dict(environ)
        self.targets = dict(targets)
        self._run_child = run_child
        self.ipc = ipc

    def start(self, rs: Sequence[Replica]) -> list[tuple[Replica, Proc | OSError]]:
        """Start replicas in one batch: run nodes forked first, then command nodes exec'd."""
        forks = [r for r in rs if r.plan.kind != "command"]
        execs = [r for r in rs if r.plan.kind == "command"]
        born: list[tuple[Replica, Proc | OSError]] = []
        if forks:
            starts = [self._child_main(r.plan) for r in forks]
            born += zip(forks, self.spawner.fork_functions(starts), strict=True)
        if execs:
            commands: list[Command] = [(r.plan.argv or (), self.env(r.plan), r.plan.cwd)
                                       for r in execs]
            fds = [self.ipc.fds_for(r.plan) if self.ipc is not None else () for r in execs]
            born += zip(execs, self.spawner.exec_commands(commands, pass_fds=fds), strict=True)
        return born

    def probe(self, r: Replica) -> Proc:
        """Exec the ``ready: {command: ...}`` probe of ``r`` (its output is not captured)."""
        return self.spawner.exec_command(r.probe.argv, self.env(r.plan), r.plan.cwd,
                                         capture=False)

    def env(self, rp: ReplicaPlan) -> dict[str, str]:
        """The environment of a command node (and of its probe)."""
        env = {**self.environ, "PYTHONUNBUFFERED": "1", **rp.env}
        if self.ipc is not None:
            env.update(self.ipc.env_for(rp))
        return env

    def _child_main(self, rp: ReplicaPlan) -> Callable[[int], int]:
        target = self.targets[rp.run if rp.kind == "run" and rp.run else f"role:{rp.role}"]
        if self._run_child is None:
            # deferred: the node side imports pyzmq; a run of command nodes only never loads it
            from orchestrator.child.node import run_child

            self._run_child = run_child
        child, plan, ipc = self._run_child, self.plan, self.ipc
        if ipc is not None:  # node.ipc, and only this node's socket pair ends kept (in the child)
            return lambda ready_fd: child(plan, rp, target, ready_fd, ipc=ipc.enter_child(rp))
        return lambda ready_fd: child(plan, rp, target, ready_fd)
