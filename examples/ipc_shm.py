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
from typing import Any

from examples.common import acquire, param

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
        if not acquire(empty, node):
            return 1
        segment.write(HEADER.pack(len(payload)) + payload)
        full.release()
        print(f"producer: wrote {payload.decode()!r} sha {digest(payload)}", flush=True)
    if not acquire(empty, node):
        return 1
    segment.write(HEADER.pack(0))  # the end
    full.release()
    print(f"producer: done, {count} frames", flush=True)
    return 0


def consumer(node: Any) -> int:
    segment, empty, full = node.ipc["frame"], node.ipc["empty"], node.ipc["full"]
    frames = 0
    while True:
        if not acquire(full, node):
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

