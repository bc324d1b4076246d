"""The restart policy, exhaustively: pure decisions over histories of exits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.supervisor.policy import Decision, History, Outcome, RestartPolicy, decide

modes = st.sampled_from(["never", "on-failure", "always"])
policies = st.builds(
    RestartPolicy,
    mode=modes,
    initial=st.floats(0.001, 5),
    factor=st.floats(1, 10),
    max_delay=st.floats(0.001, 60),
    max_restarts=st.integers(0, 8),
    window=st.floats(0.1, 120),
    healthy_after=st.floats(0, 5),
)
# One exit: (exit code, how long it ran, whether it became ready, pause before it started)
exits = st.tuples(
    st.sampled_from([0, 1, 2, 137, 143]),
    st.floats(0, 10),
    st.booleans(),
    st.floats(0, 10),
)


def replay(
    policy: RestartPolicy, script: list[tuple[int, float, bool, float]]
) -> Iterator[tuple[Decision, float, int, float, bool]]:
    """Drive ``decide`` like the supervisor does, until it stops restarting."""
    history, now = History(), 0.0
    for code, ran, ready, pause in script:
        start = now + pause
        now = start + ran
        d = decide(policy, history, code=code, started_at=start, ready=ready, now=now)
        yield d, now, code, now - start, ready
        if d.outcome is not Outcome.RESTART:
            return
        history = d.history
        now += d.delay


def test_defaults_match_the_spec() -> None:
    p = RestartPolicy()
    assert (p.mode, p.initial, p.factor, p.max_delay, p.max_restarts) == (
        "on-failure", 0.1, 2.0, 10.0, 5)


def test_first_restart_after_a_healthy_run_is_immediate() -> None:
    d = decide(RestartPolicy(), History(), code=1, started_at=0, ready=True, now=30)
    assert d.outcome is Outcome.RESTART and d.delay == 0 and d.history.quick_failures == 0


def test_crash_loop_backs_off_exponentially_then_fails() -> None:
    p = RestartPolicy(initial=0.1, factor=2, max_delay=0.5, max_restarts=5, window=60)
    history, now, delays = History(), 0.0, []
    for _ in range(5):
        d = decide(p, history, code=1, started_at=now, ready=False, now=now + 0.01)
        assert d.outcome is Outcome.RESTART
        delays.append(d.delay)
        history, now = d.history, now + 0.01 + d.delay
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    d = decide(p, history, code=1, started_at=now, ready=False, now=now + 0.01)
    assert d.outcome is Outcome.FAILED and "5 restart(s)" in d.reason


def test_backoff_resets_after_the_node_stayed_up() -> None:
    p = RestartPolicy()
    d = decide(p, History((), 4), code=1, started_at=0, ready=True, now=2)
    assert d.delay == 0 and d.history.quick_failures == 0


def test_not_ready_is_a_quick_failure_however_long_it_ran() -> None:
    d = decide(RestartPolicy(), History(), code=1, started_at=0, ready=False, now=100)
    assert d.delay == pytest.approx(0.1) and d.history.quick_failures == 1


def test_old_restarts_leave_the_window() -> None:
    p = RestartPolicy(max_restarts=2, window=10)
    h = History((0.0, 1.0), 0)
    assert decide(p, h, code=1, started_at=5, ready=True, now=9).outcome is Outcome.FAILED
    d = decide(p, h, code=1, started_at=5, ready=True, now=10.5)
    assert d.outcome is Outcome.RESTART and d.history.restarts == (1.0, 10.5)


@pytest.mark.parametrize(
    ("mode", "code", "outcome"),
    [
        ("never", 0, Outcome.FINISHED),
        ("never", 3, Outcome.FAILED),
        ("on-failure", 0, Outcome.FINISHED),
        ("on-failure", 3, Outcome.RESTART),
        ("always", 0, Outcome.RESTART),
        ("always", 3, Outcome.RESTART),
    ],
)
def test_modes(mode: str, code: int, outcome: Outcome) -> None:
    p = RestartPolicy(mode=mode)  # type: ignore[arg-type]
    assert decide(p, History(), code=code, started_at=0, ready=True, now=5).outcome is outcome


def test_max_restarts_zero_fails_at_once() -> None:
    p = RestartPolicy(max_restarts=0)
    assert decide(p, History(), code=1, started_at=0, ready=True, now=5).outcome is Outcome.FAILED


def test_huge_streaks_do_not_overflow() -> None:
    p = RestartPolicy(initial=1e-3, factor=10, max_delay=3)
    assert p.backoff(100_000) == 3


@given(policies, st.lists(exits, min_size=1, max_size=30))
def test_properties_of_any_history(
    policy: RestartPolicy, script: list[tuple[int, float, bool, float]]
) -> None:
    restarts: list[float] = []
    streak = 0
    for d, now, code, ran, ready in replay(policy, script):
        assert 0 <= d.delay <= policy.max_delay
        if policy.mode == "never" or (policy.mode == "on-failure" and code == 0):
            assert d.outcome is not Outcome.RESTART
            assert (d.outcome is Outcome.FINISHED) == (code == 0)
            continue
        healthy = ready and ran >= policy.healthy_after
        streak = 0 if healthy else streak + 1
        if d.outcome is Outcome.RESTART:
            restarts.append(now)
            # never more than max_restarts inside any window
            assert sum(1 for t in restarts if now - t < policy.window) <= policy.max_restarts
            assert d.history.quick_failures == streak
            assert d.delay == policy.backoff(streak)
            if healthy:
                assert d.delay == 0
        else:
            assert d.outcome is Outcome.FAILED
            assert sum(1 for t in restarts if now - t < policy.window) >= policy.max_restarts


@given(policies, st.integers(1, 50))
def test_backoff_grows_monotonically_to_the_cap(policy: RestartPolicy, n: int) -> None:
    assert policy.backoff(0) == 0
    assert policy.backoff(1) == pytest.approx(min(policy.initial, policy.max_delay))
    assert policy.backoff(n) <= policy.backoff(n + 1) <= policy.max_delay
