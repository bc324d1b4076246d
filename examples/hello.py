"""Hello, request-reply: the smallest ZeroMQ conversation (topologies/hello_reqrep.yaml).

A REQ socket sends one request and must read its reply before it may send
again; a REP socket reads one request and must answer it before it reads the
next. The client sends REQUESTS greetings and then "bye", so the server knows
it can end too and the whole run finishes by itself.

Every wait polls in short steps so a node notices ``node.stopping`` (set when
topo asks it to stop) within a tenth of a second.
"""

from __future__ import annotations

from typing import Any

from examples.common import STEP_MS, param, receive

BYE = b"bye"


def client(node: Any) -> int:
    sock = node.sockets["server"]
    count = param(node, "requests", 5)
    for i in range(1, count + 1):
        sock.send_string(f"hello {i}")
        reply = receive(sock, node, seconds=10.0)
        if reply is None:
            if node.stopping.is_set():
                return 0
            print(f"client: no reply to hello {i} within 10 s", flush=True)
            return 1
        print(f"client: hello {i} -> {reply.decode()}", flush=True)
    sock.send(BYE)
    # The server answers "bye" and ends at once, so that answer may never arrive;
    # the server got our "bye" anyway (we are still here while it travels).
    receive(sock, node, seconds=2.0)
    print(f"client: done, {count} replies", flush=True)
    return 0


def server(node: Any) -> int:
    sock = node.sockets["clients"]
    me = node.full_name
    served = 0
    while not node.stopping.is_set():
        if not sock.poll(STEP_MS):
            continue
        request = sock.recv()
        if request == BYE:
            sock.send(BYE)
            print(f"server: the client said bye after {served} requests", flush=True)
            return 0
        served += 1
        sock.send_string(f"world {served} (from {me})")
    return 0
