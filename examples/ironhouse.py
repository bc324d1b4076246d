"""The intruder of topologies/ironhouse.yaml: a CURVE client the topology never heard of.

It knows all that a stranger can know: where the broker listens (the run's
state file names every endpoint, docs/reference.md#runs; a real intruder would
scan for the port) and the broker's public key (``broker.key``, next to the key
files topo gives this node, ``TOPO_CURVE_SECRET_FILE``: a public key is meant to
be handed out). It makes a key pair of its own, so its socket speaks CURVE
correctly, and asks the broker something.

Split into groups (``topo up FILE --group intruder --keys DIR``, what a pod of
``topo export kubernetes`` runs) the run's state file names this group's
endpoints only, and the keys are in ``DIR``: the broker's group then listens on
its fixed port (every group of a file agrees on those without talking), at the
group's Service name, ``broker``; where that name is unknown, the groups run
side by side on this machine (``--resolve broker=127.0.0.1``).

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
import socket
import sys
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from orchestrator.certs import read_public
from orchestrator.spec.group_run import GroupRun
from orchestrator.spec.groups import group_nodes
from orchestrator.spec.validate import load_or_raise

WAIT_MS = 1500  # how long the intruder waits for a reply


def frontend_endpoint(run_dir: str) -> str:
    """The broker's tcp frontend: from the run's state file, or where a group run has it."""
    with open(os.path.join(run_dir, "state.json"), encoding="utf-8") as f:
        state = json.load(f)
    broker = state["endpoints"].get("broker.0")
    if broker is not None:  # one run of the whole file
        return next(b for b in broker["frontend"]["bind"] if b.startswith("tcp://"))
    topology = load_or_raise(state["file"], os.environ).topology
    assert topology is not None  # topo up read the same file
    mine = GroupRun(topology, group_nodes(topology).of["intruder"])
    host, port = mine.host("broker", 0), mine.ports[("broker", "frontend", 0, 0)]
    try:
        socket.getaddrinfo(host, port)
    except socket.gaierror:
        host = "127.0.0.1"  # no such name: the groups run side by side on this machine
    return f"tcp://{host}:{port}"


def intruder(node: Any) -> int:
    me = node.full_name
    endpoint = frontend_endpoint(node.run_dir)
    keys = os.path.dirname(os.environ["TOPO_CURVE_SECRET_FILE"])
    broker_key = read_public(os.path.join(keys, "broker.key"))
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
