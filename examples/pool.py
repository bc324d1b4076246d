"""A process pool: N forked workers split one job, a collector fans the results in
(topologies/process_pool.yaml).

The job: count the primes below LIMIT. Each worker is a copy of the same
function in its own process (topo forks `replicas` of them) and takes its own
slice of the numbers from its replica number, so no one has to hand out the
work. It PUSHes one result; the collector's PULL takes them from all workers
(fan-in) and adds them up.
"""

from __future__ import annotations

import math
import os
from typing import Any

from examples.common import param, receive_multipart

GIVE_UP_S = 60.0


def count_primes(lo: int, hi: int) -> int:
    """How many primes p with lo <= p < hi (a segmented sieve)."""
    if hi <= 2:
        return 0
    lo = max(lo, 2)
    small = _sieve(math.isqrt(hi - 1) + 1)
    flags = bytearray([1]) * (hi - lo)
    for p in small:
        start = max(p * p, (lo + p - 1) // p * p)
        flags[start - lo::p] = bytes(len(range(start - lo, hi - lo, p)))
    return sum(flags)


def _sieve(n: int) -> list[int]:
    flags = bytearray([1]) * n
    flags[:2] = b"\0\0"[:n]
    for i in range(2, math.isqrt(max(n - 1, 0)) + 1):
        if flags[i]:
            flags[i * i::i] = bytes(len(range(i * i, n, i)))
    return [i for i in range(n) if flags[i]]


def worker(node: Any) -> int:
    workers = param(node, "workers", 4)
    limit = param(node, "limit", 100_000)
    step = -(-limit // workers)  # ceiling division: the slices cover 0 .. limit
    lo, hi = node.replica * step, min(limit, (node.replica + 1) * step)
    found = count_primes(lo, hi)
    print(f"{node.full_name}: {found} primes in [{lo}, {hi}) (process {os.getpid()})",
          flush=True)
    node.sockets["results"].send_multipart([node.full_name.encode(), str(found).encode()])
    return 0  # `linger` on the socket lets the result leave before the process ends


def collector(node: Any) -> int:
    workers = param(node, "workers", 4)
    limit = param(node, "limit", 100_000)
    total = 0
    for got in range(1, workers + 1):
        frames = receive_multipart(node.sockets["results"], node, GIVE_UP_S)
        if frames is None:
            if node.stopping.is_set():
                return 0
            print(f"collector: only {got - 1} of {workers} results arrived", flush=True)
            return 1
        total += int(frames[1])
        print(f"collector: {got}/{workers}: {frames[0].decode()} found {int(frames[1])}",
              flush=True)
    print(f"collector: {workers} workers found {total} primes below {limit}", flush=True)
    return 0
