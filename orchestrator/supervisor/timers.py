"""The supervisor's deadlines: a heap of callbacks, each with a handle that cancels it.

Backoff before a restart, a stop signal's ``stop_timeout``, ``--timeout``, a
readiness probe's next try and its timeout are all one ``Timer``. The event
loop sleeps until ``next_deadline()`` and then calls ``fire(now)``; the fake
clock of the tests does the same. Nothing here reads a clock.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class Timer:
    """One pending call; ``cancel()`` makes sure it never happens (idempotent)."""

    __slots__ = ("when", "_fn")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self._fn: Callable[[], None] | None = fn

    @property
    def pending(self) -> bool:
        return self._fn is not None

    def cancel(self) -> None:
        self._fn = None

    def _run(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()  # equal deadlines fire in the order they were set

    def at(self, when: float, fn: Callable[[], None]) -> Timer:
        """Call ``fn`` once ``fire`` is given a time at or past ``when``."""
        timer = Timer(when, fn)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def next_deadline(self) -> float | None:
        """When the earliest pending timer is due; None when nothing is pending."""
        while self._heap and not self._heap[0][2].pending:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def fire(self, now: float) -> None:
        """Call every timer due at ``now``, earliest first (also those set meanwhile)."""
        while self._heap and self._heap[0][0] <= now:
            heapq.heappop(self._heap)[2]._run()

    def clear(self) -> None:
        """Cancel every pending timer."""
        for _, _, timer in self._heap:
            timer.cancel()
        self._heap.clear()

    def __len__(self) -> int:
        """How many timers are pending."""
        return sum(1 for _, _, timer in self._heap if timer.pending)
