"""How replicas become processes: run nodes forked together, command nodes exec'd.

A ``run`` (or role) node's child calls ``child.node.run_child`` with its
preloaded function; a ``command`` node is exec'd with the supervisor's
environment, its ``env:``, its IPC variables and ``TOPO_SPEC``, and inherits
its own socket-pair ends. A readiness probe is exec'd with the same environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orchestrator.ipc.resources import Resources
from orchestrator.plan import Plan, ReplicaPlan
from orchestrator.supervisor.ports import Command, SpawnerLike
from orchestrator.supervisor.replica import Replica
from orchestrator.supervisor.spawn import Proc

RunChild = Callable[..., int]  # child.node.run_child(plan, replica, target, ready_fd, ipc=, env=)


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
        for group in _by_node(forks):
            # What the replicas of a node share of their env: (its `env:`, TOPO_RUN, TOPO_NODE,
            # the socket variables, ...) is set here, once, around their forks; each child
            # sets only what is its own (TOPO_REPLICA): a variable set in a child costs it
            # copy-on-write faults (os.environ's dict, libc's environ array).
            shared = _shared([r.plan.env for r in group])
            starts = [self._child_main(r.plan, {k: v for k, v in r.plan.env.items()
                                                if shared.get(k) != v}) for r in group]
            saved = {k: os.environ.get(k) for k in shared}
            os.environ.update(shared)
            try:
                born += zip(group, self.spawner.fork_functions(starts), strict=True)
            finally:
                for k, old in saved.items():
                    if old is None:
                        del os.environ[k]
                    else:
                        os.environ[k] = old
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

    def _child_main(self, rp: ReplicaPlan, env: Mapping[str, str]) -> Callable[[int], int]:
        target = self.targets[rp.run if rp.kind == "run" and rp.run else f"role:{rp.role}"]
        if self._run_child is None:
            # deferred: the node side imports pyzmq; a run of command nodes only never loads it
            from orchestrator.child.node import run_child

            self._run_child = run_child
        child, plan, ipc = self._run_child, self.plan, self.ipc
        if ipc is not None:  # node.ipc, and only this node's socket pair ends kept (in the child)
            return lambda ready_fd: child(plan, rp, target, ready_fd, ipc=ipc.enter_child(rp),
                                          env=env)
        return lambda ready_fd: child(plan, rp, target, ready_fd, env=env)


def _by_node(replicas: Sequence[Replica]) -> list[list[Replica]]:
    """``replicas`` in runs of one node each, in their order."""
    groups: list[list[Replica]] = []
    for r in replicas:
        if groups and groups[-1][0].plan.node == r.plan.node:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def _shared(envs: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The variables every env has, with the first one's values (the rest may differ)."""
    first, others = envs[0], envs[1:]
    return {k: v for k, v in first.items() if all(k in e for e in others)}
