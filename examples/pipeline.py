"""A pipeline: ventilator -> workers -> sink (topologies/pipeline.yaml).

The ventilator PUSHes tasks; each worker PULLs the next one, works, and PUSHes
the result to the sink, which PULLs them all in (fair-queued) and ends once it
has them all. The workers just keep working until topo stops them: this is
the plain pipeline of the ZeroMQ guide. pipeline_kill.yaml adds a start
handshake and a KILL broadcast so that every node ends by itself.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from examples.common import STEP_MS, param, receive_multipart

GIVE_UP_S = 60.0


def task_cost_ms(i: int) -> int:
    return 5 + (i * 7) % 20  # a fixed mix of short and long tasks


def ventilator(node: Any) -> int:
    tasks = node.sockets["tasks"]
    count = param(node, "tasks", 20)
    # With no worker connected yet, send() waits for the first one; the first
    # to connect may get a burst of tasks before the others join (W203).
    for i in range(1, count + 1):
        tasks.send_string(f"{i} {task_cost_ms(i)}")
    total = sum(task_cost_ms(i) for i in range(1, count + 1))
    print(f"ventilator: sent {count} tasks, {total} ms of work in all", flush=True)
    # Tasks still queued would be lost if we closed now: `linger` on the socket
    # (set in the topology) lets them leave first.
    return 0


def worker(node: Any) -> int:
    tasks, results = node.sockets["tasks"], node.sockets["results"]
    me = node.full_name.encode()
    while not node.stopping.is_set():
        if not tasks.poll(STEP_MS):
            continue
        number, work_ms = tasks.recv_string().split()
        node.stopping.wait(int(work_ms) / 1000)  # the "work"; a stop request cuts it short
        results.send_multipart([number.encode(), me])
    return 0


def sink(node: Any) -> int:
    results = node.sockets["results"]
    count = param(node, "tasks", 20)
    done_by: Counter[str] = Counter()
    seen: set[bytes] = set()
    started = 0.0
    while len(seen) < count:
        frames = receive_multipart(results, node, GIVE_UP_S)
        if frames is None:
            if node.stopping.is_set():
                return 0
            print(f"sink: only {len(seen)} of {count} results arrived", flush=True)
            return 1
        if not seen:
            started = time.monotonic()
        seen.add(frames[0])
        done_by[frames[1].decode()] += 1
    elapsed = time.monotonic() - started
    tally = ", ".join(f"{w} {n}" for w, n in sorted(done_by.items()))
    print(f"sink: {count} results in {elapsed:.2f} s ({tally})", flush=True)
    return 0
