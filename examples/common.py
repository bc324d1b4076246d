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
