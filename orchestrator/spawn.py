"""The one module that forks, execs and kills.

Every child gets the same setup, in this order, right after ``fork()``:
own process group, ``PR_SET_PDEATHSIG=SIGKILL`` (then ``getppid()`` is checked
again: a parent that died before the prctl would never send the signal),
default signal handlers and an empty mask, stdin from /dev/null, stdout and
stderr into a pipe the supervisor reads, and the supervisor's own fds closed.

Exec'd nodes take a small fast path: ``os.fork()`` then that setup and
``os.execve`` at once (``posix_spawn``/``subprocess`` cannot set PDEATHSIG).
Forked ``run`` nodes call ``node.run_child`` and ``os._exit`` with its code.

A *guardian* process, forked once per run, holds the read end of a pipe the
supervisor writes each new process group to. When the supervisor dies, even by
SIGKILL, the pipe reaches EOF and the guardian SIGKILLs every group it knows, then
every process whose environment carries the run's marker (``TOPO_RUN_DIR=``):
that is what ends the grandchildren of command nodes, which carry no
PDEATHSIG of ours, even those that left their process group.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import os
import resource
import selectors
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import psutil

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)
# Signals the supervisor (or Python itself) changes and a child must see at their default.
_RESET_SIGNALS = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE,
    signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGXFSZ,
)


def prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_subreaper() -> None:
    """Orphaned grandchildren re-parent to us, so we can see and reap them."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the code, or 128 + the signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


@dataclass
class Proc:
    pid: int
    pidfd: int
    out_fd: int | None = None  # read end of the child's stdout+stderr
    ready_fd: int | None = None  # read end of the readiness pipe (run nodes)

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
        self.private_fds: set[int] = set()
        self.groups: set[int] = set()  # process groups that may still hold members
        self._nofile = nofile  # RLIMIT_NOFILE to restore in exec'd children
        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.private_fds.add(self._devnull)
        self._which: dict[tuple[str, str], str | None] = {}
        self._guardian_fd: int | None = None
        self._guardian_pid: int | None = None
        if guardian:
            self._start_guardian()

    @property
    def guardian_pid(self) -> int | None:
        return self._guardian_pid

    # -- starting ---------------------------------------------------------
    def fork_function(
        self, start_child: Callable[[int], int], *, pass_fds: Iterable[int] = ()
    ) -> Proc:
        """Fork a child that runs ``start_child(ready_fd)`` and exits with its code."""
        out_r, out_w = os.pipe()
        ready_r, ready_w = os.pipe()
        self._flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(out_r)
                os.close(ready_r)
                self._child_setup(out_w, keep=(ready_w, *pass_fds))
                _fresh_stdio()
                gc.enable()
                code = start_child(ready_w)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(BaseException):  # nothing left to tell anyone
                        stream.flush()
                os._exit(code & 0xFF)
        os.close(out_w)
        os.close(ready_w)
        return self._started(pid, out_r, ready_r)

    def exec_command(
        self,
        argv: tuple[str, ...] | list[str],
        env: Mapping[str, str],
        cwd: str,
        *,
        capture: bool = True,
        pass_fds: Iterable[int] = (),
    ) -> Proc:
        """Fork and exec ``argv`` at once; a program that cannot run exits 127 saying why."""
        program = self._resolve(argv[0], cwd, env.get("PATH", os.defpath))
        envb = {k.encode(): v.encode() for k, v in env.items()}
        argvb = [a.encode() for a in argv]
        out_r, out_w = os.pipe() if capture else (-1, -1)
        self._flush()
        pid = os.fork()
        if pid == 0:
            try:
                if out_r >= 0:
                    os.close(out_r)
                self._child_setup(out_w if capture else self._devnull, keep=tuple(pass_fds))
                for fd in pass_fds:
                    os.set_inheritable(fd, True)
                if self._nofile is not None:
                    resource.setrlimit(resource.RLIMIT_NOFILE, self._nofile)
                os.chdir(cwd)
                if program is None:
                    os.write(2, f"topo: {argv[0]}: command not found\n".encode())
                    os._exit(127)
                os.execve(program, argvb, envb)
            except BaseException as exc:
                try:
                    os.write(2, f"topo: cannot run {argv[0]}: {exc}\n".encode())
                finally:
                    os._exit(127)
        if capture:
            os.close(out_w)
        return self._started(pid, out_r if capture else None, None)

    def _child_setup(self, out_fd: int, keep: tuple[int, ...]) -> None:
        os.setpgid(0, 0)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != self.parent_pid:
            os._exit(1)  # the supervisor died before the prctl took effect
        signal.set_wakeup_fd(-1)
        for sig in _RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.dup2(self._devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        for fd in self.private_fds | {out_fd}:
            if fd > 2 and fd not in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _started(self, pid: int, out_fd: int | None, ready_fd: int | None) -> Proc:
        # Also from this side, so a killpg never races the child; failing means the child
        # exec'd or exited already, and it set its group itself.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        pidfd = os.pidfd_open(pid)
        proc = Proc(pid, pidfd, out_fd, ready_fd)
        self.private_fds.update(fd for fd in (pidfd, out_fd, ready_fd) if fd is not None)
        self.groups.add(pid)
        self._tell_guardian(f"+{pid}\n")
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
        self._tell_guardian(f"-{pgid}\n")

    def release(self, proc: Proc) -> None:
        for fd in (proc.pidfd, proc.out_fd, proc.ready_fd):
            self.close_fd(fd)

    def close_fd(self, fd: int | None) -> None:
        if fd is not None and fd in self.private_fds:
            self.private_fds.discard(fd)
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

    def kill_everything(self, timeout: float = 2.0) -> None:
        """SIGKILL every group we made and every descendant left (adopted ones too); reap them."""
        for pgid in list(self.groups):
            self.signal_group(pgid, signal.SIGKILL)
            self.group_gone(pgid)
        me = psutil.Process()
        try:
            rest = [p for p in me.children(recursive=True) if p.pid != self._guardian_pid]
        except psutil.Error:
            rest = []
        for p in rest:
            with contextlib.suppress(psutil.Error):
                p.kill()
        wait_gone([p.pid for p in rest], time.monotonic() + timeout)
        for p in rest:
            self.reap(p.pid)

    # -- the guardian -------------------------------------------------------
    def _start_guardian(self) -> None:
        r, w = os.pipe()
        self._flush()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(w)
                os.setpgid(0, 0)  # out of the terminal's group: Ctrl-C is the supervisor's
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_IGN)
                _guardian_main(r, self._marker)
            finally:
                os._exit(0)
        os.close(r)
        self._guardian_pid = pid
        self._guardian_fd = w
        self.private_fds.add(w)

    def _tell_guardian(self, line: str) -> None:
        if self._guardian_fd is not None:
            try:
                os.write(self._guardian_fd, line.encode())
            except OSError:
                self.close_fd(self._guardian_fd)
                self._guardian_fd = None

    def close(self) -> None:
        """Release the guardian (it kills what it still knows, then exits) and our fds."""
        self.close_fd(self._guardian_fd)
        self._guardian_fd = None
        if self._guardian_pid is not None:
            wait_gone([self._guardian_pid], time.monotonic() + 2.0)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._guardian_pid, os.WNOHANG)
            self._guardian_pid = None
        for fd in list(self.private_fds):
            self.close_fd(fd)


def _fresh_stdio() -> None:
    """New line-buffered sys.stdout / sys.stderr on fds 1 and 2 (the pipe).

    The parent's objects may not write to fd 1 at all (a test runner's capture,
    a redirect), and their buffers belong to the parent.
    """
    sys.stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
        line_buffering=True)
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
        line_buffering=True)


def _guardian_main(fd: int, marker: bytes) -> None:
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


def wait_gone(pids: Iterable[int], deadline: float) -> bool:
    """Wait (on pidfds, no polling) until every pid has exited or ``deadline`` passes."""
    fds = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fds.append(os.pidfd_open(pid))
    try:
        with selectors.DefaultSelector() as sel:
            for fd in fds:
                sel.register(fd, selectors.EVENT_READ)
            left = len(fds)
            while left and (timeout := deadline - time.monotonic()) > 0:
                for key, _ in sel.select(timeout):
                    sel.unregister(key.fd)
                    left -= 1
            return left == 0
    finally:
        for fd in fds:
            os.close(fd)
