"""One process at a time: a System V semaphore as a lock (topologies/ipc_semaphore.yaml).

Several visitors (replicas of one node, forked together by topo) each enter a
critical section a few times. The semaphore ``room`` starts at 1: ``acquire()``
takes it to 0, so every other visitor waits there until ``release()`` gives it
back. Inside, a visitor appends an ``enter`` and a ``leave`` line with
timestamps to a file they all share: if two visitors were ever inside at once,
their lines would interleave and their intervals overlap.

A second semaphore, ``finished``, starts at 0 and counts the visitors that are
done: the judge acquires it once per visitor, so it waits for all of them,
then reads the shared file and checks that no two critical sections overlap.
"""

from __future__ import annotations

import os
import time
from typing import Any

from examples.common import acquire, param

HOLD = 0.003  # seconds a visitor stays inside: long enough for the others to queue at the door
LOG = "room.log"


def visitor(node: Any) -> int:
    room, finished = node.ipc["room"], node.ipc["finished"]
    # SEM_UNDO: a visitor killed inside the room gives the room back as it dies.
    room.undo = True
    path = os.path.join(node.run_dir, LOG)
    for k in range(1, param(node, "sections", 5) + 1):
        room.acquire()
        try:
            # CLOCK_MONOTONIC is one clock for every process of the machine.
            start = time.monotonic()
            _append(path, f"{node.full_name} enter {start:.6f}")
            time.sleep(HOLD)  # the work done inside: holding the room is the point
            end = time.monotonic()
            _append(path, f"{node.full_name} leave {end:.6f}")
        finally:
            room.release()
        print(f"{node.full_name}: section {k} from {start:.6f} to {end:.6f}", flush=True)
    finished.release()
    return 0


def judge(node: Any) -> int:
    finished = node.ipc["finished"]
    visitors = param(node, "visitors", 4)
    for done in range(visitors):
        if not acquire(finished, node, seconds=30.0):
            print(f"judge: only {done} of {visitors} visitors finished within 30 s", flush=True)
            return 1
    with open(os.path.join(node.run_dir, LOG), encoding="utf-8") as f:
        lines = f.read().splitlines()
    try:
        sections = check_log(lines)
    except ValueError as exc:
        print(f"judge: {exc}", flush=True)
        return 1
    who = {name for name, _, _ in sections}
    print(f"judge: {len(sections)} critical sections by {len(who)} visitors, none overlapped",
          flush=True)
    return 0


def check_log(lines: list[str]) -> list[tuple[str, float, float]]:
    """(visitor, enter, leave) of each section; ``ValueError`` if two ever overlapped."""
    sections: list[tuple[str, float, float]] = []
    for i in range(0, len(lines), 2):
        pair = lines[i:i + 2]
        fields = [line.split() for line in pair]
        if len(pair) != 2 or [f[1] for f in fields if len(f) == 3] != ["enter", "leave"] \
                or fields[0][0] != fields[1][0]:
            raise ValueError(f"lines {i + 1}-{i + 2} are not one visitor's enter and leave: "
                             f"{pair}; two visitors were inside at once")
        sections.append((fields[0][0], float(fields[0][2]), float(fields[1][2])))
    return check_no_overlap(sections)


def check_no_overlap(
    sections: list[tuple[str, float, float]],
) -> list[tuple[str, float, float]]:
    """``sections`` sorted by start; ``ValueError`` naming the first two that overlap."""
    ordered = sorted(sections, key=lambda s: s[1])
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b[1] < a[2]:
            raise ValueError(f"{b[0]} entered at {b[1]:.6f} while {a[0]} was inside "
                             f"until {a[2]:.6f}")
    return ordered


def _append(path: str, line: str) -> None:
    # O_APPEND: each line lands whole at the end, whoever else writes the file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)

