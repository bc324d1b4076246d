"""What watching a run shows: `topo top`'s frame and rates (views/top.py), `topo tap`'s
lines (views/tap.py), and the supervisor's side of it (supervisor/watching.py).

All in-process and pure: made-up stats documents for the views; for ``Watching``, the
replicas of a small plan with a fake printer, clock and real ``Timers``, each node's
channel a socket pair this test reads and answers as the node would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from orchestrator.child.watch import TAP_HEADER
from orchestrator.errors import ControlError
from orchestrator.plan import NodePlan, Plan, ReplicaPlan, SocketPlan
from orchestrator.supervisor.replica import Replica, by_node, replicas_of
from orchestrator.supervisor.spawn import Proc
from orchestrator.supervisor.timers import Timers
from orchestrator.supervisor.watching import (
    STATS_WAIT,
    TapRefused,
    Watching,
    _command_tap,
    _tap_targets,
    stats,
    tap,
)
from orchestrator.views import top as top_view
from orchestrator.views.tap import SHOW, Dropped, Tap, TapMessage, show
from orchestrator.views.top import WIDTH, _fit, _last, _n, frame, with_rates
from tests.fakes import FakeClock, FakePrinter

# When a hypothesis test fails, its report imports libcst, whose import warns (through
# mypy_extensions); under the suite's "error" filter that would end the whole session.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# -- topo top: the frame ---------------------------------------------------------------------------

TS = 1_700_000_000.0  # 22:13:20 UTC


def sock(type_: str, *, watched: bool = True, peers: int | None = 1, mi: int | None = 0,
         mo: int | None = 0, rate_in: float | None = None, rate_out: float | None = None,
         last: dict[str, Any] | None = None, dropped: int = 0,
         frames: bool = False) -> dict[str, Any]:
    """A socket as Watching.sockets_of gives it (and with_rates adds to it)."""
    return {"type": type_, "bind": [], "connect": [], "watched": watched,
            "peers": peers if watched else None,
            "messages_in": mi if watched else None, "bytes_in": 10 * mi if mi else mi,
            "messages_out": mo if watched else None, "bytes_out": 10 * mo if mo else mo,
            "messages_in_per_s": rate_in, "messages_out_per_s": rate_out,
            "tap_dropped": dropped, "last_event": last, "frames": frames}


def replica(status: str = "ready", *, pid: int | None = 101, restarts: int = 0,
            started: float | None = None, kind: str = "run", cpu: float | None = None,
            rss: int | None = None, sockets: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"node": "n", "pid": pid, "status": status, "restarts": restarts,
            "started": started, "kind": kind, "cpu_seconds": None if cpu is None else 1.0,
            "cpu_percent": cpu, "rss_bytes": rss, "sockets": sockets or {}}


def stats_doc(**replicas: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": "demo-7f3a", "ts": TS, "stopping": False, "replicas": replicas}


def sample() -> dict[str, Any]:
    up = time.time() - 125.4
    return stats_doc(**{
        "worker.0": replica(restarts=1, started=up, cpu=12.5, rss=50 * 2**20, sockets={
            "in": sock("PULL", peers=2, mi=123_456, rate_in=10.0,
                       last={"ts": TS - 5, "event": "accepted", "endpoint": "tcp://*:1",
                             "text": "accepted a peer on tcp://*:1"}),
            "out": sock("PUSH", mo=7, rate_out=0.5, dropped=3),
        }),
        "feed.0": replica(kind="command", started=up, sockets={
            "pub": sock("PUB", watched=False)}),
        "late.0": replica("waiting", pid=None),
    })


def test_the_frame_of_a_run(utc: None) -> None:
    lines = frame(sample())
    assert lines[0] == "topo top: run demo-7f3a, 3 replicas, 2 ready  22:13:20  (q quits)"
    assert lines[1] == ""
    assert lines[2] == (f"{'REPLICA':<22}{'STATE':<11}{'RESTARTS':>8}{'UPTIME':>9}"
                        f"{'CPU%':>7}{'MEM':>10}").ljust(WIDTH)
    assert lines[3] == f"{'worker.0':<22}{'ready':<11}{1:>8}{'2m05s':>9}{'12.5':>7}{'50.0MiB':>10}"
    assert lines[4] == f"{'feed.0':<22}{'ready':<11}{0:>8}{'2m05s':>9}{'-':>7}{'-':>10}"
    assert lines[5] == f"{'late.0':<22}{'waiting':<11}{0:>8}{'-':>9}{'-':>7}{'-':>10}"
    assert lines[6] == ""
    assert lines[7].startswith("SOCKET") and lines[7].rstrip().endswith("LAST EVENT")
    assert lines[8][:61] == (f"{'worker.0.in':<21}{'PULL':<7}{'2':>5}{'123k':>7}{'10':>6}"
                             f"{'0':>7}{'-':>6}  ")
    assert lines[8][61:].startswith("accepted")  # (whole: see the test below)
    assert lines[9] == (f"{'worker.0.out':<21}{'PUSH':<7}{'1':>5}{'0':>7}{'-':>6}"
                        f"{'7':>7}{'0.5':>6}  tap dropped 3")
    assert lines[10] == (f"{'feed.0.pub':<21}{'PUB':<7}{'-':>5}{'-':>7}{'-':>6}{'-':>7}"
                         f"{'-':>6}  (command node)")
    assert len(lines) == 11  # no proxy: no note
    assert all(len(line) <= WIDTH for line in lines)
    assert not any(ANSI.search(line) for line in lines)


def test_the_last_event_is_shown_whole_at_80_columns() -> None:
    events = ["accepted", "connected", "retrying", "disconnected"]
    doc = stats_doc(**{"w.0": replica(sockets={
        e: sock("PULL", last={"ts": TS - 12, "event": e}) for e in events})})
    rows = frame(doc)[-len(events):]
    assert all(len(row) <= WIDTH for row in rows)
    assert [row.split("  ")[-1] for row in rows] == [f"{e} 12s" for e in events]


def test_a_long_replica_name_is_cut_to_its_column() -> None:
    name = "ingest-normalizer-worker.12"  # 27 characters
    lines = frame(stats_doc(**{name: replica(restarts=2, rss=2**20)}))
    row = lines[3]
    assert row[:22] == name[:20] + "~ "  # as a socket's label is cut
    assert row[22:] == f"{'ready':<11}{2:>8}{'-':>9}{'-':>7}{'1.0MiB':>10}"


def test_a_stopping_run_says_so() -> None:
    doc = sample()
    doc["stopping"] = True
    assert ", stopping  " in frame(doc)[0]


def test_a_proxy_counts_frames_and_the_frame_says_so() -> None:
    doc = stats_doc(**{"proxy.0": replica(kind="role", sockets={
        "frontend": sock("ROUTER", mi=4, frames=True),
        "backend": sock("DEALER", mo=4, frames=True)})})
    lines = frame(doc)
    assert lines[-2:] == ["", "a proxy's counts are libzmq's own: frames, not messages"]


def test_color_marks_the_header_only() -> None:
    lines = frame(sample(), color=True)
    assert lines[0].startswith("\x1b[1m") and lines[0].endswith("\x1b[0m")
    assert lines[2].startswith("\x1b[7m") and lines[7].startswith("\x1b[7m")
    marked = [i for i, line in enumerate(lines) if ANSI.search(line)]
    assert marked == [0, 2, 7]
    assert [ANSI.sub("", line) for line in lines] == frame(sample())


def test_long_names_are_cut_to_the_width() -> None:
    long = "a-very-long-node-name-that-goes-on-and-on"
    doc = stats_doc(**{f"{long}.0": replica(sockets={
        "a-socket-with-a-long-name-as-well": sock("ROUTER", mi=10**7, mo=10**10,
                                                  rate_in=1234.5, rate_out=99999.0, last={
                                                      "ts": TS - 4000, "event": "disconnected"}),
    })})
    doc["run_id"] = "r" * 100
    lines = frame(doc)
    assert all(len(line) <= WIDTH for line in lines)
    assert lines[0].endswith("~") and len(lines[0]) == WIDTH
    row = lines[-1]
    assert row.startswith(long[:19] + "~ ROUTER")  # the label is cut at 20 characters
    assert row[28:61] == f"{'1':>5}{'10.0M':>7}{'1234':>6}{'10.0G':>7}{'100k':>6}  "


NAME = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=50)
COUNT = st.none() | st.integers(0, 10**15)
RATE = st.none() | st.floats(0, 1e12, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(NAME, st.dictionaries(NAME, st.tuples(COUNT, COUNT, RATE, RATE,
                                                             st.booleans()), max_size=3),
                       max_size=4),
       NAME, st.integers(40, 160), st.booleans())
def test_every_line_fits_whatever_the_names_and_numbers(
        reps: dict[str, dict[str, tuple[int | None, int | None, float | None, float | None,
                                        bool]]],
        run_id: str, width: int, stopping: bool) -> None:
    doc = stats_doc(**{
        name: replica(restarts=len(name), started=time.time() - len(name) * 1000,
                      cpu=len(name) * 3.3, rss=len(name) * 2**30, sockets={
                          s: sock("DEALER", watched=w, peers=mi, mi=mi, mo=mo, rate_in=ri,
                                  rate_out=ro, frames=w and mi == 0,
                                  last={"ts": TS - 3, "event": "retrying"})
                          for s, (mi, mo, ri, ro, w) in socks.items()})
        for name, socks in reps.items()})
    doc["run_id"], doc["stopping"] = run_id, stopping
    lines = frame(doc, width=width)
    assert all(len(line) <= width for line in lines)
    assert len(lines) >= 5 + sum(len(s) for s in reps.values())
    assert [len(line) for line in lines if line.startswith(("REPLICA", "SOCKET"))] == [width] * 2


def test_fit() -> None:
    assert _fit("abc", 5) == "abc"
    assert _fit("abc", 5, pad=True) == "abc  "
    assert _fit("abcdef", 5) == "abcd~"
    assert _fit("abcde", 5) == "abcde"


def test_the_last_event_in_a_few_words() -> None:
    assert _last({"last_event": None}, TS) == ""
    assert _last({"last_event": {"ts": TS - 75, "event": "connected"}}, TS) == (
        "connected 1m15s")
    assert _last({"last_event": {"ts": TS + 3, "event": "connected"}}, TS) == (
        "connected 0s")  # a clock that went back: no negative times
    assert _last({"tap_dropped": 12, "last_event": {"ts": TS, "event": "x"}}, TS) == (
        "tap dropped 12")


@pytest.mark.parametrize(("value", "text"), [
    (None, "-"), (0, "0"), (7, "7"), (9999, "9999"), (10_000, "10k"), (99_999, "100k"),
    (999_499, "999k"), (1_234_567, "1.2M"), (3_400_000_000, "3.4G"), (2.5, "2.5"),
    (12.34, "12.3"), (150.7, "151"), (0.04, "0.0"), (100.0, "100"),
])
def test_counts_in_few_characters(value: float | None, text: str) -> None:
    assert _n(value) == text


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**15) | st.floats(0, 1e15, allow_nan=False))
@example(999_960_000)  # 1000.0M
@example(10**12)  # 1000.0G
def test_a_count_is_never_more_than_6_characters(value: float) -> None:
    assert len(_n(value)) <= 6, _n(value)


class FakeRun:
    def __init__(self, folder: Any) -> None:
        self.run_id, self.folder, self.alive = "demo-7f3a", folder, True


def live_with(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
              run: FakeRun, looks: list[Any]) -> tuple[int, str, list[str]]:
    """top's live loop over scripted looks (a doc, or an error with what happens to the
    run meanwhile); the loop's second each is skipped, and leaving its screen is noted."""
    said: list[str] = []

    def look(_run: Any, _usage: Any) -> dict[str, Any]:
        step = looks.pop(0)
        if isinstance(step, dict):
            return step
        error, ended = step
        if ended:
            run.alive = False
        raise ControlError(error)

    @contextlib.contextmanager
    def keys(_tty: bool) -> Iterator[None]:
        yield None
        said.append(capsys.readouterr().out)  # what was on the live view's screen

    monkeypatch.setattr(top_view, "look", look)
    monkeypatch.setattr(top_view, "_keys", keys)
    monkeypatch.setattr(top_view, "_wait_for_q", lambda _fd, _s: not looks)
    code = top_view._live(run, {})  # type: ignore[arg-type]
    return code, capsys.readouterr().out, said


def test_top_says_the_run_ended_after_leaving_its_screen(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Any) -> None:
    code, after, screen = live_with(monkeypatch, capsys, FakeRun(tmp_path),
                                    [sample(), ("cannot reach the supervisor", True)])
    assert code == 0
    assert "topo top: run demo-7f3a" in screen[0] and "ended" not in screen[0]
    assert after == "run demo-7f3a ended\n"  # on the terminal's own screen, where it stays


def test_a_supervisor_slow_to_answer_is_not_a_run_that_ended(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Any) -> None:
    slow = ("the supervisor did not answer within 5 s", False)
    code, after, screen = live_with(monkeypatch, capsys, FakeRun(tmp_path),
                                    [slow, sample(), slow, slow, sample()])
    assert code == 0 and after == ""
    assert screen[0].count("topo top: run demo-7f3a") == 2  # it went on looking
    # one miss is not worth a line (a supervisor on its way out is gone at the next look)
    assert screen[0].count("did not answer within 5 s; asking again") == 1
    assert "ended" not in screen[0]


def test_a_run_whose_folder_is_gone_has_ended(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Any) -> None:
    code, after, _ = live_with(monkeypatch, capsys, FakeRun(tmp_path / "removed"),
                               [("cannot reach the supervisor", False)])
    assert code == 0 and after == "run demo-7f3a ended\n"


# -- topo top: rates between two looks -------------------------------------------------------------


def two_looks(pid_after: int = 101) -> tuple[dict[str, Any], dict[str, Any]]:
    def look(ts: float, pid: int, cpu: float, mi: int, mo: int) -> dict[str, Any]:
        return {"run_id": "r", "ts": ts, "replicas": {
            "worker.0": {"pid": pid, "cpu_seconds": cpu, "sockets": {
                "in": {"messages_in": mi, "messages_out": mo}}},
            "feed.0": {"pid": 7, "cpu_seconds": None, "sockets": {
                "pub": {"messages_in": None, "messages_out": None}}}}}

    return look(TS, 101, 1.0, 100, 50), look(TS + 2.0, pid_after, 1.5, 300, 50)


def test_rates_per_second_and_cpu_percent_from_two_looks() -> None:
    before, now = two_looks()
    out = with_rates(now, before)
    assert out is now
    w = out["replicas"]["worker.0"]
    assert w["cpu_percent"] == 25.0
    assert w["sockets"]["in"]["messages_in_per_s"] == 100.0
    assert w["sockets"]["in"]["messages_out_per_s"] == 0.0
    feed = out["replicas"]["feed.0"]
    assert feed["cpu_percent"] is None  # nothing known of its CPU
    assert feed["sockets"]["pub"]["messages_in_per_s"] is None  # a command node's: not counted


def test_no_rates_across_a_restart() -> None:
    before, now = two_looks(pid_after=202)
    w = with_rates(now, before)["replicas"]["worker.0"]
    assert w["cpu_percent"] is None
    assert w["sockets"]["in"]["messages_in_per_s"] is None
    assert w["sockets"]["in"]["messages_out_per_s"] is None


def test_no_rates_from_one_look() -> None:
    _, now = two_looks()
    w = with_rates(now, None)["replicas"]["worker.0"]
    assert w["cpu_percent"] is None and w["sockets"]["in"]["messages_in_per_s"] is None


def test_rates_of_new_sockets_replicas_and_counts_that_went_down() -> None:
    before, now = two_looks()
    now["replicas"]["worker.0"]["sockets"]["new"] = {"messages_in": 5, "messages_out": 5}
    now["replicas"]["worker.1"] = {"pid": 303, "cpu_seconds": 2.0, "sockets": {}}
    before["replicas"]["worker.0"]["sockets"]["in"]["messages_out"] = 80  # counts were reset
    out = with_rates(now, before)["replicas"]
    assert out["worker.0"]["sockets"]["new"]["messages_in_per_s"] is None
    assert out["worker.0"]["sockets"]["in"]["messages_out_per_s"] == 0.0
    assert out["worker.1"]["cpu_percent"] is None


def test_no_rates_when_no_time_passed() -> None:
    before, now = two_looks()
    now["ts"] = before["ts"]
    w = with_rates(now, before)["replicas"]["worker.0"]
    assert w["cpu_percent"] is None and w["sockets"]["in"]["messages_in_per_s"] is None


# -- topo tap: what a message looks like -----------------------------------------------------------


def test_show_a_frame() -> None:
    assert show(b"hello world") == "hello world"
    assert show("grüße".encode()) == "grüße"
    assert show(b"\x00\x01\xff") == "0x0001ff"
    assert show(b"two\nlines") == "0x" + b"two\nlines".hex()  # not printable: hex
    assert show(b"\xc3") == "0xc3"  # not UTF-8
    assert show(b"") == "''"


def test_a_long_frame_is_cut_with_its_length() -> None:
    assert show(b"x" * SHOW) == "x" * SHOW
    assert show(b"x" * (SHOW + 80)) == "x" * SHOW + f"... ({SHOW + 80} bytes)"
    binary = bytes(range(256)) * 2
    assert show(binary) == ("0x" + binary.hex())[:SHOW] + "... (512 bytes)"


def test_a_tapped_message_as_a_line_and_as_json(utc: None) -> None:
    m = TapMessage(TS + 0.25, "worker.1", "in", "in", [b"job", b"\x00\x07", b""])
    assert m.line() == "22:13:20.250 worker.1.in recv job | 0x0007 | ''"
    out = TapMessage(TS + 59.5, "worker.0", "out", "out", [b"done"])
    assert out.line() == "22:14:19.500 worker.0.out send done"
    assert m.as_dict() == {"ts": 1_700_000_000.25, "replica": "worker.1", "socket": "in",
                           "direction": "in", "frames": ["job", "0x0007", "''"],
                           "sizes": [3, 2, 0]}
    assert json.loads(json.dumps(out.as_dict()))["frames"] == ["done"]
    assert TapMessage(1.0000004, "a.0", "s", "in").as_dict()["ts"] == 1.0


@pytest.mark.parametrize("target", ["worker.in", "worker.3.in"])
def test_the_tap_reads_the_header_the_node_writes(target: str) -> None:
    t = Tap.__new__(Tap)  # its decoding only: no run, no sockets
    t.subscribed, t.target, t.socket_name = False, target, "in"
    m = t._decode([TAP_HEADER.pack(b"i", TS, 3), b"a", b"b"])
    assert m == TapMessage(TS, "worker.3", "in", "in", [b"a", b"b"])
    assert t._decode([TAP_HEADER.pack(b"o", TS, 0), b"x"]) == TapMessage(
        TS, "worker.0", "in", "out", [b"x"])
    assert t._decode([TAP_HEADER.pack(b"D", TS, 42)]) == Dropped(42)


# -- the supervisor: Watching ----------------------------------------------------------------------


def plan() -> Plan:
    run = [ReplicaPlan("worker", i, "run", run="m:f", cwd="/tmp", sockets=(
        SocketPlan("in", "PULL", bind=(f"tcp://127.0.0.1:{7000 + i}",)),
        SocketPlan("out", "PUSH", connect=("tcp://127.0.0.1:7100",)))) for i in range(2)]
    proxy = ReplicaPlan("proxy", 0, "role", role="proxy", cwd="/tmp", sockets=(
        SocketPlan("frontend", "ROUTER", bind=("tcp://127.0.0.1:7100",)),
        SocketPlan("backend", "DEALER", bind=("tcp://127.0.0.1:7101",)),
        SocketPlan("control", "SUB", connect=("tcp://127.0.0.1:7300",))))
    feed = [ReplicaPlan("feed", i, "command", argv=("prog",), cwd="/tmp", sockets=(
        SocketPlan("pub", "PUB", bind=(f"tcp://127.0.0.1:{7300 + i}",)),
        SocketPlan("up", "PUB", connect=("tcp://127.0.0.1:7400",)),
        SocketPlan("safe", "PUB", bind=(f"tcp://127.0.0.1:{7500 + i}",), curve_server=True),
        SocketPlan("ask", "REQ", connect=("tcp://127.0.0.1:7100",)))) for i in range(2)]
    lonely = ReplicaPlan("lonely", 0, "run", run="m:f", cwd="/tmp")
    reps = (*run, proxy, *feed, lonely)
    nodes = {r.node for r in reps}
    return Plan("demo-7f3a", "/tmp/demo", "/tmp/demo.yaml", reps,
                tiers=(tuple(sorted(nodes)),), nodes={n: NodePlan() for n in nodes})


class Sup:
    """What the control channel's handlers read of a supervisor."""

    def __init__(self) -> None:
        self.plan = plan()
        self.replicas = {r.name: r for r in replicas_of(self.plan)}
        self.nodes = by_node(self.replicas.values())
        self.printer = FakePrinter()
        self.clock = FakeClock()
        self.timers = Timers()
        self.watching = Watching(self.replicas, self.printer, self.timers, self.clock)
        self.ends: list[socket.socket] = []  # the nodes' ends of their channels

    def state(self) -> dict[str, Any]:
        return {"stopping": False, "replicas": {
            name: {"pid": r.proc.pid if r.proc else None, "status": r.status.value}
            for name, r in self.replicas.items()}}


@dataclass
class Node:
    """The node's end of a replica's channel, as this test plays it."""

    replica: Replica
    end: socket.socket

    def requests(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.end.recv(1 << 16))
            except BlockingIOError:
                return out

    def taps_asked(self) -> list[dict[str, Any]]:
        records = self.requests()
        assert all(r[:1] == b"T" for r in records), records
        return [json.loads(r[1:]) for r in records]


@pytest.fixture
def sup() -> Iterator[Sup]:
    s = Sup()
    yield s
    for end in s.ends:
        end.close()
    for r in s.replicas.values():
        if r.proc is not None and r.proc.ready_fd is not None:
            os.close(r.proc.ready_fd)


def running(s: Sup, *names: str) -> dict[str, Node]:
    """Give each of ``names`` a process and a channel; the node's ends, by name."""
    nodes = {}
    for i, name in enumerate(names):
        theirs, mine = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.setblocking(False)
        s.ends.append(theirs)
        r = s.replicas[name]
        r.proc = Proc(500 + i, -1, ready_fd=mine.detach())
        nodes[name] = Node(r, theirs)
    return nodes


@pytest.fixture
def channels(sup: Sup) -> dict[str, Node]:
    return running(sup, "worker.0", "worker.1", "proxy.0", "feed.0", "lonely.0")


def record(kind: bytes, doc: dict[str, Any]) -> bytes:
    return kind + json.dumps(doc).encode()


def test_an_event_counts_peers_keeps_the_last_and_is_said(sup: Sup) -> None:
    w, r = sup.watching, sup.replicas["worker.0"]
    before = time.time()
    w.on_record(r, record(b"E", {"socket": "out", "event": "connected", "peers": 1,
                                 "endpoint": "tcp://127.0.0.1:7100", "say": True,
                                 "text": "connected to tcp://127.0.0.1:7100"}))
    v = w.views[("worker.0", "out")]
    assert v.peers == 1
    assert v.last is not None and before - 0.01 <= v.last.pop("ts") <= time.time() + 0.01
    assert v.last == {"event": "connected", "endpoint": "tcp://127.0.0.1:7100",
                      "text": "connected to tcp://127.0.0.1:7100"}
    assert sup.printer.records == [("socket", "worker.0", {
        "socket": "out", "kind": "connected", "text": "connected to tcp://127.0.0.1:7100",
        "endpoint": "tcp://127.0.0.1:7100"})]


def test_an_event_not_to_say_still_counts(sup: Sup) -> None:
    w, r = sup.watching, sup.replicas["worker.0"]
    for peers in (1, 1, -1):
        w.on_record(r, record(b"E", {"socket": "in", "event": "accepted", "peers": peers,
                                     "endpoint": "tcp://127.0.0.1:7000", "say": False,
                                     "text": "accepted a peer"}))
    assert w.views[("worker.0", "in")].peers == 1
    assert w.views[("worker.0", "in")].last is not None
    assert sup.printer.records == []


def test_a_stopping_run_says_no_socket_event_but_counts_it(sup: Sup) -> None:
    w, r = sup.watching, sup.replicas["worker.0"]
    w.on_record(r, record(b"E", {"socket": "in", "event": "accepted", "peers": 1,
                                 "endpoint": "tcp://127.0.0.1:7000", "text": "accepted a peer"}))
    assert len(sup.printer.records) == 1
    w.stop()
    for event, text in (("disconnected", "a peer went away"), ("retrying", "retrying")):
        w.on_record(r, record(b"E", {"socket": "in", "event": event, "peers": -1,
                                     "endpoint": "tcp://127.0.0.1:7000", "text": text}))
    assert len(sup.printer.records) == 1  # nothing more said
    assert w.views[("worker.0", "in")].peers == 0
    assert w.views[("worker.0", "in")].last["text"] == "retrying"  # type: ignore[index]


def test_reasons_and_repeats_go_with_the_event_and_peers_never_go_below_none(sup: Sup
                                                                            ) -> None:
    w, r = sup.watching, sup.replicas["worker.1"]
    w.on_record(r, record(b"E", {"socket": "out", "event": "handshake failed", "peers": 0,
                                 "endpoint": "e", "reason": "why", "text": "failed: why"}))
    w.on_record(r, record(b"E", {"socket": "out", "event": "disconnected", "peers": -1,
                                 "endpoint": "e", "repeat": 4, "text": "4 more"}))
    assert w.views[("worker.1", "out")].peers == 0
    assert [f for _, _, f in sup.printer.records] == [
        {"socket": "out", "kind": "handshake failed", "text": "failed: why", "endpoint": "e",
         "reason": "why"},
        {"socket": "out", "kind": "disconnected", "text": "4 more", "endpoint": "e",
         "repeat": 4}]


@pytest.mark.parametrize("data", [b"E{", b"E[1, 2]", b'E"text"', b"", b"X{}", b'Q{"id": 1}'])
def test_records_that_make_no_sense_are_ignored(sup: Sup, data: bytes) -> None:
    sup.watching.on_record(sup.replicas["worker.0"], data)
    assert sup.watching.views == {} and sup.printer.records == []


def test_what_top_sees_of_each_kind_of_node(sup: Sup) -> None:
    w = sup.watching
    w.on_record(sup.replicas["worker.0"], record(b"S", {"id": "x", "sockets": {
        "in": {"counts": [5, 50, 0, 0], "tap_dropped": 2}, "bad": "entry",
        "out": {"counts": [1, 2, 3]}}}))  # a list of three is no counts
    got = w.sockets_of(sup.replicas["worker.0"])
    assert list(got) == ["in", "out"]
    assert got["in"] == {
        "type": "PULL", "bind": ["tcp://127.0.0.1:7000"], "connect": [], "watched": True,
        "peers": 0, "messages_in": 5, "bytes_in": 50, "messages_out": 0, "bytes_out": 0,
        "tap_dropped": 2, "last_event": None, "frames": False}
    assert got["out"]["messages_out"] == 0 and got["out"]["watched"] is True
    cmd = w.sockets_of(sup.replicas["feed.0"])["pub"]
    assert cmd["watched"] is False
    assert [cmd[k] for k in ("peers", "messages_in", "bytes_in", "messages_out",
                             "bytes_out")] == [None] * 5
    proxy = w.sockets_of(sup.replicas["proxy.0"])
    assert {k: v["frames"] for k, v in proxy.items()} == {
        "frontend": True, "backend": True, "control": False}
    assert w.sockets_of(sup.replicas["lonely.0"]) == {}
    assert not Watching.watched(sup.replicas["lonely.0"])


def test_a_stale_count_never_lowers_what_a_node_counted(sup: Sup) -> None:
    # The node's last counts (main thread) and an answer the watch thread computed before
    # them can reach the channel in either order: the later, smaller one is stale.
    w, r = sup.watching, sup.replicas["worker.0"]

    def counted(counts: list[int], dropped: int = 0) -> None:
        w.on_record(r, record(b"S", {"id": "", "sockets": {
            "in": {"counts": counts, "tap_dropped": dropped}}}))

    def seen() -> list[int]:
        got = w.sockets_of(r)["in"]
        return [got[k] for k in ("messages_in", "bytes_in", "messages_out", "bytes_out",
                                 "tap_dropped")]

    counted([50, 500, 0, 0], 3)  # its last counts
    counted([44, 440, 0, 0], 2)  # an answer computed before them, written after
    assert seen() == [50, 500, 0, 0, 3]
    counted([51, 520, 1, 9], 3)
    assert seen() == [51, 520, 1, 9, 3]
    w.on_started(r)  # a new process of the replica counts from zero again
    counted([2, 20, 0, 0])
    assert seen() == [2, 20, 0, 0, 0]


def test_stats_wait_for_every_node_asked(sup: Sup, channels: dict[str, Node]) -> None:
    w = sup.watching
    answers: list[dict[str, Any]] = []
    w.stats(answers.append,
            lambda: {"in": w.sockets_of(sup.replicas["worker.1"])["in"]["messages_in"]})
    asked = {name: n.requests() for name, n in channels.items()}
    rid = asked["worker.0"][0][1:].decode()
    assert asked == {"worker.0": [b"S" + rid.encode()], "worker.1": [b"S" + rid.encode()],
                     "proxy.0": [b"S" + rid.encode()], "feed.0": [], "lonely.0": []}
    assert len(sup.timers) == 1
    for name in ("worker.0", "proxy.0"):
        w.on_record(sup.replicas[name], record(b"S", {"id": rid, "sockets": {}}))
    w.on_record(sup.replicas["worker.1"], record(b"S", {"id": "another", "sockets": {}}))
    assert answers == []
    w.on_record(sup.replicas["worker.1"], record(b"S", {"id": rid, "sockets": {
        "in": {"counts": [9, 90, 0, 0], "tap_dropped": 0}}}))
    assert answers == [{"in": 9}]  # with the counts just come
    assert len(sup.timers) == 0  # the wait is over
    w.on_record(sup.replicas["worker.0"], record(b"S", {"id": rid, "sockets": {}}))
    assert len(answers) == 1


def test_stats_answer_after_the_wait_with_what_is_known(sup: Sup, channels: dict[str, Node]
                                                       ) -> None:
    w = sup.watching
    w.on_record(sup.replicas["worker.1"], record(b"S", {"id": "old", "sockets": {
        "in": {"counts": [4, 40, 0, 0]}}}))
    answers: list[int] = []
    w.stats(lambda _doc: answers.append(
        w.sockets_of(sup.replicas["worker.1"])["in"]["messages_in"]), dict)
    rid = channels["worker.0"].requests()[0][1:].decode()
    w.on_record(sup.replicas["worker.0"], record(b"S", {"id": rid, "sockets": {}}))
    sup.timers.fire(sup.clock.t + STATS_WAIT - 0.01)
    assert answers == []
    sup.timers.fire(sup.clock.t + STATS_WAIT)
    assert answers == [4]  # worker.1 and proxy.0 never answered: their last counts
    w.on_record(sup.replicas["worker.1"], record(b"S", {"id": rid, "sockets": {}}))
    assert answers == [4]


def test_a_nodes_last_counts_answer_no_request(sup: Sup, channels: dict[str, Node]) -> None:
    w = sup.watching
    answers: list[dict[str, Any]] = []
    w.stats(answers.append, dict)
    # What a node sends as it ends (Watch.report_final): counts with no id.
    w.on_record(sup.replicas["worker.0"], record(b"S", {"id": "", "sockets": {
        "in": {"counts": [3, 30, 0, 0], "tap_dropped": 0}}}))
    assert w.sockets_of(sup.replicas["worker.0"])["in"]["messages_in"] == 3
    assert answers == [] and len(sup.timers) == 1


def test_stats_with_nobody_to_ask_answer_at_once(sup: Sup) -> None:
    running(sup, "feed.0", "lonely.0")  # a command node, a node without sockets
    answers: list[dict[str, Any]] = []
    sup.watching.stats(answers.append, lambda: {"ok": True})
    assert answers == [{"ok": True}] and len(sup.timers) == 0


def test_a_stopping_run_answers_what_waits_and_asks_no_more(sup: Sup,
                                                            channels: dict[str, Node]) -> None:
    w = sup.watching
    answers: list[dict[str, Any]] = []
    w.stats(answers.append, lambda: {"n": 1})
    assert answers == []
    w.stop()
    assert answers == [{"n": 1}]
    for n in channels.values():
        n.requests()
    w.stats(answers.append, lambda: {"n": 2})
    assert answers == [{"n": 1}, {"n": 2}]
    assert all(n.requests() == [] for n in channels.values())


def test_a_tap_is_sent_to_each_replica_answered_and_taken_back(sup: Sup,
                                                               channels: dict[str, Node]
                                                               ) -> None:
    w = sup.watching
    done: list[str] = []
    w.tap(7, "ipc:///tmp/tap-a", [("worker.0", "in"), ("worker.1", "in")],
          lambda: done.append("a"))
    (t0,), (t1,) = channels["worker.0"].taps_asked(), channels["worker.1"].taps_asked()
    assert t0 == t1 and t0["socket"] == "in" and t0["taps"] == ["ipc:///tmp/tap-a"]
    assert t0["id"]
    assert channels["proxy.0"].requests() == []
    w.on_record(sup.replicas["worker.0"], record(b"A", {"id": t0["id"]}))
    assert done == []
    w.on_record(sup.replicas["worker.1"], record(b"A", {"id": t0["id"]}))
    assert done == ["a"]

    w.tap(8, "ipc:///tmp/tap-b", [("worker.0", "in")], lambda: done.append("b"))
    (t,) = channels["worker.0"].taps_asked()
    assert t["taps"] == ["ipc:///tmp/tap-a", "ipc:///tmp/tap-b"]
    sup.timers.fire(sup.clock.t + STATS_WAIT)  # no answer: done after the wait
    assert done == ["a", "b"]

    w.untap(7)
    assert channels["worker.0"].taps_asked() == [
        {"socket": "in", "taps": ["ipc:///tmp/tap-b"], "id": ""}]
    assert channels["worker.1"].taps_asked() == [{"socket": "in", "taps": [], "id": ""}]
    w.untap(7)  # once is enough
    assert channels["worker.0"].requests() == []


def test_a_replica_that_starts_again_gets_its_taps_again(sup: Sup,
                                                         channels: dict[str, Node]) -> None:
    w = sup.watching
    w.tap(3, "ipc:///tmp/t", [("worker.0", "out"), ("worker.1", "out")])
    for n in channels.values():
        n.requests()
    w.on_record(sup.replicas["worker.1"], record(b"E", {"socket": "out", "peers": 1,
                                                        "event": "connected", "say": False}))
    w.on_record(sup.replicas["worker.1"], record(b"S", {"sockets": {
        "out": {"counts": [0, 0, 5, 50], "tap_dropped": 1}}}))
    w.on_started(sup.replicas["worker.1"])
    assert channels["worker.1"].taps_asked() == [
        {"socket": "out", "taps": ["ipc:///tmp/t"], "id": ""}]
    assert channels["worker.0"].requests() == []
    v = w.views[("worker.1", "out")]
    assert (v.peers, v.counts, v.tap_dropped) == (0, [0, 0, 0, 0], 0)  # a new process


def test_a_tap_on_a_replica_not_running_is_done_at_once(sup: Sup) -> None:
    done: list[bool] = []
    sup.watching.tap(1, "ipc:///tmp/t", [("worker.0", "in")], lambda: done.append(True))
    assert done == [True]
    assert sup.watching.taps == {1: ("ipc:///tmp/t", [("worker.0", "in")])}


# -- the control channel's requests: stats and tap -------------------------------------------------


def test_the_stats_document(sup: Sup) -> None:
    doc = stats(sup)
    assert doc["run_id"] == "demo-7f3a" and doc["stopping"] is False
    assert abs(doc["ts"] - time.time()) < 5
    reps = doc["replicas"]
    assert reps["worker.0"]["kind"] == "run" and reps["feed.0"]["kind"] == "command"
    assert set(reps["worker.0"]["sockets"]) == {"in", "out"}
    assert reps["feed.1"]["sockets"]["pub"]["watched"] is False
    assert reps["lonely.0"]["sockets"] == {}


def test_a_tap_on_a_run_node(sup: Sup) -> None:
    assert tap(sup, {"target": "worker.in", "endpoint": "ipc:///t"}) == {
        "ok": True, "replicas": ["worker.0", "worker.1"], "socket": "in", "type": "PULL",
        "targets": [("worker.0", "in"), ("worker.1", "in")]}
    assert tap(sup, {"target": "worker.1.out", "endpoint": "ipc:///t"}) == {
        "ok": True, "replicas": ["worker.1"], "socket": "out", "type": "PUSH",
        "targets": [("worker.1", "out")]}


def test_a_tap_on_a_command_nodes_pub_subscribes_to_every_bind(sup: Sup) -> None:
    assert tap(sup, {"target": "feed.pub", "endpoint": "ipc:///t"}) == {
        "ok": True, "subscribe": ["tcp://127.0.0.1:7300", "tcp://127.0.0.1:7301"],
        "socket": "pub", "type": "PUB"}
    assert tap(sup, {"target": "feed.1.pub", "endpoint": "ipc:///t"})["subscribe"] == [
        "tcp://127.0.0.1:7301"]


@pytest.mark.parametrize(("request_", "error"), [
    ({"target": "worker.in"}, "a tap needs a target NODE.SOCKET and an endpoint"),
    ({"endpoint": "ipc:///t"}, "a tap needs a target NODE.SOCKET and an endpoint"),
    ({"target": 3, "endpoint": "ipc:///t"}, "a tap needs a target NODE.SOCKET and an endpoint"),
    ({"target": "nosuch.in", "endpoint": "ipc:///t"},
     "run demo-7f3a has no node 'nosuch'; its nodes: worker, proxy, feed, lonely"),
])
def test_tap_requests_refused(sup: Sup, request_: dict[str, Any], error: str) -> None:
    with pytest.raises(TapRefused) as exc:
        tap(sup, request_)
    assert str(exc.value) == error


NODES = "worker, proxy, feed, lonely"


@pytest.mark.parametrize(("target", "error"), [
    ("worker", f"'worker' is not NODE.SOCKET (or NODE.N.SOCKET): run demo-7f3a has the nodes "
               f"{NODES}"),
    ("worker.0.in.x", "'worker.0.in.x' is not NODE.SOCKET (or NODE.N.SOCKET): run demo-7f3a "
                      f"has the nodes {NODES}"),
    ("worker..in", "'worker..in' is not NODE.SOCKET (or NODE.N.SOCKET): run demo-7f3a has the "
                   f"nodes {NODES}"),
    (".in", f"'.in' is not NODE.SOCKET (or NODE.N.SOCKET): run demo-7f3a has the nodes {NODES}"),
    ("ghost.in", f"run demo-7f3a has no node 'ghost'; its nodes: {NODES}"),
    ("worker.5.in", "node worker has no replica '5'; its replicas: worker.0, worker.1"),
    ("worker.x.in", "node worker has no replica 'x'; its replicas: worker.0, worker.1"),
    ("worker.nope", "node worker has no socket 'nope'; its sockets: in, out"),
    ("lonely.any", "node lonely has no socket 'any'; it has no sockets"),
])
def test_tap_targets_that_name_nothing(sup: Sup, target: str, error: str) -> None:
    with pytest.raises(TapRefused) as exc:
        _tap_targets(sup, target)
    assert str(exc.value) == error


def test_tap_targets_found(sup: Sup) -> None:
    reps, s = _tap_targets(sup, "proxy.0.backend")
    assert [r.name for r in reps] == ["proxy.0"] and s == "backend"
    reps, s = _tap_targets(sup, "worker.out")
    assert [r.name for r in reps] == ["worker.0", "worker.1"] and s == "out"


@pytest.mark.parametrize(("target", "error"), [
    ("feed.ask", "feed.ask is a REQ socket of command node feed: topo cannot see inside a "
                 "program it only starts; only a command node's PUB socket can be tapped, by "
                 "subscribing to it"),
    ("feed.up", "feed.up is a PUB socket that connects: a tap can only subscribe to a PUB "
                "that binds (tap the socket it connects to instead)"),
    ("feed.0.safe", "feed.0.safe is a CURVE server: a tap cannot subscribe to it"),
])
def test_what_cannot_be_tapped_of_a_command_node(sup: Sup, target: str, error: str) -> None:
    with pytest.raises(TapRefused) as exc:
        tap(sup, {"target": target, "endpoint": "ipc:///t"})
    assert str(exc.value) == error


def test_command_tap_on_its_own() -> None:
    pub = SocketPlan("pub", "PUB", bind=("tcp://127.0.0.1:1",))
    other = SocketPlan("pub", "PUB", bind=("tcp://127.0.0.1:2", "ipc:///tmp/p"))
    assert _command_tap("n.pub", "n", pub, [(pub, SocketPlan("x", "SUB")), (other,)]) == {
        "ok": True, "subscribe": ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "ipc:///tmp/p"],
        "socket": "pub", "type": "PUB"}
