"""The supervisor's parts on their own: the end of a run, the stop order, ``depends_on``.

Each is built here without a Supervisor, from replicas and the fakes of ``tests/fakes.py``.
"""

from __future__ import annotations

import signal

from orchestrator.plan import ReplicaPlan
from orchestrator.supervisor.depends import Gate
from orchestrator.supervisor.policy import RestartPolicy
from orchestrator.supervisor.readiness import Probe
from orchestrator.supervisor.replica import Options, Replica, Status, by_node
from orchestrator.supervisor.shutdown import Shutdown, run_over, tiers_of
from orchestrator.supervisor.spawn import Proc
from orchestrator.supervisor.timers import Timers
from tests.fakes import FakeClock, FakePrinter, FakeSpawner


def replicas(*names: str, waiting: tuple[str, ...] = ()) -> dict[str, list[Replica]]:
    """``"a.0"``-style names; each replica is running (pid 100 + its place) and ready,
    but those of the ``waiting`` nodes, which have not started yet."""
    made = []
    for i, name in enumerate(names):
        node, _, n = name.partition(".")
        r = Replica(ReplicaPlan(node=node, replica=int(n), kind="run", run="m:f"),
                    RestartPolicy(), Probe("ready-byte"), stop_timeout=2.0 + i)
        if node not in waiting:
            r.move(Status.STARTING)
            r.move(Status.READY)
            r.proc, r.ever_ready = Proc(100 + i, -1), True
        made.append(r)
    return by_node(made)


def finish(r: Replica, status: Status, code: int) -> None:
    r.move(status)
    r.exit_code = code
    r.proc = None


def test_a_run_is_over_once_every_replica_has_ended_and_fails_if_one_did() -> None:
    nodes = replicas("a.0", "a.1", "b.0")
    assert run_over(Options(), nodes) is None
    finish(nodes["a"][0], Status.EXITED, 0)
    finish(nodes["a"][1], Status.EXITED, 0)
    assert run_over(Options(), nodes) is None
    assert run_over(Options(exit_code_from="a"), nodes) == (0, "a finished")
    finish(nodes["b"][0], Status.FAILED, 3)
    assert run_over(Options(), nodes) == (1, "no node is left to run")
    assert run_over(Options(exit_code_from="b"), nodes) == (3, "b finished")


def test_tiers_stop_last_first_and_a_tier_waits_for_every_replica_of_the_one_after() -> None:
    nodes = replicas("db.0", "api.0", "api.1", "web.0")
    spawner, clock, timers, printer = FakeSpawner(), FakeClock(), Timers(), FakePrinter()
    stop = Shutdown(tiers_of([("db",), ("api",)], list(nodes)), nodes, spawner=spawner,
                    timers=timers, clock=clock, printer=printer)
    assert stop.tiers == [["db"], ["api", "web"]]  # a node no tier lists goes last
    stop.begin()
    assert not stop.advance()
    assert spawner.signals == [(101, signal.SIGTERM), (102, signal.SIGTERM),
                               (103, signal.SIGTERM)]
    finish(nodes["api"][1], Status.EXITED, 0)
    finish(nodes["web"][0], Status.EXITED, 0)
    assert not stop.advance() and len(spawner.signals) == 3  # api.0 is still running
    timers.fire(clock() + 3)  # api.0's stop_timeout (3 s) is over
    assert spawner.signals[-1] == (101, signal.SIGKILL)
    assert printer.events == ["api.0 still running 3s after SIGTERM; sending SIGKILL"]
    finish(nodes["api"][0], Status.EXITED, 137)
    assert not stop.advance() and spawner.signals[-1] == (100, signal.SIGTERM)
    finish(nodes["db"][0], Status.EXITED, 0)
    assert stop.advance()
    assert stop.budget() == 2.0 + 5.0  # the longest stop_timeout of each tier


def test_the_gate_starts_dependents_once_all_replicas_were_ready_and_dooms_them_otherwise() -> None:
    nodes = replicas("a.0", "a.1", "b.0", "c.0", waiting=("b", "c"))
    gate = Gate(nodes, {"b": ["a"], "c": ["b"]})
    nodes["a"][1].ever_ready = False
    gate.look_at(["b", "c"])
    assert gate.take() == ([], [])
    nodes["a"][1].ever_ready = True
    gate.look_at(gate.dependents["a"])
    assert gate.take() == (nodes["b"], [])
    nodes["b"][0].move(Status.STARTING)
    finish(nodes["b"][0], Status.FAILED, 1)
    gate.look_at(gate.dependents["b"])
    assert gate.take() == ([], nodes["c"])
