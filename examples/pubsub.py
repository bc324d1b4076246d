"""Publish-subscribe with topic envelopes (topologies/pubsub.yaml, forwarder.yaml).

A publisher sends each message as two frames, an envelope: the topic first,
then the body. A SUB socket filters on the start of the first frame, so with
`subscribe: [weather]` ZeroMQ drops every other topic before it reaches this
code, and the body can never be mistaken for a topic. The subscriber takes
WANT messages and ends.
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
            print(f"{node.name}: only {got} of {want} messages; is a publisher running?",
                  flush=True)
            return 1
        if not sock.poll(STEP_MS):
            continue
        frames = sock.recv_multipart()
        got += 1
        print(f"{node.name}: {got}/{want}: {_envelope(frames)}", flush=True)
    print(f"{node.name}: done, {want} messages", flush=True)
    return 0


def _envelope(frames: list[bytes]) -> str:
    text = [f.decode(errors="replace") for f in frames]
    if len(text) == 2:
        return f"topic {text[0]!r}, body {text[1]!r}"
    return " | ".join(text)  # not an envelope: show every frame
