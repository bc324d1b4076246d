"""Threads inside one node, talking over inproc (topologies/inproc_threads.yaml).

A multithreaded server: the main thread relays requests between a ROUTER
(facing clients, over tcp) and a DEALER bound on inproc; two worker threads
each own a REP socket connected to that DEALER. inproc moves messages between
threads of one process through memory, with no system call and no copy of the
data to the kernel.

ZeroMQ sockets are not thread-safe: each socket is used by exactly one
thread. topo made all four sockets in the main thread; each worker thread
takes one and is the only one to touch it from then on (handing a socket over
once, before using it, is allowed). The main thread waits for the workers
before it returns, so the sockets are closed only when nobody uses them.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from examples.common import STEP_MS
from examples.rrbroker import relay

THREADS = {"worker_a": "thread-a", "worker_b": "thread-b"}
_PRINT = threading.Lock()  # print() writes the text and the newline apart: keep lines whole


def server(node: Any) -> int:
    node.interrupt_on_stop = False  # finish our own way: the threads must end first
    threads = [threading.Thread(target=_worker, args=(node, node.sockets[sock], label),
                                name=label)
               for sock, label in THREADS.items()]
    for t in threads:
        t.start()
    print(f"server: {len(threads)} worker threads started in process {os.getpid()}",
          flush=True)
    relay(node, node.sockets["clients"], node.sockets["workers"])
    for t in threads:
        t.join()
    return 0


def _worker(node: Any, sock: Any, label: str) -> None:
    served = 0
    while not node.stopping.is_set():
        if not sock.poll(STEP_MS):
            continue
        request = sock.recv_string()
        served += 1
        sock.send_string(f"reply to {request} from {label}")
    with _PRINT:
        print(f"server: {label} answered {served} requests", flush=True)
