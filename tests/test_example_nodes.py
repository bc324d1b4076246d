"""The teaching topologies' node code, run in threads over inproc with a fake ``node``.

No supervisor here: each test makes the sockets the topology declares, hands them
to the example functions the way SPEC §4 does, and checks that every function
ends by itself with 0 (or promptly once ``node.stopping`` is set).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import zmq

from examples import hello, pipeline, pubsub, rrbroker

DEADLINE = 20.0


@dataclass
class FakeNode:
    name: str
    replica: int = 0
    sockets: dict[str, zmq.Socket[bytes]] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    run_id: str = "test"
    log: Any = None

    @property
    def full_name(self) -> str:
        return f"{self.name}.{self.replica}"


class Runner:
    """Runs example functions in threads and collects their exit codes."""

    def __init__(self) -> None:
        self.threads: dict[str, threading.Thread] = {}
        self.codes: dict[str, int | None] = {}

    def start(self, key: str, func: Callable[[Any], int | None], node: FakeNode) -> None:
        def target() -> None:
            self.codes[key] = func(node)

        thread = threading.Thread(target=target, name=key, daemon=True)
        self.threads[key] = thread
        thread.start()

    def wait(self, *keys: str, seconds: float = DEADLINE) -> None:
        deadline = time.monotonic() + seconds
        for key in keys or tuple(self.threads):
            self.threads[key].join(max(0.0, deadline - time.monotonic()))
            assert not self.threads[key].is_alive(), f"{key} did not end within {seconds} s"


class Sockets:
    """Makes sockets in one context and keeps them, so none is collected before teardown."""

    def __init__(self) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.made: list[zmq.Socket[bytes]] = []

    def __call__(self, kind: int, *, bind: str = "", connect: str = "",
                 subscribe: bytes | None = None) -> zmq.Socket[bytes]:
        s = self.context.socket(kind)
        self.made.append(s)
        if subscribe is not None:
            s.setsockopt(zmq.SUBSCRIBE, subscribe)
        if bind:
            s.bind(bind)
        if connect:
            s.connect(connect)
        return s

    def close(self) -> None:
        for s in self.made:
            s.close(linger=0)
        self.context.term()


@pytest.fixture()
def sock() -> Iterator[Sockets]:
    sockets = Sockets()
    yield sockets
    sockets.close()


def test_hello_ends_by_itself(sock: Sockets, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REQUESTS", "4")
    runner = Runner()
    server = FakeNode("server", sockets={"clients": sock(zmq.REP, bind="inproc://hello")})
    client = FakeNode("client", sockets={"server": sock(zmq.REQ, connect="inproc://hello")})
    runner.start("server", hello.server, server)
    runner.start("client", hello.client, client)
    runner.wait()
    assert runner.codes == {"server": 0, "client": 0}
    out = capsys.readouterr().out
    assert "client: hello 4 -> world 4 (from server.0)" in out
    assert "server: the client said bye after 4 requests" in out
    assert "client: done, 4 replies" in out


def test_hello_server_stops_when_asked(sock: Sockets) -> None:
    runner = Runner()
    node = FakeNode("server", sockets={"clients": sock(zmq.REP, bind="inproc://idle")})
    runner.start("server", hello.server, node)
    node.stopping.set()
    runner.wait(seconds=2.0)
    assert runner.codes == {"server": 0}


def test_rrbroker_spreads_requests_over_workers(
        sock: Sockets, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REQUESTS", "9")
    frontend = sock(zmq.ROUTER, bind="inproc://frontend")
    frontend.setsockopt(zmq.ROUTER_MANDATORY, 1)
    backend = sock(zmq.DEALER, bind="inproc://backend")
    control = sock(zmq.PAIR, bind="inproc://control")
    steer = sock(zmq.PAIR, connect="inproc://control")
    proxy = threading.Thread(target=zmq.proxy_steerable, args=(frontend, backend, None, control),
                             daemon=True)
    proxy.start()
    runner = Runner()
    workers = [FakeNode("worker", i, {"jobs": sock(zmq.REP, connect="inproc://backend")})
               for i in range(3)]
    for w in workers:
        runner.start(f"worker.{w.replica}", rrbroker.worker, w)
    client = FakeNode("client", sockets={"server": sock(zmq.REQ,
                                                        connect="inproc://frontend")})
    runner.start("client", rrbroker.client, client)
    runner.wait("client")
    assert runner.codes["client"] == 0
    for w in workers:
        w.stopping.set()
    runner.wait()
    steer.send(b"TERMINATE")
    proxy.join(DEADLINE)
    assert not proxy.is_alive()
    assert set(runner.codes.values()) == {0}
    out = capsys.readouterr().out
    assert out.count("client: reply to request") == 9
    assert "client: done, 9 replies" in out


def test_pubsub_subscriber_takes_its_topic_and_ends(
        sock: Sockets, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WANT", "3")
    pub = sock(zmq.PUB, bind="inproc://news")
    node = FakeNode("subscriber", sockets={
        "news": sock(zmq.SUB, connect="inproc://news", subscribe=b"weather")})
    runner = Runner()
    runner.start("subscriber", pubsub.subscriber, node)
    deadline = time.monotonic() + DEADLINE
    n = 0
    # A ticker of our own: it keeps publishing until the subscriber has had enough.
    while runner.threads["subscriber"].is_alive() and time.monotonic() < deadline:
        n += 1
        pub.send_multipart([b"sports", f"sports {n}".encode()])
        pub.send_multipart([b"weather", f"weather {n}".encode()])
        runner.threads["subscriber"].join(0.02)
    runner.wait()
    assert runner.codes == {"subscriber": 0}
    out = capsys.readouterr().out
    assert out.count("subscriber: ") == 4 and "sports" not in out
    assert "subscriber: done, 3 messages" in out


def test_pubsub_subscriber_stops_when_asked(sock: Sockets) -> None:
    node = FakeNode("subscriber", sockets={
        "news": sock(zmq.SUB, connect="inproc://quiet", subscribe=b"")})
    runner = Runner()
    runner.start("subscriber", pubsub.subscriber, node)
    node.stopping.set()
    runner.wait(seconds=2.0)
    assert runner.codes == {"subscriber": 0}


def test_pipeline_ends_by_itself(sock: Sockets,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TASKS", "12")
    monkeypatch.setenv("WORKERS", "3")
    runner = Runner()
    sink = FakeNode("sink", sockets={
        "results": sock(zmq.PULL, bind="inproc://results"),
        "sync": sock(zmq.REP, bind="inproc://sync"),
        "control": sock(zmq.PUB, bind="inproc://control"),
    })
    runner.start("sink", pipeline.sink, sink)
    ventilator = FakeNode("ventilator", sockets={
        "tasks": sock(zmq.PUSH, bind="inproc://tasks"),
        "sink": sock(zmq.REQ, connect="inproc://sync"),
        "control": sock(zmq.SUB, connect="inproc://control", subscribe=b"KILL"),
    })
    runner.start("ventilator", pipeline.ventilator, ventilator)
    for i in range(3):
        worker = FakeNode("worker", i, {
            "tasks": sock(zmq.PULL, connect="inproc://tasks"),
            "results": sock(zmq.PUSH, connect="inproc://results"),
            "control": sock(zmq.SUB, connect="inproc://control", subscribe=b"KILL"),
        })
        runner.start(f"worker.{i}", pipeline.worker, worker)
    runner.wait()
    assert set(runner.codes.values()) == {0}, runner.codes
    out = capsys.readouterr().out
    assert "ventilator: sent 12 tasks" in out
    assert "sink: 12 results in" in out


def test_pipeline_worker_stops_when_asked(sock: Sockets) -> None:
    node = FakeNode("worker", 0, {
        "tasks": sock(zmq.PULL, bind="inproc://t"),
        "results": sock(zmq.PUSH, bind="inproc://r"),
        "control": sock(zmq.SUB, bind="inproc://c", subscribe=b"KILL"),
    })
    node.sockets["results"].setsockopt(zmq.SNDTIMEO, 0)
    runner = Runner()
    # Its "ready" has no taker: PUSH blocks without a peer, so give it one.
    taker = sock(zmq.PULL, connect="inproc://r")
    runner.start("worker", pipeline.worker, node)
    assert taker.poll(int(DEADLINE * 1000))
    node.stopping.set()
    runner.wait(seconds=2.0)
    assert runner.codes == {"worker": 0}
