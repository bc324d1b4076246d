"""``Daemon``: a node's thread without ``threading``'s bookkeeping, still joinable."""

from __future__ import annotations

import sys
import threading

from orchestrator.child.threads import Daemon

DEADLINE = 10.0


def test_a_daemon_runs_its_target_and_join_waits_for_it() -> None:
    go, seen = threading.Event(), []

    def waits(x: str) -> None:
        go.wait(DEADLINE)
        seen.append(x)

    d = Daemon(waits, ("ran",))
    assert d.is_alive()
    d.join(0.01)  # a timeout: back while the target still waits
    assert d.is_alive() and not seen
    go.set()
    d.join(DEADLINE)
    assert not d.is_alive() and seen == ["ran"]
    d.join()  # joined again: at once


def test_a_daemon_whose_target_raises_still_ends() -> None:
    def fails() -> None:
        raise RuntimeError("boom")

    seen: list[type] = []
    old = sys.unraisablehook  # where _thread reports what a thread raised
    sys.unraisablehook = lambda u: seen.append(type(u.exc_value))
    try:
        d = Daemon(fails)
        d.join(DEADLINE)
    finally:
        sys.unraisablehook = old
    assert not d.is_alive()
    assert seen == [RuntimeError]
