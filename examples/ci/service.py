"""The service of examples/ci: answers every request with its upper-case text and its name,
and posts what it served to the run's `served` message queue."""

from __future__ import annotations

from typing import Any


def upper(node: Any) -> int:
    jobs = node.sockets["jobs"]
    served = node.ipc["served"]  # a System V message queue topo made for the run
    me = f"{node.name}.{node.replica}"
    print(f"{me} ready", flush=True)
    while True:
        text = jobs.recv()
        jobs.send_multipart([text.upper(), me.encode()])
        served.send(f"{me}: {text.decode()}", block=False)
