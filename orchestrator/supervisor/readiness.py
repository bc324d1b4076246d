"""Readiness probes for command nodes (docs/reference.md#readiness).

A command node is ready when it has started, unless ``ready:`` says more:

- ``{log: REGEX}``: a line of its output matches (no timer: checked per line);
- ``{tcp: PORT}``: something accepts on 127.0.0.1:PORT;
- ``{ipc: PATH}``: something accepts on the Unix socket PATH (relative to the run folder);
- ``{file: PATH}``: the file exists (relative to the node's cwd);
- ``{command: [...]}``: the command exits 0 (run by the supervisor, never blocking it).

tcp / ipc / file / command are checked on a short exponential retry timer
(``RETRY_FIRST`` doubling to ``RETRY_MAX``): a probe of something we cannot be
told about, not a crash-detection poll (exits arrive through pidfds).
"""

from __future__ import annotations

import os
import re
import socket

from orchestrator.plan import ReadyPlan
from orchestrator.structs import struct

RETRY_FIRST = 0.005
RETRY_MAX = 0.1


@struct(frozen=True)
class Probe:
    kind: str  # started | log | tcp | ipc | file | command
    timeout: float = 30.0
    pattern: re.Pattern[bytes] | None = None
    target: str = ""  # tcp port, or absolute path
    argv: tuple[str, ...] = ()

    @property
    def immediate(self) -> bool:
        return self.kind == "started"

    @property
    def timed(self) -> bool:
        """Checked on the retry timer (tcp, ipc, file, command)."""
        return self.kind in ("tcp", "ipc", "file", "command")

    def matches(self, line: bytes) -> bool:
        return self.pattern is not None and self.pattern.search(line) is not None

    def check(self) -> bool:
        """One non-blocking check of a tcp / ipc / file probe."""
        if self.kind == "file":
            return os.path.exists(self.target)
        if self.kind == "tcp":
            return _accepts(socket.AF_INET, ("127.0.0.1", int(self.target)))
        if self.kind == "ipc":
            return _accepts(socket.AF_UNIX, self.target)
        raise ValueError(f"probe {self.kind} is not checked in-process")


def _accepts(family: socket.AddressFamily, address: object) -> bool:
    # A local connect completes or is refused at once; the timeout only guards a full backlog.
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(0.05)
        try:
            return s.connect_ex(address) == 0  # type: ignore[arg-type]
        except OSError:
            return False


def next_retry(previous: float | None) -> float:
    return RETRY_FIRST if previous is None else min(previous * 2, RETRY_MAX)


def make_probe(ready: ReadyPlan | None, *, cwd: str, run_dir: str) -> Probe:
    """Build the probe for a node's ``ready:`` (None: ready once started)."""
    if ready is None:
        return Probe("started")
    timeout = float(ready.timeout)
    if ready.kind == "log":
        return Probe("log", timeout, pattern=re.compile(str(ready.log).encode()))
    if ready.kind == "tcp":
        return Probe("tcp", timeout, target=str(ready.tcp))
    if ready.kind == "ipc":
        path = str(ready.ipc).removeprefix("ipc://")
        return Probe("ipc", timeout, target=os.path.join(run_dir, path))
    if ready.kind == "file":
        return Probe("file", timeout, target=os.path.join(cwd, str(ready.file)))
    return Probe("command", timeout, argv=tuple(ready.command or ()))
