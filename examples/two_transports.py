"""One server on two transports at once (topologies/tcp_and_ipc.yaml).

A ZeroMQ socket may bind several addresses, on different transports, and
takes messages from all of them as if they were one: the server below never
looks at how a request came in. Each client says which transport it uses, so
the output shows both kinds arriving at the one REP socket.
"""

from __future__ import annotations

from typing import Any

from examples.common import STEP_MS, connect_endpoints, param, receive

BYE = b"bye"


def client(node: Any) -> int:
    sock = node.sockets["server"]
    transport = connect_endpoints(node, "server")[0].partition("://")[0]
    count = param(node, "requests", 3)
    for i in range(1, count + 1):
        sock.send_string(f"hello {i} from {node.name} over {transport}")
        reply = receive(sock, node, seconds=10.0)
        if reply is None:
            if node.stopping.is_set():
                return 0
            print(f"{node.name}: no reply to hello {i} within 10 s", flush=True)
            return 1
        print(f"{node.name}: hello {i} -> {reply.decode()}", flush=True)
    sock.send(BYE)
    receive(sock, node, seconds=2.0)  # the server may end before this answer leaves
    print(f"{node.name}: done, {count} replies over {transport}", flush=True)
    return 0


def server(node: Any) -> int:
    sock = node.sockets["clients"]
    clients = param(node, "clients", 2)
    byes = served = 0
    while not node.stopping.is_set():
        if not sock.poll(STEP_MS):
            continue
        request = sock.recv()
        if request == BYE:
            byes += 1
            sock.send(BYE)
            if byes == clients:
                print(f"server: {clients} clients said bye after {served} requests", flush=True)
                return 0
            continue
        served += 1
        print(f"server: got '{request.decode()}'", flush=True)
        sock.send_string(f"world {served}")
    return 0
