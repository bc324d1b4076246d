"""Request-reply through a broker (topologies/rrbroker.yaml and rrbroker_poll.yaml).

The client's REQ talks to the broker's ROUTER; the broker's DEALER hands each
request to the next REP worker, round-robin, and routes the reply back.
Neither side knows how many workers there are: add replicas and the client
does not change.

``poll_broker`` is that broker written by hand: a poll loop that moves whole
messages (all their frames) from one socket to the other. The built-in
``proxy`` role does the same inside libzmq.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import zmq

from examples.common import STEP_MS, param, receive


def client(node: Any) -> int:
    sock = node.sockets["server"]
    count = param(node, "requests", 10)
    served_by: Counter[str] = Counter()
    for i in range(1, count + 1):
        sock.send_string(f"request {i}")
        reply = receive(sock, node, seconds=10.0)
        if reply is None:
            if node.stopping.is_set():
                return 0
            print(f"client: no reply to request {i} within 10 s", flush=True)
            return 1
        text = reply.decode()
        served_by[text.rsplit(" ", 1)[-1]] += 1
        print(f"client: {text}", flush=True)
    tally = ", ".join(f"{worker} {n}" for worker, n in sorted(served_by.items()))
    print(f"client: done, {count} replies ({tally})", flush=True)
    return 0


def worker(node: Any) -> int:
    sock = node.sockets["jobs"]
    me = node.full_name
    while not node.stopping.is_set():
        if sock.poll(STEP_MS):
            request = sock.recv().decode()
            sock.send_string(f"reply to {request} from {me}")
    return 0


def poll_broker(node: Any) -> int:
    """ROUTER in front, DEALER behind, and a poller that waits on both at once."""
    relay(node, node.sockets["frontend"], node.sockets["backend"], show=True)
    return 0


def relay(node: Any, frontend: Any, backend: Any, show: bool = False) -> None:
    """Move whole messages between the two sockets until topo asks the node to stop."""
    poller = zmq.Poller()
    poller.register(frontend, zmq.POLLIN)
    poller.register(backend, zmq.POLLIN)
    shown = {"request": not show, "reply": not show}
    while not node.stopping.is_set():
        events = dict(poller.poll(STEP_MS))
        if frontend in events:
            frames = frontend.recv_multipart()
            _show_once(shown, "request", "the ROUTER hands it over as", frames)
            backend.send_multipart(frames)
        if backend in events:
            frames = backend.recv_multipart()
            _show_once(shown, "reply", "the DEALER hands it back as", frames)
            frontend.send_multipart(frames)


def _show_once(shown: dict[str, bool], what: str, how: str, frames: list[bytes]) -> None:
    # The envelope is the lesson: the ROUTER put the client's identity in front, and the
    # empty frame is the REQ socket's delimiter. Once is enough to see it.
    if shown[what]:
        return
    shown[what] = True
    parts = " ".join(f"[{_frame(f)}]" for f in frames)
    print(f"broker: the first {what}: {how} {len(frames)} frames: {parts}", flush=True)


def _frame(frame: bytes) -> str:
    if not frame:
        return ""
    text = frame.decode(errors="replace")
    return text if text.isprintable() and frame[0] != 0 else "id 0x" + frame.hex()
