"""A producer and a consumer share memory, guarded by semaphores (topologies/ipc_shm.yaml).

Shared memory is the fastest way two processes share data: both see the same
bytes, nothing is copied through the kernel. It is also the most dangerous:
nothing stops the consumer from reading a frame the producer is half-way
through writing. Two semaphores make the turns:

- ``empty`` (starts at 1): the producer may write. The producer takes it
  before writing; the consumer gives it back once it has read the frame.
- ``full`` (starts at 0): there is a frame to read. The producer gives it
  after writing; the consumer takes it before reading.

A frame in the segment is a 4-byte big-endian length and that many bytes; a
length of 0 says there are no more frames. Both sides print a digest of each
frame, so you (and the tests) can see that the consumer read what the producer
wrote.
"""

from __future__ import annotations

import hashlib
import struct
import time
from typing import Any

from examples.common import param

HEADER = struct.Struct("!I")


def frame_text(k: int) -> str:
    return f"frame {k}: " + "*" * k


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def producer(node: Any) -> int:
    segment, empty, full = node.ipc["frame"], node.ipc["empty"], node.ipc["full"]
    count = param(node, "frames", 5)
    for k in range(1, count + 1):
        payload = frame_text(k).encode()
        if not _acquire(empty, node):
            return 1
        segment.write(HEADER.pack(len(payload)) + payload)
        full.release()
        print(f"producer: wrote {payload.decode()!r} sha {digest(payload)}", flush=True)
    if not _acquire(empty, node):
        return 1
    segment.write(HEADER.pack(0))  # the end
    full.release()
    print(f"producer: done, {count} frames", flush=True)
    return 0


def consumer(node: Any) -> int:
    segment, empty, full = node.ipc["frame"], node.ipc["empty"], node.ipc["full"]
    frames = 0
    while True:
        if not _acquire(full, node):
            return 1
        (size,) = HEADER.unpack(segment.read(HEADER.size))
        payload = segment.read(size, HEADER.size) if size else b""
        empty.release()
        if not size:
            break
        frames += 1
        print(f"consumer: read {payload.decode()!r} sha {digest(payload)}", flush=True)
    print(f"consumer: done, {frames} frames", flush=True)
    return 0


def _acquire(sem: Any, node: Any, seconds: float = 30.0) -> bool:
    """Take ``sem`` in short waits, so a stop request is noticed; False if it never came."""
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
