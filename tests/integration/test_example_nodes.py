"""The teaching topologies' node code, run in threads over inproc with a fake ``node``.

No supervisor here: each test makes the sockets the topology declares, hands them
to the example functions as a run node gets them (docs/reference.md#the-node-contract),
and checks that every function ends by itself with 0 (or promptly once
``node.stopping`` is set). The runs of
the topologies themselves are in test_topologies.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from examples import hello, lazy_pirate, pipeline, pipeline_kill, pool, pubsub, rrbroker, threads
from orchestrator.plan import SocketPlan

DEADLINE = 20.0


@dataclass
class FakeNode:
    name: str
    replica: int = 0
    sockets: dict[str, zmq.Socket[bytes]] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    run_id: str = "test"
    log: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    context: Any = None
    spec: Any = None
    interrupt_on_stop: bool = True

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


def test_pipeline_sink_gets_every_result(sock: Sockets,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    runner = Runner()
    params = {"tasks": 12}
    sink = FakeNode("sink", params=params,
                    sockets={"results": sock(zmq.PULL, bind="inproc://results")})
    runner.start("sink", pipeline.sink, sink)
    workers = [FakeNode("worker", i, {"tasks": sock(zmq.PULL, connect="inproc://tasks"),
                                      "results": sock(zmq.PUSH, connect="inproc://results")})
               for i in range(3)]
    for w in workers:
        runner.start(f"worker.{w.replica}", pipeline.worker, w)
    ventilator = FakeNode("ventilator", params=params,
                          sockets={"tasks": sock(zmq.PUSH, bind="inproc://tasks")})
    runner.start("ventilator", pipeline.ventilator, ventilator)
    runner.wait("sink", "ventilator")
    for w in workers:  # the plain pipeline's workers wait for work until they are stopped
        w.stopping.set()
    runner.wait()
    assert set(runner.codes.values()) == {0}, runner.codes
    out = capsys.readouterr().out
    assert "ventilator: sent 12 tasks, 166 ms of work in all" in out
    assert "sink: 12 results in" in out


def test_pipeline_kill_ends_by_itself(sock: Sockets,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    runner = Runner()
    sink = FakeNode("sink", params={"workers": 3}, sockets={
        "results": sock(zmq.PULL, bind="inproc://results"),
        "sync": sock(zmq.REP, bind="inproc://sync"),
        "control": sock(zmq.PUB, bind="inproc://control"),
    })
    runner.start("sink", pipeline_kill.sink, sink)
    ventilator = FakeNode("ventilator", params={"tasks": 12}, sockets={
        "tasks": sock(zmq.PUSH, bind="inproc://tasks"),
        "sink": sock(zmq.REQ, connect="inproc://sync"),
        "control": sock(zmq.SUB, connect="inproc://control", subscribe=b"KILL"),
    })
    runner.start("ventilator", pipeline_kill.ventilator, ventilator)
    for i in range(3):
        worker = FakeNode("worker", i, {
            "tasks": sock(zmq.PULL, connect="inproc://tasks"),
            "results": sock(zmq.PUSH, connect="inproc://results"),
            "control": sock(zmq.SUB, connect="inproc://control", subscribe=b"KILL"),
        })
        runner.start(f"worker.{i}", pipeline_kill.worker, worker)
    runner.wait()
    assert set(runner.codes.values()) == {0}, runner.codes
    out = capsys.readouterr().out
    assert "ventilator: sent 12 tasks" in out
    assert "sink: 12 results in" in out


@pytest.mark.parametrize("module", [pipeline, pipeline_kill])
def test_pipeline_worker_stops_when_asked(sock: Sockets, module: Any) -> None:
    node = FakeNode("worker", 0, {
        "tasks": sock(zmq.PULL, bind="inproc://t"),
        "results": sock(zmq.PUSH, bind="inproc://r"),
        "control": sock(zmq.SUB, bind="inproc://c", subscribe=b"KILL"),
    })
    runner = Runner()
    runner.start("worker", module.worker, node)
    if module is pipeline_kill:
        # Its "ready" has no taker: PUSH blocks without a peer, so give it one.
        taker = sock(zmq.PULL, connect="inproc://r")
        assert taker.poll(int(DEADLINE * 1000))
    node.stopping.set()
    runner.wait(seconds=2.0)
    assert runner.codes == {"worker": 0}


def _naive_primes(lo: int, hi: int) -> int:
    return sum(1 for n in range(max(lo, 2), hi) if all(n % d for d in range(2, int(n ** 0.5) + 1)))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3000), st.integers(0, 400))
def test_pool_counts_primes_in_any_slice(lo: int, width: int) -> None:
    assert pool.count_primes(lo, lo + width) == _naive_primes(lo, lo + width)


def test_pool_slices_cover_the_job_once(sock: Sockets, capsys: pytest.CaptureFixture[str]) -> None:
    params = {"workers": 3, "limit": 1000}  # 1000 is not a multiple of 3: the last slice is short
    runner = Runner()
    collector = FakeNode("collector", params=params,
                         sockets={"results": sock(zmq.PULL, bind="inproc://pool")})
    runner.start("collector", pool.collector, collector)
    for i in range(3):
        node = FakeNode("worker", i, {"results": sock(zmq.PUSH, connect="inproc://pool")},
                        params=params)
        runner.start(f"worker.{i}", pool.worker, node)
    runner.wait()
    assert set(runner.codes.values()) == {0}
    out = capsys.readouterr().out
    assert "worker.2: " in out and "in [668, 1000)" in out
    assert "collector: 3 workers found 168 primes below 1000" in out


def test_lazy_pirate_client_reopens_its_socket_and_sends_again(
        sock: Sockets, capsys: pytest.CaptureFixture[str]) -> None:
    server = sock(zmq.ROUTER, bind="inproc://flaky")
    plan = SocketPlan(name="server", type="REQ", connect=("inproc://flaky",))
    client = FakeNode("client", sockets={"server": sock(zmq.REQ, connect="inproc://flaky")},
                      params={"requests": 3, "retries": 2, "timeout_ms": 300},
                      context=sock.context, spec=SimpleNamespace(sockets=(plan,)))
    runner = Runner()
    runner.start("client", lazy_pirate.client, client)
    answered = []
    deadline = time.monotonic() + DEADLINE
    while runner.threads["client"].is_alive() and time.monotonic() < deadline:
        if not server.poll(50):
            continue
        peer, empty, request = server.recv_multipart()
        if request == b"request 2 (try 1)":
            continue  # a lost request: the client must give up on this socket
        answered.append(request)
        server.send_multipart([peer, empty, b"reply to " + request])
    runner.wait()
    sock.made.append(client.sockets["server"])  # the reopened socket: closed at teardown
    assert runner.codes == {"client": 0}
    assert answered == [b"request 1 (try 1)", b"request 2 (try 2)", b"request 3 (try 1)"]
    out = capsys.readouterr().out
    assert "client: no reply to request 2 within 300 ms; reopening the socket" in out
    assert "client: done, 3 replies; 1 request(s) had to be sent again" in out


def test_threads_share_the_work_over_inproc(sock: Sockets,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeNode("server", sockets={
        "clients": sock(zmq.ROUTER, bind="inproc://clients"),
        "workers": sock(zmq.DEALER, bind="inproc://workers"),
        "worker_a": sock(zmq.REP, connect="inproc://workers"),
        "worker_b": sock(zmq.REP, connect="inproc://workers"),
    })
    client = FakeNode("client", params={"requests": 4},
                      sockets={"server": sock(zmq.REQ, connect="inproc://clients")})
    runner = Runner()
    runner.start("server", threads.server, server)
    runner.start("client", rrbroker.client, client)
    runner.wait("client")
    server.stopping.set()
    runner.wait()
    assert runner.codes == {"server": 0, "client": 0}
    out = capsys.readouterr().out
    assert "client: done, 4 replies (thread-a 2, thread-b 2)" in out
    assert "server: thread-a answered 2 requests\n" in out
