"""What the control channel asks of the supervisor: restart, stop, and waiting for a run to be up.

Fake clock, fake processes (``harness.py``, ``tests/fakes.py``): no real process.
"""

from __future__ import annotations

import signal

import pytest

from orchestrator.supervisor.runready import StartupWatch
from orchestrator.supervisor.supervisor import Status, Supervisor
from tests.supervisor.harness import RUN, advance, build, pid_of


def test_restart_stops_a_live_replica_and_starts_it_again_once_it_exited() -> None:
    sup, sp, clock, _ = build({"a": {**RUN, "replicas": 2, "stop_timeout": "2s"}})
    sup.start()
    for pid in (101, 102):
        sup.on_ready(pid)
    assert sup.restart(["a.1"]) == ["a.1"]
    assert sp.signals == [(102, signal.SIGTERM)]
    assert sup.restart(["a.1"]) == ["a.1"]  # asked twice: still one stop signal
    assert sp.signals == [(102, signal.SIGTERM)]
    sup.on_exit(102, 143)
    r = sup.replicas["a.1"]
    assert pid_of(sup, "a.1") == 103 and r.status is Status.STARTING and r.restarts == 1
    sup.on_ready(103)
    assert r.ready and not sup.stopping and sup.replicas["a.0"].restarts == 0


def test_restart_kills_a_replica_that_ignores_its_stop_signal() -> None:
    sup, sp, clock, _ = build({"a": {**RUN, "stop_timeout": "2s"}})
    sup.start()
    sup.on_ready(101)
    sup.restart(["a"])
    advance(sup, clock, 1.9)
    assert (101, signal.SIGKILL) not in sp.signals
    advance(sup, clock, 0.2)
    assert (101, signal.SIGKILL) in sp.signals
    sup.on_exit(101, 137)
    assert pid_of(sup, "a.0") == 102


def test_restart_of_a_failed_node_starts_it_with_a_fresh_history() -> None:
    sup, sp, clock, _ = build({"a": {**RUN, "restart": "never"}, "b": RUN})
    sup.start()
    sup.on_ready(101)
    sup.on_ready(102)
    sup.on_exit(101, 3)
    assert sup.replicas["a.0"].status is Status.FAILED
    sup.restart(["a"])
    assert pid_of(sup, "a.0") == 103 and sup.replicas["a.0"].restarts == 1


def test_restart_names_what_it_does_not_know() -> None:
    sup, *_ = build({"a": RUN})
    sup.start()
    with pytest.raises(KeyError, match="nope"):
        sup.restart(["a", "nope"])


def test_stop_is_an_orderly_end_with_the_code_asked_for() -> None:
    sup, sp, clock, _ = build({"a": RUN, "b": {**RUN, "depends_on": ["a"]}})
    sup.start()
    sup.on_ready(101)
    sup.on_ready(102)
    sup.stop("topo down", code=0)
    assert sp.signals == [(102, signal.SIGTERM)]  # the dependent first
    sup.on_exit(102, 143)
    assert sp.signals[-1] == (101, signal.SIGTERM)
    sup.on_exit(101, 143)
    assert sup.done and sup.code == 0


def test_call_at_fires_once_at_its_time_and_not_after_a_stop() -> None:
    sup, sp, clock, _ = build({"a": RUN})
    sup.start()
    calls: list[float] = []
    sup.call_at(clock() + 1, lambda: calls.append(clock()))
    sup.call_at(clock() + 5, lambda: calls.append(-1))
    assert sup.next_deadline() == clock() + 1
    advance(sup, clock, 1)
    assert calls == [clock()]
    sup.stop("done")
    advance(sup, clock, 10)
    assert calls == [1001.0]


# -- waiting until the run is up ---------------------------------------------------------------


def watch(sup: Supervisor, wait: float | None = None) -> tuple[StartupWatch, list[str]]:
    ups: list[str] = []
    return StartupWatch(sup, wait_timeout=wait, on_ready=lambda: ups.append("up")), ups


def test_the_run_is_up_once_every_replica_was_ready_or_finished_with_0() -> None:
    sup, sp, clock, _ = build({"a": {**RUN, "replicas": 2}, "job": {"command": "true"}})
    w, ups = watch(sup)
    sup.start()
    w.check()
    sup.on_ready(101)
    w.check()
    assert ups == []
    sup.on_ready(102)
    w.check()
    w.check()
    assert ups == ["up"] and w.failure is None


def test_a_ready_timeout_fails_the_start_and_names_the_replica() -> None:
    db = {"command": "x", "ready": {"tcp": 1, "timeout": "2s"}}
    sup, sp, clock, _ = build({"a": RUN, "db": db})
    w, ups = watch(sup)
    sup.start()
    sup.on_ready(101)
    advance(sup, clock, 2.5)
    w.check()
    assert ups == [] and w.failure is not None
    assert w.failure.startswith("db.0 did not become ready within 2s (its ready check: tcp)")
    assert sup.stopping and sup.code == 1


def test_a_replica_that_fails_before_ready_fails_the_start() -> None:
    sup, sp, clock, _ = build({"a": {**RUN, "restart": "never"},
                               "b": {**RUN, "depends_on": ["a"]}})
    w, ups = watch(sup)
    sup.start()
    sup.on_exit(101, 2)
    w.check()
    assert w.failure is not None and w.failure.startswith(
        "a.0 exited with code 2 before it was ready, and its restart policy gave up")


def test_the_wait_timeout_names_who_is_still_not_ready() -> None:
    sup, sp, clock, _ = build({"a": RUN, "b": RUN})
    w, ups = watch(sup, wait=3)
    sup.start()
    sup.on_ready(101)
    advance(sup, clock, 3)
    assert w.failure == "not ready within 3s (--wait-timeout): still waiting for b.0"
