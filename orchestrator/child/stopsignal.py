"""The stop signal of a run node: delivered even while libzmq holds the main thread.

A node's handler for its stop signal sets ``Node.stopping`` (``set_from_handler``)
and, while the node function runs, raises ``SystemExit`` (``node.py``).
``watch_stop`` makes sure that handler gets to run at all.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

_REDELIVER_FIRST = 0.002  # seconds the handler gets before the stop signal is sent again
_REDELIVER_MAX = 0.1


def set_from_handler(event: threading.Event) -> None:
    """``event.set()`` that is safe inside a signal handler of the thread that waits on it."""
    # Event.set takes a non-reentrant lock; if the main thread holds it (inside
    # wait() or is_set()) when the signal arrives, setting it here would deadlock.
    cond = getattr(event, "_cond", None)
    if cond is None or not hasattr(event, "_flag"):
        event.set()
    elif cond.acquire(blocking=False):
        try:
            event._flag = True
            cond.notify_all()
        finally:
            cond.release()
    else:
        threading.Thread(target=event.set, daemon=True).start()


def watch_stop(stopping: threading.Event, signum: int) -> Callable[[], None] | None:
    """Make sure the stop handler runs even when the signal lands while libzmq is busy.

    CPython runs a handler only once the main thread is back in Python. A signal
    that arrives while libzmq works towards its poll() brings no EINTR, and a
    node blocked in recv (or zmq.proxy) would sit there until SIGKILL. The
    signal's wake-up byte wakes a watcher thread, which sends the signal to the
    main thread again until the handler has run (it sets ``stopping``). Nothing is done when someone
    else (asyncio) owns the wake-up fd: their loop wakes up on it instead.
    """
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except ValueError:  # not the main thread: no handler runs here anyway
        old = None
    if old != -1:
        if old is not None:
            signal.set_wakeup_fd(old)
        os.close(r)
        os.close(w)
        return None
    main = threading.get_ident()
    threading.Thread(target=_redeliver, args=(stopping, signum, r, main), daemon=True,
                     name="topo-stop").start()

    def unwatch() -> None:
        if signal.set_wakeup_fd(-1) != w:  # someone replaced ours meanwhile: give theirs back
            signal.set_wakeup_fd(old)
        os.close(w)  # EOF: the watcher ends

    return unwatch


def _redeliver(stopping: threading.Event, signum: int, r: int, main: int) -> None:
    try:
        while data := os.read(r, 64):
            if signum not in data:
                continue
            delay = _REDELIVER_FIRST
            while not stopping.wait(delay):
                try:
                    signal.pthread_kill(main, signum)  # now it finds the main thread in poll()
                except OSError:  # the main thread is gone: the process is ending anyway
                    return
                delay = min(delay * 2, _REDELIVER_MAX)
    finally:
        os.close(r)
