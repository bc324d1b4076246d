"""The run nodes the benchmarks start (``run: bench_nodes:NAME``, with ``pythonpath: [bench/]``).

A module of their own, importing nothing: the supervisor imports a node's module before
it forks (``preload``), so a node defined in a benchmark script would carry that script's
imports (argparse, statistics, subprocess, ...) into the supervisor and every node, which
the floor's bare children do not have.
"""

from __future__ import annotations

from typing import Any


def send_one(node: Any) -> int:
    """A run node that sends one message once up, then ends (its message still leaves)."""
    sock = node.sockets["out"]
    sock.linger = -1
    sock.send(b"up")
    return 0


def sink(node: Any) -> int:
    """Receives one message per sender, then ends."""
    sock = node.sockets["in"]
    for _ in range(int(node.params["n"])):
        sock.recv()
    return 0


def returns(node: Any) -> int:
    """Returns at once: a run that ends as soon as it has started."""
    return 0


def idle(node: Any) -> int:
    """An idle run node: wait until asked to stop."""
    node.stopping.wait()
    return 0
