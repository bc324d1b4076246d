"""The timer queue: deadlines in order, handles that cancel, nothing read from a clock."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.supervisor.timers import Timers


def test_timers_fire_in_deadline_order_and_equal_deadlines_in_the_order_set() -> None:
    timers = Timers()
    fired: list[object] = []

    def note(name: str) -> Callable[[], None]:
        return lambda: fired.append(name)

    for when, name in [(3.0, "c"), (1.0, "a"), (2.0, "b1"), (2.0, "b2")]:
        timers.at(when, note(name))
    assert timers.next_deadline() == 1.0
    timers.fire(1.5)
    assert fired == ["a"]
    timers.fire(10)
    assert fired == ["a", "b1", "b2", "c"]
    assert timers.next_deadline() is None and len(timers) == 0


def test_a_cancelled_timer_never_fires_and_is_not_a_deadline() -> None:
    timers = Timers()
    fired: list[object] = []
    first = timers.at(1.0, lambda: fired.append(1))
    timers.at(2.0, lambda: fired.append(2))
    first.cancel()
    first.cancel()  # idempotent
    assert not first.pending and len(timers) == 1
    assert timers.next_deadline() == 2.0
    timers.fire(5)
    assert fired == [2]


def test_a_timer_fires_once_even_if_cancelled_afterwards() -> None:
    timers = Timers()
    fired: list[object] = []
    t = timers.at(1.0, lambda: fired.append(1))
    timers.fire(1.0)
    t.cancel()
    timers.fire(2.0)
    assert fired == [1] and not t.pending


def test_a_timer_set_while_firing_fires_in_the_same_call_when_already_due() -> None:
    timers = Timers()
    fired: list[object] = []

    def first() -> None:
        fired.append("first")
        timers.at(1.0, lambda: fired.append("then"))

    def second() -> None:
        timers.at(9.0, lambda: fired.append("later"))

    timers.at(1.0, first)
    timers.at(1.0, second)
    timers.fire(1.0)
    assert fired == ["first", "then"] and timers.next_deadline() == 9.0


def test_clear_cancels_everything_pending() -> None:
    timers = Timers()
    fired: list[object] = []
    handles = [timers.at(float(i), lambda: fired.append(0)) for i in range(3)]
    timers.clear()
    timers.fire(100)
    assert fired == [] and not any(h.pending for h in handles) and timers.next_deadline() is None
