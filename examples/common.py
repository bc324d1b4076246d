"""Small helpers the Python example nodes share.

Each waits in short polls so a node notices `node.stopping` within 100 ms even
when it sets `node.interrupt_on_stop = False` or runs outside topo (the tests
run these functions in threads with a fake node).
"""

from __future__ import annotations

import os
import time
from typing import Any

STEP_MS = 100


def receive_multipart(sock: Any, node: Any, seconds: float) -> list[bytes] | None:
    """The next message's frames, or None once ``seconds`` pass or topo asks the node to stop."""
    deadline = time.monotonic() + seconds
    while not node.stopping.is_set():
        left_ms = (deadline - time.monotonic()) * 1000
        if left_ms <= 0:
            return None
        if sock.poll(min(STEP_MS, max(1, int(left_ms)))):
            return [bytes(f) for f in sock.recv_multipart()]
    return None


def receive(sock: Any, node: Any, seconds: float) -> bytes | None:
    """The first frame of the next message, or None as ``receive_multipart``."""
    frames = receive_multipart(sock, node, seconds)
    return None if frames is None else frames[0]


def param(node: Any, key: str, default: int) -> int:
    """A number from the node's `with:` (node.params), else the environment, else ``default``."""
    params = getattr(node, "params", None) or {}
    return int(params.get(key, os.environ.get(key.upper(), default)))


def connect_endpoints(node: Any, name: str) -> tuple[str, ...]:
    """The resolved addresses socket ``name`` connects to (from the plan topo made)."""
    for plan in node.spec.sockets:
        if plan.name == name:
            return tuple(plan.connect)
    raise KeyError(f"{node.full_name} declares no socket {name!r}")


def reopen(node: Any, name: str) -> Any:
    """Close socket ``name`` and connect a fresh one of the same type to the same peers.

    The pirate patterns need this: a REQ socket that lost its reply is stuck
    (it may not send again), and a fresh socket is also a fresh identity. The new
    socket has linger 0 and none of the `options:` of the topology.
    """
    old = node.sockets[name]
    kind = old.type
    old.close(linger=0)
    sock = node.context.socket(kind)
    sock.linger = 0
    for endpoint in connect_endpoints(node, name):
        sock.connect(endpoint)
    node.sockets[name] = sock  # node.close() closes it at the end
    return sock


def acquire(sem: Any, node: Any, seconds: float = 30.0) -> bool:
    """Take the SysV semaphore ``sem`` in short waits, so a stop request is noticed.

    False (and a line saying so) when it did not come within ``seconds``, or the
    node was asked to stop meanwhile.
    """
    import sysv_ipc

    deadline = time.monotonic() + seconds
    while not node.stopping.is_set():
        if time.monotonic() > deadline:
            print(f"{node.full_name}: gave up waiting for my turn after {seconds:g} s", flush=True)
            return False
        try:
            sem.acquire(0.1)
            return True
        except sysv_ipc.BusyError:
            continue
    return False
