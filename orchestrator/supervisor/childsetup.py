"""What a child does between ``fork()`` and its ``execve`` or ``os._exit``.

Every child gets the same setup, in this order, right after ``fork()``:
own process group, ``PR_SET_PDEATHSIG=SIGKILL`` (then ``getppid()`` is checked
again: a parent that died before the prctl would never send the signal),
default signal handlers and an empty mask, stdin from /dev/null, stdout and
stderr into a pipe the supervisor reads, and the supervisor's own fds closed.

Exec'd nodes take a small fast path: ``os.fork()`` then that setup and
``os.execve`` at once (``posix_spawn``/``subprocess`` cannot set PDEATHSIG).
Forked ``run`` nodes call ``node.run_child`` and ``os._exit`` with its code.
The parent side (forking, bookkeeping, signalling) is ``spawn.py``.
"""

from __future__ import annotations

import _signal  # the C module under `signal`: its functions take and give plain ints
import contextlib
import ctypes
import gc
import io
import os
import resource
import signal
import sys
from collections.abc import Callable, Set
from typing import NoReturn

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
_libc = ctypes.CDLL(None, use_errno=True)
# Signals the supervisor (or Python itself) changes and a child must see at their default.
# Plain ints, set through ``_signal``: ``signal.signal`` and ``signal.pthread_sigmask`` turn
# every value into an enum member, which in a forked child is a third of its setup (the
# members' pages are copied on write); `bench/startup.py` shows the child's start.
_RESET_SIGNALS = tuple(int(s) for s in (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE,
    signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGXFSZ,
))
_SIG_DFL = int(signal.SIG_DFL)
_SIGKILL = int(signal.SIGKILL)


def signals_to_reset() -> tuple[int, ...]:
    """The signals a forked child must set back to SIG_DFL: those not at SIG_DFL here.

    Read once per batch of forks, in the parent: each signal a child sets costs it
    copy-on-write faults (the handler table, the old handler's refcount).
    """
    return tuple(s for s in _RESET_SIGNALS if _signal.getsignal(s) != _SIG_DFL)


def prctl(option: int, arg: int) -> None:
    # The supervisor's own first call (``set_subreaper``) makes ctypes' function object,
    # which every child then finds made: a child's first call would cost it three times over.
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def prctl_get(option: int) -> int:
    """A ``PR_GET_*`` value that prctl writes through a pointer (0 when it fails)."""
    value = ctypes.c_int(0)
    _libc.prctl(option, ctypes.byref(value), 0, 0, 0)
    return value.value


def run_function(
    start_child: Callable[[int], int], out_r: int, out_w: int, ready_r: int, ready_w: int,
    *, parent_pid: int, devnull: int, shared_fds: Set[int], resets: tuple[int, ...],
    stdio_kept: bool,
) -> NoReturn:
    """The forked child of a ``run`` node: set up, call ``start_child``, exit with its code.

    ``resets``: ``signals_to_reset()`` of the parent; ``stdio_kept``: its ``keep_stdio()``.
    """
    code = 1
    try:
        os.close(out_r)
        os.close(ready_r)
        child_setup(out_w, keep=(ready_w,), parent_pid=parent_pid, devnull=devnull,
                    shared_fds=shared_fds, resets=resets)
        if not stdio_kept:
            _fresh_stdio()
        # What the supervisor made since its own freeze (its replicas, the batch being forked)
        # is out of this child's collections too: a collection traverses every object it
        # tracks, writing to each one's header, so the child would copy the supervisor's heap
        # page by page (1,000 run nodes: 7.9 ms of CPU per node with it, 6.6 without).
        gc.freeze()
        gc.enable()
        code = start_child(ready_w)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        # deferred: traceback only here: the supervisor, whose pages a node shares, never needs it
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):  # nothing left to tell anyone
                stream.flush()
        os._exit(code & 0xFF)


def exec_program(
    program: str | None, argvb: list[bytes], envb: dict[bytes, bytes], cwd: str,
    out_r: int, out_w: int | None,
    *, parent_pid: int, devnull: int, shared_fds: Set[int], nofile: tuple[int, int] | None,
    pass_fds: tuple[int, ...] = (),
) -> NoReturn:
    """The forked child of a command node: set up and exec, or exit 127 saying why.

    ``pass_fds`` (a socket pair end) survive the exec, in this child only: the
    parent's copies stay close-on-exec for every other child.
    """
    name = argvb[0].decode(errors="replace")
    try:
        if out_w is not None:
            os.close(out_r)
        child_setup(devnull if out_w is None else out_w, keep=(), parent_pid=parent_pid,
                    devnull=devnull, shared_fds=shared_fds)
        for fd in pass_fds:
            os.set_inheritable(fd, True)
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
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


def child_setup(
    out_fd: int, keep: tuple[int, ...], *, parent_pid: int, devnull: int, shared_fds: Set[int],
    resets: tuple[int, ...] = _RESET_SIGNALS,
) -> None:
    os.setpgid(0, 0)
    prctl(PR_SET_PDEATHSIG, _SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)  # the supervisor died before the prctl took effect
    _signal.set_wakeup_fd(-1)
    for sig in resets:
        _signal.signal(sig, _SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    os.dup2(devnull, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    # Only the fds whose inheritance means something are closed here: the guardian
    # pipe (its EOF must mean "supervisor gone"), the wake-up pipe, epoll and the like.
    # The many per-child pidfds and pipe read ends are close-on-exec and harmless in a
    # forked child; closing them all made each fork O(replicas).
    # (try/except, not contextlib.suppress: no object made per fd in every forked child)
    for fd in (*shared_fds, out_fd):
        if fd > 2 and fd not in keep:
            try:  # noqa: SIM105 - (see above)
                os.close(fd)
            except OSError:
                pass


def keep_stdio() -> bool:
    """In the parent, before it forks: whether its children may keep ``sys.stdout`` and
    ``sys.stderr``, which it then makes line-buffered itself, once.

    The usual case (the `topo` command): both are on fds 1 and 2, which a child points at
    its pipe, and the parent flushed them before the fork. Reconfigured here rather than
    in each child, where it wrote to pages the child shares with the supervisor. The
    supervisor's own output goes to their binary buffers, which this does not change.
    """
    if not (_on_fd(sys.stdout, 1) and _on_fd(sys.stderr, 2)):
        return False
    for stream in (sys.stdout, sys.stderr):
        if not stream.line_buffering:
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    return True


def _fresh_stdio() -> None:
    """New line-buffered sys.stdout / sys.stderr on fds 1 and 2 (the pipe), when the
    parent's may not write to fd 1 at all (a test runner's capture, a redirect); their
    buffers belong to the parent.
    """
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
