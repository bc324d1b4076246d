"""A supervisor wired to the fakes of ``tests/fakes.py``, built from a short description.

``build({"a": {"run": "m:f", "replicas": 2}, "b": {"command": ["x"], "depends_on": ["a"]}})``
makes the plan the planner would (a ``Plan`` of this layer, no file model): the keys
are a topology file's node keys, with its defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.plan import BackoffPlan, NodePlan, Plan, ReadyPlan, ReplicaPlan
from orchestrator.supervisor.supervisor import Options, Supervisor
from orchestrator.units import parse_duration, parse_signal
from tests.fakes import FakeClock, FakePrinter, FakeSpawner, FakeWatcher

RUN: dict[str, Any] = {"run": "m:f"}


def node_plan(spec: Mapping[str, Any]) -> NodePlan:
    backoff = spec.get("backoff", {})
    if not isinstance(backoff, Mapping):
        backoff = {"initial": backoff}
    ready = None
    if "ready" in spec:
        given = dict(spec["ready"])
        timeout = parse_duration(given.pop("timeout", 30.0))
        (kind, value), = given.items()
        if kind == "command":
            value = tuple(value)
        ready = ReadyPlan(kind=kind, timeout=timeout, **{kind: value})
    return NodePlan(
        restart=spec.get("restart", "on-failure"),
        backoff=BackoffPlan(parse_duration(backoff.get("initial", 0.1)),
                            float(backoff.get("factor", 2.0)),
                            parse_duration(backoff.get("max", 10.0))),
        max_restarts=int(spec.get("max_restarts", 5)),
        restart_window=parse_duration(spec.get("restart_window", 60.0)),
        stop_timeout=parse_duration(spec.get("stop_timeout", 5.0)),
        depends_on=tuple(spec.get("depends_on", ())),
        ready=ready,
    )


def plan_of(nodes: Mapping[str, Mapping[str, Any]]) -> Plan:
    replicas = []
    for name, spec in nodes.items():
        command = spec.get("command")
        for i in range(int(spec.get("replicas", 1))):
            replicas.append(ReplicaPlan(
                node=name, replica=i, kind="command" if command else "run", run=spec.get("run"),
                argv=((command,) if isinstance(command, str) else tuple(command))
                if command else None,
                cwd="/tmp", stop_signal=parse_signal(spec.get("stop_signal", "SIGTERM"))))
    depth: dict[str, int] = {}  # the longest depends_on path below each node, without recursion
    for root in nodes:
        stack = [root]
        while stack:
            n = stack[-1]
            deps = [d for d in nodes[n].get("depends_on", ()) if d not in depth]
            if deps:
                stack.extend(deps)
                continue
            stack.pop()
            depth[n] = 1 + max((depth[d] for d in nodes[n].get("depends_on", ())), default=-1)
    tiers: list[tuple[str, ...]] = [() for _ in range(1 + max(depth.values()))]
    for n in nodes:
        tiers[depth[n]] += (n,)
    return Plan("t", "/tmp/t", "/tmp/t.yaml", tuple(replicas), tiers=tuple(tiers),
                nodes={name: node_plan(spec) for name, spec in nodes.items()})


@dataclass
class Fakes:
    spawner: FakeSpawner
    clock: FakeClock
    printer: FakePrinter
    watcher: FakeWatcher


def build(nodes: Mapping[str, Mapping[str, Any]], **options: Any
          ) -> tuple[Supervisor, FakeSpawner, FakeClock, FakePrinter]:
    sup, fakes = build_with(nodes, **options)
    return sup, fakes.spawner, fakes.clock, fakes.printer


def build_with(nodes: Mapping[str, Mapping[str, Any]], **options: Any
               ) -> tuple[Supervisor, Fakes]:
    fakes = Fakes(FakeSpawner(), FakeClock(), FakePrinter(), FakeWatcher())
    sup = Supervisor(plan_of(nodes), spawner=fakes.spawner, printer=fakes.printer,
                     clock=fakes.clock, options=Options(**options),
                     targets={"m:f": lambda node: 0}, run_child=lambda *a, **k: 0, environ={})
    sup.watcher = fakes.watcher
    return sup, fakes


def pid_of(sup: Supervisor, name: str) -> int:
    proc = sup.replicas[name].proc
    assert proc is not None, f"{name} is not running"
    return proc.pid


def advance(sup: Supervisor, clock: FakeClock, seconds: float) -> None:
    clock.t += seconds
    sup.fire_timers()
