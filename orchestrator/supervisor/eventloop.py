"""The supervisor's real event loop: epoll over pidfds, pipes and the signal wake-up fd.

It sleeps in ``epoll`` until a child exits (its pidfd turns readable), a node
writes output or its ready byte, a signal arrives, or the supervisor's next
deadline (backoff, stop_timeout, --timeout, readiness) comes. There is no
fixed polling interval: with nothing pending, the timeout is infinite.

Signal handlers only enqueue the signal number; the loop hands it to the
supervisor (``on_signal``).

``select.epoll`` itself, not ``selectors``: a run node has three fds watched (its
pidfd, output pipe and channel), each registered and unregistered once per process,
and ``selectors`` makes a key object and looks the fd up again for every call (a
sixth of the supervisor's time while 200 nodes start, by py-spy; and a run of
1,000 nodes kept 3,000 such keys, in the pages every node shares).
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import signal
from collections.abc import Callable, Iterator

from orchestrator.supervisor.spawn import Proc, Spawner
from orchestrator.supervisor.supervisor import Supervisor

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def capture_signals(
    signals: tuple[int, ...], queue: collections.deque[int]
) -> Iterator[int]:
    """Install enqueue-only handlers and a wake-up fd; restore both on the way out.

    Yields the read end of the wake-up pipe.
    """
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    old = {sig: signal.signal(sig, lambda n, _f: queue.append(n)) for sig in signals}
    try:
        yield r
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(old_fd)
        os.close(r)
        os.close(w)


class EventLoop:
    def __init__(
        self,
        supervisor: Supervisor,
        spawner: Spawner,
        *,
        reap_orphans: bool = False,
        before_wait: Callable[[], None] | None = None,
    ) -> None:
        self.sup = supervisor
        self.spawner = spawner
        self.reap_orphans = reap_orphans  # only when every child of this process is ours
        self.before_wait = before_wait
        self._epoll = select.epoll()  # close-on-exec
        # What each watched fd is: (kind, pid), a new tuple per registration, so that an
        # event for an fd closed and reused within one batch is told apart (``run``).
        self._watched: dict[int, tuple[str, int]] = {}
        spawner.private_fds.add(self._epoll.fileno())
        spawner.shared_fds.add(self._epoll.fileno())
        self.procs: dict[int, Proc] = {}
        self.names: dict[int, str] = {}
        self.readers: dict[int, Callable[[int], None]] = {}
        supervisor.watcher = self

    def add_reader(self, fd: int, callback: Callable[[int], None]) -> None:
        """Call ``callback(fd)`` whenever ``fd`` is readable (the control channel's sockets)."""
        self.readers[fd] = callback
        self._register(fd, "reader", fd)
        self.spawner.shared_fds.add(fd)  # a forked node must not hold it

    def remove_reader(self, fd: int) -> None:
        if self.readers.pop(fd, None) is not None:
            self._unregister(fd)
            self.spawner.shared_fds.discard(fd)

    # -- the Watcher interface the supervisor calls --------------------------------
    def watch(self, proc: Proc, name: str) -> None:
        self.procs[proc.pid] = proc
        self.names[proc.pid] = name
        self._register(proc.pidfd, "exit", proc.pid)
        if proc.out_fd is not None:
            os.set_blocking(proc.out_fd, False)
            self._register(proc.out_fd, "out", proc.pid)
        if proc.ready_fd is not None:
            os.set_blocking(proc.ready_fd, False)
            self._register(proc.ready_fd, "ready", proc.pid)

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> int:
        queue: collections.deque[int] = collections.deque()
        signals = HANDLED + ((signal.SIGCHLD,) if self.reap_orphans else ())
        with capture_signals(signals, queue) as wake_fd:
            self.spawner.private_fds.add(wake_fd)
            self.spawner.shared_fds.add(wake_fd)
            self._register(wake_fd, "signal", 0)
            try:
                self.sup.start()
                while not self.sup.done:
                    self._drain_signals(queue)
                    if self.sup.done:
                        break
                    self.spawner.flush_guardian()
                    if self.before_wait is not None:
                        self.before_wait()
                    deadline = self.sup.next_deadline()
                    timeout = None if deadline is None else max(0.0, deadline - self.sup.clock())
                    watched = self._watched
                    # (Rounded up to a millisecond by epoll: no busy loop before a deadline.)
                    batch = [(fd, watched.get(fd)) for fd, _ in self._epoll.poll(timeout)]
                    for fd, entry in batch:
                        # An earlier event of this batch may have closed (and reused) this fd.
                        if entry is not None and watched.get(fd) is entry:
                            self._dispatch(fd, *entry)
                    self.sup.fire_timers()
            finally:
                self._unregister(wake_fd)
                self.spawner.private_fds.discard(wake_fd)
                self.spawner.shared_fds.discard(wake_fd)
        assert self.sup.code is not None
        return self.sup.code

    def close(self) -> None:
        for fd in list(self.readers):
            self.remove_reader(fd)  # their owner closes them
        for fd in list(self._watched):
            self._unregister(fd)
            self.spawner.close_fd(fd)
        self.procs.clear()
        self.spawner.private_fds.discard(self._epoll.fileno())
        self.spawner.shared_fds.discard(self._epoll.fileno())
        self._epoll.close()

    def _drain_signals(self, queue: collections.deque[int]) -> None:
        while queue:
            signum = queue.popleft()
            if signum == signal.SIGCHLD:
                for pid, code in self.spawner.reap_any():
                    if pid in self.procs:
                        self._exited(pid, code)
            else:
                self.sup.on_signal(signum)

    def _dispatch(self, fd: int, what: str, pid: int) -> None:
        if what == "signal":
            with contextlib.suppress(BlockingIOError):
                os.read(fd, 512)  # the queue, not these bytes, says which signals
        elif what == "exit":
            code = self.spawner.reap(pid)
            if code is not None:
                self._exited(pid, code)
            else:  # reaped already (SIGCHLD path) or a spurious wake-up: stop watching it
                self._unregister(fd)
        elif what == "ready":
            self._read_ready(pid)
        elif what == "out":
            self._read_out(pid, fd)
        elif what == "reader":
            self.readers[pid](pid)

    def _exited(self, pid: int, code: int) -> None:
        proc = self.procs.pop(pid)
        # Ready byte and last output first, so they come before the exit is handled.
        self._read_ready(pid, proc)
        if proc.out_fd is not None:
            self._read_out(pid, proc.out_fd, until_eagain=True)
        self._unregister(proc.pidfd)
        self.spawner.close_fd(proc.pidfd)
        self.sup.on_exit(pid, code)

    def _read_ready(self, pid: int, proc: Proc | None = None) -> None:
        """What came down a run node's channel: its ready byte, then its watch's records
        (``child/watch.py``); kept open until the node's end closes."""
        proc = proc or self.procs.get(pid)
        if proc is None or proc.ready_fd is None:
            return
        fd = proc.ready_fd
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                if pid not in self.procs:  # exited: nothing more will come
                    break
                return
            except OSError:  # exited without a word
                data = b""
            if not data:
                break
            if data == b"R":
                self.sup.on_ready(pid)
            else:
                self.sup.on_record(pid, data)
        proc.ready_fd = None
        self._unregister(fd)
        self.spawner.close_fd(fd)

    def _read_out(self, pid: int, fd: int, *, until_eagain: bool = False) -> None:
        name = self.names.get(pid, "?")
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # EOF: the child and everything that shared its pipe are gone
                self._unregister(fd)
                self.spawner.close_fd(fd)
                self.sup.on_output_closed(name)
                if pid not in self.procs:
                    self.names.pop(pid, None)
                return
            self.sup.on_output(pid, name, data)
            if not until_eagain:
                return

    def _register(self, fd: int, what: str, pid: int) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._watched[fd] = (what, pid)

    def _unregister(self, fd: int) -> None:
        if self._watched.pop(fd, None) is not None:
            with contextlib.suppress(OSError):  # closed already: epoll forgot it by itself
                self._epoll.unregister(fd)
