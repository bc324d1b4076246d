"""CURVE inside a node: its sockets' keys, its ZAP handler and its handshake reports.

What it does (docs/reference.md#security):

- every socket with a CURVE link gets the node's key pair; a binding socket is
  the CURVE server, with ``zap_domain`` = the socket's name; before each connect
  the client gets the server key of the node it connects to (libzmq takes the
  server key when ``connect`` is called, so a socket joined to several nodes gets
  each one's key);
- one thread per node answers ZAP (``inproc://zeromq.zap.01`` of the node's
  context): a CURVE client is let in when its public key is in the socket's
  ``allow`` list, and refused (status 400) otherwise, with a line in the node's
  log naming the peer's address and key, at most once a second per address;
- the same thread reads the socket monitors, so a handshake that fails (refused,
  wrong server key, a plain peer) is one line in the log, not a silent retry.

The ZAP socket and the monitors are made in the calling thread before the first
bind or connect, so no handshake can happen without them; ``start`` then hands
them to the thread, which owns them until ``stop`` (or the end of the context).
The thread is a daemon: a forked node that ends with ``os._exit`` does not wait
for it, and ``stop`` wakes it through an inproc PAIR socket and joins it. The servers
set ``ZAP_ENFORCE_DOMAIN``: should the thread ever end early, they refuse every client
rather than let every client in.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq
from zmq.utils import z85

from orchestrator.certs import KeyFileError, read_secret
from orchestrator.errors import RunError
from orchestrator.plan import ReplicaPlan, SocketPlan

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
SERVER_LOG_EVERY = 1.0  # seconds: one refusal line per peer address at most this often
CLIENT_REPEAT_EVERY = 60.0  # a handshake that keeps failing is said again this often
_MAX_LINES_PER_SECOND = 20  # all refusals together: a scan from many addresses stays readable

_CLIENT_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                  | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)
_SERVER_EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
_monitor_ids = itertools.count()

Say = Callable[[str], None]


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # a closed stderr: the line is lost, no more
        print(line, file=sys.stderr, flush=True)


def protocol_reason(value: int) -> str:
    """libzmq's ZMQ_PROTOCOL_ERROR_* code in words."""
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "the peer does not speak CURVE (a plain socket, or another mechanism)"
    if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return ("a cryptographic check failed: the client does not have this server's "
                "public key")
    if value & 0x20000000:
        return f"the ZAP handler gave a malformed reply (0x{value:08x})"
    return f"a ZMTP protocol error (0x{value:08x})"


def client_reason(event: int, value: int) -> str:
    """Why a connecting socket's handshake failed, from a monitor event."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (f"the server refused this node's key (ZAP status {value}): it does not allow "
                "this client")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return protocol_reason(value)
    # libzmq says no more than an errno here; EPIPE / ECONNRESET: the server hung up mid-way.
    return ("the server closed the connection during the handshake: it is not the server "
            "whose public key this node has, or it is not a CURVE server "
            f"({zmq.strerror(value) if value else 'no detail'})")


class Curve:
    """A node's CURVE: its keys, the ZAP handler and the monitors of its sockets."""

    def __init__(self, ctx: zmq.Context[Any], label: str, public: str, secret: str,
                 *, say: Say = _say, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.label = label  # the replica, e.g. broker.0
        self.public = public.encode("ascii")
        self.secret = secret.encode("ascii")
        self.say = say
        self.clock = clock
        self.allowed: dict[bytes, frozenset[bytes]] = {}  # zap_domain -> raw public keys
        self._zap: zmq.Socket[Any] | None = None
        # monitor -> (socket name, whether it is a CURVE server, its connect endpoints)
        self._monitors: dict[zmq.Socket[Any], tuple[str, bool, frozenset[str]]] = {}
        self._thread: threading.Thread | None = None
        self._wake: zmq.Socket[Any] | None = None  # ours; its peer is the thread's
        self._last: dict[Any, float] = {}  # rate limit: key -> when last said
        self._second = (0.0, 0)  # (start of the current second, lines said in it)
        self._failing: dict[tuple[str, str], int] = {}  # (socket, endpoint) -> failures

    @classmethod
    def for_replica(cls, ctx: zmq.Context[Any], replica: ReplicaPlan) -> Curve:
        """The node's ``Curve``; ``RunError`` when its secret key file cannot be read."""
        try:
            public, secret = read_secret(replica.curve_secret_file)
        except KeyFileError as exc:
            raise RunError(f"cannot read this node's CURVE key: {exc}") from None
        return cls(ctx, replica.name, public, secret)

    # -- in the calling thread, before the sockets bind or connect ---------------------------------
    def open(self, plans: Sequence[SocketPlan]) -> None:
        """Bind the ZAP handler's socket, when a socket of ``plans`` is a CURVE server."""
        for plan in plans:
            if plan.curve_server:
                self.allowed[plan.name.encode()] = frozenset(z85.decode(k) for k in plan.allow)
        if self.allowed:
            zap: zmq.Socket[Any] = self.ctx.socket(zmq.REP)
            zap.linger = 0
            try:
                zap.bind(ZAP_ENDPOINT)
            except zmq.ZMQError as exc:
                zap.close()
                raise RunError(f"cannot start the ZAP handler on {ZAP_ENDPOINT}: "
                               f"{zmq.strerror(exc.errno or 0)}") from None
            self._zap = zap

    def give_keys(self, sock: zmq.Socket[Any]) -> None:
        """The node's key pair: from now on, ``sock``'s binds and connects use CURVE."""
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)

    def monitor(self, sock: zmq.Socket[Any], plan: SocketPlan) -> None:
        """Watch ``sock``'s handshakes; call before its first bind or connect."""
        events = (_SERVER_EVENTS if plan.curve_server else 0) | (
            _CLIENT_EVENTS if any(plan.serverkeys) else 0)
        address = f"inproc://topo-monitor.{next(_monitor_ids)}"
        sock.monitor(address, events)
        mon: zmq.Socket[Any] = self.ctx.socket(zmq.PAIR)
        mon.linger = 0
        mon.connect(address)
        self._monitors[mon] = (plan.name, plan.curve_server, frozenset(plan.connect))

    @staticmethod
    def as_server(sock: zmq.Socket[Any], plan: SocketPlan) -> None:
        sock.setsockopt(zmq.ZAP_DOMAIN, plan.name.encode())
        # Fail closed: without this, libzmq lets every CURVE client in when no ZAP handler
        # answers (the thread ended, or has not bound yet).
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        sock.setsockopt(zmq.CURVE_SERVER, 1)

    @staticmethod
    def as_client(sock: zmq.Socket[Any], serverkey: str) -> None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, serverkey.encode("ascii"))

    # -- the thread -------------------------------------------------------------------------------
    def start(self) -> None:
        """Hand the ZAP socket and the monitors to the node's CURVE thread."""
        address = f"inproc://topo-curve-wake.{next(_monitor_ids)}"
        wake: zmq.Socket[Any] = self.ctx.socket(zmq.PAIR)
        wake.linger = 0
        wake.bind(address)
        peer: zmq.Socket[Any] = self.ctx.socket(zmq.PAIR)
        peer.linger = 0
        peer.connect(address)
        self._wake = wake
        self._thread = threading.Thread(target=self._loop, args=(peer,),
                                        name=f"topo-curve-{self.label}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """End the thread (it closes its sockets); safe to call more than once."""
        thread, wake = self._thread, self._wake
        self._thread = self._wake = None
        if wake is not None:
            with contextlib.suppress(zmq.ZMQError):
                wake.send(b"", zmq.NOBLOCK)
        if thread is not None:
            thread.join(timeout)
        if wake is not None:
            wake.close(linger=0)
        if thread is None:  # never started: the sockets are still ours
            self._close_own()

    def _close_own(self) -> None:
        for s in [self._zap, *self._monitors]:
            if s is not None:
                s.close(linger=0)
        self._zap = None
        self._monitors = {}

    def _loop(self, wake: zmq.Socket[Any]) -> None:
        poller = zmq.Poller()
        poller.register(wake, zmq.POLLIN)
        zap = self._zap
        if zap is not None:
            poller.register(zap, zmq.POLLIN)
        for mon in self._monitors:
            poller.register(mon, zmq.POLLIN)
        try:
            while True:
                for sock, _ in poller.poll():
                    if sock is wake:
                        return
                    try:
                        if sock is zap:
                            self._answer(zap)
                        else:
                            self._event(sock)
                    except zmq.ContextTerminated:
                        raise
                    except Exception:  # noqa: BLE001 - one bad message must not end the handler
                        continue
        except zmq.ContextTerminated:
            pass
        finally:
            wake.close(linger=0)
            self._close_own()

    # -- ZAP --------------------------------------------------------------------------------------
    def _answer(self, zap: zmq.Socket[Any]) -> None:
        frames = zap.recv_multipart()
        try:
            status, text = self.decide(frames)
        except Exception:  # noqa: BLE001 - a REP must answer; when in doubt, refuse
            status, text = b"500", b"internal error"
        request_id = frames[1] if len(frames) > 1 else b""
        zap.send_multipart([b"1.0", request_id, status, text, b"", b""])

    def decide(self, frames: Sequence[bytes]) -> tuple[bytes, bytes]:
        """A ZAP request -> (status code, status text); a refusal is said in the log."""
        if len(frames) < 6 or frames[0] != b"1.0":
            return b"500", b"malformed ZAP request"
        domain, address, mechanism = frames[2], frames[3], frames[5]
        allowed = self.allowed.get(domain)
        if allowed is None:
            # Not one of topo's sockets (one the node made itself): what libzmq does
            # when no handler runs.
            return b"200", b"OK"
        key = frames[6] if mechanism == b"CURVE" and len(frames) > 6 else b""
        if key in allowed:
            return b"200", b"OK"
        peer = address.decode(errors="replace") or "an unknown address"
        shown = z85.encode(key).decode() if len(key) == 32 else mechanism.decode(errors="replace")
        self.rate_limited(("zap", address), (
            f"WARNING {domain.decode(errors='replace')}: refused a client from {peer} "
            f"(public key {shown}): it is not a node of this topology that connects to this "
            "socket, nor in security.allow or --allow"))
        return b"400", b"not allowed"

    # -- monitors ---------------------------------------------------------------------------------
    def _event(self, mon: zmq.Socket[Any]) -> None:
        frames = mon.recv_multipart()
        if len(frames) < 2 or len(frames[0]) < 6:
            return
        event, value = struct.unpack("=HI", frames[0][:6])
        name, server, connects = self._monitors.get(mon, ("?", False, frozenset()))
        endpoint = frames[1].decode(errors="replace")
        # A socket that binds and connects: an event on one of its connects is the client's.
        self.on_event(name, server and endpoint not in connects, event, value, endpoint)

    def on_event(self, name: str, server: bool, event: int, value: int, endpoint: str) -> None:
        """One monitor event of socket ``name`` in words, when it says something went wrong."""
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if self._failing.pop((name, endpoint), 0):
                self.say(f"INFO {name}: the CURVE handshake with {endpoint} succeeded")
            return
        if server:
            if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self.rate_limited(("server", name, endpoint, value), (
                    f"WARNING {name}: refused a client on {endpoint}: {protocol_reason(value)}"))
            return
        key = (name, endpoint)
        count = self._failing.get(key, 0) + 1
        self._failing[key] = count
        reason = client_reason(event, value)
        if count == 1:
            self._last[("client", name, endpoint)] = self.clock()
            self.say(f"WARNING {name}: the CURVE handshake with {endpoint} failed: {reason}; "
                     "libzmq keeps retrying")
        else:
            self.rate_limited(("client", name, endpoint), (
                f"WARNING {name}: the CURVE handshake with {endpoint} still fails "
                f"({count} attempts): {reason}"), every=CLIENT_REPEAT_EVERY)

    def rate_limited(self, key: Any, line: str, *, every: float = SERVER_LOG_EVERY) -> None:
        """Say ``line`` unless ``key`` was said less than ``every`` seconds ago (and at most
        ``_MAX_LINES_PER_SECOND`` lines a second in all)."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < every:
            return
        start, said = self._second
        if now - start >= 1.0:
            start, said = now, 0
        if said >= _MAX_LINES_PER_SECOND:
            return
        self._second = (start, said + 1)
        if len(self._last) > 4096:  # a long scan: forget the oldest peers
            for old in list(self._last)[:2048]:
                del self._last[old]
        self._last[key] = now
        self.say(line)
