"""The replica's moves, ``depends_on`` at run time, and corners of the state machine.

Fake clock, fake processes (``harness.py``, ``tests/fakes.py``): no real process.
"""

from __future__ import annotations

import signal

import pytest

from orchestrator.plan import ReplicaPlan
from orchestrator.supervisor.policy import RestartPolicy
from orchestrator.supervisor.readiness import Probe
from orchestrator.supervisor.replica import MOVES, Replica, Status
from tests.supervisor.harness import RUN, advance, build, build_with, pid_of

# -- the replica's moves ---------------------------------------------------------------------------


def replica() -> Replica:
    return Replica(ReplicaPlan(node="a", replica=0, kind="run", run="m:f"), RestartPolicy(),
                   Probe("ready-byte"))


def test_a_replica_moves_only_along_the_edges_of_its_state_machine() -> None:
    r = replica()
    assert r.status is Status.WAITING
    for to in (Status.STARTING, Status.READY, Status.RESTARTING, Status.STARTING, Status.EXITED,
               Status.STARTING, Status.FAILED):
        r.move(to)
        assert r.status is to
    with pytest.raises(ValueError, match="a.0: no move from failed to ready"):
        r.move(Status.READY)
    assert r.status.value == "failed"  # unchanged


def test_nothing_moves_back_to_waiting_and_only_a_start_gets_ready() -> None:
    assert all(Status.WAITING not in targets for targets in MOVES.values())
    assert [s for s, targets in MOVES.items() if Status.READY in targets] == [Status.STARTING]
    assert set(MOVES) == set(Status)


def test_every_move_is_one_structured_event_named_after_the_status() -> None:
    sup, sp, clock, out = build({"a": {**RUN, "backoff": "10ms"}})
    sup.start()
    sup.on_ready(101)
    sup.on_exit(101, 1)  # a quick failure: a backoff first
    advance(sup, clock, 0.01)
    sup.on_exit(102, 0)
    assert out.of("a.0") == ["started", "ready", "restarting", "started", "exited"]
    assert out.records[0] == ("started", "a.0", {"pid": 101})


# -- depends_on ------------------------------------------------------------------------------------


Nodes = dict[str, dict[str, object]]


def chain(n: int, *, dependents_first: bool, root: dict[str, object]) -> Nodes:
    """n0 <- n1 <- ...: node i depends on node i - 1; n0 is ``root``."""
    order = range(n - 1, -1, -1) if dependents_first else range(n)
    return {f"n{i}": ({**root} if i == 0 else
                      {"command": ["true"], "restart": "never", "depends_on": [f"n{i - 1}"]})
            for i in order}


@pytest.mark.parametrize("dependents_first", [True, False])
def test_a_long_chain_of_nodes_ready_at_once_starts_without_recursion(
        dependents_first: bool) -> None:
    n = 5000  # far deeper than the interpreter's recursion limit
    sup, sp, clock, out = build(chain(n, dependents_first=dependents_first,
                                      root={"command": ["true"], "restart": "never"}))
    sup.start()
    assert len(sp.started) == n and [s.argv for s in sp.started[:1]] == [("true",)]
    assert all(r.status is Status.READY for r in sup.replicas.values())


@pytest.mark.parametrize("dependents_first", [True, False])
def test_a_failure_dooms_every_node_down_the_chain_in_any_file_order(
        dependents_first: bool) -> None:
    sup, sp, clock, out = build(chain(4, dependents_first=dependents_first,
                                      root={**RUN, "restart": "never"}))
    sup.start()
    sup.on_exit(101, 3)
    assert {r.name: r.status for r in sup.replicas.values()} == {
        "n0.0": Status.FAILED, "n1.0": Status.FAILED, "n2.0": Status.FAILED,
        "n3.0": Status.FAILED}
    assert out.text.count("not started: a node it depends on failed") == 3
    assert sup.done and sup.code == 1  # nothing is left waiting: the run ends


def test_a_dependency_that_finished_without_ever_being_ready_fails_its_dependents() -> None:
    sup, sp, clock, out = build({
        "a": {"command": ["x"], "ready": {"log": "up"}, "restart": "never"},
        "b": {**RUN, "depends_on": ["a"]}})
    sup.start()
    sup.on_exit(101, 0)
    assert sup.replicas["b.0"].status is Status.FAILED and sup.done and sup.code == 1


# -- corners ---------------------------------------------------------------------------------------


def test_a_replica_that_gets_ready_while_stopping_is_still_killed_after_its_stop_timeout() -> None:
    sup, sp, clock, out = build({"c": {"command": ["x"], "ready": {"log": "up"},
                                       "stop_timeout": 2}})
    sup.start()
    sup.on_signal(signal.SIGTERM)
    assert sp.signals == [(101, signal.SIGTERM)]
    sup.on_output(101, "c.0", b"up\n")  # its ready line, late
    advance(sup, clock, 2)
    assert sp.signals[-1] == (101, signal.SIGKILL)


def test_a_probe_that_is_the_last_process_to_exit_ends_the_stopping_run() -> None:
    sup, sp, clock, out = build({"c": {"command": ["x"], "ready": {"command": ["probe"]}}})
    sup.start()
    advance(sup, clock, 0.005)
    probe = sp.kinds[-1]
    assert probe[0] == "probe"
    sup.on_signal(signal.SIGTERM)
    assert (probe[1], signal.SIGKILL) in sp.signals
    sup.on_exit(101, 143)
    assert not sup.done  # its probe has not been reaped yet
    sup.on_exit(probe[1], 137)
    assert sup.done and sup.code == 143


def test_a_batch_with_one_start_that_failed_stops_the_others_on_abort() -> None:
    sup, sp, clock, out = build({"r": RUN, "c": {"command": ["x"], "restart": "never"}},
                                abort_on_failure=True)
    sp.fail_exec = True
    sup.start()
    assert sup.stopping and sup.code == 1
    assert sp.signals == [(101, signal.SIGTERM)]  # the forked one was known before the abort
    sup.on_exit(101, 143)
    assert sup.done


def test_a_restart_cancels_a_pending_backoff() -> None:
    sup, sp, clock, out = build({"a": {**RUN, "backoff": "5s"}})
    sup.start()
    sup.on_exit(101, 1)
    assert sup.replicas["a.0"].status is Status.RESTARTING
    sup.restart(["a"])
    assert pid_of(sup, "a.0") == 102
    advance(sup, clock, 10)
    assert len(sp.started) == 2  # the backoff's start never came


def test_what_started_is_watched_and_command_nodes_get_their_environment() -> None:
    sup, fakes = build_with({"r": RUN, "c": {"command": ["x"], "ready": {"command": ["probe"]}}})
    sup.start()
    advance(sup, fakes.clock, 0.005)
    assert fakes.watcher.watched == [(101, "r.0"), (102, "c.0"), (103, "c.0")]
    command, probe = fakes.spawner.started[1:]
    assert command.argv == ("x",) and command.pass_fds == ()
    assert command.env is not None and command.env["PYTHONUNBUFFERED"] == "1"
    assert probe.argv == ("probe",) and probe.env == command.env


def test_call_at_does_nothing_once_the_run_stops() -> None:
    sup, sp, clock, out = build({"a": RUN})
    sup.start()
    sup.stop("done")
    calls: list[int] = []
    sup.call_at(clock(), lambda: calls.append(1))
    advance(sup, clock, 1)
    assert calls == [] and sup.next_deadline() == pytest.approx(clock() + 4)  # the kill only
