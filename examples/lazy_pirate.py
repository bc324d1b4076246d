"""Lazy pirate: a client that survives a server that crashes (topologies/lazy_pirate.yaml).

REQ/REP alone is fragile: if the server dies after taking a request, the REQ
client waits forever for a reply that never comes, and its socket may not
send again until it has one. The lazy pirate client never waits forever: it
polls with a timeout, and when no reply comes it closes its socket, opens a
fresh one and sends the request again, a few times before giving up.

The server crashes now and then on purpose (the first time it sees every
CRASH_EVERY-th request) and topo's restart policy starts it again.
"""

from __future__ import annotations

import os
import re
from typing import Any

from examples.common import STEP_MS, param, receive, reopen

REQUEST = re.compile(r"request (\d+) \(try (\d+)\)")


def client(node: Any) -> int:
    sock = node.sockets["server"]
    count = param(node, "requests", 8)
    retries = param(node, "retries", 3)
    timeout_ms = param(node, "timeout_ms", 1000)
    pause_ms = param(node, "pause_ms", 0)  # between requests, like a client with other work
    again = 0
    for i in range(1, count + 1):
        if i > 1 and node.stopping.wait(pause_ms / 1000):
            return 0
        for attempt in range(1, retries + 2):
            sock.send_string(f"request {i} (try {attempt})")
            reply = receive(sock, node, timeout_ms / 1000)
            if reply is not None:
                print(f"client: {reply.decode()}", flush=True)
                break
            if node.stopping.is_set():
                return 0
            if attempt > retries:
                print(f"client: no reply to request {i} after {attempt} tries; "
                      "the server seems to be gone, giving up", flush=True)
                return 1
            again += 1
            print(f"client: no reply to request {i} within {timeout_ms} ms; reopening the "
                  f"socket and sending it again ({retries - attempt + 1} tries left)", flush=True)
            sock = reopen(node, "server")
    print(f"client: done, {count} replies; {again} request(s) had to be sent again", flush=True)
    return 0


def server(node: Any) -> int:
    sock = node.sockets["clients"]
    crash_every = param(node, "crash_every", 3)
    print(f"server: up and listening (process {os.getpid()})", flush=True)
    while not node.stopping.is_set():
        if not sock.poll(STEP_MS):
            continue
        request = sock.recv_string()
        match = REQUEST.fullmatch(request)
        number, attempt = (int(match[1]), int(match[2])) if match else (0, 0)
        if attempt == 1 and number % crash_every == 0:
            print(f"server: simulating a crash while handling request {number}", flush=True)
            os._exit(3)  # no clean-up at all, as in a real crash
        sock.send_string(f"reply to request {number} (try {attempt}) from process {os.getpid()}")
    return 0
