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
from collections.abc import Callable, Iterable, Mapping, Sequence
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
        self.private_fds: set[int] = set()  # every fd we own (closed by ``close``)
        self.shared_fds: set[int] = set()  # the ones a forked child must close at once
        self.groups: set[int] = set()  # process groups that may still hold members
        self.spawned: set[int] = set()  # every leader we started (its pid is its group)
        self._nofile = nofile  # RLIMIT_NOFILE to restore in exec'd children
        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.private_fds.add(self._devnull)
        self.shared_fds.add(self._devnull)
        self._which: dict[tuple[str, str], str | None] = {}
        self._guardian_fd: int | None = None
        self._guardian_pid: int | None = None
        self._guardian_buf: list[str] = []
        if guardian:
            self._start_guardian()

    @property
    def guardian_pid(self) -> int | None:
        return self._guardian_pid

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
        for start_child in starts:
            try:
                out_r, out_w = os.pipe()
                ready_r, ready_w = os.pipe()
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
                self._run_child(start_child, out_r, out_w, ready_r, ready_w)
            os.close(out_w)
            os.close(ready_w)
            born.append((pid, out_r, ready_r))

    def fork_function(self, start_child: Callable[[int], int]) -> Proc:
        proc = self.fork_functions([start_child])[0]
        if isinstance(proc, OSError):
            raise proc
        return proc

    def _run_child(
        self, start_child: Callable[[int], int], out_r: int, out_w: int, ready_r: int, ready_w: int
    ) -> None:
        code = 1
        try:
            os.close(out_r)
            os.close(ready_r)
            self._child_setup(out_w, keep=(ready_w,))
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

    def exec_commands(
        self,
        commands: Sequence[tuple[Sequence[str], Mapping[str, str], str]],
        *,
        capture: bool = True,
    ) -> list[Proc | OSError]:
        """Fork and exec each (argv, env, cwd) at once; one that cannot run exits 127 saying why."""
        prepared = [
            (self._resolve(argv[0], cwd, env.get("PATH", os.defpath)), [a.encode() for a in argv],
             {k.encode(): v.encode() for k, v in env.items()}, cwd)
            for argv, env, cwd in commands
        ]
        self._flush()
        born: list[tuple[int, int | None, None] | OSError] = []
        for program, argvb, envb, cwd in prepared:
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
                self._exec_child(program, argvb, envb, cwd, out_r, out_w if capture else None)
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

    def _exec_child(
        self, program: str | None, argvb: list[bytes], envb: dict[bytes, bytes], cwd: str,
        out_r: int, out_w: int | None,
    ) -> None:
        name = argvb[0].decode(errors="replace")
        try:
            if out_w is not None:
                os.close(out_r)
            self._child_setup(self._devnull if out_w is None else out_w, keep=())
            if self._nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, self._nofile)
            os.chdir(cwd)
            if program is None:
                os.write(2, f"topo: {name}: command not found\n".encode())
                os._exit(127)
            os.execve(program, argvb, envb)
        except BaseException as exc:
            try:
                os.write(2, f"topo: cannot run {name}: {exc}\n".encode())
            finally:
                os._exit(127)

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
        # Only the fds whose inheritance means something are closed here: the guardian
        # pipe (its EOF must mean "supervisor gone"), the wake-up pipe, epoll and the like.
        # The many per-child pidfds and pipe read ends are close-on-exec and harmless in a
        # forked child; closing them all made each fork O(replicas).
        for fd in self.shared_fds | {out_fd}:
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
        self.spawned.add(pid)
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
        rest: list[psutil.Process] = []
        try:
            for child in psutil.Process().children():
                if child.pid != self._guardian_pid and (all_children or self._ours(child)):
                    rest.append(child)
                    with contextlib.suppress(psutil.Error):
                        rest.extend(child.children(recursive=True))
        except psutil.Error:
            pass
        for p in rest:
            with contextlib.suppress(psutil.Error):
                p.kill()
        wait_gone([p.pid for p in rest], time.monotonic() + timeout)
        for p in rest:
            self.reap(p.pid)

    def _ours(self, p: psutil.Process) -> bool:
        if p.pid in self.spawned:
            return True
        try:
            if os.getpgid(p.pid) in self.spawned:
                return True
            with open(f"/proc/{p.pid}/environ", "rb") as f:
                return bool(self._marker) and b"\0" + self._marker + b"\0" in b"\0" + f.read()
        except OSError:
            return False

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
        self.shared_fds.add(w)

    def _tell_guardian(self, line: str) -> None:
        # Batched: one write per loop turn (``flush_guardian``) instead of a guardian
        # wake-up per child. A group born in the gap is still covered when the supervisor
        # dies: the leader has PDEATHSIG, and the guardian's environ scan finds the rest.
        self._guardian_buf.append(line)

    def flush_guardian(self) -> None:
        if self._guardian_fd is not None and self._guardian_buf:
            data = "".join(self._guardian_buf).encode()
            self._guardian_buf.clear()
            try:
                os.write(self._guardian_fd, data)
            except OSError:
                self.close_fd(self._guardian_fd)
                self._guardian_fd = None

    def close(self) -> None:
        """Release the guardian (it kills what it still knows, then exits) and our fds."""
        self.flush_guardian()
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
    if _on_fd(sys.stdout, 1) and _on_fd(sys.stderr, 2):
        # The usual case (the `topo` command): the parent flushed them before the fork.
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        return
    sys.stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
        line_buffering=True)
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
        line_buffering=True)


def _on_fd(stream: object, fd: int) -> bool:
    try:
        return stream.fileno() == fd and hasattr(stream, "reconfigure")  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


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
