"""Many writers, one reader: a System V message queue (topologies/ipc_msgqueue.yaml).

Every writer (a replica of one node, forked by topo) sends its numbered
messages, then a "done" message of another type. The reader drains the queue
until every writer said done. A queue keeps its messages in order, so a
writer's "done" always comes after all of its messages, and the reader can
check that each message arrived exactly once: none lost, none twice.

The queue holds at most ``max_bytes`` (its byte limit, msg_qbytes): when it is
full, ``send`` blocks until the reader has made room. That is the queue's
back-pressure, and the writers never need to know how fast the reader is.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from examples.common import param

DATA, DONE = 1, 2  # message types: a receiver may pick messages by type


def writer(node: Any) -> int:
    queue = node.ipc["jobs"]
    count = param(node, "messages", 25)
    for k in range(1, count + 1):
        queue.send(f"{node.full_name} {k}".encode(), type=DATA)  # blocks while the queue is full
    queue.send(node.full_name.encode(), type=DONE)
    print(f"{node.full_name}: sent {count} messages", flush=True)
    return 0


def reader(node: Any) -> int:
    queue = node.ipc["jobs"]
    writers, count = param(node, "writers", 4), param(node, "messages", 25)
    seen: Counter[str] = Counter()
    done: set[str] = set()
    while len(done) < writers:
        body, kind = queue.receive()  # blocks until a message comes; topo's stop ends the wait
        if kind == DONE:
            done.add(body.decode())
        else:
            seen[body.decode()] += 1
    expected = {f"writer.{w} {k}" for w in range(writers) for k in range(1, count + 1)}
    problems = check_exactly_once(seen, expected)
    if problems:
        print("reader: " + "; ".join(problems), flush=True)
        return 1
    print(f"reader: {sum(seen.values())} messages from {len(done)} writers, each exactly once",
          flush=True)
    return 0


def check_exactly_once(seen: Counter[str], expected: set[str]) -> list[str]:
    """What is wrong with ``seen`` against ``expected``: missing, twice, unexpected."""
    problems = []
    if missing := sorted(expected - set(seen)):
        problems.append(f"{len(missing)} missing, like {missing[0]!r}")
    if twice := sorted(m for m, n in seen.items() if n > 1):
        problems.append(f"{len(twice)} arrived more than once, like {twice[0]!r}")
    if extra := sorted(set(seen) - expected):
        problems.append(f"{len(extra)} unexpected, like {extra[0]!r}")
    return problems
