"""The node side of a run (docs/reference.md#the-node-contract): ``Node`` and the child's life.

The supervisor calls ``preload`` (``targets.py``) once before forking, so every child
shares the imported code; ``run_child`` then runs inside each forked child. A ``command``
node that is a Python program calls ``from_env()`` to get the same ``Node``.

``run_child`` is on the hot path of starting and restarting nodes: it imports
nothing and touches as little memory as it can (copy-on-write pages are the
cost of a forked node). Its sockets are built in ``sockets.py``, its stop signal is
handled in ``stopsignal.py``.
"""

from __future__ import annotations

import _signal  # the C module under `signal`: plain ints
import atexit
import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

import zmq

from orchestrator.child.sockets import (
    build_sockets as build_sockets,  # re-exported: callers import it from here
)
from orchestrator.child.sockets import unlink_ipc
from orchestrator.child.stopsignal import set_from_handler, watch_stop
from orchestrator.errors import RunError
from orchestrator.ipc.keys import close_objects, open_from_env
from orchestrator.plan import Plan, ReplicaPlan

if TYPE_CHECKING:
    import logging

    from orchestrator.child.curve import Curve
    from orchestrator.child.watch import Watch

NodeFunction = Callable[["Node"], "int | None"]


class Node:
    """What a node function gets: ``def main(node) -> int | None``.

    - ``name`` (the node, e.g. ``worker``), ``replica`` (0, 1, ...),
      ``full_name`` (``worker.0``), ``run_id``, ``run_dir``
    - ``sockets``: pyzmq sockets by name, created, bound and connected
    - ``ipc``: the IPC resources the node lists, by name: ``sysv_ipc`` objects
      (MessageQueue, SharedMemory attached, Semaphore), a ``socket.socket`` for a
      socket pair end, the path of a fifo
    - ``params``: the node's ``with:`` mapping
    - ``context``: the ``zmq.Context`` of this process
    - ``log``: a ``logging.Logger`` writing ``LEVEL message`` lines to stderr,
      which ends in the node's log
    - ``stopping``: a ``threading.Event`` set when the supervisor asks the node
      to stop (its ``stop_signal``)

    On the stop signal, ``stopping`` is set and, by default, ``SystemExit(0)`` is
    raised in the node's main thread, so a node blocked in ``recv()`` ends at
    once and its exit status is 0. A node that wants to finish its own way sets
    ``node.interrupt_on_stop = False`` first: then the signal only sets
    ``stopping``, and the node must look at it (``stopping.wait(t)``, or a
    ``recv`` with a timeout / poll); one that sits in a blocking ``recv`` is killed
    with SIGKILL after its ``stop_timeout``.
    """

    def __init__(
        self,
        replica: ReplicaPlan,
        run_id: str,
        run_dir: str,
        context: zmq.Context[Any],
        sockets: dict[str, zmq.Socket[Any]],
    ):
        self.name = replica.node
        self.replica = replica.replica
        self.full_name = replica.name
        self.run_id = run_id
        self.run_dir = run_dir
        self.context = context
        self.sockets = sockets
        self.ipc: dict[str, Any] = {}
        self.params: Mapping[str, Any] = replica.params
        self.stopping = threading.Event()
        self.interrupt_on_stop = True
        self.spec = replica  # the resolved ReplicaPlan
        self._armed = False  # raise SystemExit on the stop signal (only while the function runs)
        self._unwatch: Callable[[], None] | None = None
        self.abandoned = False  # close(exiting=True) left the context to the process exit
        self._log: logging.Logger | None = None
        self.curve: Curve | None = None  # the node's CURVE, when its plan uses CURVE
        self.watch: Watch | None = None  # its watching thread (a forked run or role node)
        self.closed = False
        self.pid = os.getpid()  # the process whose sockets these are

    @property
    def log(self) -> logging.Logger:
        # Made on first use: most nodes never log, and a restart must stay cheap.
        if self._log is None:
            # Not in the supervisor, whose pages every run node shares; most nodes never log.
            # deferred: logging, ~4 ms and a dozen modules
            import logging

            log = logging.getLogger(f"topo.node.{self.full_name}")
            if not log.handlers:
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
                log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False
            self._log = log
        return self._log

    def close(self, *, exiting: bool = False) -> None:
        """Close every socket (linger as set, 0 by default), end the context, remove ipc files.

        ``exiting``: the process ends right after this (a forked run node). When no
        socket has a linger, closing would only drop what is unsent, which the exit
        drops too; the kernel closes every fd, so the context's threads are left to
        the exit instead of being woken and joined (a quarter of a node's stop time).
        A second call does nothing.
        """
        if self.closed or os.getpid() != self.pid:
            return  # closed already, or the exit of a process the node forked (atexit)
        self.closed = True
        atexit.unregister(self.close)  # from_env's, once closed by the program itself
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if exiting and all(s.closed or s.getsockopt(zmq.LINGER) == 0
                           for s in self.sockets.values()):
            self.abandoned = True  # the CURVE thread, a daemon, ends with the process
        else:
            # Before the context ends: their thread owns sockets.
            if self.watch is not None:
                self.watch.stop()
                self.watch = None
            if self.curve is not None:
                self.curve.stop()
                self.curve = None
            for sock in self.sockets.values():
                sock.close()
            self.context.destroy(linger=0)  # sockets the node made itself, if any
        if self.ipc:
            close_objects(self.ipc)
        unlink_ipc(ep for plan in self.spec.sockets for ep in plan.bind)

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _arm(self, signum: int) -> None:
        """Handle the stop signal from now on: set ``stopping``, interrupt while armed."""
        # ``_signal``'s, not ``signal.signal``: that one makes enum members of the numbers,
        # which a forked node would do for the first time here.
        _signal.signal(signum, self._on_stop)
        self._armed = True
        self._unwatch = watch_stop(self.stopping, signum, self.watch)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        set_from_handler(self.stopping)
        if self._armed and self.interrupt_on_stop:
            self._armed = False  # once: a second signal must not interrupt the clean-up
            raise SystemExit(0)

    def __repr__(self) -> str:
        return f"<Node {self.full_name} of run {self.run_id}>"


# -- inside the child -----------------------------------------------------------------------------


def run_child(
    plan: Plan, replica: ReplicaPlan, target: NodeFunction, ready_fd: int | None,
    ipc: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
) -> int:
    """Run one node in a freshly forked child; returns its exit status.

    Builds the sockets on a new context, then writes ``b"R"`` to ``ready_fd``
    (the node is ready), calls ``target(node)`` and cleans up. A socket that
    cannot be bound or connected is one sentence on stderr and status 1, with
    no ready byte. ``env``: what of ``replica.env`` the process does not have yet
    (None: all of it); the supervisor sets what a node's replicas share before it
    forks them (``launch.py``).
    """
    # The node's `env:` and the TOPO_* variables, as a command node gets them; programs the
    # node starts inherit them too (TOPO_RUN_DIR is how a dead run's strays are found).
    # Item by item: ``update`` is MutableMapping's, whose ABC check writes to shared pages.
    environ = os.environ
    for key, value in (replica.env if env is None else env).items():
        environ[key] = value
    ctx: zmq.Context[Any] = zmq.Context()
    node: Node | None = None
    try:
        # The ready fd is the node's channel to the supervisor: the watch keeps it.
        watch = _watch(ctx, replica, ready_fd)
        try:
            curve = node_curve(ctx, replica)
            sockets = build_sockets(ctx, replica.sockets, curve, start=False, watch=watch)
        except RunError as exc:
            print(f"{replica.name}: {exc}", file=sys.stderr)
            return 1
        node = Node(replica, plan.run_id, plan.run_dir, ctx, sockets)
        node.curve = curve
        node.watch = watch
        if watch is not None:
            watch.curve = curve
        node.ipc = dict(ipc or {})  # made by the supervisor before the fork (ipc/resources.py)
        fd, ready_fd = ready_fd, None  # _call owns it now
        atexit.register(_end_not_unwound, node)
        try:
            code = _call(node, target, replica.stop_signal, fd)
        finally:
            atexit.unregister(_end_not_unwound)
        _end(node)
        return code
    finally:
        if ready_fd is not None:
            os.close(ready_fd)  # EOF without a byte: not ready
        if not ctx.closed and not (node is not None and node.abandoned):
            ctx.destroy(linger=0)
        _flush()


def _end(node: Node) -> None:
    """The node function is done: its last counts to the supervisor, then close."""
    if node.watch is not None:
        with contextlib.suppress(Exception):
            node.watch.report_final()  # what it sent and received, for `topo top` after it
    node.close(exiting=True)


def _end_not_unwound(node: Node) -> None:
    """End the child as ``run_child`` would when the interpreter exits under the node.

    A ``SystemExit`` raised where Python cannot unwind ends the interpreter on the
    spot: pyzmq's ``Frame.__dealloc__`` checks for signals, so the stop signal's
    ``SystemExit`` can be raised inside it, and Cython prints an exception raised
    in a ``__dealloc__``, which for ``SystemExit`` means exiting. No ``finally``
    runs then, but atexit functions do, the last registered first: this one ends
    the process before any the supervisor registered could run in the child.
    """
    if os.getpid() != node.pid:
        return  # a process the node forked: its exit is its own
    try:
        _end(node)
        _flush()
    finally:
        os._exit(0 if node.stopping.is_set() else 1)


def _call(node: Node, target: NodeFunction, stop_signal: int, ready_fd: int | None) -> int:
    """Signal readiness, call the node function, turn whatever it did into an exit status."""
    try:
        node._arm(stop_signal)
        if ready_fd is not None:
            fd, ready_fd = ready_fd, None
            try:
                os.write(fd, b"R")
            finally:
                if node.watch is None:
                    os.close(fd)
        # After the ready byte: a thread's start is not on that path.
        if node.watch is not None:
            node.watch.start()
        elif node.curve is not None:
            node.curve.start()
        return exit_status(target(node))
    except SystemExit as exc:
        return exit_status(exc.code)
    except BaseException:  # noqa: BLE001 - the node's failure, reported as its exit status
        # deferred: traceback only for a node that failed; the others never load it
        import traceback

        traceback.print_exc()
        return 1
    finally:
        node._armed = False
        if ready_fd is not None:
            os.close(ready_fd)


def _watch(ctx: zmq.Context[Any], replica: ReplicaPlan, channel: int | None) -> Watch | None:
    """The node's ``Watch`` when it has sockets and a channel to the supervisor."""
    if not replica.sockets or channel is None:
        return None
    # deferred: a node without sockets never loads it (the supervisor preloads it: targets.py)
    from orchestrator.child.watch import Watch

    return Watch(ctx, replica.replica, channel)


def node_curve(ctx: zmq.Context[Any], replica: ReplicaPlan) -> Curve | None:
    """The node's CURVE (keys read from its file), or None when its plan has no CURVE link."""
    if not any(s.curve for s in replica.sockets):
        return None
    # deferred: only CURVE runs load it (the supervisor preloads it for them: targets.py)
    from orchestrator.child.curve import Curve

    return Curve.for_replica(ctx, replica)


def exit_status(value: object) -> int:
    """What a returned value or ``SystemExit`` code means as an exit status (like ``sys.exit``)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return int(value)
    print(value, file=sys.stderr)
    return 1


def _flush() -> None:
    # The spawner ends the child with os._exit, which would drop buffered output.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()


def from_env(environ: Mapping[str, str] | None = None) -> Node:
    """The ``Node`` of a Python program started as a ``command`` node, from ``TOPO_SPEC``.

    Sockets are created, bound and connected; ``node.ipc`` holds the resources
    the node lists, opened from ``TOPO_IPC_<NAME>_*``; the stop signal sets
    ``node.stopping`` and raises ``SystemExit(0)`` unless the program sets
    ``node.interrupt_on_stop = False``. Use ``with from_env() as node:`` or call
    ``node.close()`` at the end.
    """
    env = os.environ if environ is None else environ
    path = env.get("TOPO_SPEC")
    if not path:
        raise RunError("TOPO_SPEC is not set: this program expects to be started by `topo up` "
                       "as a command node")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        replica = ReplicaPlan.from_dict(doc["replica"])
        run_id, run_dir = str(doc["run_id"]), str(doc["run_dir"])
    except OSError as exc:
        raise RunError(f"cannot read the node spec TOPO_SPEC={path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(f"the node spec TOPO_SPEC={path} is not one topo wrote: {exc}") from None
    ipc: dict[str, Any] = {}
    if replica.ipc:
        ipc = open_from_env(replica.ipc, env)
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        curve = node_curve(ctx, replica)
        sockets = build_sockets(ctx, replica.sockets, curve)
    except BaseException:
        ctx.destroy(linger=0)
        raise
    node = Node(replica, run_id, run_dir, ctx, sockets)
    node.curve = curve
    node.ipc = ipc
    node._arm(replica.stop_signal)
    # Closed at exit even when the program's `with` or `close()` never runs: the stop
    # signal's SystemExit can end the interpreter without unwinding (see _end_not_unwound).
    atexit.register(node.close)
    return node
