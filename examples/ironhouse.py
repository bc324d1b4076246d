"""The intruder of topologies/ironhouse.yaml: a CURVE client the topology never heard of.

It knows all that a stranger can know: where the broker listens (the run's
state file names every endpoint, docs/reference.md#runs; a real intruder would
scan for the port) and the broker's public key (``keys/broker.key`` in the run
folder: a public key is meant to be handed out). It makes a key pair of its
own, so its socket speaks CURVE correctly, and asks the broker something.

The broker's ZAP handler does not know its public key and refuses the
handshake. At the socket API nothing fails: ``send`` queues the request and no
reply ever comes, while libzmq quietly tries again. Only a socket monitor
tells why: ``HANDSHAKE_FAILED_AUTH`` with the ZAP status, 400.

It is a ``command`` node (``python3 -m examples.ironhouse``) that gets its
``node`` from ``orchestrator.node.from_env()``, not a ``run`` function: a
``run`` node is ready as soon as it starts, and the client should start only
once the intruder has been turned away (``ready: {log: ...}``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from orchestrator.certs import read_public

WAIT_MS = 1500  # how long the intruder waits for a reply


def frontend_endpoint(run_dir: str) -> str:
    """The broker's tcp frontend, from the run's state file."""
    with open(os.path.join(run_dir, "state.json"), encoding="utf-8") as f:
        binds: list[str] = json.load(f)["endpoints"]["broker.0"]["frontend"]["bind"]
    return next(b for b in binds if b.startswith("tcp://"))


def intruder(node: Any) -> int:
    me = node.full_name
    endpoint = frontend_endpoint(node.run_dir)
    broker_key = read_public(os.path.join(node.run_dir, "keys", "broker.key"))
    public, secret = zmq.curve_keypair()  # a key pair of its own: topo never heard of it

    sock = node.context.socket(zmq.REQ)
    sock.linger = 0
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_serverkey = broker_key.encode("ascii")  # set before connect: libzmq reads it then
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    try:
        sock.connect(endpoint)
        sock.send_string(f"let {me} in")  # queued: REQ does not wait for the handshake
        print(f"{me}: asked {endpoint} with the broker's public key and a key pair of my own "
              f"({public.decode()})", flush=True)
        if sock.poll(WAIT_MS):
            print(f"{me}: the broker answered {sock.recv()!r}: the door is open", flush=True)
            return 1
        if monitor.poll(0):
            event = recv_monitor_message(monitor)
            print(f"{me}: my socket's monitor says: the CURVE handshake failed, "
                  f"ZAP status {event['value']}", flush=True)
        print(f"{me}: no reply within {WAIT_MS / 1000:g} s: the broker turned me away",
              flush=True)
        return 0
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)


if __name__ == "__main__":
    from orchestrator.node import from_env

    with from_env() as started:
        code = intruder(started)
    sys.exit(code)
