"""Publish-subscribe: a subscriber that wants one topic (topologies/pubsub.yaml).

The SUB socket's subscription (`subscribe: [weather]` in the topology) makes
ZeroMQ drop every other topic before it reaches this code: the filtering costs
the subscriber nothing. The subscriber takes WANT messages and ends.
"""

from __future__ import annotations

import time
from typing import Any

from examples.common import STEP_MS, param


def subscriber(node: Any) -> int:
    sock = node.sockets["news"]
    want = param(node, "want", 5)
    deadline = time.monotonic() + param(node, "give_up_after", 30)
    got = 0
    while got < want:
        if node.stopping.is_set():
            return 0
        if time.monotonic() > deadline:
            print(f"subscriber: only {got} of {want} messages; is a publisher running?", flush=True)
            return 1
        if not sock.poll(STEP_MS):
            continue
        frames = sock.recv_multipart()
        got += 1
        text = " | ".join(f.decode(errors="replace") for f in frames)
        print(f"subscriber: {got}/{want}: {text}", flush=True)
    print(f"subscriber: done, {want} messages", flush=True)
    return 0
