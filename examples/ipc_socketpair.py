"""A worker and a collector over a Unix socket pair (topologies/ipc_socketpair.yaml).

A socket pair is two connected stream sockets made at once, before anyone
forks: the classic way a parent and its child talk. topo makes the pair before
it starts any node and hands one end to each: the worker (a ``run`` node) finds
its end in ``node.ipc["results"]``, the collector (a program topo execs, like a
parent that starts a helper) inherits its end as file descriptor
``TOPO_IPC_RESULTS_FD``.

A stream has no message boundaries: two sends may arrive as one read, one send
as two. So each message is framed: a 4-byte big-endian length, then that many
bytes. An empty message says there are no more.

Run the collector by itself with ``python3 -m examples.ipc_socketpair``: it
needs nothing but the standard library.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from collections.abc import Mapping
from typing import Any

HEADER = struct.Struct("!I")


def send_message(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(HEADER.pack(len(payload)) + payload)


def recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes, or None when the other end closed first."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def recv_message(sock: socket.socket) -> bytes | None:
    """The next framed message; None at the end (an empty message, or the end closed)."""
    header = recv_exactly(sock, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    return recv_exactly(sock, size) if size else None


def worker(node: Any) -> int:
    sock = node.ipc["results"]
    tasks = int(node.params.get("tasks", 10))
    for n in range(1, tasks + 1):
        send_message(sock, json.dumps({"task": n, "square": n * n}).encode())
    send_message(sock, b"")
    print(f"worker: sent {tasks} results", flush=True)
    return 0


def collector(environ: Mapping[str, str] = os.environ) -> int:
    fd = environ.get("TOPO_IPC_RESULTS_FD")
    if fd is None:
        print("collector: TOPO_IPC_RESULTS_FD is not set; run me with `topo up`", file=sys.stderr)
        return 2
    count = total = 0
    with socket.socket(fileno=int(fd)) as sock:
        while (message := recv_message(sock)) is not None:
            result = json.loads(message)
            count += 1
            total += result["square"]
            print(f"collector: task {result['task']} -> {result['square']}", flush=True)
    print(f"collector: {count} results, sum of squares {total}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(collector())
