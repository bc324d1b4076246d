"""The built-in roles (docs/reference.md#built-in-roles): node functions that need no code.

    proxy    zmq.proxy(frontend, backend, capture?): libzmq's own device, not a Python loop
    echo     one socket: every message goes back where it came from; or `in` -> `out`
    printer  prints every message its sockets receive, one line each: `socket: frame | frame`
    ticker   sends `payload` (with `topic` first, if set) every `interval`, `count` times

The validator (``spec/checks/roles.py``) holds the sockets each role may have; these
functions still answer a wrong set with a sentence and exit status 2, for a
plan that was not validated. All of them end with status 0 on the node's stop
signal, which interrupts the blocking call they sit in (see ``Node``), libzmq's
own proxy loop included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from orchestrator import units
from orchestrator.child.watch import ONE

if TYPE_CHECKING:
    from orchestrator.child.node import Node

DEFAULT_PAYLOAD = "tick {n}"
_FLUSH_LINGER_MS = 1000  # how long a finished ticker waits for its last messages to leave


def proxy(node: Node) -> int:
    socks = node.sockets
    if "frontend" not in socks or "backend" not in socks:
        node.log.error("the proxy role needs sockets named frontend and backend")
        return 2
    front, back, capture = socks["frontend"], socks["backend"], socks.get("capture")
    watch = node.watch
    if watch is None:
        zmq.proxy(front, back, capture)
        return 0
    # libzmq's steerable proxy: the node's watch reads its STATISTICS, and ends it
    # (TERMINATE) when a tap is attached; then messages cross here, in Python, through
    # the counting and tapped sockets, until the last tap goes.
    control = watch.for_proxy()
    tapped = watch.proxy_tapped
    assert tapped is not None  # for_proxy made it
    while True:
        watch.proxy_in_c = True
        zmq.proxy_steerable(front, back, capture, control)
        _forward_while_tapped(front, back, capture, tapped)


def more_frames(into: zmq.Socket[Any], out: zmq.Socket[Any], extra: int) -> None:
    """Count frames, not messages, as libzmq's proxy does: its counts go on the same way."""
    if extra:
        into.__dict__["_c"][1] += extra * ONE
        out.__dict__["_c"][0] += extra * ONE


def _forward_while_tapped(front: zmq.Socket[Any], back: zmq.Socket[Any],
                          capture: zmq.Socket[Any] | None, tapped: Any) -> None:
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    other = {front: back, back: front}
    while tapped.is_set():
        for sock, _ in poller.poll(100):
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                other[sock].send_multipart(frames, copy=False)
                if capture is not None:
                    capture.send_multipart(frames, copy=False)
                more_frames(sock, other[sock], len(frames) - 1)


def echo(node: Node) -> int:
    socks = node.sockets
    if len(socks) == 1:
        src = dst = next(iter(socks.values()))
    elif set(socks) == {"in", "out"}:
        src, dst = socks["in"], socks["out"]
    else:
        node.log.error("the echo role needs one socket, or two named in and out")
        return 2
    while True:
        dst.send_multipart(src.recv_multipart(copy=False), copy=False)


def printer(node: Node) -> int:
    if not node.sockets:
        node.log.error("the printer role needs at least one socket to print from")
        return 2
    names = {sock: name for name, sock in node.sockets.items()}
    poller = zmq.Poller()
    for sock in names:
        poller.register(sock, zmq.POLLIN)
    while True:
        for sock, _ in poller.poll():
            while True:  # drain: one wake-up may stand for many messages
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                print(f"{names[sock]}: {format_frames(frames)}", flush=True)


def format_frames(frames: list[bytes]) -> str:
    """``frame | frame``: printable UTF-8 as text, anything else as ``0x`` hex."""
    return " | ".join(format_frame(f) for f in frames)


def format_frame(frame: bytes) -> str:
    try:
        text = frame.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + frame.hex()
    return text if text.isprintable() else "0x" + frame.hex()


def ticker(node: Node) -> int:
    if len(node.sockets) != 1:
        node.log.error("the ticker role needs exactly one socket to send on")
        return 2
    (name, sock), = node.sockets.items()
    try:
        interval, count, topic, payload = _ticker_params(node.params)
        payload.format_map(_fields(node, 1))
    except KeyError as exc:
        node.log.error(f"ticker {node.full_name}: the payload names {{{exc.args[0]}}}; "
                       "the fields are {n}, {node}, {replica} and {time}")
        return 2
    except (ValueError, IndexError, TypeError, AttributeError) as exc:
        node.log.error(f"ticker {node.full_name}: {exc}")
        return 2
    expects_reply = sock.type == zmq.REQ
    start = time.monotonic()
    n = 0
    while count == 0 or n < count:
        n += 1
        # A fixed schedule from the start: a slow send does not make the ticks drift.
        if node.stopping.wait(max(0.0, start + n * interval - time.monotonic())):
            return 0
        frames = [payload.format_map(_fields(node, n)).encode()]
        if topic is not None:
            frames.insert(0, topic.encode())
        sock.send_multipart(frames)
        if expects_reply:
            sock.recv_multipart()
    if not any(p.name == name and "linger" in p.options for p in node.spec.sockets):
        sock.setsockopt(zmq.LINGER, _FLUSH_LINGER_MS)  # let the last ticks leave before exit
    return 0


def _ticker_params(params: Any) -> tuple[float, int, str | None, str]:
    interval = units.parse_duration(params.get("interval", 1.0))
    count = params.get("count", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a whole number, zero or more (got {count!r})")
    topic = params.get("topic")
    payload = params.get("payload", DEFAULT_PAYLOAD)
    if topic is not None and not isinstance(topic, str):
        topic = str(topic)
    if not isinstance(payload, str):
        payload = str(payload)
    return interval, count, topic, payload


def _fields(node: Node, n: int) -> dict[str, object]:
    # deferred: datetime only in a ticker, not in the supervisor every node is forked from
    import datetime

    now = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
    return {"n": n, "node": node.name, "replica": node.replica, "time": now}


ROLES: dict[str, Callable[[Node], int | None]] = {
    "proxy": proxy,
    "echo": echo,
    "printer": printer,
    "ticker": ticker,
}
