"""Node functions and a command-node program for the IPC run tests.

Used by tests/integration/test_ipc_runs.py.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from examples.ipc_socketpair import recv_message, send_message


def kinds(node: Any) -> str:
    return " ".join(f"{name}={type(obj).__name__}" for name, obj in sorted(node.ipc.items()))


def hold(node: Any) -> int:
    """Report what node.ipc holds, then wait to be stopped (or killed)."""
    print(f"holding {kinds(node)}", flush=True)
    node.stopping.wait(3600)
    return 0


def started(node: Any) -> int:
    """Leave a mark that this node ran at all."""
    with open(os.path.join(os.environ["TOPO_STATE_DIR"], f"started-{node.run_id}"), "w"):
        pass
    return 0


def crash_after_first(node: Any) -> int:
    """First life: send "first" and crash. Second life (restarted): send "second" and the end."""
    sock = node.ipc["pipe"]
    mark = os.path.join(node.run_dir, "crashed")
    if not os.path.exists(mark):
        open(mark, "w").close()
        send_message(sock, f"first from pid {os.getpid()}".encode())
        return 3
    send_message(sock, f"second from pid {os.getpid()}".encode())
    send_message(sock, b"")
    return 0


def collect(node: Any) -> int:
    sock = node.ipc["pipe"]
    while (message := recv_message(sock)) is not None:
        print(f"got {message.decode()}", flush=True)
    print("collected all", flush=True)
    return 0


def take_from_program(node: Any) -> int:
    """Read what the exec'd program (below) put in the queue and the segment."""
    body, kind = node.ipc["jobs"].receive()
    text = node.ipc["frame"].read(int(body)).decode()
    over = recv_message(node.ipc["pipe"])
    print(f"run node got {text!r} type {kind} and {over!r}; {kinds(node)}", flush=True)
    return 0


def program() -> int:
    """A Python program topo execs as a command node: ``from_env()`` gives it node.ipc too."""
    from orchestrator.node import from_env

    with from_env() as node:
        text = f"hello from {node.full_name}".encode()
        node.ipc["frame"].write(text)
        node.ipc["jobs"].send(str(len(text)).encode(), type=7)
        pair = node.ipc["pipe"]
        assert isinstance(pair, socket.socket)
        send_message(pair, b"over the pair")
        print(f"program has {kinds(node)}; fifo at {node.ipc['log']}", flush=True)
    return 0


def seed_token(node: Any) -> int:
    node.ipc["token"].send(b"token", type=1)
    return 0


def token_turns(node: Any) -> int:
    """The Python side of tests/nodes/token_lock.php: the same lock, one token message."""
    import time

    queue = node.ipc["token"]
    for _ in range(5):
        token, _ = queue.receive(type=1)
        enter = time.monotonic_ns()
        time.sleep(0.002)  # the work inside the section
        leave = time.monotonic_ns()
        queue.send(token, type=1)
        print(f"{node.full_name} inside from {enter} to {leave}", flush=True)
    return 0


def socket_inodes() -> list[int]:
    """The inode of every socket this process has open (both ends of a pair differ)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.append(int(target[len("socket:["):-1]))
    return sorted(found)


def report_fds(node: Any = None) -> int:
    """Print this process's socket inodes and, when it has one, the inode of its pair end."""
    fd = os.environ.get("TOPO_IPC_PIPE_FD")
    end = node.ipc.get("pipe") if node is not None else None
    if end is not None:
        mine = os.fstat(end.fileno()).st_ino
    elif fd:
        mine = os.fstat(int(fd)).st_ino
    else:
        mine = 0
    env = os.environ
    who = node.full_name if node is not None else f"{env['TOPO_NODE']}.{env['TOPO_REPLICA']}"
    print(f"{who} mine {mine} all {' '.join(map(str, socket_inodes()))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(report_fds() if sys.argv[1:] == ["fds"] else program())
