"""A load-balancing broker in Python for PHP clients and workers (topologies/php_lbbroker.yaml).

Two ROUTER sockets: clients (REQ) connect to the frontend, workers (REQ too)
to the backend. A worker starts by sending READY, and every reply it sends
also means "ready for more", so the broker keeps a queue of idle workers and
gives each request to the one that has waited longest. Requests are only
taken from clients while some worker is idle: the others wait in ZeroMQ's
queues, not in the broker.

The envelopes, as the ROUTERs see them:
  from a client:   [client id, "", request]
  to a worker:     [worker id, "", client id, "", request]
  from a worker:   [worker id, "", "READY name"] or [worker id, "", client id, "", reply]
"""

from __future__ import annotations

from typing import Any

import zmq

from examples.common import STEP_MS


def broker(node: Any) -> int:
    frontend, backend = node.sockets["frontend"], node.sockets["backend"]
    idle: list[bytes] = []  # worker ids, longest waiting first
    names: dict[bytes, str] = {}
    served = 0
    while not node.stopping.is_set():
        poller = zmq.Poller()
        poller.register(backend, zmq.POLLIN)
        if idle:
            poller.register(frontend, zmq.POLLIN)
        events = dict(poller.poll(STEP_MS))
        if backend in events:
            worker, _, *rest = backend.recv_multipart()
            idle.append(worker)
            if rest[0].startswith(b"READY"):
                names[worker] = rest[0].decode().partition(" ")[2] or "a worker"
                print(f"broker: {names[worker]} is ready", flush=True)
            else:
                client, _, reply = rest
                frontend.send_multipart([client, b"", reply])
                served += 1
        if frontend in events and idle:
            client, _, request = frontend.recv_multipart()
            worker = idle.pop(0)
            print(f"broker: {request.decode()!r} goes to {names.get(worker, 'a worker')}",
                  flush=True)
            backend.send_multipart([worker, b"", client, b"", request])
    return 0
