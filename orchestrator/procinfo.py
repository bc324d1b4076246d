"""Who a pid is: its start time, so a recorded pid is never mistaken for a reused one.

A pid alone names a process only while it lives; after that the kernel may give
it to anything. ``(pid, start)``, where start is the process's start time in
clock ticks since boot (``/proc/<pid>/stat`` field 22), names exactly one
process for the life of the machine. State files record both.
"""

from __future__ import annotations


def proc_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None when there is no such process."""
    fields = _stat(pid)
    return fields[1] if fields else None


def is_alive(pid: int | None, start: int | None) -> bool:
    """Whether the process recorded as ``(pid, start)`` still runs (zombies count as gone)."""
    fields = _stat(pid) if pid and start is not None else None
    return fields is not None and fields[0] not in (b"Z", b"X") and fields[1] == start


def _stat(pid: int) -> tuple[bytes, int] | None:
    """(state letter, start ticks) from ``/proc/<pid>/stat``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None
