"""Who a pid is: its start time, so a recorded pid is never mistaken for a reused one.

A pid alone names a process only while it lives; after that the kernel may give
it to anything. ``(pid, start)``, where start is the process's start time in
clock ticks since boot (``/proc/<pid>/stat`` field 22), names exactly one
process for the life of the machine. State files record both.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Iterable


def proc_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None when there is no such process."""
    fields = _stat(pid)
    return fields[1] if fields else None


def is_alive(pid: int | None, start: int | None) -> bool:
    """Whether the process recorded as ``(pid, start)`` still runs (zombies count as gone)."""
    fields = _stat(pid) if pid and start is not None else None
    return fields is not None and fields[0] not in (b"Z", b"X") and fields[1] == start


def child_map() -> dict[int, list[int]]:
    """Every process's children, by parent pid, from one pass over ``/proc``.

    The supervisor's last sweep uses this instead of psutil, which would add 1.7 MiB to
    the memory every forked node shares with the supervisor.
    """
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _fields(int(name))
            if fields is not None and len(fields) > 1 and fields[1].isdigit():
                kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def subtree(kids: dict[int, list[int]], pid: int) -> list[int]:
    """``pid`` and all its descendants in ``kids`` (``child_map()``), parents first."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        found.append(p)
        todo.extend(kids.get(p, ()))
    return found


def _stat(pid: int) -> tuple[bytes, int] | None:
    """(state letter, start ticks) from ``/proc/<pid>/stat``."""
    fields = _fields(pid)
    try:
        return (fields[0], int(fields[19])) if fields else None
    except (IndexError, ValueError):
        return None


def _fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name: state, ppid, ..."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its last ')'.
    return stat[stat.rfind(b")") + 2:].split()


def wait_gone(pids: Iterable[int], deadline: float) -> bool:
    """Wait (on pidfds, no polling) until every pid has exited or ``deadline`` passes."""
    fds = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fds.append(os.pidfd_open(pid))
    try:
        # ``select.poll``, not ``selectors``: the client commands load this module, and
        # ``selectors`` (with the enums of ``socket``) is a few milliseconds of each call.
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        left = len(fds)
        while left and (timeout := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(timeout * 1000):  # milliseconds, rounded up
                poller.unregister(fd)
                left -= 1
        return left == 0
    finally:
        for fd in fds:
            os.close(fd)
