"""Hello, request-reply: the smallest ZeroMQ conversation (topologies/hello_reqrep.yaml).

A REQ socket sends one request and must read its reply before it may send
again; a REP socket reads one request and must answer it before it reads the
next. The client sends REQUESTS greetings and then "bye", so the server knows
it can end too and the whole run finishes by itself.

Every wait polls in short steps so a node notices ``node.stopping`` (set when
topo asks it to stop) within a tenth of a second.
"""

from __future__ import annotations

import os
import time
from typing import Any

BYE = b"bye"
STEP_MS = 100


def client(node: Any) -> int:
    sock = node.sockets["server"]
    count = _param(node, "requests", 5)
    for i in range(1, count + 1):
        sock.send_string(f"hello {i}")
        reply = _receive(sock, node, seconds=10.0)
        if reply is None:
            if node.stopping.is_set():
                return 0
            print(f"client: no reply to hello {i} within 10 s", flush=True)
            return 1
        print(f"client: hello {i} -> {reply.decode()}", flush=True)
    sock.send(BYE)
    # The server answers "bye" and ends at once, so that answer may never arrive;
    # the server got our "bye" anyway (we are still here while it travels).
    _receive(sock, node, seconds=2.0)
    print(f"client: done, {count} replies", flush=True)
    return 0


def server(node: Any) -> int:
    sock = node.sockets["clients"]
    me = _name(node)
    served = 0
    while not node.stopping.is_set():
        if not sock.poll(STEP_MS):
            continue
        request = sock.recv()
        if request == BYE:
            sock.send(BYE)
            print(f"server: the client said bye after {served} requests", flush=True)
            return 0
        served += 1
        sock.send_string(f"world {served} (from {me})")
    return 0


def _receive(sock: Any, node: Any, seconds: float) -> bytes | None:
    """The next message, or None once ``seconds`` pass or topo asks the node to stop."""
    deadline = time.monotonic() + seconds
    while not node.stopping.is_set():
        left_ms = (deadline - time.monotonic()) * 1000
        if left_ms <= 0:
            return None
        if sock.poll(min(STEP_MS, max(1, int(left_ms)))):
            return bytes(sock.recv())
    return None


def _name(node: Any) -> str:
    name = str(node.name)
    return name if "." in name else f"{name}.{node.replica}"


def _param(node: Any, key: str, default: int) -> int:
    """A number from the node's `with:` (node.params), else the environment, else ``default``."""
    params = getattr(node, "params", None) or {}
    return int(params.get(key, os.environ.get(key.upper(), default)))
