"""Paranoid pirate: a queue and workers that watch each other with heartbeats
(topologies/paranoid_pirate.yaml).

The queue has a ROUTER for clients and a ROUTER for workers. A worker (DEALER)
says READY, then gets requests with the client's address in front and sends
the reply back with that address. Both sides send HEARTBEAT every HEARTBEAT_MS
when they have nothing else to say, and each side takes any message as a sign
of life. The queue drops a worker it has not heard from for LIVENESS
heartbeats; a worker that has not heard from the queue that long closes its
socket, waits (longer each time), and connects again with a fresh one.

To show both, the worker that gets request FREEZE_ON first freezes for
FREEZE_MS: no reply, no heartbeat, like a process stuck on a slow disk. The
queue gives up on it, the client sends the request again (lazy pirate) and
another worker answers; when the frozen worker wakes up, it finds the queue
silent, reconnects and says READY again.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any

import zmq

from examples.common import param, reopen

READY = b"READY"
HEARTBEAT = b"HEARTBEAT"
FIRST_TRY = re.compile(r"request (\d+) \(try 1\)")


@dataclass
class Worker:
    name: str
    expires: float
    busy: bool = False


def queue(node: Any) -> int:
    frontend, backend = node.sockets["frontend"], node.sockets["backend"]
    interval = param(node, "heartbeat_ms", 300) / 1000
    liveness = param(node, "liveness", 3)
    workers: dict[bytes, Worker] = {}
    idle: list[bytes] = []  # least recently used first
    seen: set[str] = set()
    next_beat = time.monotonic() + interval
    while not node.stopping.is_set():
        poller = zmq.Poller()
        poller.register(backend, zmq.POLLIN)
        if idle:  # take requests only when a worker can have them
            poller.register(frontend, zmq.POLLIN)
        events = dict(poller.poll(max(1, int((next_beat - time.monotonic()) * 1000))))
        now = time.monotonic()
        if backend in events:
            wid, *rest = backend.recv_multipart()
            w = workers.get(wid)
            if rest[0] == READY:
                w = workers[wid] = Worker(rest[1].decode(), now)
                again = " again, on a new connection" if w.name in seen else ""
                seen.add(w.name)
                print(f"queue: {w.name} is ready{again}", flush=True)
            elif w is None:
                continue  # a worker we dropped: it reconnects with a new identity anyway
            w.expires = now + interval * liveness
            if rest[0] not in (READY, HEARTBEAT):
                _reply(frontend, rest)
                w.busy = False
            if not w.busy and wid not in idle:
                idle.append(wid)
        if frontend in events and idle:
            frames = frontend.recv_multipart()
            wid = idle.pop(0)
            workers[wid].busy = True
            backend.send_multipart([wid, *frames])
        if now >= next_beat:
            next_beat = now + interval
            for wid, w in list(workers.items()):
                if w.expires < now:
                    print(f"queue: no heartbeat from {w.name} for {liveness} intervals "
                          f"({liveness * interval:g} s): dropping it", flush=True)
                    del workers[wid]
                    if wid in idle:
                        idle.remove(wid)
                    continue
                # router_mandatory raises for a worker that is gone; expiry drops it.
                with contextlib.suppress(zmq.ZMQError):
                    backend.send_multipart([wid, HEARTBEAT])
    return 0


def _reply(frontend: Any, frames: list[bytes]) -> None:
    try:
        frontend.send_multipart(frames)
    except zmq.ZMQError:  # router_mandatory: the client gave up and reopened its socket
        print("queue: a late reply for a client that is gone; dropped", flush=True)


def worker(node: Any) -> int:
    sock = node.sockets["queue"]
    me = node.full_name
    interval = param(node, "heartbeat_ms", 300) / 1000
    liveness = param(node, "liveness", 3)
    freeze_on = param(node, "freeze_on", 3)
    freeze_s = param(node, "freeze_ms", 1500) / 1000
    first_backoff = backoff = interval
    sock.send_multipart([READY, me.encode()])
    last_heard = next_beat = time.monotonic()
    while not node.stopping.is_set():
        now = time.monotonic()
        if now - last_heard > interval * liveness:
            print(f"{me}: no heartbeat from the queue for {now - last_heard:.1f} s; "
                  f"reconnecting in {backoff:g} s", flush=True)
            if node.stopping.wait(backoff):
                break
            backoff = min(backoff * 2, 8 * first_backoff)
            sock = reopen(node, "queue")  # a fresh socket: nothing stale left in it
            sock.send_multipart([READY, me.encode()])
            last_heard = next_beat = time.monotonic()
            continue
        if now >= next_beat:
            sock.send(HEARTBEAT)
            next_beat = now + interval
        if not sock.poll(max(1, int((next_beat - now) * 1000))):
            continue
        frames = sock.recv_multipart()
        last_heard = time.monotonic()
        backoff = first_backoff
        if frames == [HEARTBEAT]:
            continue
        client, empty, request = frames
        match = FIRST_TRY.fullmatch(request.decode())
        if match and int(match[1]) == freeze_on:
            print(f"{me}: got {request.decode()}; simulating a freeze of {freeze_s:g} s "
                  "(no reply, no heartbeat)", flush=True)
            node.stopping.wait(freeze_s)
            continue  # the queue has given up on us meanwhile: the check above reconnects
        sock.send_multipart([client, empty, f"reply to {request.decode()} from {me}".encode()])
    return 0
