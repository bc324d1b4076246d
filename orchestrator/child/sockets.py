"""Sockets inside a node: create, configure, bind and connect them from a plan.

What a node gets: docs/reference.md#the-node-contract.

Used by ``run_child`` in a forked child and by ``from_env`` in a ``command``
node; both go through ``build_sockets``, so a socket that cannot be made is
the same one-sentence ``RunError`` either way.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import zmq

from orchestrator.errors import RunError
from orchestrator.plan import SocketPlan

if TYPE_CHECKING:
    from orchestrator.child.curve import Curve
    from orchestrator.child.watch import Watch


def build_sockets(
    ctx: zmq.Context[Any], sockets: Sequence[SocketPlan], curve: Curve | None = None,
    *, start: bool = True, watch: Watch | None = None,
) -> dict[str, zmq.Socket[Any]]:
    """Create, configure, bind and connect every socket; ``RunError`` with a sentence on failure.

    Linger is 0 unless the plan sets it, so closing never waits for lost peers.
    ``curve``: the node's CURVE (``curve.py``), for the sockets whose plan uses it; its
    thread is started once every socket is made, or by the caller (``start=False``: a
    forked node says it is ready first; handshakes wait for the ZAP handler meanwhile).
    ``watch``: the node's ``Watch`` (``watch.py``): it makes the sockets, counted and
    monitored, and its thread (started by the caller) reads CURVE's events and ZAP too.
    On failure, the sockets made so far are closed, and so is ``curve``.
    """
    made: dict[str, zmq.Socket[Any]] = {}
    bound: list[str] = []
    try:
        if curve is not None:
            curve.open(sockets)
        for plan in sockets:
            made[plan.name] = _socket(ctx, plan, bound, curve if plan.curve else None, watch)
        if curve is not None and start and watch is None:
            curve.start()
    except BaseException:
        for sock in made.values():
            sock.close(linger=0)
        if curve is not None:
            curve.stop()
        if watch is not None:
            watch.stop()  # never started: closes its monitors
        unlink_ipc(bound)
        raise
    return made


def unlink_ipc(endpoints: Iterable[str]) -> None:
    """Remove the socket files of ipc endpoints this process bound.

    libzmq 4.3 leaves them behind on close; a later bind would replace them, but
    a run must not leave files behind, least of all outside its folder.
    """
    for ep in endpoints:
        if ep.startswith("ipc://") and not ep.startswith("ipc://@"):
            path = ep[len("ipc://"):]
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)


def _socket(ctx: zmq.Context[Any], plan: SocketPlan, bound: list[str],
            curve: Curve | None, watch: Watch | None = None) -> zmq.Socket[Any]:
    what = f"socket {plan.name} ({plan.type})"
    try:
        sock: zmq.Socket[Any] = (ctx.socket(getattr(zmq, plan.type)) if watch is None
                                 else watch.socket(plan))
    except (AttributeError, zmq.ZMQError) as exc:
        raise RunError(f"cannot create {what}: {_reason(exc)}") from None
    try:
        sock.setsockopt(zmq.LINGER, 0)
        for name, value in plan.options.items():
            _set_option(sock, what, name, value)
        if plan.type == "SUB":
            for topic in plan.subscribe:
                sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        if curve is None:
            _bind(sock, what, plan.bind, bound, watch)
            _connect(sock, what, plan.connect)
        else:
            # libzmq reads the mechanism when bind or connect is called (and setting a key
            # turns CURVE on): the plain connects go first, then the binds as the CURVE
            # server, then each CURVE connect with the server key of the node it reaches.
            pairs = list(zip(plan.connect, plan.serverkeys or [""] * len(plan.connect),
                             strict=True))
            if watch is None:
                curve.monitor(sock, plan)  # else the watch's monitor tells curve
            _connect(sock, what, [ep for ep, key in pairs if not key])
            curve.give_keys(sock)
            if plan.curve_server:
                curve.as_server(sock, plan)
            _bind(sock, what, plan.bind, bound, watch)
            for ep, key in pairs:
                if key:
                    curve.as_client(sock, key)
                    _connect(sock, what, [ep])
        if plan.type == "XSUB":
            for topic in plan.subscribe:  # an XSUB subscribes by sending, not by an option
                sock.send(b"\x01" + topic.encode())
    except BaseException:
        sock.close(linger=0)
        raise
    return sock


def _bind(sock: zmq.Socket[Any], what: str, endpoints: Iterable[str], bound: list[str],
          watch: Watch | None = None) -> None:
    for ep in endpoints:
        try:
            sock.bind(ep)
        except zmq.ZMQError as exc:
            errno = watch.bind_error(sock) if watch is not None else None
            reason = zmq.strerror(errno) if errno else _reason(exc)
            raise RunError(f"cannot bind {what} to {ep}: {reason}") from None
        bound.append(ep)


def _connect(sock: zmq.Socket[Any], what: str, endpoints: Iterable[str]) -> None:
    for ep in endpoints:
        try:
            sock.connect(ep)
        except zmq.ZMQError as exc:
            raise RunError(f"cannot connect {what} to {ep}: {_reason(exc)}") from None


def _set_option(sock: zmq.Socket[Any], what: str, name: str, value: Any) -> None:
    try:
        opt = zmq.SocketOption[name.upper()]
    except KeyError:
        raise RunError(f"{what}: unknown socket option {name!r}") from None
    kind = getattr(opt, "_opt_type", None)
    try:
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, str):
            value = value.encode() if kind is not None and kind.value == "bytes" else int(value)
        elif isinstance(value, int) and kind is not None and kind.value == "bytes":
            value = str(value).encode()
        sock.setsockopt(opt, value)
    except (zmq.ZMQError, ValueError, TypeError) as exc:
        raise RunError(f"{what}: cannot set option {name} to {value!r}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, zmq.ZMQError):
        # str() would add the address, which the sentence already names.
        return zmq.strerror(exc.errno) if exc.errno is not None else str(exc)
    return str(exc) or type(exc).__name__
