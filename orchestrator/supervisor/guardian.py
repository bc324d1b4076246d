"""The guardian: the process that kills a run's leftovers when the supervisor dies.

It is forked once per run and holds the read end of a pipe the supervisor
writes each new process group to (``+pgid``, and ``-pgid`` once it is gone).
When the supervisor dies, even by SIGKILL, the pipe reaches EOF and the guardian
SIGKILLs every group it knows, then every process whose environment carries the
run's marker (``TOPO_RUN_DIR=``): that is what ends the grandchildren of command
nodes, which carry no PDEATHSIG of ours, even those that left their process group.
``Guardian`` is the supervisor's end of that pipe (``spawn.Spawner`` holds it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from orchestrator.runs.procinfo import wait_gone


class Guardian:
    """The supervisor's end: the guardian's pid, the pipe, and the lines not yet written.

    Batched: one write per loop turn (``flush``) instead of a guardian wake-up per
    child. A group born in the gap is still covered when the supervisor dies: the
    leader has PDEATHSIG, and the guardian's environ scan finds the rest.
    """

    def __init__(self, marker: bytes) -> None:
        self.pid, self.fd = fork_guardian(marker)  # the fd is closed by its owner
        self._lines: list[str] = []

    def born(self, pgid: int) -> None:
        self._lines.append(f"+{pgid}\n")

    def gone(self, pgid: int) -> None:
        self._lines.append(f"-{pgid}\n")

    def flush(self) -> bool:
        """Write the pending lines; False when the pipe is broken (the guardian died)."""
        if self.fd < 0 or not self._lines:
            self._lines.clear()  # nobody to tell any more, or nothing to tell
            return True
        data = "".join(self._lines).encode()
        self._lines.clear()
        try:
            os.write(self.fd, data)
        except OSError:
            return False
        return True

    def wait(self, timeout: float) -> None:
        """Once the pipe is closed: wait until the guardian has killed what it knew, and reap it."""
        wait_gone([self.pid], time.monotonic() + timeout)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, os.WNOHANG)


def fork_guardian(marker: bytes) -> tuple[int, int]:
    """Fork the guardian; return its pid and the write end of its pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            os.setpgid(0, 0)  # out of the terminal's group: Ctrl-C is the supervisor's
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            guardian_main(r, marker)
        finally:
            os._exit(0)
    os.close(r)
    return pid, w


def guardian_main(fd: int, marker: bytes) -> None:
    groups: set[int] = set()
    pending = b""
    while chunk := os.read(fd, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"+"):
                groups.add(int(line[1:]))
            elif line.startswith(b"-"):
                groups.discard(int(line[1:]))
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    if marker:
        # A grandchild that left its group (setsid, a daemon) still carries the run's
        # environment; a second pass catches what forked while the first one ran.
        for _ in range(2):
            for pid in marked(marker):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def marked(marker: bytes) -> list[int]:
    """Pids whose initial environment holds ``marker`` (a ``NAME=value`` entry)."""
    me, found = os.getpid(), []
    needle = b"\0" + marker + b"\0"
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in b"\0" + f.read():
                    found.append(int(name))
        except OSError:
            continue
    return found
