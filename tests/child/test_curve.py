"""A node's CURVE (child/curve.py): ZAP decisions, what the log says and how often, and
real sockets in this process: two contexts, each with its own ZAP handler."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from zmq.utils import z85

from orchestrator.certs import keypair, write_secret
from orchestrator.child.curve import Curve, client_reason, protocol_reason
from orchestrator.child.sockets import build_sockets
from orchestrator.errors import RunError
from orchestrator.plan import ReplicaPlan, SocketPlan
from tests.conftest import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def curve(allowed: dict[str, list[str]] | None = None) -> tuple[Curve, list[str], Clock]:
    said: list[str] = []
    clock = Clock()
    public, secret = keypair()
    c = Curve(zmq.Context.instance(), "broker.0", public, secret, say=said.append, clock=clock)
    for domain, keys in (allowed or {}).items():
        c.allowed[domain.encode()] = frozenset(z85.decode(k) for k in keys)
    return c, said, clock


def zap(domain: bytes, key: bytes, address: bytes = b"10.0.0.7",
        mechanism: bytes = b"CURVE") -> list[bytes]:
    return [b"1.0", b"7", domain, address, b"", mechanism, key]


def test_zap_lets_in_exactly_the_allowed_keys_of_each_socket() -> None:
    friend, stranger = keypair()[0], keypair()[0]
    c, said, _ = curve({"frontend": [friend], "backend": []})
    assert c.decide(zap(b"frontend", z85.decode(friend))) == (b"200", b"OK")
    assert c.decide(zap(b"backend", z85.decode(friend)))[0] == b"400"
    assert c.decide(zap(b"frontend", z85.decode(stranger)))[0] == b"400"
    assert c.decide(zap(b"frontend", b"", mechanism=b"NULL"))[0] == b"400"
    assert said[0] == (f"WARNING backend: refused a client from 10.0.0.7 (public key {friend}): "
                       "it is not a node of this topology that connects to this socket, nor in "
                       "security.allow or --allow")
    # A socket that is not topo's (the node made it): what libzmq does without a handler.
    assert c.decide(zap(b"", z85.decode(stranger))) == (b"200", b"OK")
    assert c.decide([b"2.0", b"1"])[0] == b"500"


def test_refusals_are_said_once_a_second_per_address() -> None:
    c, said, clock = curve({"frontend": []})
    key = z85.decode(keypair()[0])
    for _ in range(50):  # a client retrying every 100 ms for 5 s
        c.decide(zap(b"frontend", key))
        clock.now += 0.1
    assert len(said) == 5
    c.decide(zap(b"frontend", key, address=b"10.0.0.8"))  # another address: said at once
    assert len(said) == 6 and "10.0.0.8" in said[-1]


def test_a_scan_from_many_addresses_is_capped() -> None:
    c, said, clock = curve({"frontend": []})
    key = z85.decode(keypair()[0])
    for i in range(10_000):
        c.decide(zap(b"frontend", key, address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
                     .encode()))
        clock.now += 0.001  # 10 s in all
    assert 150 <= len(said) <= 220  # 20 lines a second at most
    assert len(c._last) <= 4096 + 1


def test_a_failing_client_says_so_once_then_every_minute_and_when_it_works() -> None:
    c, said, clock = curve()
    for _ in range(100):
        c.on_event("server", False, zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, "tcp://h:1")
        clock.now += 1.0
    assert said[0] == ("WARNING server: the CURVE handshake with tcp://h:1 failed: the server "
                       "refused this node's key (ZAP status 400): it does not allow this client; "
                       "libzmq keeps retrying")
    assert len(said) == 2 and "still fails (61 attempts)" in said[1]
    c.on_event("server", False, zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, "tcp://h:1")
    assert said[-1] == "INFO server: the CURVE handshake with tcp://h:1 succeeded"
    c.on_event("server", False, zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, "tcp://h:1")
    assert len(said) == 3  # success after success is no news


def test_server_side_protocol_failures_name_the_bind() -> None:
    c, said, _ = curve()
    c.on_event("frontend", True, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
               zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC, "tcp://127.0.0.1:5555")
    c.on_event("frontend", True, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
               zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC, "tcp://127.0.0.1:5555")
    assert said == ["WARNING frontend: refused a client on tcp://127.0.0.1:5555: a cryptographic "
                    "check failed: the client does not have this server's public key"]


def test_reasons_in_words() -> None:
    assert "does not speak CURVE" in protocol_reason(zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
    assert "malformed reply" in protocol_reason(zmq.PROTOCOL_ERROR_ZAP_MALFORMED_REPLY)
    assert "0x10000001" in protocol_reason(zmq.PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND)
    assert "closed the connection" in client_reason(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32)
    assert "does not speak CURVE" in client_reason(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                                                   zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)


# -- real sockets: a server node and a client node, each its own context ---------------------------


class Side:
    """One node of this test: a context, its Curve (capturing what it says) and its sockets."""

    def __init__(self, plans: list[SocketPlan], keys: tuple[str, str]) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.said: list[str] = []
        self.lock = threading.Lock()
        self.curve = Curve(self.ctx, "n.0", *keys, say=self._say)
        self.sockets = build_sockets(self.ctx, plans, self.curve)

    def _say(self, line: str) -> None:
        with self.lock:
            self.said.append(line)

    def close(self) -> None:
        self.curve.stop()
        for s in self.sockets.values():
            s.close(linger=0)
        self.ctx.term()


def knock(sock: zmq.Socket[Any], data: bytes) -> None:
    """Send towards a server that refuses this socket, without blocking: once the refused
    handshake has taken the connection's pipe down, a blocking send would wait for ever."""
    # EAGAIN: the refusal came first and there is nothing to queue to, which is the point.
    with contextlib.suppress(zmq.Again):
        sock.send(data, zmq.NOBLOCK)


@pytest.fixture
def sides() -> Iterator[list[Side]]:
    made: list[Side] = []
    yield made
    for side in made:
        side.close()


def test_real_sockets_server_lets_its_client_in_and_refuses_others(
    tmp_path: Path, sides: list[Side]
) -> None:
    server_keys, client_keys, other_keys = keypair(), keypair(), keypair()
    ep = f"ipc://{tmp_path}/s"
    server = Side([SocketPlan("rep", "REP", bind=(ep,), curve_server=True,
                              allow=(client_keys[0],))], server_keys)
    sides.append(server)
    client = Side([SocketPlan("req", "REQ", connect=(ep,), serverkeys=(server_keys[0],))],
                  client_keys)
    sides.append(client)
    req, rep = client.sockets["req"], server.sockets["rep"]
    req.send(b"ping")
    assert rep.poll(5000) and rep.recv() == b"ping"
    other = Side([SocketPlan("req", "REQ", connect=(ep,), serverkeys=(server_keys[0],))],
                 other_keys)
    sides.append(other)
    knock(other.sockets["req"], b"let me in")
    wait_until(lambda: any("refused a client" in s and other_keys[0] in s for s in server.said),
               timeout=5, message="the server to name the refused key")
    wait_until(lambda: any("ZAP status 400" in s for s in other.said), timeout=5,
               message="the refused client to say so")
    assert not rep.poll(200)  # nothing of the stranger's got through


def test_plain_and_curve_connects_on_one_socket(tmp_path: Path, sides: list[Side]) -> None:
    """A socket that reaches a CURVE server and a plain peer: each connect its own way."""
    server_keys, client_keys = keypair(), keypair()
    secure, plain = f"ipc://{tmp_path}/secure", f"ipc://{tmp_path}/plain"
    ctx: zmq.Context[Any] = zmq.Context()
    outside = ctx.socket(zmq.PULL)  # a peer outside the topology: no CURVE
    outside.bind(plain)
    try:
        server = Side([SocketPlan("in", "PULL", bind=(secure,), curve_server=True,
                                  allow=(client_keys[0],))], server_keys)
        sides.append(server)
        client = Side([SocketPlan("out", "PUSH", connect=(plain, secure),
                                  serverkeys=("", server_keys[0]))], client_keys)
        sides.append(client)
        for i in range(4):  # round robin over the two peers once both are up
            client.sockets["out"].send(b"%d" % i)
        assert outside.poll(5000) and server.sockets["in"].poll(5000)
        assert not [s for s in client.said if "handshake" in s]
    finally:
        outside.close(linger=0)
        ctx.term()


def test_stop_ends_the_thread_at_once(tmp_path: Path) -> None:
    keys = keypair()
    side = Side([SocketPlan("rep", "REP", bind=(f"ipc://{tmp_path}/s",), curve_server=True)],
                keys)
    thread = side.curve._thread
    assert thread is not None and thread.is_alive()
    started = time.monotonic()
    side.close()
    assert not thread.is_alive() and time.monotonic() - started < 0.5


def test_a_missing_key_file_is_a_sentence(tmp_path: Path) -> None:
    replica = ReplicaPlan("worker", 0, "run", curve_secret_file=str(tmp_path / "w.key_secret"),
                          sockets=(SocketPlan("s", "REQ", connect=("ipc://x",),
                                              serverkeys=(keypair()[0],)),))
    with pytest.raises(RunError, match=r"cannot read this node's CURVE key: .*no such key file"):
        Curve.for_replica(zmq.Context.instance(), replica)
    public, secret = keypair()
    write_secret(tmp_path / "w.key_secret", public, secret)
    found = Curve.for_replica(zmq.Context.instance(), replica)
    assert (found.public, found.secret) == (public.encode(), secret.encode())


def test_a_socket_that_cannot_bind_closes_the_curve_thread(tmp_path: Path) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        c = Curve(ctx, "n.0", *keypair(), say=lambda _: None)
        plans = [SocketPlan("a", "REP", bind=(f"ipc://{tmp_path}/a",), curve_server=True),
                 SocketPlan("b", "REP", bind=("tcp://256.0.0.1:1",), curve_server=True)]
        with pytest.raises(RunError, match="cannot bind socket b"):
            build_sockets(ctx, plans, c)
        assert c._thread is None and c._zap is None and not c._monitors
    finally:
        ctx.term()  # returns: nothing of the node's is left open


def test_the_servers_refuse_everyone_once_the_handler_is_gone(
    tmp_path: Path, sides: list[Side]
) -> None:
    """Fail closed: a CURVE server whose ZAP thread ended lets no client in, not every one."""
    server_keys, client_keys = keypair(), keypair()
    ep = f"ipc://{tmp_path}/s"
    server = Side([SocketPlan("rep", "REP", bind=(ep,), curve_server=True,
                              allow=(client_keys[0],))], server_keys)
    sides.append(server)
    server.curve.stop()  # the handler ends; the server socket lives on
    stranger = Side([SocketPlan("req", "REQ", connect=(ep,), serverkeys=(server_keys[0],))],
                    keypair())
    sides.append(stranger)
    knock(stranger.sockets["req"], b"let me in")
    assert not server.sockets["rep"].poll(1000)


def test_a_bad_message_does_not_end_the_handler() -> None:
    c, said, _ = curve({"frontend": []})
    c.say = lambda line: (_ for _ in ()).throw(BrokenPipeError())  # stderr is gone
    key = z85.decode(keypair()[0])
    for _ in range(3):
        with pytest.raises(BrokenPipeError):
            c.decide(zap(b"frontend", key))
        c._last.clear()
    # _answer turns such a failure into a refusal instead of a dead REP socket.
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        rep, req = ctx.socket(zmq.REP), ctx.socket(zmq.REQ)
        rep.bind("inproc://zap-test")
        req.connect("inproc://zap-test")
        req.send_multipart(zap(b"frontend", key))
        c._answer(rep)
        assert req.recv_multipart()[2] == b"500"
        rep.close(linger=0)
        req.close(linger=0)
    finally:
        ctx.term()


def test_a_socket_that_binds_and_connects_reports_its_failed_connects(
    tmp_path: Path, sides: list[Side]
) -> None:
    far_keys, me_keys = keypair(), keypair()
    far_ep, my_ep = f"ipc://{tmp_path}/far", f"ipc://{tmp_path}/mine"
    far = Side([SocketPlan("in", "ROUTER", bind=(far_ep,), curve_server=True, allow=())],
               far_keys)  # lets nobody in
    sides.append(far)
    me = Side([SocketPlan("both", "DEALER", bind=(my_ep,), connect=(far_ep,), curve_server=True,
                          serverkeys=(far_keys[0],))], me_keys)
    sides.append(me)
    knock(me.sockets["both"], b"hello")
    wait_until(lambda: any(f"handshake with {far_ep} failed" in s and "ZAP status 400" in s
                           for s in me.said), timeout=5,
               message="the refused connect of a binding socket to say so")
