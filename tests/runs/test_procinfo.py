"""Waiting for processes to end (``runs/procinfo.wait_gone``): on pidfds, up to a deadline."""

from __future__ import annotations

import subprocess
import time

from tests.conftest import Leftovers


def test_wait_gone_returns_once_every_process_has_ended(no_leftovers: Leftovers) -> None:
    from orchestrator.runs.procinfo import wait_gone

    procs = [subprocess.Popen(["sleep", s], env=no_leftovers.env()) for s in ("0.1", "0.3")]
    try:
        start = time.monotonic()
        assert wait_gone([p.pid for p in procs], time.monotonic() + 10)
        assert time.monotonic() - start < 5  # woken by the exits, not by the deadline
    finally:
        for p in procs:
            p.kill()
            p.wait(5)


def test_wait_gone_says_false_at_the_deadline_while_one_still_runs(
        no_leftovers: Leftovers) -> None:
    from orchestrator.runs.procinfo import wait_gone

    quick = subprocess.Popen(["true"], env=no_leftovers.env())
    quick.wait(5)  # reaped: its pid names no process any more
    slow = subprocess.Popen(["sleep", "30"], env=no_leftovers.env())
    try:
        start = time.monotonic()
        assert not wait_gone([quick.pid, slow.pid], time.monotonic() + 0.3)
        assert 0.25 < time.monotonic() - start < 5
        assert slow.poll() is None
    finally:
        slow.kill()
        slow.wait(5)
    assert wait_gone([quick.pid, slow.pid], time.monotonic() + 1)
