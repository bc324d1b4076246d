"""`run` node functions for the tests (imported by the supervisor, called in forked children)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def ok(node: Any) -> int:
    print(f"hello from {node.name}.{node.replica}")
    return 0


def supervisor_is(node: Any) -> int:
    """Says how its supervisor runs: the lean one exec'd, or `topo up` itself, and whether
    that process has pydantic mapped."""
    ppid = os.getppid()
    with open(f"/proc/{ppid}/cmdline", "rb") as f:
        argv = f.read().decode(errors="replace")
    with open(f"/proc/{ppid}/maps") as f:
        pydantic = "pydantic_core" in f.read()
    how = "exec'd" if "orchestrator.supervisor.lean" in argv else "in place"
    print(f"supervisor {how}, pydantic {'loaded' if pydantic else 'not loaded'}")
    return 0


def fail(node: Any) -> int:
    print("failing on purpose", file=sys.stderr)
    return 3


def serve(node: Any) -> int:
    """Run until stopped (SIGTERM's default action ends it when nothing handles it)."""
    print(f"serving pid={os.getpid()}", flush=True)
    while not node.stopping.wait(3600):
        pass
    return 0


def crash_once(node: Any) -> int:
    """Crash at first start (a marker file remembers), then serve."""
    marker = os.path.join(os.environ.get("TOPO_STATE_DIR", "/tmp"), f"crashed-{node.run_id}")
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        print("crashing", flush=True)
        return 1
    return serve(node)


def flap(node: Any) -> int:
    time.sleep(0.01)
    return 1


def command_client() -> None:
    """A Python ``command`` node: ``from_env()`` sockets, three requests, a clean close."""
    from orchestrator.node import from_env

    with from_env() as node:
        sock = node.sockets["server"]
        sock.rcvtimeo = 5000
        for i in range(3):
            sock.send_string(f"request {i}")
            sock.recv()
        print("3 replies", flush=True)


def monitor_id(node: Any) -> int:
    """Says the id of its socket's monitor (watch.py numbers them per process, from 0), then
    sends one message and ends: a rehearsed supervisor made monitors before it forked."""
    from orchestrator.child import watch

    print(f"monitor id {next(watch._ids) - 1}")
    sock = node.sockets["out"]
    sock.linger = -1
    sock.send(b"up")
    return 0


def count_in(node: Any) -> int:
    """Receives ``with: {n: N}`` messages, says so and ends."""
    n = int(node.params["n"])
    for _ in range(n):
        node.sockets["in"].recv()
    print(f"{n} in")
    return 0


def env_seen(node: Any) -> int:
    """Prints some variables as Python sees them and as a program the node starts does."""
    import subprocess

    keys = ("TOPO_NODE", "TOPO_REPLICA", "COLOR", "SHARED")
    py = ",".join(f"{k}={os.environ.get(k, '')}" for k in keys)
    sh = subprocess.run(["sh", "-c", ",".join(f"{k}=${k}" for k in keys).join(["echo ", ""])],
                        capture_output=True, text=True, check=True).stdout.strip()
    print(f"py {py} sh {sh}")
    return 0


def signals_seen(node: Any) -> int:
    """Prints which of the signals a child must find at their default are not, and the
    ignored and blocked sets of the process."""
    import signal

    names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGCHLD", "SIGPIPE", "SIGQUIT", "SIGUSR1",
             "SIGUSR2", "SIGXFSZ")
    changed = [n for n in names if signal.getsignal(getattr(signal, n)) != signal.SIG_DFL]
    with open("/proc/self/status") as f:
        masks = [line.split() for line in f if line.startswith(("SigIgn", "SigBlk"))]
    print("not default:", ",".join(changed), " ".join(f"{k}{v}" for k, v in masks))
    return 0


def collector_seen(node: Any) -> int:
    """Prints whether the collector runs here, whether it tracks any of the supervisor's own
    replica records (made after the supervisor froze its heap), and whether it still frees
    a cycle the node makes."""
    import gc
    import weakref

    theirs = sum(type(o).__module__ == "orchestrator.supervisor.replica"
                 for o in gc.get_objects())

    class Cycle:
        me: Any = None

    c = Cycle()
    c.me = c
    gone = weakref.ref(c)
    del c
    gc.collect()
    print(f"enabled {gc.isenabled()} theirs {theirs} cycle freed {gone() is None}")
    return 0


def say_then_wait(node: Any) -> int:
    """A line on stdout and one on stderr, neither flushed, then wait to be stopped."""
    print(f"out line of {node.replica}")
    print(f"err line of {node.replica}", file=sys.stderr)
    node.stopping.wait()
    return 0
