"""The pipeline with a kill signal: ventilator -> workers -> sink (topologies/pipeline_kill.yaml).

The ventilator PUSHes tasks; each worker PULLs the next one, works, and PUSHes
the result to the sink, which PULLs them all in (fair-queued). Three details
make the run start fairly and end by itself:

- The sink answers the ventilator's "start" request (REQ/REP) only once every
  worker has said "ready", so no task leaves before the workers are there.
- When all results are in, the sink PUBlishes "KILL"; the workers and the
  ventilator SUBscribe to it and end. PUB drops messages for subscribers that
  are not connected yet, so the sink says it a few times.
- Every wait has a deadline, and every loop watches ``node.stopping``.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import zmq

from examples.common import STEP_MS, param, receive, receive_multipart

KILL = b"KILL"
READY = b"ready"
RESULT = b"result"
GIVE_UP_S = 60.0


def ventilator(node: Any) -> int:
    tasks, sink, control = (node.sockets[k] for k in ("tasks", "sink", "control"))
    count = param(node, "tasks", 20)
    sink.send_string(f"start {count}")
    if receive(sink, node, GIVE_UP_S) is None:
        return _gave_up(node, "ventilator: the sink never said go")
    for i in range(1, count + 1):
        work_ms = 5 + (i * 7) % 20  # a fixed mix of short and long tasks
        tasks.send_string(f"{i} {work_ms}")
    print(f"ventilator: sent {count} tasks", flush=True)
    # Queued tasks would be lost if we ended now; the sink's KILL says they all arrived.
    if receive(control, node, GIVE_UP_S) is None:
        return _gave_up(node, "ventilator: no KILL from the sink")
    return 0


def worker(node: Any) -> int:
    tasks, results, control = (node.sockets[k] for k in ("tasks", "results", "control"))
    me = node.full_name
    results.send_multipart([READY, me.encode()])
    poller = zmq.Poller()
    poller.register(tasks, zmq.POLLIN)
    poller.register(control, zmq.POLLIN)
    idle_since = time.monotonic()
    while not node.stopping.is_set():
        events = dict(poller.poll(STEP_MS))
        if control in events:
            control.recv_multipart()
            return 0
        if tasks in events:
            number, work_ms = tasks.recv_string().split()
            node.stopping.wait(int(work_ms) / 1000)  # the "work"; a stop request cuts it short
            results.send_multipart([RESULT, number.encode(), me.encode()])
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > GIVE_UP_S:
            print(f"{me}: nothing to do for {GIVE_UP_S:g} s, giving up", flush=True)
            return 1
    return 0


def sink(node: Any) -> int:
    results, sync, control = (node.sockets[k] for k in ("results", "sync", "control"))
    workers = param(node, "workers", 3)
    ready: set[bytes] = set()
    while len(ready) < workers:
        frames = receive_multipart(results, node, GIVE_UP_S)
        if frames is None:
            return _gave_up(node, f"sink: only {len(ready)} of {workers} workers said ready")
        if frames[0] == READY:
            ready.add(frames[1])
    request = receive(sync, node, GIVE_UP_S)
    if request is None:
        return _gave_up(node, "sink: the ventilator never asked to start")
    count = int(request.split()[1])
    sync.send(b"go")
    started = time.monotonic()
    done_by: Counter[str] = Counter()
    seen: set[bytes] = set()
    while len(seen) < count:
        frames = receive_multipart(results, node, GIVE_UP_S)
        if frames is None:
            return _gave_up(node, f"sink: only {len(seen)} of {count} results arrived")
        if frames[0] == RESULT:
            seen.add(frames[1])
            done_by[frames[2].decode()] += 1
    elapsed = time.monotonic() - started
    tally = ", ".join(f"{w} {n}" for w, n in sorted(done_by.items()))
    print(f"sink: {count} results in {elapsed:.2f} s ({tally})", flush=True)
    for _ in range(3):
        control.send(KILL)
        if node.stopping.wait(0.1):
            break
    return 0


def _gave_up(node: Any, why: str) -> int:
    if node.stopping.is_set():
        return 0
    print(why, flush=True)
    return 1
