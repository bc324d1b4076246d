"""Watching a node from inside (child/watch.py), in this process: counters, taps, events.

Real sockets over inproc on a private context: a ``WatchedSocket`` counts exactly one
message per message however it is sent or read, a tap gets a copy of each, both ways,
and a tap that cannot keep up is told what it missed. Monitor events go through
``Watch.on_event`` by hand (no thread), with a fake clock, and come out of a real
socket pair as the supervisor reads them: ``E`` and JSON.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.child import watch
from orchestrator.child.curve import client_reason, protocol_reason
from orchestrator.child.watch import (
    SAY_EVERY,
    TAP_HEADER,
    Summary,
    TappedSocket,
    Taps,
    Watch,
    WatchedSocket,
    counts,
    describe,
    failure_reason,
    repeated,
)
from orchestrator.plan import SocketPlan
from tests.conftest import wait_until
from tests.fakes import FakeClock

# When a hypothesis test fails, its report imports libcst, whose import warns (through
# mypy_extensions); under the suite's "error" filter that would end the whole session.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

_eps = itertools.count()


def endpoint(what: str) -> str:
    return f"inproc://test-watch-{what}.{next(_eps)}"


@dataclass
class Pair:
    """Two watched PAIR sockets, ``a`` bound and ``b`` connected to it."""

    ctx: zmq.Context[Any]
    watch: Watch
    a: zmq.Socket[Any]
    b: zmq.Socket[Any]
    pulls: list[zmq.Socket[Any]] = field(default_factory=list)

    def pull(self, rcvhwm: int = 1000) -> zmq.Socket[Any]:
        """A tap's PULL (what `topo tap` binds), on an endpoint of its own."""
        pull: zmq.Socket[Any] = self.ctx.socket(zmq.PULL)
        pull.linger = 0
        pull.rcvhwm = rcvhwm  # before the bind: inproc takes the bind's options
        pull.bind(endpoint("tap"))
        self.pulls.append(pull)  # closed by the pair: a socket left to the GC warns
        return pull


@contextmanager
def watched_pair(replica: int = 3) -> Iterator[Pair]:
    ctx: zmq.Context[Any] = zmq.Context()
    w = Watch(ctx, replica, None)
    ep = endpoint("pair")
    a = w.socket(SocketPlan("a", "PAIR", bind=(ep,)))
    b = w.socket(SocketPlan("b", "PAIR", connect=(ep,)))
    a.bind(ep)
    b.connect(ep)
    p = Pair(ctx, w, a, b)
    try:
        yield p
    finally:
        for pull in p.pulls:
            pull.close(linger=0)
        w.stop()  # no thread: closes the monitors and the taps' PUSH sockets
        for s in w.sockets.values():  # made by hand, not by ctx.socket: ctx does not know them
            s.close(linger=0)
        ctx.destroy(linger=0)


@pytest.fixture
def pair() -> Iterator[Pair]:
    with watched_pair() as p:
        yield p


def where(pull: zmq.Socket[Any]) -> str:
    """The endpoint a PULL is bound to (what the tap request names)."""
    return pull.get_string(zmq.LAST_ENDPOINT)


def recv_tap(pull: zmq.Socket[Any]) -> tuple[bytes, float, int, list[bytes]]:
    """One tapped message: direction, time, replica (or dropped count), frames."""
    assert pull.poll(2000), "the tap got nothing"
    frames = pull.recv_multipart()
    direction, ts, number = TAP_HEADER.unpack(frames[0])
    return direction, ts, number, frames[1:]


# -- counting --------------------------------------------------------------------------------------


def test_a_socket_made_by_watch_is_a_watched_socket_starting_from_nothing(pair: Pair) -> None:
    assert type(pair.a) is WatchedSocket and type(pair.b) is WatchedSocket
    assert counts(pair.a) == [0, 0, 0, 0]
    assert pair.watch.sockets == {"a": pair.a, "b": pair.b}
    assert pair.watch.plans["b"].connect == pair.watch.plans["a"].bind


def test_send_and_recv_count_messages_and_bytes(pair: Pair) -> None:
    pair.a.send(b"hello")
    assert pair.b.recv() == b"hello"
    pair.a.send_string("four")
    assert pair.b.recv_string() == "four"
    pair.b.send(b"")  # an empty message is a message
    assert pair.a.recv() == b""
    # [messages in, bytes in, messages out, bytes out]
    assert counts(pair.a) == [1, 0, 2, 9]
    assert counts(pair.b) == [2, 9, 1, 0]


def test_multipart_is_one_message_of_the_summed_bytes(pair: Pair) -> None:
    pair.a.send_multipart([b"topic", b"", b"payload!"])
    assert pair.b.recv_multipart() == [b"topic", b"", b"payload!"]
    pair.a.send(b"ab", zmq.SNDMORE)  # by hand, frame by frame
    pair.a.send(b"cde")
    assert pair.b.recv_multipart() == [b"ab", b"cde"]
    assert counts(pair.a) == [0, 0, 2, 18]
    assert counts(pair.b) == [2, 18, 0, 0]


@pytest.mark.parametrize("ask", ["getsockopt", "get", "rcvmore"])
def test_reading_frame_by_frame_with_rcvmore_counts_one_message(pair: Pair, ask: str) -> None:
    def more(s: zmq.Socket[Any]) -> bool:
        if ask == "rcvmore":
            return bool(s.rcvmore)
        return bool(getattr(s, ask)(zmq.RCVMORE))

    for _ in range(2):
        pair.a.send_multipart([b"x", b"yy", b"zzz"])
        parts = [pair.b.recv()]
        while more(pair.b):
            parts.append(pair.b.recv())
        assert parts == [b"x", b"yy", b"zzz"]
    assert counts(pair.b) == [2, 12, 0, 0]


def test_frames_without_copy_are_counted(pair: Pair) -> None:
    pair.a.send(zmq.Frame(b"abcd"), copy=False)
    got = pair.b.recv(copy=False)
    assert isinstance(got, zmq.Frame) and got.bytes == b"abcd"
    pair.a.send_multipart([zmq.Frame(b"12"), zmq.Frame(b"345")], copy=False)
    parts = pair.b.recv_multipart(copy=False)
    assert [p.bytes for p in parts] == [b"12", b"345"]
    assert counts(pair.a) == [0, 0, 2, 9]
    assert counts(pair.b) == [2, 9, 0, 0]


def test_what_does_not_go_is_not_counted() -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    sock = WatchedSocket(ctx, zmq.PAIR)
    sock.__dict__["_c"] = [0, 0]
    try:
        with pytest.raises(zmq.Again):
            sock.send(b"nobody there", zmq.NOBLOCK)
        with pytest.raises(zmq.Again):
            sock.recv(zmq.NOBLOCK)
        with pytest.raises(zmq.Again):
            sock.recv_multipart(zmq.NOBLOCK)
        assert counts(sock) == [0, 0, 0, 0]
    finally:
        sock.close(linger=0)
        ctx.term()


def test_counts_order_and_a_plain_socket() -> None:
    class Fake:
        _c = [(2 << 64) + 17, (5 << 64) + 300]  # [out, in]

    assert counts(Fake()) == [5, 300, 2, 17]  # type: ignore[arg-type]
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        plain: zmq.Socket[Any] = ctx.socket(zmq.PAIR)
        assert counts(plain) == [0, 0, 0, 0]  # not topo's: nothing is known
    finally:
        ctx.destroy(linger=0)


FRAMES = st.lists(st.binary(max_size=48), min_size=1, max_size=4)
TRAFFIC = st.lists(
    st.tuples(st.booleans(), FRAMES,
              st.sampled_from(["send_multipart", "send_frames", "frame_objects"]),
              st.sampled_from(["recv_multipart", "getsockopt", "rcvmore", "no_copy"])),
    max_size=12)


def send_as(s: zmq.Socket[Any], frames: list[bytes], how: str) -> None:
    if how == "send_multipart":
        s.send_multipart(frames)
    elif how == "send_frames":
        for f in frames[:-1]:
            s.send(f, zmq.SNDMORE)
        s.send(frames[-1])
    else:
        s.send_multipart([zmq.Frame(f) for f in frames], copy=False)


def recv_as(s: zmq.Socket[Any], how: str) -> list[bytes]:
    if how == "recv_multipart":
        return list(s.recv_multipart())
    if how == "no_copy":
        return [f.bytes for f in s.recv_multipart(copy=False)]
    parts = [s.recv()]
    while s.getsockopt(zmq.RCVMORE) if how == "getsockopt" else s.rcvmore:
        parts.append(s.recv())
    return parts


def expected_counts(traffic: list[tuple[bool, list[bytes], str, str]]) -> tuple[list[int],
                                                                                 list[int]]:
    a, b = [0, 0, 0, 0], [0, 0, 0, 0]
    for forward, frames, _, _ in traffic:
        src, dst = (a, b) if forward else (b, a)
        size = sum(map(len, frames))
        src[2] += 1
        src[3] += size
        dst[0] += 1
        dst[1] += size
    return a, b


@settings(max_examples=40, deadline=None)
@given(TRAFFIC)
def test_any_traffic_gives_exact_counts(traffic: list[tuple[bool, list[bytes], str, str]]
                                        ) -> None:
    with watched_pair() as p:
        for forward, frames, how_send, how_recv in traffic:
            src, dst = (p.a, p.b) if forward else (p.b, p.a)
            send_as(src, frames, how_send)
            assert recv_as(dst, how_recv) == frames
        assert (counts(p.a), counts(p.b)) == expected_counts(traffic)


@settings(max_examples=25, deadline=None)
@given(TRAFFIC)
def test_tapped_traffic_gives_the_same_counts_and_a_copy_of_each_message(
        traffic: list[tuple[bool, list[bytes], str, str]]) -> None:
    with watched_pair(replica=1) as p:
        taps = {"a": p.pull(), "b": p.pull()}
        for name, pull in taps.items():
            p.watch.set_taps(name, [where(pull)])
        for forward, frames, how_send, how_recv in traffic:
            (src, s_name), (dst, d_name) = (((p.a, "a"), (p.b, "b")) if forward
                                            else ((p.b, "b"), (p.a, "a")))
            send_as(src, frames, how_send)
            assert recv_as(dst, how_recv) == frames
            assert recv_tap(taps[s_name])[::3] == (b"o", frames)
            assert recv_tap(taps[d_name])[::3] == (b"i", frames)
        assert (counts(p.a), counts(p.b)) == expected_counts(traffic)


# -- taps ------------------------------------------------------------------------------------------


def test_a_tap_gets_each_message_both_ways_with_its_header(pair: Pair) -> None:
    pull = pair.pull()
    pair.watch.set_taps("b", [where(pull)])
    assert type(pair.b) is TappedSocket and type(pair.a) is WatchedSocket
    before = time.time()
    pair.a.send_multipart([b"topic", b"\x00\x01"])
    assert pair.b.recv_multipart() == [b"topic", b"\x00\x01"]
    pair.b.send(b"re", zmq.SNDMORE)  # frame by frame: one tapped message
    pair.b.send(b"ply")
    assert pair.a.recv_multipart() == [b"re", b"ply"]
    pair.a.send(b"one")
    assert pair.b.recv() == b"one"
    after = time.time()
    seen = [recv_tap(pull) for _ in range(3)]
    assert [(d, r, f) for d, _, r, f in seen] == [
        (b"i", 3, [b"topic", b"\x00\x01"]), (b"o", 3, [b"re", b"ply"]), (b"i", 3, [b"one"])]
    assert all(before <= ts <= after for _, ts, _, _ in seen)
    assert pair.watch.stats()["b"] == {"counts": [2, 10, 1, 5], "tap_dropped": 0}


def test_reading_a_tapped_socket_frame_by_frame_still_counts_one_message(pair: Pair) -> None:
    pull = pair.pull()
    pair.watch.set_taps("b", [where(pull)])
    pair.a.send_multipart([b"x", b"yy", b"zzz"])
    parts = [pair.b.recv()]
    while pair.b.getsockopt(zmq.RCVMORE):
        parts.append(pair.b.recv())
    assert parts == [b"x", b"yy", b"zzz"]
    assert recv_tap(pull)[3] == [b"x", b"yy", b"zzz"]  # the tap's copy is one message
    assert counts(pair.b) == [1, 6, 0, 0]  # and so is the count


def test_the_last_tap_gone_the_socket_is_watched_only_and_nothing_is_copied(pair: Pair) -> None:
    pull = pair.pull()
    ep = where(pull)
    pair.watch.set_taps("a", [ep])
    pair.a.send(b"seen")
    assert pair.b.recv() == b"seen"
    assert recv_tap(pull)[3] == [b"seen"]
    pair.watch.set_taps("a", [])
    assert type(pair.a) is WatchedSocket
    assert pair.watch.taps["a"].pushes == {}
    pair.a.send(b"unseen")
    assert pair.b.recv() == b"unseen"
    pair.b.send(b"back")
    assert pair.a.recv() == b"back"
    assert pull.poll(100) == 0
    assert counts(pair.a) == [1, 4, 2, 10]  # counting goes on


def test_two_taps_each_get_a_copy_and_one_can_go(pair: Pair) -> None:
    one, two = pair.pull(), pair.pull()
    eps = [where(one), where(two)]
    pair.watch.set_taps("a", eps)
    pair.a.send(b"both")
    assert pair.b.recv() == b"both"
    assert recv_tap(one)[3] == [b"both"] and recv_tap(two)[3] == [b"both"]
    pair.watch.set_taps("a", eps[1:])
    assert type(pair.a) is TappedSocket
    assert list(pair.watch.taps["a"].pushes) == eps[1:]
    pair.a.send(b"second only")
    assert pair.b.recv() == b"second only"
    assert recv_tap(two)[3] == [b"second only"]
    assert one.poll(100) == 0


def test_a_tap_on_a_socket_the_node_has_not_is_ignored(pair: Pair) -> None:
    pair.watch.set_taps("nope", [endpoint("tap")])
    assert pair.watch.taps == {}
    assert type(pair.a) is WatchedSocket and type(pair.b) is WatchedSocket


def test_a_tap_that_cannot_take_is_told_how_many_it_missed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "TAP_HWM", 1)
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        pull: zmq.Socket[Any] = ctx.socket(zmq.PULL)
        pull.linger = 0
        pull.rcvhwm = 1
        ep = endpoint("slow-tap")
        pull.bind(ep)
        taps = Taps(ctx, 4)
        taps.set([ep])
        assert taps.pushes[ep].sndhwm == 1
        for i in range(50):  # nobody reads: most cannot be taken, and none blocks
            taps.message(b"o", [b"%d" % i])
        dropped = taps.dropped_total
        assert dropped > 0 and taps.dropped[ep] == dropped

        queued = []
        while pull.poll(50):
            queued.append(pull.recv_multipart())
        assert len(queued) + dropped == 50
        assert all(TAP_HEADER.unpack(m[0])[0] == b"o" for m in queued)
        assert [m[1] for m in queued] == [b"%d" % i for i in range(len(queued))]

        # Now the tap reads again: the next message that goes is preceded by the count.
        got: list[list[bytes]] = []

        def through() -> bool:
            taps.message(b"i", [b"after"])
            while pull.poll(20):
                got.append(pull.recv_multipart())
            return any(m[1:] == [b"after"] for m in got)

        wait_until(through, 2.0, "a message through the tap again")
        heads = [TAP_HEADER.unpack(m[0]) for m in got]
        assert heads[0][0] == b"D" and got[0][1:] == []
        assert heads[0][2] >= dropped  # (more may have been dropped while it caught up)
        assert sum(n for d, _, n in heads if d == b"D") == taps.dropped_total
        assert heads[1][0] == b"i" and heads[1][2] == 4 and got[1][1:] == [b"after"]
        assert taps.dropped[ep] == 0  # said: counted afresh
        taps.close()
        assert taps.pushes == {}
    finally:
        ctx.destroy(linger=0)


def test_what_a_tap_dropped_is_in_the_stats(monkeypatch: pytest.MonkeyPatch, pair: Pair
                                            ) -> None:
    monkeypatch.setattr(watch, "TAP_HWM", 1)
    pull = pair.pull(rcvhwm=1)  # never read: the tap's pipe holds two at most
    pair.watch.set_taps("a", [where(pull)])
    for _ in range(20):
        pair.a.send(b"m")
        assert pair.b.recv() == b"m"  # the socket itself never waits for its tap
    stats = pair.watch.stats()
    assert stats["a"]["counts"] == [0, 0, 20, 20]
    assert stats["a"]["tap_dropped"] == pair.watch.taps["a"].dropped_total > 0
    assert stats["b"] == {"counts": [20, 20, 0, 0], "tap_dropped": 0}


# -- events said once, then summed up --------------------------------------------------------------

KEY = ("out", "tcp://h:1", "retrying")
EVENT = {"socket": "out", "event": "retrying", "endpoint": "tcp://h:1", "text": "cannot"}


def test_summary_says_the_first_then_holds_and_sums_up() -> None:
    clock = FakeClock(100.0)
    s = Summary(clock)
    assert s.next_due() is None
    assert s.add(KEY, EVENT) == EVENT  # the first: at once
    for _ in range(4):
        clock.t += 1.0
        assert s.add(KEY, EVENT) is None  # held, counted
    assert s.next_due() == 100.0 + SAY_EVERY
    clock.t = 100.0 + SAY_EVERY - 0.01
    assert s.due() == []
    clock.t = 100.0 + SAY_EVERY
    said = s.due()
    # Said (even though the held events were not), and its peers were counted already.
    assert said == [{**EVENT, "repeat": 4, "peers": 0, "say": True,
                     "text": "still cannot connect to tcp://h:1 (4 more attempts); retrying"}]
    assert s.next_due() is None and s.due() == []
    # The window starts again from that summary: the next within it is held.
    clock.t += 1.0
    assert s.add(KEY, EVENT) is None
    assert s.next_due() == 100.0 + 2 * SAY_EVERY


def test_summary_after_a_quiet_while_says_at_once_again() -> None:
    clock = FakeClock(0.0)
    s = Summary(clock)
    assert s.add(KEY, EVENT) is not None
    clock.t = SAY_EVERY + 5
    assert s.add(KEY, EVENT) == EVENT
    assert s.next_due() is None


def test_summary_keys_are_apart() -> None:
    clock = FakeClock(0.0)
    s = Summary(clock)
    other = ("out", "tcp://h:2", "retrying")
    assert s.add(KEY, EVENT) is not None
    assert s.add(other, {**EVENT, "endpoint": "tcp://h:2"}) is not None
    clock.t = 3.0
    assert s.add(other, {**EVENT, "endpoint": "tcp://h:2"}) is None
    assert s.next_due() == SAY_EVERY
    clock.t = SAY_EVERY
    assert [d["endpoint"] for d in s.due()] == ["tcp://h:2"]


def test_summary_forget_says_what_was_held_at_once() -> None:
    clock = FakeClock(0.0)
    s = Summary(clock)
    assert s.forget(KEY) is None  # nothing known
    s.add(KEY, EVENT)
    assert s.forget(KEY) is None  # said, nothing held
    assert s.add(KEY, EVENT) == EVENT  # forgotten: the next is news again
    s.add(KEY, EVENT)
    s.add(KEY, EVENT)
    held = s.forget(KEY)
    assert held is not None and held["repeat"] == 2
    assert s.next_due() is None and s.due() == []


@pytest.mark.parametrize(("kind", "count", "text"), [
    ("retrying", 3, "still cannot connect to ep (3 more attempts); retrying"),
    ("accepted", 1, "accepted 1 more peer on ep"),
    ("accepted", 2, "accepted 2 more peers on ep"),
    ("disconnected", 1, "1 more disconnect on ep"),
    ("disconnected", 5, "5 more disconnects on ep"),
    ("connected", 2, "connected to ep again (2 times)"),
    ("bind failed", 4, "cannot bind ep: boom (4 more times)"),
])
def test_repeated_in_words(kind: str, count: int, text: str) -> None:
    assert repeated({"event": kind, "endpoint": "ep", "text": "cannot bind ep: boom"},
                    count) == text


@pytest.mark.parametrize(("kind", "bound", "text"), [
    ("connected", False, "connected to ep"),
    ("retrying", False, "cannot connect to ep yet (nobody accepts there); retrying"),
    ("accepted", True, "accepted a peer on ep"),
    ("disconnected", True, "a peer on ep went away"),
    ("disconnected", False, "disconnected from ep"),
    ("handshake succeeded", False, "handshake with ep succeeded"),
    ("handshake failed", False, "handshake with ep failed: why"),
])
def test_describe_in_words(kind: str, bound: bool, text: str) -> None:
    assert describe(kind, "ep", 0, bound=bound, reason="why") == text


def test_describe_failures_name_the_errno() -> None:
    import errno

    assert describe("bind failed", "tcp://*:80", errno.EACCES, bound=True) == (
        f"cannot bind tcp://*:80: {zmq.strerror(errno.EACCES)}")
    assert describe("accept failed", "tcp://*:80", errno.EMFILE, bound=True) == (
        f"cannot accept on tcp://*:80: {zmq.strerror(errno.EMFILE)}")


def test_failure_reasons_without_curve() -> None:
    assert failure_reason(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                          zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH, curve=False) == (
        "the peer uses another security mechanism (CURVE on one side, none on the other)")
    assert failure_reason(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                          zmq.PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND, curve=False) == (
        "a ZMTP protocol error (0x10000001)")
    assert failure_reason(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, curve=False) == (
        "the peer refused this socket (ZAP status 400)")
    assert failure_reason(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 104, curve=False) == (
        f"the peer closed the connection during the handshake ({zmq.strerror(104)})")
    assert "does not speak CURVE" in failure_reason(
        zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH,
        curve=True)


def test_failure_reasons_seen_by_the_binding_side() -> None:
    for curve in (False, True):
        assert failure_reason(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, curve=curve,
                              server=True) == (
            "this socket refused the client's key (ZAP status 400): it is not allowed")
    crypto = zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC
    assert failure_reason(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, crypto, curve=True,
                          server=True) == protocol_reason(crypto)
    # The connecting side of a CURVE link: CURVE's words for the client.
    assert failure_reason(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, curve=True) == client_reason(
        zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400)
    assert "the server refused this node's key" in client_reason(
        zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400)
    assert failure_reason(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32, curve=True) == (
        client_reason(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32))


# -- monitor events, as the supervisor reads them --------------------------------------------------

OUT = "tcp://127.0.0.1:5555"  # where "out" connects
IN = "tcp://0.0.0.0:6666"  # where "in" binds


@dataclass
class Channel:
    watch: Watch
    clock: FakeClock
    peer: socket.socket  # the supervisor's end

    def records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            try:
                data = self.peer.recv(1 << 16)
            except BlockingIOError:
                return out
            assert data[:1] == b"E", data
            out.append(json.loads(data[1:]))

    def texts(self) -> list[str]:
        return [str(r["text"]) for r in self.records() if r["say"]]


@pytest.fixture
def channel() -> Iterator[Channel]:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setblocking(False)
    clock = FakeClock(50.0)
    ctx: zmq.Context[Any] = zmq.Context()
    w = Watch(ctx, 0, mine.fileno(), clock=clock)
    w.plans["out"] = SocketPlan("out", "PUSH", connect=(OUT,))
    w.plans["in"] = SocketPlan("in", "PULL", bind=(IN,))
    try:
        yield Channel(w, clock, theirs)
    finally:
        mine.close()
        theirs.close()
        ctx.term()


def test_connected_adds_a_peer_and_is_said(channel: Channel) -> None:
    channel.watch.on_event("out", zmq.EVENT_CONNECTED, 12, OUT)
    assert channel.records() == [{"socket": "out", "event": "connected", "endpoint": OUT,
                                  "peers": 1, "text": f"connected to {OUT}", "say": True}]


def test_retrying_is_said_once_then_held_and_connected_says_after_how_many(channel: Channel
                                                                          ) -> None:
    w = channel.watch
    w.on_event("out", zmq.EVENT_CONNECT_RETRIED, 100, OUT)
    assert channel.records() == [{
        "socket": "out", "event": "retrying", "endpoint": OUT, "peers": 0, "say": True,
        "text": f"cannot connect to {OUT} yet (nobody accepts there); retrying"}]
    for _ in range(2):
        channel.clock.t += 0.1
        w.on_event("out", zmq.EVENT_CONNECT_RETRIED, 100, OUT)
    assert channel.records() == []  # held: nothing goes
    channel.clock.t += 0.1
    w.on_event("out", zmq.EVENT_CONNECTED, 12, OUT)
    (rec,) = channel.records()
    assert rec["peers"] == 1 and rec["say"] is True
    # The first attempt and one per retry (libzmq says CONNECT_RETRIED before each new one).
    assert rec["text"] == f"connected to {OUT} after 4 attempts"
    # The retries' summary went into that line: nothing more is due.
    channel.clock.t += SAY_EVERY
    assert w._summary.due() == [] and w._summary.next_due() is None


def test_retrying_held_is_summed_up_when_due(channel: Channel) -> None:
    w = channel.watch
    for _ in range(5):
        w.on_event("out", zmq.EVENT_CONNECT_RETRIED, 100, OUT)
        channel.clock.t += 1.0
    assert len(channel.records()) == 1
    assert w._summary.next_due() == 50.0 + SAY_EVERY
    channel.clock.t = 50.0 + SAY_EVERY
    (due,) = w._summary.due()
    assert due["repeat"] == 4 and due["say"] is True and due["peers"] == 0
    assert due["text"] == f"still cannot connect to {OUT} (4 more attempts); retrying"


def test_held_accepts_said_later_count_no_peer_twice(channel: Channel) -> None:
    w = channel.watch
    for _ in range(3):
        w.on_event("in", zmq.EVENT_ACCEPTED, 14, "tcp://127.0.0.1:6666")
    records = channel.records()
    assert [r["say"] for r in records] == [True, False, False]  # all go: each is a peer
    assert sum(r["peers"] for r in records) == 3
    channel.clock.t += SAY_EVERY
    w._loop_due()
    (summary,) = channel.records()
    assert summary["say"] is True and summary["peers"] == 0
    assert summary["text"] == "accepted 2 more peers on tcp://127.0.0.1:6666"


def test_disconnected_takes_a_peer_and_says_which_side(channel: Channel) -> None:
    w = channel.watch
    w.on_event("in", zmq.EVENT_ACCEPTED, 14, "tcp://127.0.0.1:6666")
    w.on_event("in", zmq.EVENT_DISCONNECTED, 14, "tcp://127.0.0.1:6666")
    w.on_event("out", zmq.EVENT_CONNECTED, 12, OUT)
    w.on_event("out", zmq.EVENT_DISCONNECTED, 12, OUT)
    assert [(r["socket"], r["event"], r["peers"], r["text"]) for r in channel.records()] == [
        ("in", "accepted", 1, "accepted a peer on tcp://127.0.0.1:6666"),
        ("in", "disconnected", -1, "a peer on tcp://127.0.0.1:6666 went away"),
        ("out", "connected", 1, f"connected to {OUT}"),
        ("out", "disconnected", -1, f"disconnected from {OUT}"),
    ]


def test_repeated_disconnects_still_count_peers_though_not_said(channel: Channel) -> None:
    w = channel.watch
    for _ in range(3):
        w.on_event("in", zmq.EVENT_ACCEPTED, 14, "tcp://127.0.0.1:6666")
        w.on_event("in", zmq.EVENT_DISCONNECTED, 14, "tcp://127.0.0.1:6666")
    recs = channel.records()
    assert sum(r["peers"] for r in recs) == 0 and len(recs) == 6
    assert [r["event"] for r in recs if r["say"]] == ["accepted", "disconnected"]


def test_handshake_succeeded_is_no_news_unless_it_ends_a_failure(channel: Channel) -> None:
    w = channel.watch
    w.on_event("out", zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, OUT)
    assert channel.records() == []
    w.on_event("out", zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
               zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH, OUT)
    reason = "the peer uses another security mechanism (CURVE on one side, none on the other)"
    assert channel.records() == [{
        "socket": "out", "event": "handshake failed", "endpoint": OUT, "peers": 0,
        "reason": reason, "say": True, "text": f"handshake with {OUT} failed: {reason}"}]
    w.on_event("out", zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, OUT)
    (rec,) = channel.records()
    assert rec["say"] is True and rec["text"] == f"handshake with {OUT} succeeded"
    w.on_event("out", zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, OUT)
    assert channel.records() == []


def test_while_a_handshake_fails_its_reconnects_are_not_said(channel: Channel) -> None:
    w = channel.watch
    w.on_event("out", zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, OUT)
    assert channel.texts() == [
        f"handshake with {OUT} failed: the peer refused this socket (ZAP status 400)"]
    for _ in range(3):  # libzmq retries: each connects, fails and drops
        w.on_event("out", zmq.EVENT_CONNECT_RETRIED, 100, OUT)
        w.on_event("out", zmq.EVENT_CONNECTED, 12, OUT)
        w.on_event("out", zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, OUT)
        w.on_event("out", zmq.EVENT_DISCONNECTED, 12, OUT)
    recs = channel.records()
    assert [r for r in recs if r["say"]] == []
    assert sum(r["peers"] for r in recs) == 0  # the peers still add up
    assert {r["event"] for r in recs} == {"connected", "disconnected"}


def test_a_refusal_on_the_binding_side_says_this_socket_refused(channel: Channel) -> None:
    channel.watch.on_event("in", zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, "tcp://127.0.0.1:6666")
    (rec,) = channel.records()
    assert rec["reason"] == (
        "this socket refused the client's key (ZAP status 400): it is not allowed")
    assert rec["text"] == f"handshake with tcp://127.0.0.1:6666 failed: {rec['reason']}"


def test_events_not_reported_and_unknown_sockets(channel: Channel) -> None:
    w = channel.watch
    w.on_event("out", zmq.EVENT_CLOSED, 12, OUT)
    w.on_event("out", zmq.EVENT_CONNECT_DELAYED, 115, OUT)
    assert channel.records() == []
    w.on_event("other", zmq.EVENT_DISCONNECTED, 9, "tcp://x:1")  # no plan: not bound
    assert channel.texts() == ["disconnected from tcp://x:1"]


def test_a_bind_that_fails_is_said_with_its_errno(channel: Channel) -> None:
    import errno

    channel.watch.on_event("in", zmq.EVENT_BIND_FAILED, errno.EADDRINUSE, IN)
    (rec,) = channel.records()
    assert rec["event"] == "bind failed" and rec["peers"] == 0
    assert rec["text"] == f"cannot bind {IN}: {zmq.strerror(errno.EADDRINUSE)}"


def test_without_a_channel_events_go_nowhere() -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        w = Watch(ctx, 0, None)
        w.on_event("out", zmq.EVENT_CONNECTED, 1, OUT)  # no error, nothing to write to
        w._send_event({"socket": "out"})
    finally:
        ctx.term()


# -- the supervisor's requests ---------------------------------------------------------------------


def test_stats_and_tap_requests_over_the_channel(pair: Pair) -> None:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        w = pair.watch
        w.channel = mine.fileno()
        pair.a.send_multipart([b"ab", b"c"])
        assert pair.b.recv_multipart() == [b"ab", b"c"]
        theirs.send(b"S17")
        assert w._command() is True
        data = theirs.recv(1 << 16)
        assert data[:1] == b"S"
        assert json.loads(data[1:]) == {"id": "17", "sockets": {
            "a": {"counts": [0, 0, 1, 3], "tap_dropped": 0},
            "b": {"counts": [1, 3, 0, 0], "tap_dropped": 0}}}

        pull = pair.pull()
        ep = where(pull)
        theirs.send(b"T" + json.dumps({"socket": "b", "taps": [ep], "id": "9"}).encode())
        assert w._command() is True
        assert theirs.recv(1 << 16) == b'A{"id":"9"}'
        assert type(pair.b) is TappedSocket
        theirs.send(b"T" + json.dumps({"socket": "b", "taps": [], "id": ""}).encode())
        assert w._command() is True
        assert type(pair.b) is WatchedSocket
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(1 << 16)  # no id: no answer

        pair.b.send(b"xyz")
        assert pair.a.recv() == b"xyz"
        w.report_final()  # as the node ends: its last counts, answering no request
        data = theirs.recv(1 << 16)
        assert data[:1] == b"S" and json.loads(data[1:]) == {"id": "", "sockets": {
            "a": {"counts": [1, 3, 1, 3], "tap_dropped": 0},
            "b": {"counts": [1, 3, 1, 3], "tap_dropped": 0}}}

        theirs.close()
        assert w._command() is False  # the supervisor is gone
    finally:
        pair.watch.channel = None
        mine.close()
        theirs.close()


@settings(max_examples=200, deadline=None)
@given(rid=st.text(max_size=6), stats=st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.builds(lambda c, t: {"counts": c, "tap_dropped": t},  # (Watch.stats's order)
              st.lists(st.integers(0, 2**70), min_size=4, max_size=4), st.integers(0, 2**40)),
    max_size=4))
def test_a_stats_record_is_what_json_dumps_would_say(
        rid: str, stats: dict[str, dict[str, Any]]) -> None:
    # Written by hand for speed (a node's last counts): it must read back as json's.
    record = watch.stats_record(rid, stats)
    assert record[:1] == b"S"
    assert json.loads(record[1:]) == {"id": rid, "sockets": stats}
    assert record == b"S" + json.dumps({"id": rid, "sockets": stats},
                                       separators=(",", ":")).encode()


SENT = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(obj=SENT)
def test_compact_says_what_json_dumps_says(obj: Any) -> None:
    # Every event and count a node sends goes through it.
    assert watch.compact(obj) == json.dumps(obj, separators=(",", ":"))


def test_compact_refuses_what_it_does_not_know() -> None:
    with pytest.raises(TypeError, match="float is not sent"):
        watch.compact({"x": 1.5})
