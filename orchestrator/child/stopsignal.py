"""The stop signal of a run node: delivered even while libzmq holds the main thread.

A node's handler for its stop signal sets ``Node.stopping`` (``set_from_handler``)
and, while the node function runs, raises ``SystemExit`` (``node.py``).
``watch_stop`` makes sure that handler gets to run at all.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import Protocol

from orchestrator.child.threads import Daemon

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


class Redeliver:
    """The stop signal's wake-up pipe, and sending the signal to the main thread again.

    Read by a thread other than the main one: the node's ``Watch`` thread when it has
    one (``readable`` and ``tick`` from its poll loop), else a thread of
    its own. A thread costs a forked node about a millisecond: one per node, not two.
    """

    def __init__(self, stopping: threading.Event, signum: int, fd: int) -> None:
        self.stopping = stopping
        self.signum = signum
        self.fd = fd  # the read end; closed by whoever reads it, at its EOF
        self.main = threading.get_ident()
        self._delay = _REDELIVER_FIRST
        self._at: float | None = None  # monotonic time of the next redelivery

    def readable(self) -> bool:
        """Read the wake-up bytes; False at EOF (``unwatch`` was called)."""
        data = os.read(self.fd, 64)
        if data and self.signum in data and self._at is None:
            self._delay = _REDELIVER_FIRST
            self._at = time.monotonic() + self._delay
        return bool(data)

    def next_due(self) -> float | None:
        return self._at

    def tick(self) -> bool:
        """Send the signal again if its handler has not run in time; False: nothing more to do."""
        if self._at is None or time.monotonic() < self._at:
            return True
        if self.stopping.is_set():
            self._at = None
            return True
        try:
            signal.pthread_kill(self.main, self.signum)  # now it finds the main thread in poll()
        except OSError:  # the main thread is gone: the process is ending anyway
            self._at = None
            return False
        self._delay = min(self._delay * 2, _REDELIVER_MAX)
        self._at = time.monotonic() + self._delay
        return True


class Reader(Protocol):
    redeliver: Redeliver | None

    def can_redeliver(self) -> bool: ...


def watch_stop(stopping: threading.Event, signum: int,
               reader: Reader | None = None) -> Callable[[], None] | None:
    """Make sure the stop handler runs even when the signal lands while libzmq is busy.

    CPython runs a handler only once the main thread is back in Python. A signal
    that arrives while libzmq works towards its poll() brings no EINTR, and a
    node blocked in recv (or zmq.proxy) would sit there until SIGKILL. The
    signal's wake-up byte wakes a watcher thread, which sends the signal to the
    main thread again until the handler has run (it sets ``stopping``). That thread
    is ``reader``'s (it gets the ``Redeliver``) when given, else one started here.
    Nothing is done when someone else (asyncio) owns the wake-up fd: their loop wakes
    up on it instead.
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
    redeliver = Redeliver(stopping, signum, r)
    if reader is not None and reader.can_redeliver():
        reader.redeliver = redeliver  # its thread, started next, reads the pipe
    else:
        redeliver_in_thread(redeliver)

    def unwatch() -> None:
        if signal.set_wakeup_fd(-1) != w:  # someone replaced ours meanwhile: give theirs back
            signal.set_wakeup_fd(old)
        os.close(w)  # EOF: the watcher ends

    return unwatch


def redeliver_in_thread(rd: Redeliver) -> None:
    """A thread that reads the pipe and resends, until the pipe's EOF."""
    Daemon(_redeliver, (rd,))


def _redeliver(rd: Redeliver) -> None:
    poller = select.poll()  # not select(): the fd may be above 1023 in a node of a big run
    poller.register(rd.fd, select.POLLIN)
    while True:
        due = rd.next_due()
        timeout = None if due is None else max(0, int((due - time.monotonic()) * 1000) + 1)
        if poller.poll(timeout) and not rd.readable():
            break  # EOF: unwatched, its writer is gone
        if not rd.tick():
            return  # the main thread is gone: so is the process (the pipe stays open)
    os.close(rd.fd)
