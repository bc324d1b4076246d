"""Request-reply through a broker (topologies/rrbroker.yaml).

The client's REQ talks to the broker's ROUTER; the broker's DEALER hands each
request to the next free REP worker, round-robin, and routes the reply back.
Neither side knows how many workers there are: add replicas and the client
does not change.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

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
