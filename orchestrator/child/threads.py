"""``Daemon``: a node's own thread, started with ``_thread`` rather than ``threading``.

``threading.Thread.start`` makes two locks, an ``Event`` and its ``Condition``, and waits
until the new thread has told it so; in a freshly forked node that is 0.75 ms and a
hundred copy-on-write faults, against 0.2 ms and 35 for ``_thread.start_new_thread``
(bench/startup.py shows a node's start). A node's threads are daemons it never waits for
on its way out, so ``threading``'s bookkeeping buys nothing there. ``threading.enumerate()``
does not list them; ``/proc/self/task`` does.
"""

from __future__ import annotations

import _thread
from collections.abc import Callable
from typing import Any


class Daemon:
    """A running daemon thread of ``target(*args)``, with ``join`` and ``is_alive``."""

    def __init__(self, target: Callable[..., Any], args: tuple[Any, ...] = ()) -> None:
        self._running = _thread.allocate_lock()
        self._running.acquire()  # released by the thread as it ends
        _thread.start_new_thread(self._run, (target, args))

    def _run(self, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            target(*args)
        finally:
            self._running.release()

    def join(self, timeout: float | None = None) -> None:
        if self._running.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            self._running.release()

    def is_alive(self) -> bool:
        return self._running.locked()
