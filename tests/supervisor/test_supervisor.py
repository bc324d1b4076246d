"""The supervisor's state machine with a fake clock and fake processes: no real process at all.

Each test feeds a scripted history of events (ready bytes, output, exits,
signals, time passing) and checks what the supervisor started, signalled,
printed and returned.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.supervisor.supervisor import Status
from tests.supervisor.harness import RUN, advance, build, pid_of


def test_one_node_that_finishes_ends_the_run_with_0() -> None:
    sup, sp, clock, _ = build({"a": RUN})
    sup.start()
    assert sp.kinds == [("fork", 101)]
    sup.on_ready(101)
    assert sup.replicas["a.0"].status is Status.READY
    sup.on_exit(101, 0)
    assert sup.done and sup.code == 0


def test_a_crash_after_a_healthy_run_restarts_at_once() -> None:
    sup, sp, clock, out = build({"a": RUN})
    sup.start()
    sup.on_ready(101)
    clock.t += 30
    sup.on_exit(101, 1)
    assert sp.kinds == [("fork", 101), ("fork", 102)]
    assert sup.replicas["a.0"].restarts == 1
    assert "a.0 exited with code 1; restarting now" in out.text
    assert (101, signal.SIGKILL) in sp.signals  # the old group's leftovers


def test_a_crash_loop_backs_off_and_then_fails() -> None:
    sup, sp, clock, out = build({"a": {**RUN, "max_restarts": 3, "backoff": "100ms"}})
    sup.start()
    delays = []
    for _ in range(3):
        pid = pid_of(sup, "a.0")
        sup.on_exit(pid, 2)  # before ready: a quick failure
        assert sup.replicas["a.0"].status is Status.RESTARTING
        deadline = sup.next_deadline()
        assert deadline is not None
        delays.append(round(deadline - clock.t, 6))
        advance(sup, clock, deadline - clock.t - 0.001)
        assert sup.replicas["a.0"].proc is None  # not before its time
        advance(sup, clock, 0.001)
        assert sup.replicas["a.0"].proc is not None
    assert delays == [0.1, 0.2, 0.4]
    sup.on_exit(pid_of(sup, "a.0"), 2)
    assert sup.replicas["a.0"].status is Status.FAILED
    assert sup.done and sup.code == 1
    assert "failed (3 restart(s) within 60s" in out.text


def test_a_nodes_replicas_share_its_policy_but_each_backs_off_on_its_own() -> None:
    sup, sp, clock, out = build({"a": {**RUN, "replicas": 2, "backoff": "100ms"},
                                 "b": {**RUN, "max_restarts": 1}})
    a0, a1, b0 = (sup.replicas[n] for n in ("a.0", "a.1", "b.0"))
    assert a0.policy is a1.policy and a0.probe is a1.probe  # frozen: one per node
    assert b0.policy.max_restarts == 1 and a0.policy.max_restarts == 5
    sup.start()
    for _ in range(2):  # a.0 fails quickly twice; a.1 never does
        sup.on_exit(pid_of(sup, "a.0"), 2)
        deadline = sup.next_deadline()
        assert deadline is not None
        advance(sup, clock, deadline - clock.t)
    assert a0.restarts == 2 and a0.history.quick_failures == 2
    assert a1.restarts == 0 and a1.history.quick_failures == 0
    sup.on_exit(pid_of(sup, "a.1"), 2)
    deadline = sup.next_deadline()
    assert deadline is not None
    assert round(deadline - clock.t, 6) == 0.1  # a.1's first backoff, not a.0's third


def test_depends_on_waits_for_every_replica_to_be_ready() -> None:
    sup, sp, clock, _ = build({"a": {**RUN, "replicas": 2}, "b": {**RUN, "depends_on": ["a"]}})
    sup.start()
    assert len(sp.kinds) == 2
    sup.on_ready(101)
    assert len(sp.kinds) == 2
    sup.on_ready(102)
    assert len(sp.kinds) == 3 and sup.replicas["b.0"].status is Status.STARTING


def test_a_dependency_that_fails_fails_its_dependents() -> None:
    sup, sp, clock, out = build({"a": {**RUN, "restart": "never"},
                                 "b": {**RUN, "depends_on": ["a"]}})
    sup.start()
    sup.on_exit(101, 1)
    assert sup.replicas["b.0"].status is Status.FAILED
    assert "b.0 not started" in out.text
    assert sup.done and sup.code == 1


def test_exit_code_from_returns_that_nodes_code_and_stops_the_rest() -> None:
    sup, sp, clock, _ = build({"srv": RUN, "cli": {**RUN, "restart": "never"}},
                              exit_code_from="cli")
    sup.start()
    sup.on_ready(101)
    sup.on_ready(102)
    sup.on_exit(102, 3)
    assert sup.stopping and sup.code == 3
    assert (101, signal.SIGTERM) in sp.signals
    sup.on_exit(101, 143)
    assert sup.done and sup.code == 3


def test_abort_on_failure() -> None:
    sup, sp, clock, _ = build({"a": RUN, "b": {**RUN, "restart": "never"}}, abort_on_failure=True)
    sup.start()
    sup.on_exit(102, 1)
    assert sup.stopping and sup.code == 1
    sup.on_exit(101, 143)
    assert sup.done


def test_timeout_stops_with_124_and_kills_after_stop_timeout() -> None:
    sup, sp, clock, out = build({"a": {**RUN, "stop_timeout": 2}}, timeout=5)
    sup.start()
    sup.on_ready(101)
    assert sup.next_deadline() == pytest.approx(clock.t + 5)
    advance(sup, clock, 5)
    assert sup.code == 124 and sp.signals == [(101, signal.SIGTERM)]
    assert sup.next_deadline() == pytest.approx(clock.t + 2)
    advance(sup, clock, 2)
    assert sp.signals[-1] == (101, signal.SIGKILL)
    assert "sending SIGKILL" in out.text
    sup.on_exit(101, 137)
    assert sup.done and sup.code == 124


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_map_to_their_codes(signum: int, code: int) -> None:
    sup, sp, clock, _ = build({"a": {**RUN, "stop_signal": "SIGINT"}})
    sup.start()
    sup.on_signal(signum)
    assert sup.code == code and sp.signals == [(101, signal.SIGINT)]
    sup.on_signal(signum)  # a second one: no more waiting
    assert sp.signals[-1] == (101, signal.SIGKILL)
    sup.on_exit(101, 137)
    assert sup.done and sup.code == code


def test_shutdown_goes_tier_by_tier_in_reverse() -> None:
    sup, sp, clock, _ = build({
        "db": RUN, "api": {**RUN, "depends_on": ["db"], "replicas": 2},
        "web": {**RUN, "depends_on": ["api"]}, "side": RUN})
    sup.start()
    for pid in (101, 102):  # db, side
        sup.on_ready(pid)
    sup.on_ready(103)
    sup.on_ready(104)
    sup.on_ready(105)  # web
    sup.on_signal(signal.SIGTERM)

    def terms() -> list[int]:
        return [pgid for pgid, sig in sp.signals if sig == signal.SIGTERM]

    assert terms() == [105]  # web alone first
    sup.on_exit(105, 0)
    assert terms() == [105, 103, 104]
    sup.on_exit(103, 0)
    assert terms() == [105, 103, 104]  # the api tier is not gone yet
    sup.on_exit(104, 0)
    assert sorted(terms()[3:]) == [101, 102]
    sup.on_exit(101, 0)
    assert not sup.done
    sup.on_exit(102, 0)
    assert sup.done and sup.code == 143


def test_nothing_restarts_during_shutdown() -> None:
    sup, sp, clock, _ = build({"a": {**RUN, "restart": "always"}})
    sup.start()
    sup.on_signal(signal.SIGINT)
    sup.on_exit(101, 1)
    assert len(sp.kinds) == 1 and sup.done


def test_command_node_is_ready_when_started() -> None:
    sup, sp, clock, _ = build({"c": {"command": ["true"]}, "d": {**RUN, "depends_on": ["c"]}})
    sup.start()
    assert [k for k, _ in sp.kinds] == ["exec", "fork"]


def test_log_readiness_matches_whole_lines() -> None:
    sup, sp, clock, _ = build({"c": {"command": ["x"], "ready": {"log": "^listening on \\d+"}},
                               "d": {**RUN, "depends_on": ["c"]}})
    sup.start()
    sup.on_output(101, "c.0", b"hello\nlisten")
    assert not sup.replicas["c.0"].ready
    sup.on_output(101, "c.0", b"ing on 80\n")
    assert sup.replicas["c.0"].ready and len(sp.kinds) == 2


def test_not_ready_in_time_is_a_failed_start() -> None:
    sup, sp, clock, out = build({"c": {"command": ["x"], "ready": {"log": "up", "timeout": 1},
                                       "restart": "never"}})
    sup.start()
    advance(sup, clock, 1)
    assert (101, signal.SIGKILL) in sp.signals
    assert "did not become ready within 1s" in out.text
    sup.on_exit(101, 0)  # even a clean exit: it was not ready
    assert sup.replicas["c.0"].status is Status.FAILED and sup.code == 1


def test_command_probe_retries_with_growing_delays_until_exit_0() -> None:
    sup, sp, clock, _ = build({"c": {"command": ["x"], "ready": {"command": ["probe"]}}})
    sup.start()
    advance(sup, clock, 0.005)
    assert sp.kinds[-1][0] == "probe"
    sup.on_exit(sp.kinds[-1][1], 1)
    assert sup.next_deadline() == pytest.approx(clock.t + 0.01)
    advance(sup, clock, 0.01)
    probe = sp.kinds[-1]
    assert probe[0] == "probe" and probe[1] != 102
    sup.on_exit(probe[1], 0)
    assert sup.replicas["c.0"].ready


def test_file_probe(tmp_path: Path) -> None:
    flag = tmp_path / "up"
    sup, sp, clock, _ = build({"c": {"command": ["x"], "ready": {"file": str(flag)}}})
    sup.start()
    advance(sup, clock, 0.005)
    assert not sup.replicas["c.0"].ready
    flag.write_text("")
    advance(sup, clock, 0.01)
    assert sup.replicas["c.0"].ready


def test_a_start_that_cannot_fork_counts_as_a_failure() -> None:
    sup, sp, clock, out = build({"c": {"command": ["x"], "restart": "never"}})
    sp.fail_exec = True
    sup.start()
    assert sup.replicas["c.0"].status is Status.FAILED and sup.done and sup.code == 1
    assert "could not start" in out.text


def test_stale_events_are_ignored() -> None:
    sup, sp, clock, _ = build({"a": RUN})
    sup.start()
    sup.on_exit(999, 1)
    sup.on_ready(999)
    assert sup.replicas["a.0"].status is Status.STARTING


def test_no_timer_is_pending_when_nothing_waits() -> None:
    sup, sp, clock, _ = build({"a": RUN})
    sup.start()
    sup.on_ready(101)
    assert sup.next_deadline() is None  # the loop then sleeps until an fd wakes it


# -- the end of a run, whatever happened before it -------------------------------------------------

NODES = st.fixed_dictionaries({
    "restart": st.sampled_from(["never", "on-failure", "always"]),
    "replicas": st.integers(1, 3), "max_restarts": st.integers(0, 2),
    "backoff": st.sampled_from(["0s", "50ms"])})
EVENTS = st.lists(st.tuples(st.sampled_from(["ready", "exit", "time", "restart", "nofork"]),
                            st.integers(0, 8), st.sampled_from([0, 1, 2])), max_size=40)


@settings(max_examples=150, deadline=None)
@given(a=NODES, b=NODES, b_needs_a=st.booleans(), events=EVENTS)
def test_the_run_ends_as_soon_as_nothing_is_left_to_run(
        a: dict[str, object], b: dict[str, object], b_needs_a: bool,
        events: list[tuple[str, int, int]]) -> None:
    # The supervisor counts its finished replicas instead of looking at all of them after
    # every event: the count must stay true, and the run must still end the moment
    # run_over says it is over.
    from orchestrator.supervisor.shutdown import run_over

    sup, sp, clock, _ = build({"a": {**RUN, **a},
                               "b": {**RUN, **b, "depends_on": ["a"] if b_needs_a else []}})
    sup.start()
    for kind, which, code in events:
        live = sorted(sup.by_pid)
        sp.fail_fork = kind == "nofork" or (kind == "restart" and code == 2)  # (its starts)
        if kind in ("time", "nofork"):
            advance(sup, clock, 0.05 * (which + 1))
        elif kind == "restart":
            sup.restart([sorted(sup.replicas)[which % len(sup.replicas)]])
        elif live:
            pid = live[which % len(live)]
            if kind == "ready":
                sup.on_ready(pid)
            else:
                sup.on_exit(pid, code)
        assert sup.finished == sum(r.status.terminal for r in sup.replicas.values())
        assert sup.stopping or run_over(sup.options, sup.nodes) is None
