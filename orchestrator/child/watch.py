"""Watching a node from inside (docs/reference.md#watching-a-run): counters, socket events, taps.

Every socket topo makes for a run or role node is a ``WatchedSocket``: its
``send``/``recv`` add the message's size to one counter per direction (one list
item, bytes in the low 64 bits, messages above them), which is all a message
costs while nobody watches. A socket monitor per socket, made before the first
bind or connect, reports connects, disconnects, accepts, retries and handshakes.

One thread per node (``Watch``), started after the ready byte, owns the monitors
and the node's end of its channel to the supervisor (the socket pair the ready
byte went down): it turns monitor events into ``E`` records, answers the
supervisor's ``S`` (stats) requests with the counters, and applies its ``T``
(tap) requests. While a tap is attached to a socket its class is
``TappedSocket``, whose ``send``/``recv`` also copy each message to the tap's
PUSH socket without blocking (what the tap cannot take is dropped and counted);
when the last tap goes, the class is ``WatchedSocket`` again and nothing is copied.
The ``proxy`` role runs libzmq's steerable proxy, whose STATISTICS the thread
reads; a tap ends that proxy (TERMINATE) and the role forwards in Python, through
these sockets, until the tap goes (``roles.proxy``).

The thread is a daemon and the node never waits for it: a forked node ends with
``os._exit``. It also answers ZAP for the node's ``Curve`` (``curve.py``), so a
node has one such thread, not two; a failed CURVE handshake is one of its socket
events (with libzmq's reason), and a client the ZAP handler refused is named, with
its key, in the node's log by ``Curve``.
"""

from __future__ import annotations

import _signal  # the C module under `signal`: plain ints, no enum members made per call
import contextlib
import itertools
import json
import os
import select
import signal
import struct
import threading
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

import zmq
from zmq.backend import Socket as _Backend

from orchestrator.child.stopsignal import Redeliver, redeliver_in_thread
from orchestrator.child.threads import Daemon
from orchestrator.plan import SocketPlan

ONE = 1 << 64  # a counter holds messages * ONE + bytes
_LOW = ONE - 1
_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
_send = _Backend.send
_recv = _Backend.recv
_get = _Backend.get
TAP_HWM = 1000  # messages a tap may be behind before the node drops what it cannot take
TAP_HEADER = struct.Struct("<cdI")  # direction (i, o; D: dropped), time, replica or count
SAY_EVERY = 10.0  # seconds: a repeated event (retries, accepts) is said once, then summed up
_ids = itertools.count()

# Monitor events in words; the ones not here are not reported.
_KINDS: dict[int, str] = {
    zmq.EVENT_CONNECTED: "connected",
    zmq.EVENT_CONNECT_RETRIED: "retrying",
    zmq.EVENT_ACCEPTED: "accepted",
    zmq.EVENT_ACCEPT_FAILED: "accept failed",
    zmq.EVENT_BIND_FAILED: "bind failed",
    zmq.EVENT_DISCONNECTED: "disconnected",
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "handshake succeeded",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "handshake failed",
}
_EVENTS = 0
for _e in _KINDS:
    _EVENTS |= int(_e)
# Signals a thread's own fault raises, which it must never block.
_FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT,
           signal.SIGTRAP}
# What the thread blocks, as ints: ``signal.valid_signals()`` and ``signal.pthread_sigmask``
# make an enum member of each of some 60 signals, 0.3 ms of a forked node's start.
_BLOCKED = frozenset(_signal.valid_signals()) - {int(s) for s in _FAULTS}
_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
           zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class WatchedSocket(zmq.Socket):  # type: ignore[type-arg]
    """A pyzmq socket that counts what crosses it: ``_c = [out, in]``, each
    ``messages * ONE + bytes``.

    Its ``send``, ``recv``, ``recv_multipart`` and ``get`` are closures in the instance's
    own ``__dict__`` (``_count``), over its counter: a method that read ``self._c`` would
    pay pyzmq's attribute hook on every message. ``recv`` counts one message per frame;
    asking for ``RCVMORE`` (as a loop over the frames of a message does) takes the extra
    ones back, and ``recv_multipart`` counts a message once. Calling the class's method
    (``zmq.Socket.recv(sock)``) counts nothing.
    """

    _c: list[int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__["_c"] = [0, 0]
        _count(self)


class TappedSocket(WatchedSocket):
    """A ``WatchedSocket`` with a tap attached: each message is also copied to the taps
    (``_tapped``, in place of ``_count``'s closures, while the class is this one)."""

    _tap: Taps


def _count(sock: zmq.Socket[Any]) -> None:
    """Give ``sock`` its counting methods."""
    c = sock.__dict__["_c"]

    def send(data: Any, flags: int = 0, copy: bool = True, track: bool = False,
             routing_id: int | None = None, group: str | None = None) -> Any:
        if routing_id is not None or group is not None:
            r = zmq.Socket.send(sock, data, flags, copy, track, routing_id, group)
        else:
            r = _send(sock, data, flags, copy, track)
        c[0] += len(data) if flags & _SNDMORE else len(data) + ONE
        return r

    def recv(flags: int = 0, copy: bool = True, track: bool = False) -> Any:
        m = _recv(sock, flags, copy, track)
        c[1] += len(m) + ONE
        return m

    def recv_multipart(flags: int = 0, copy: bool = True, track: bool = False) -> list[Any]:
        parts = [_recv(sock, flags, copy, track)]
        while _get(sock, _RCVMORE):
            parts.append(_recv(sock, flags, copy, track))
        c[1] += sum(map(len, parts)) + ONE
        return parts

    def get(option: int) -> Any:
        value = _get(sock, option)
        if option == _RCVMORE and value:
            c[1] -= ONE  # the frame just read was not the message's last
        return value

    sock.__dict__.update(send=send, recv=recv, recv_multipart=recv_multipart, get=get,
                         getsockopt=get)


def _tapped(sock: zmq.Socket[Any], tap: Taps) -> None:
    """Give ``sock`` methods that count exactly and copy each message to ``tap``."""
    c = sock.__dict__["_c"]

    def send(data: Any, flags: int = 0, copy: bool = True, track: bool = False,
             routing_id: int | None = None, group: str | None = None) -> Any:
        if routing_id is not None or group is not None:
            r = zmq.Socket.send(sock, data, flags, copy, track, routing_id, group)
        else:
            r = _send(sock, data, flags, copy, track)
        more = flags & _SNDMORE
        c[0] += len(data) if more else len(data) + ONE
        tap.frame(b"o", data, bool(more))
        return r

    def recv(flags: int = 0, copy: bool = True, track: bool = False) -> Any:
        m = _recv(sock, flags, copy, track)
        more = _get(sock, _RCVMORE)  # asked anyway, for the copy: the count is exact here
        c[1] += len(m) if more else len(m) + ONE
        tap.frame(b"i", m, bool(more))
        return m

    def recv_multipart(flags: int = 0, copy: bool = True, track: bool = False) -> list[Any]:
        parts = [_recv(sock, flags, copy, track)]
        while _get(sock, _RCVMORE):
            parts.append(_recv(sock, flags, copy, track))
        c[1] += sum(map(len, parts)) + ONE
        tap.message(b"i", parts)
        return parts

    def get(option: int) -> Any:
        return _get(sock, option)  # recv counted each frame right: nothing to take back

    sock.__dict__.update(send=send, recv=recv, recv_multipart=recv_multipart, get=get,
                         getsockopt=get)


class Taps:
    """The taps of one socket: a PUSH per tap, used by the node's thread under ``lock``."""

    def __init__(self, ctx: zmq.Context[Any], replica: int) -> None:
        self.ctx = ctx
        self.replica = replica
        self.lock = threading.Lock()
        self.pushes: dict[str, zmq.Socket[Any]] = {}  # endpoint -> PUSH
        self.dropped: dict[str, int] = {}  # endpoint -> messages not taken since last said
        self.dropped_total = 0
        self._partial: dict[bytes, list[Any]] = {}  # direction -> frames of a message so far

    def set(self, endpoints: list[str]) -> None:
        """Attach to these endpoints (each a tap's PULL), detach from the others."""
        with self.lock:
            for ep in list(self.pushes):
                if ep not in endpoints:
                    self.pushes.pop(ep).close(linger=0)
                    self.dropped.pop(ep, None)
            for ep in endpoints:
                if ep not in self.pushes:
                    push: zmq.Socket[Any] = self.ctx.socket(zmq.PUSH)
                    push.linger = 0
                    push.sndhwm = TAP_HWM
                    push.connect(ep)
                    self.pushes[ep] = push
                    self.dropped[ep] = 0

    def frame(self, direction: bytes, data: Any, more: bool) -> None:
        frames = self._partial.setdefault(direction, [])
        frames.append(bytes(data))
        if not more:
            del self._partial[direction]
            self.message(direction, frames)

    def message(self, direction: bytes, frames: list[Any]) -> None:
        # The backend's send with plain int flags: pyzmq's send_multipart costs ~2 µs more.
        header = TAP_HEADER.pack(direction, time.time(), self.replica)
        last = len(frames) - 1
        with self.lock:
            for ep, push in self.pushes.items():
                dropped = self.dropped[ep]
                try:
                    if dropped:
                        _send(push, TAP_HEADER.pack(b"D", time.time(), dropped), _NOBLOCK)
                        self.dropped[ep] = 0
                    # Once libzmq takes a message's first frame, it takes them all.
                    _send(push, header, _NOBLOCK | _SNDMORE)
                    for i, f in enumerate(frames):
                        _send(push, f, _NOBLOCK if i == last else _NOBLOCK | _SNDMORE)
                except zmq.Again:
                    self.dropped[ep] += 1
                    self.dropped_total += 1
                except zmq.ZMQError:
                    pass

    def close(self) -> None:
        self.set([])


def compact(obj: Any) -> str:
    """``json.dumps(obj, separators=(",", ":"))`` for what a node sends its supervisor:
    dicts with str keys, lists, str, int, bool and None.

    Put together here because ``json.dumps`` makes its encoder and runs it, in a forked
    node, for the first time: by the step timings of 201 nodes, a node's last counts took
    186 us and 22 copy-on-write faults that way, 101 us and 10 this way. Strings are
    quoted by json's own C function.
    """
    if isinstance(obj, str):
        return _quote(obj)
    if obj is None or obj is True or obj is False:
        return "null" if obj is None else "true" if obj else "false"
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{_quote(k)}:{compact(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(map(compact, obj)) + "]"
    raise TypeError(f"{type(obj).__name__} is not sent to the supervisor")


def stats_record(rid: str, stats: dict[str, dict[str, Any]]) -> bytes:
    """``S`` and ``{"id": rid, "sockets": stats}`` (``Watch.stats``) in compact JSON."""
    return b"S" + compact({"id": rid, "sockets": stats}).encode()


def counts(sock: zmq.Socket[Any]) -> list[int]:
    """[messages in, bytes in, messages out, bytes out] of a ``WatchedSocket``."""
    out, inn = getattr(sock, "_c", (0, 0))
    return [inn >> 64, inn & _LOW, out >> 64, out & _LOW]


class Summary:
    """Events said once, then summed up: the first of a kind per socket and endpoint is said
    at once; more of it within ``SAY_EVERY`` are counted and said as one line when that
    time is up (``due``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last: dict[tuple[str, str, str], float] = {}
        self._held: dict[tuple[str, str, str], tuple[int, dict[str, Any]]] = {}

    def add(self, key: tuple[str, str, str], event: dict[str, Any]) -> dict[str, Any] | None:
        """The event to say now, or None (it is held and counted)."""
        now = self.clock()
        last = self._last.get(key)
        if last is None or now - last >= SAY_EVERY and key not in self._held:
            self._last[key] = now
            return event
        count, _ = self._held.get(key, (0, event))
        self._held[key] = (count + 1, event)
        return None

    def forget(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        """A held summary said at once (the state it summed up ended), or None."""
        self._last.pop(key, None)
        return self._said(key, self._held.pop(key, None))

    def due(self) -> list[dict[str, Any]]:
        now = self.clock()
        out = []
        for key in [k for k in self._held if now - self._last[k] >= SAY_EVERY]:
            said = self._said(key, self._held.pop(key))
            self._last[key] = now
            if said is not None:
                out.append(said)
        return out

    def next_due(self) -> float | None:
        if not self._held:
            return None
        return min(self._last[k] for k in self._held) + SAY_EVERY

    @staticmethod
    def _said(key: tuple[str, str, str],
              held: tuple[int, dict[str, Any]] | None) -> dict[str, Any] | None:
        if held is None:
            return None
        count, event = held
        # Its peers were counted when it came: a summary changes none.
        return {**event, "peers": 0, "say": True, "repeat": count,
                "text": repeated(event, count)}


def repeated(event: dict[str, Any], count: int) -> str:
    """The line for ``count`` more events like ``event`` since it was said."""
    kind, ep = event["event"], event["endpoint"]
    if kind == "retrying":
        return f"still cannot connect to {ep} ({count} more attempts); retrying"
    if kind == "accepted":
        return f"accepted {count} more peer{'s' if count != 1 else ''} on {ep}"
    if kind == "disconnected":
        return f"{count} more disconnect{'s' if count != 1 else ''} on {ep}"
    if kind == "connected":
        return f"connected to {ep} again ({count} times)"
    return f"{event['text']} ({count} more times)"


def describe(kind: str, endpoint: str, value: int, *, bound: bool, reason: str = "") -> str:
    """A monitor event as the rest of a ``socket s: ...`` line."""
    if kind == "connected":
        return f"connected to {endpoint}"
    if kind == "retrying":
        return f"cannot connect to {endpoint} yet (nobody accepts there); retrying"
    if kind == "accepted":
        return f"accepted a peer on {endpoint}"
    if kind == "disconnected":
        return f"a peer on {endpoint} went away" if bound else f"disconnected from {endpoint}"
    if kind == "bind failed":
        return f"cannot bind {endpoint}: {zmq.strerror(value)}"
    if kind == "accept failed":
        return f"cannot accept on {endpoint}: {zmq.strerror(value)}"
    if kind == "handshake succeeded":
        return f"handshake with {endpoint} succeeded"
    return f"handshake with {endpoint} failed: {reason}"


class Watch:
    """A node's watching thread: monitors, the channel to the supervisor, taps, proxy stats."""

    def __init__(self, ctx: zmq.Context[Any], replica: int, channel: int | None,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.replica = replica
        self.channel = channel  # the node's end of its socket pair with the supervisor
        self.clock = clock
        self.sockets: dict[str, zmq.Socket[Any]] = {}
        self.plans: dict[str, SocketPlan] = {}
        self.taps: dict[str, Taps] = {}
        self.curve: Any = None  # the node's Curve: its ZAP socket and handshake lines
        self._monitors: dict[zmq.Socket[Any], str] = {}
        self._monitor_of: dict[zmq.Socket[Any], zmq.Socket[Any]] = {}
        self._summary = Summary(clock)
        self._failing: set[tuple[str, str]] = set()  # (socket, endpoint) whose handshake fails
        self._retries: dict[tuple[str, str], int] = {}  # (socket, endpoint) -> retries so far
        self._was_connected: set[tuple[str, str]] = set()
        self._thread: Daemon | None = None
        self._wake: int | None = None  # the write end of the pipe that ends the thread
        self._wake_r: int | None = None  # its read end
        # The stop signal's wake-up pipe (``stopsignal.watch_stop``): this thread resends
        # the signal to the main thread until its handler has run, so no other is needed.
        self.redeliver: Redeliver | None = None
        # The proxy role: the thread's end of the steerable proxy's control socket.
        self.proxy_control: zmq.Socket[Any] | None = None
        self.proxy_peer: zmq.Socket[Any] | None = None  # the role's end
        self.proxy_base: dict[str, list[int]] = {}  # counts of earlier proxy runs
        self.proxy_in_c = False  # libzmq's proxy runs (and answers STATISTICS)
        # Set while a tap is on frontend or backend: the role forwards in Python. Made by
        # ``for_proxy``: an Event costs every other forked node a tenth of a millisecond.
        self.proxy_tapped: threading.Event | None = None

    # -- in the calling thread, before the sockets bind or connect -----------------------------
    def socket(self, plan: SocketPlan) -> zmq.Socket[Any]:
        """A new ``WatchedSocket`` for ``plan``, with its monitor (before any bind or connect)."""
        sock = WatchedSocket(self.ctx, getattr(zmq, plan.type))
        address = f"inproc://topo-watch.{next(_ids)}"
        sock.monitor(address, _EVENTS)
        mon: zmq.Socket[Any] = self.ctx.socket(zmq.PAIR)
        mon.linger = 0
        mon.connect(address)
        self._monitors[mon] = plan.name
        self._monitor_of[sock] = mon
        self.sockets[plan.name] = sock
        self.plans[plan.name] = plan
        return sock

    def bind_error(self, sock: zmq.Socket[Any]) -> int | None:
        """The errno of ``sock``'s failed bind, from its monitor's BIND_FAILED event.

        With a monitor, libzmq's own errno after a failed bind can be the monitor's
        (EAGAIN); the event carries the real one. Read before the thread starts.
        """
        mon = self._monitor_of.get(sock)
        if mon is None:
            return None
        while mon.poll(100):
            frames = mon.recv_multipart()
            if len(frames[0]) >= 6:
                event, value = struct.unpack("=HI", frames[0][:6])
                if event == zmq.EVENT_BIND_FAILED:
                    return int(value)
        return None

    def for_proxy(self) -> zmq.Socket[Any]:
        """The role's end of a steerable proxy's control socket (this thread has the other)."""
        address = f"inproc://topo-proxy.{next(_ids)}"
        mine: zmq.Socket[Any] = self.ctx.socket(zmq.PAIR)
        mine.linger = 0
        mine.bind(address)
        theirs: zmq.Socket[Any] = self.ctx.socket(zmq.PAIR)
        theirs.linger = 0
        theirs.connect(address)
        self.proxy_control, self.proxy_peer = mine, theirs
        self.proxy_tapped = threading.Event()
        return theirs

    # -- the thread -------------------------------------------------------------------------------
    def start(self) -> None:
        # A pipe, not a pair of zmq sockets: a forked node's start is cheaper by two sockets.
        # Both ends are ``stop``'s to close, never the thread's: a write to a pipe whose
        # reader is gone would be a SIGPIPE, which ends a forked node.
        self._wake_r, self._wake = os.pipe()
        self._thread = Daemon(self._loop, (self._wake_r,))

    def stop(self, timeout: float = 1.0) -> None:
        thread, wake, wake_r = self._thread, self._wake, self._wake_r
        self._thread = self._wake = self._wake_r = None
        if wake is not None:
            with contextlib.suppress(OSError):
                os.write(wake, b"x")
        if thread is not None:
            thread.join(timeout)
        if wake is not None:
            os.close(wake)
        if wake_r is not None and not (thread is not None and thread.is_alive()):
            os.close(wake_r)  # (a thread still polling it keeps it until the process ends)
        if thread is None:
            self._close_own()

    def can_redeliver(self) -> bool:
        """Whether the stop signal's resending can be handed to this watch (not started yet)."""
        return self._thread is None

    def _hand_off_redeliver(self) -> None:
        """The watch ends before the stop signal is unwatched: a thread of its own takes over."""
        rd, self.redeliver = self.redeliver, None
        if rd is None:
            return
        ready = select.poll()
        ready.register(rd.fd, select.POLLIN)
        if ready.poll(0) and not rd.readable():
            os.close(rd.fd)  # unwatched already (the node's close): nothing to take over
        else:
            redeliver_in_thread(rd)

    def _close_own(self) -> None:
        self._hand_off_redeliver()
        for taps in self.taps.values():
            taps.close()
        for s in [*self._monitors, self.proxy_control]:
            if s is not None:
                s.close(linger=0)
        self._monitors = {}
        self.proxy_control = None
        if self.curve is not None:
            self.curve._close_own()

    def _loop(self, wake: int) -> None:
        # Signals are for the main thread (its handler raises there); this one resends them.
        # A fault of this thread's own still reaches it (faulthandler, the core dump).
        _signal.pthread_sigmask(_signal.SIG_BLOCK, _BLOCKED)
        poller = zmq.Poller()
        poller.register(wake, zmq.POLLIN)
        if self.channel is not None:
            poller.register(self.channel, zmq.POLLIN)
        stop_fd = self.redeliver.fd if self.redeliver is not None else None
        if stop_fd is not None:
            poller.register(stop_fd, zmq.POLLIN)
        zap = self.curve._zap if self.curve is not None else None
        if zap is not None:
            poller.register(zap, zmq.POLLIN)
        for mon in self._monitors:
            poller.register(mon, zmq.POLLIN)
        try:
            while True:
                timeout = self._timeout()
                for sock, _ in poller.poll(timeout):
                    if sock == wake:
                        return
                    try:
                        if sock is zap:
                            self.curve._answer(zap)
                        elif sock == stop_fd and self.redeliver is not None:
                            if not self.redeliver.readable():  # unwatched: its pipe closed
                                poller.unregister(self.redeliver.fd)
                                os.close(self.redeliver.fd)  # its writer is gone: no SIGPIPE
                                self.redeliver = stop_fd = None
                        elif isinstance(sock, int):  # the channel (a plain fd)
                            if not self._command():
                                poller.unregister(self.channel)
                        else:
                            self._event(sock)
                    except zmq.ContextTerminated:
                        raise
                    except Exception:  # noqa: BLE001 - one bad message must not end the watch
                        continue
                if self.redeliver is not None:
                    self.redeliver.tick()
                self._loop_due()
        except zmq.ContextTerminated:
            pass
        finally:
            self._close_own()

    def _timeout(self) -> int | None:
        """Milliseconds until the next summary or stop-signal resend is due (None: none is)."""
        waits = []
        due = self._summary.next_due()
        if due is not None:
            waits.append(due - self.clock())
        at = self.redeliver.next_due() if self.redeliver is not None else None
        if at is not None:
            waits.append(at - time.monotonic())  # the redelivery keeps the real clock
        return None if not waits else int(max(0.0, min(waits)) * 1000) + 1

    def _loop_due(self) -> None:
        """Send the summaries whose time has come."""
        for event in self._summary.due():
            self._send_event(event)

    # -- monitor events ---------------------------------------------------------------------------
    def _event(self, mon: zmq.Socket[Any]) -> None:
        frames = mon.recv_multipart()
        if len(frames) < 2 or len(frames[0]) < 6:
            return
        event, value = struct.unpack("=HI", frames[0][:6])
        endpoint = frames[1].decode(errors="replace")
        name = self._monitors.get(mon, "?")
        self.on_event(name, event, value, endpoint)

    def on_event(self, name: str, event: int, value: int, endpoint: str) -> None:
        kind = _KINDS.get(event)
        if kind is None:
            return
        plan = self.plans.get(name)
        bound = plan is not None and endpoint not in plan.connect
        key2 = (name, endpoint)
        reason = ""
        if event in _FAILED:
            reason = failure_reason(event, value, curve=plan is not None and plan.curve,
                                    server=bound)
        peers = {"connected": 1, "accepted": 1, "disconnected": -1}.get(kind, 0)
        doc: dict[str, Any] = {"socket": name, "event": kind, "endpoint": endpoint,
                               "peers": peers, "text": describe(kind, endpoint, value,
                                                                bound=bound, reason=reason)}
        if reason:
            doc["reason"] = reason
        say = True
        if kind == "handshake succeeded":
            # Every connection has one (NULL included): said only when it ends a failure of
            # this connect. A binding socket's endpoint is every client's: never said there.
            say = key2 in self._failing and not bound
            self._failing.discard(key2)
            if say:
                self._summary.forget((name, endpoint, "handshake failed"))
        elif kind == "handshake failed":
            if not bound:
                self._failing.add(key2)
        elif key2 in self._failing and kind in ("connected", "disconnected", "retrying"):
            say = False  # the handshake's failure says it: each retry connects and drops again
        if kind == "retrying":
            self._retries[key2] = self._retries.get(key2, 0) + 1
            if key2 in self._was_connected:
                doc["text"] = (f"cannot connect to {endpoint} again (nobody accepts there); "
                               "retrying")
        if kind == "connected":
            self._was_connected.add(key2)
            self._summary.forget((name, endpoint, "retrying"))
            retries = self._retries.pop(key2, 0)
            if retries:  # the first attempt, then one per retry
                doc["text"] = f"connected to {endpoint} after {retries + 1} attempts"
        if say and kind != "handshake succeeded":
            said = self._summary.add((name, endpoint, kind), doc)
            say = said is not None
        doc["say"] = say
        if say or peers:
            self._send_event(doc)

    def _send_event(self, doc: dict[str, Any]) -> None:
        doc.setdefault("say", True)
        self._write(b"E" + compact(doc).encode())

    def _write(self, data: bytes) -> None:
        if self.channel is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.channel, data)

    # -- the supervisor's requests ---------------------------------------------------------------
    def _command(self) -> bool:
        """One request from the supervisor; False once the channel is closed."""
        assert self.channel is not None
        try:
            data = os.read(self.channel, 1 << 16)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            return False
        if data[:1] == b"S":
            self._write(stats_record(data[1:].decode(errors="replace"), self.stats()))
        elif data[:1] == b"T":
            request = json.loads(data[1:])
            self.set_taps(str(request["socket"]), [str(e) for e in request["taps"]])
            if request.get("id"):
                self._write(b"A" + compact({"id": str(request["id"])}).encode())
        return True

    def report_final(self) -> None:
        """The node's last counts, from its main thread as it ends (libzmq's proxy, ended
        already, is not asked)."""
        self.proxy_in_c = False
        self._write(stats_record("", self.stats()))

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per socket: messages and bytes in and out, and what its taps dropped."""
        proxy = self._proxy_stats()
        out: dict[str, dict[str, Any]] = {}
        for name, sock in self.sockets.items():
            c = counts(sock)
            base = self.proxy_base.get(name)
            if base is not None:
                c = [a + b for a, b in zip(c, base, strict=True)]
            if name in proxy:
                c = [a + b for a, b in zip(c, proxy[name], strict=True)]
            taps = self.taps.get(name)
            out[name] = {"counts": c, "tap_dropped": taps.dropped_total if taps else 0}
        return out

    def _proxy_stats(self) -> dict[str, list[int]]:
        """libzmq's proxy's own counts (frames and bytes), while it runs."""
        control = self.proxy_control
        if control is None or not self.proxy_in_c:
            return {}
        with contextlib.suppress(zmq.Again):
            while True:
                control.recv(zmq.NOBLOCK)  # a late answer to an earlier question
        control.send(b"STATISTICS")
        if not control.poll(500):
            return {}
        frames = control.recv_multipart()
        if len(frames) != 8:
            return {}
        n = [struct.unpack("=Q", f)[0] for f in frames]
        return {"frontend": n[0:4], "backend": n[4:8]}

    def set_taps(self, name: str, endpoints: list[str]) -> None:
        sock = self.sockets.get(name)
        if sock is None:
            return
        taps = self.taps.get(name)
        if taps is None:
            taps = self.taps[name] = Taps(self.ctx, self.replica)
            sock.__dict__["_tap"] = taps
        taps.set(endpoints)
        if taps.pushes:
            _tapped(sock, taps)
            sock.__class__ = TappedSocket
        else:
            _count(sock)
            sock.__class__ = WatchedSocket
        if self.proxy_control is not None and name in ("frontend", "backend"):
            self._steer_proxy(any(t.pushes for n, t in self.taps.items()
                                  if n in ("frontend", "backend")))

    def _steer_proxy(self, tapped: bool) -> None:
        """A tap on the proxy's sockets: end libzmq's proxy, so the role forwards in Python."""
        forwarding = self.proxy_tapped
        assert forwarding is not None and self.proxy_control is not None  # for_proxy made them
        if tapped and not forwarding.is_set():
            for name, c in self._proxy_stats().items():
                base = self.proxy_base.setdefault(name, [0, 0, 0, 0])
                self.proxy_base[name] = [a + b for a, b in zip(base, c, strict=True)]
            forwarding.set()
            self.proxy_in_c = False
            self.proxy_control.send(b"TERMINATE")
        elif not tapped:
            forwarding.clear()


def failure_reason(event: int, value: int, *, curve: bool, server: bool = False) -> str:
    """Why a handshake failed, in words (libzmq's reason); ``server``: seen by the binding side."""
    if server and event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return f"this socket refused the client's key (ZAP status {value}): it is not allowed"
    if curve and server and event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        # deferred: as below
        from orchestrator.child.curve import protocol_reason

        return protocol_reason(value)
    if curve:
        # deferred: the words live with CURVE's; a plain run never loads that module
        from orchestrator.child.curve import client_reason

        return client_reason(event, value)
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return ("the peer uses another security mechanism (CURVE on one side, none on "
                    "the other)")
        return f"a ZMTP protocol error (0x{value:08x})"
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return f"the peer refused this socket (ZAP status {value})"
    return f"the peer closed the connection during the handshake ({zmq.strerror(value)})"
