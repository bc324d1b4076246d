"""Shared fixtures: a private TOPO_STATE_DIR per test, and proof that a run left nothing behind.

``no_leftovers`` is requested by every test that starts processes. After the
test it waits (against a deadline, never a bare sleep) until:

- no process carries this test's marker in ``/proc/*/environ``: the
  ``TOPO_TEST_TOKEN`` the test hands to ``topo up`` subprocesses (forked nodes
  inherit it too), or a ``TOPO_RUN_DIR`` under this test's state folder;
- the test process has no child left (forked ``run`` nodes of an in-process
  ``up()`` show up there: their environ is pytest's own);
- no ipc socket file, fifo or run folder is left under the state folder;
- no SysV message queue, shared memory segment or semaphore set is new.
"""

from __future__ import annotations

import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Short paths: ipc endpoints inside the run folder must fit in 107 bytes.
    root = Path(tmp_path_factory.mktemp("st", numbered=True))
    monkeypatch.setenv("TOPO_STATE_DIR", str(root))
    return root


def wait_until(
    predicate: Callable[[], object], timeout: float = 5.0, message: str = "condition"
) -> object:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(delay)  # a poll against a deadline, not a wait for something to happen
        delay = min(delay * 2, 0.05)


def sysv_ids() -> set[tuple[str, str]]:
    ids: set[tuple[str, str]] = set()
    for kind in ("msg", "shm", "sem"):
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        except OSError:
            continue
        ids.update((kind, line.split()[1]) for line in lines if line.strip())
    return ids


def marked_processes(markers: list[bytes]) -> list[int]:
    found: list[int] = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if any(m in environ for m in markers):
            found.append(int(entry.name))
    return found


def leftovers_in(root: Path) -> list[str]:
    """Ipc files and run folders under ``root``. Runs may be removing their folders while
    this walks, so an entry that vanishes half-way is simply not there (os.walk skips a
    folder it can no longer list; rglob raised FileNotFoundError)."""
    left: list[str] = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode):
                left.append(f"ipc file {path}")
        if Path(folder) == root:  # .cache: topo validate's answers, not a run
            left.extend(f"run folder {Path(folder, d)}" for d in dirs if d != ".cache")
    return left


@dataclass
class Leftovers:
    root: Path
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    sysv_before: set[tuple[str, str]] = field(default_factory=sysv_ids)

    def env(self, **extra: str) -> dict[str, str]:
        """An environment for a `topo up` subprocess: every descendant inherits the token."""
        return {**os.environ, "TOPO_STATE_DIR": str(self.root),
                "TOPO_TEST_TOKEN": self.token, **extra}

    def problems(self) -> list[str]:
        out = []
        markers = [f"TOPO_TEST_TOKEN={self.token}".encode(), f"TOPO_RUN_DIR={self.root}".encode()]
        out += [f"process {pid} is still alive" for pid in marked_processes(markers)]
        children = [p for p in psutil.Process().children(recursive=True)
                    if _alive(p)]
        out += [f"child {p.pid} of the test process is still alive" for p in children]
        out += leftovers_in(self.root)
        out += [f"SysV {kind} {ident} is new" for kind, ident in sysv_ids() - self.sysv_before]
        return out

    def check(self, timeout: float = 3.0) -> None:
        deadline = time.monotonic() + timeout
        while (problems := self.problems()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not problems, "a run left things behind:\n  " + "\n  ".join(problems)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture
def no_leftovers(state_dir: Path) -> Iterator[Leftovers]:
    guard = Leftovers(state_dir)
    yield guard
    guard.check()
