"""The one module that forks, execs and kills: the parent's side of every child.

What a child does between ``fork()`` and its exec or exit (own process group,
PDEATHSIG, fds) is ``childsetup.py``; the guardian that kills a run's leftovers
when the supervisor dies is ``guardian.py``. This module forks both, tracks every
group and fd, signals and reaps, and tells the guardian each new group.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from orchestrator.runs.procinfo import child_map, subtree, wait_gone
from orchestrator.structs import struct
from orchestrator.supervisor.childsetup import (
    PR_GET_CHILD_SUBREAPER,
    PR_SET_CHILD_SUBREAPER,
    exec_program,
    keep_stdio,
    prctl,
    prctl_get,
    run_function,
    signals_to_reset,
)
from orchestrator.supervisor.guardian import Guardian


def set_subreaper(on: bool = True) -> bool:
    """Orphaned grandchildren re-parent to us, so we can see and reap them.

    Returns whether this process was a subreaper before, so a caller that runs
    a topology in-process (tests, the bench) can give the setting back: a
    subreaper that no longer reaps collects zombies.
    """
    was = bool(prctl_get(PR_GET_CHILD_SUBREAPER))
    prctl(PR_SET_CHILD_SUBREAPER, int(on))
    return was


def channel_pair() -> tuple[int, int]:
    """A run node's channel: (the supervisor's end, the node's end)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return a.detach(), b.detach()


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the code, or 128 + the signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


@struct
class Proc:
    pid: int
    pidfd: int
    out_fd: int | None = None  # read end of the child's stdout+stderr
    # The supervisor's end of a run node's channel (a SEQPACKET socket pair): its ready
    # byte, then its watch's records, and the supervisor's requests the other way.
    ready_fd: int | None = None
    start: int | None = None  # start time in clock ticks (procinfo), filled when first needed

    @property
    def pgid(self) -> int:
        return self.pid


class Spawner:
    """Starts and signals children; tracks the fds a child must not inherit."""

    def __init__(
        self,
        *,
        guardian: bool = True,
        nofile: tuple[int, int] | None = None,
        marker: str = "",
    ) -> None:
        self.parent_pid = os.getpid()
        self._marker = marker.encode()  # e.g. TOPO_RUN_DIR=/run/dir: in every exec'd node's env
        self.private_fds: set[int] = set()  # every fd we own (closed by ``close``)
        self.shared_fds: set[int] = set()  # the ones a forked child must close at once
        self.groups: set[int] = set()  # process groups that may still hold members
        self.spawned: set[int] = set()  # every leader we started (its pid is its group)
        self._nofile = nofile  # RLIMIT_NOFILE to restore in exec'd children
        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.private_fds.add(self._devnull)
        self.shared_fds.add(self._devnull)
        self._which: dict[tuple[str, str], str | None] = {}
        self._guardian: Guardian | None = None
        if guardian:
            self._flush()
            self._guardian = Guardian(self._marker)
            self.private_fds.add(self._guardian.fd)
            self.shared_fds.add(self._guardian.fd)  # its EOF must mean "supervisor gone"

    @property
    def guardian_pid(self) -> int | None:
        return self._guardian.pid if self._guardian is not None else None

    # -- starting ---------------------------------------------------------
    # Batches fork in a tight loop and do the bookkeeping after it: every page the
    # parent writes between two forks is a copy-on-write fault once children share it.
    def fork_functions(
        self, starts: list[Callable[[int], int]]
    ) -> list[Proc | OSError]:
        """Fork one child per ``start_child(ready_fd)``; each exits with what it returns."""
        self._flush()
        born: list[tuple[int, int, int] | OSError] = []
        gc_was_on = gc.isenabled()
        gc.disable()  # a collection mid-batch would write to pages the children share
        try:
            self._fork_loop(starts, born)
        finally:
            if gc_was_on:
                gc.enable()
        return [b if isinstance(b, OSError) else self._started(*b) for b in born]

    def _fork_loop(
        self, starts: list[Callable[[int], int]], born: list[tuple[int, int, int] | OSError]
    ) -> None:
        resets, stdio_kept = signals_to_reset(), keep_stdio()
        for start_child in starts:
            try:
                out_r, out_w = os.pipe()
                ready_r, ready_w = channel_pair()
            except OSError as exc:
                born.append(exc)
                continue
            try:
                pid = os.fork()
            except OSError as exc:
                for fd in (out_r, out_w, ready_r, ready_w):
                    os.close(fd)
                born.append(exc)
                continue
            if pid == 0:
                run_function(start_child, out_r, out_w, ready_r, ready_w,
                             parent_pid=self.parent_pid, devnull=self._devnull,
                             shared_fds=self.shared_fds, resets=resets, stdio_kept=stdio_kept)
            os.close(out_w)
            os.close(ready_w)
            born.append((pid, out_r, ready_r))

    def exec_commands(
        self,
        commands: Sequence[tuple[Sequence[str], Mapping[str, str], str]],
        *,
        capture: bool = True,
        pass_fds: Sequence[Sequence[int]] | None = None,
    ) -> list[Proc | OSError]:
        """Fork and exec each (argv, env, cwd) at once; one that cannot run exits 127 saying why.

        ``pass_fds[i]`` are fds the i-th program inherits (socket pair ends).
        """
        prepared = [
            (self._resolve(argv[0], cwd, env.get("PATH", os.defpath)), [a.encode() for a in argv],
             {k.encode(): v.encode() for k, v in env.items()}, cwd)
            for argv, env, cwd in commands
        ]
        self._flush()
        born: list[tuple[int, int | None, None] | OSError] = []
        for i, (program, argvb, envb, cwd) in enumerate(prepared):
            try:
                out_r, out_w = os.pipe() if capture else (-1, -1)
            except OSError as exc:
                born.append(exc)
                continue
            try:
                pid = os.fork()
            except OSError as exc:
                if capture:
                    os.close(out_r)
                    os.close(out_w)
                born.append(exc)
                continue
            if pid == 0:
                exec_program(program, argvb, envb, cwd, out_r, out_w if capture else None,
                             parent_pid=self.parent_pid, devnull=self._devnull,
                             shared_fds=self.shared_fds, nofile=self._nofile,
                             pass_fds=tuple(pass_fds[i]) if pass_fds else ())
            if capture:
                os.close(out_w)
            born.append((pid, out_r if capture else None, None))
        return [b if isinstance(b, OSError) else self._started(*b) for b in born]

    def exec_command(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        *,
        capture: bool = True,
    ) -> Proc:
        proc = self.exec_commands([(argv, env, cwd)], capture=capture)[0]
        if isinstance(proc, OSError):
            raise proc
        return proc

    def _started(self, pid: int, out_fd: int | None, ready_fd: int | None) -> Proc:
        # Also from this side, so a killpg never races the child; failing means the child
        # exec'd or exited already, and it set its group itself.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        pidfd = os.pidfd_open(pid)
        proc = Proc(pid, pidfd, out_fd, ready_fd)
        self.private_fds.update(fd for fd in (pidfd, out_fd, ready_fd) if fd is not None)
        self.groups.add(pid)
        self.spawned.add(pid)
        if self._guardian is not None:
            self._guardian.born(pid)
        return proc

    def _resolve(self, program: str, cwd: str, path: str) -> str | None:
        if "/" in program:
            return os.path.join(cwd, program)
        key = (program, path)
        if key not in self._which:
            self._which[key] = shutil.which(program, path=path)
        return self._which[key]

    @staticmethod
    def _flush() -> None:
        # Whatever sits in our buffers would be written twice, by the child too.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()

    # -- signalling and reaping ------------------------------------------------
    def signal_group(self, pgid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def group_gone(self, pgid: int) -> None:
        """The leader was reaped and its group SIGKILLed: forget the group."""
        self.groups.discard(pgid)
        if self._guardian is not None:
            self._guardian.gone(pgid)

    def close_fd(self, fd: int | None) -> None:
        if fd is not None and fd in self.private_fds:
            self.private_fds.discard(fd)
            self.shared_fds.discard(fd)
            os.close(fd)

    @staticmethod
    def reap(pid: int) -> int | None:
        """The exit code of our child ``pid`` if it has exited (reaping it), else None."""
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        return exit_code(status) if done else None

    @staticmethod
    def reap_any() -> list[tuple[int, int]]:
        """Every exited child as (pid, code), adopted orphans included.

        Only for a process whose children are all ours (the ``topo up`` command):
        ``waitpid(-1)`` would steal the status of a child some other code waits for.
        """
        done = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            done.append((pid, exit_code(status)))
        return done

    def kill_everything(self, timeout: float = 2.0, *, all_children: bool = False) -> None:
        """SIGKILL every group we made and every descendant left (adopted ones too); reap them.

        With ``all_children`` every child of this process is ours (the ``topo`` command).
        Otherwise (``up()`` called in-process) a child counts as ours only when we started
        it, it sits in one of our groups, or it carries the run's marker: the caller's own
        children are left alone.
        """
        for pgid in list(self.groups):
            self.signal_group(pgid, signal.SIGKILL)
            self.group_gone(pgid)
        kids = child_map()
        rest: list[int] = []
        for child in kids.get(os.getpid(), ()):
            if child != self.guardian_pid and (all_children or self._ours(child)):
                rest.extend(subtree(kids, child))
        for pid in rest:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(rest, time.monotonic() + timeout)
        for pid in rest:
            self.reap(pid)

    def _ours(self, pid: int) -> bool:
        if pid in self.spawned:
            return True
        try:
            if os.getpgid(pid) in self.spawned:
                return True
            with open(f"/proc/{pid}/environ", "rb") as f:
                return bool(self._marker) and b"\0" + self._marker + b"\0" in b"\0" + f.read()
        except OSError:
            return False

    # -- the guardian -------------------------------------------------------
    def flush_guardian(self) -> None:
        """Tell the guardian this turn's new and gone groups (one write per loop turn)."""
        if self._guardian is not None and not self._guardian.flush():
            self.close_fd(self._guardian.fd)  # it died: nobody reads the pipe any more
            self._guardian.fd = -1

    def close(self) -> None:
        """Release the guardian (it kills what it still knows, then exits) and our fds."""
        self.flush_guardian()
        if self._guardian is not None:
            self.close_fd(self._guardian.fd)
            self._guardian.wait(timeout=2.0)
            self._guardian = None
        for fd in list(self.private_fds):
            self.close_fd(fd)
