"""The REP worker of tests/k8s/*.yaml: it names its host in each reply.

Run in a pod, its host name is the pod's, so a client's log says which pod
answered which request. A worker that connects (to a broker) says "connected"
once the ZMTP handshake is done, which is its ``ready: {log}``: a request sent
after that can be dealt to it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import zmq

from examples.common import STEP_MS


def worker(node: Any) -> int:
    sock = node.sockets["jobs"]
    here = f"{node.full_name} on {socket.gethostname()}"
    plan = next(p for p in node.spec.sockets if p.name == "jobs")
    if plan.connect:
        _await_handshake(node, sock, plan.connect)
        if node.stopping.is_set():
            return 0
        print("worker: connected to the broker", flush=True)
    served = 0
    while not node.stopping.is_set():
        if not sock.poll(STEP_MS):
            continue
        request = sock.recv()
        served += 1
        sock.send_string(f"world {served} (from {here})")
        if request != b"bye":
            print(f"worker: answered {request.decode()!r}", flush=True)
    return 0


def _await_handshake(node: Any, sock: zmq.Socket[Any], endpoints: Sequence[str]) -> None:
    # topo connected the socket before this function runs, so a monitor attached now
    # may have missed the handshake: connect again under it (nothing was sent yet).
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    for endpoint in endpoints:
        sock.disconnect(endpoint)
        sock.connect(endpoint)
    try:
        while not node.stopping.is_set():
            if monitor.poll(STEP_MS):
                monitor.recv_multipart()  # the one event asked for
                return
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
