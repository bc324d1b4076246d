"""The service of examples/ci: answers every request with its upper-case text and its name."""

from __future__ import annotations

from typing import Any


def upper(node: Any) -> int:
    jobs = node.sockets["jobs"]
    print(f"{node.name}.{node.replica} ready", flush=True)
    while True:
        text = jobs.recv()
        jobs.send_multipart([text.upper(), f"{node.name}.{node.replica}".encode()])
