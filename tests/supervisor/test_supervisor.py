"""The supervisor's state machine with a fake clock and fake processes: no real process at all.

Each test feeds a scripted history of events (ready bytes, output, exits,
signals, time passing) and checks what the supervisor started, signalled,
printed and returned.
"""

from __future__ import annotations

import io
import signal
from typing import Any

import pytest

from orchestrator.plan import Plan, ReplicaPlan
from orchestrator.spec.model import Topology
from orchestrator.spec.planner import node_plan
from orchestrator.supervisor.output import Printer
from orchestrator.supervisor.spawn import Proc
from orchestrator.supervisor.supervisor import Options, Supervisor


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeSpawner:
    def __init__(self) -> None:
        self.next_pid = 100
        self.started: list[tuple[str, int]] = []  # (kind, pid)
        self.signals: list[tuple[int, int]] = []
        self.fail_exec = False

    def _proc(self, kind: str) -> Proc:
        self.next_pid += 1
        self.started.append((kind, self.next_pid))
        return Proc(self.next_pid, -1)

    def fork_functions(self, starts: list[Any]) -> list[Proc | OSError]:
        return [self._proc("fork") for _ in starts]

    def exec_commands(self, commands: list[Any], *, capture: bool = True) -> list[Proc | OSError]:
        if self.fail_exec:
            return [OSError(11, "Resource temporarily unavailable") for _ in commands]
        return [self._proc("exec") for _ in commands]

    def exec_command(self, argv: Any, env: Any, cwd: str, *, capture: bool = True) -> Proc:
        if self.fail_exec:
            raise OSError(11, "Resource temporarily unavailable")
        return self._proc("exec" if capture else "probe")

    def signal_group(self, pgid: int, sig: int) -> None:
        self.signals.append((pgid, sig))

    def group_gone(self, pgid: int) -> None:
        pass


def build(
    nodes: dict[str, Any], **options: Any
) -> tuple[Supervisor, FakeSpawner, Clock, io.BytesIO]:
    topology = Topology(name="t", nodes=nodes)
    replicas = []
    for name, spec in topology.nodes.items():
        for i in range(spec.replicas):
            replicas.append(ReplicaPlan(
                node=name, replica=i, kind=spec.kind, run=spec.run, role=spec.role,
                argv=tuple(spec.command) if spec.command else None, cwd="/tmp",
                stop_signal=spec.stop_signal))
    depth: dict[str, int] = {}

    def tier(n: str) -> int:
        if n not in depth:
            depth[n] = 1 + max((tier(d) for d in topology.nodes[n].depends_on), default=-1)
        return depth[n]

    tiers = [tuple(n for n in topology.nodes if tier(n) == i)
             for i in range(1 + max(tier(n) for n in topology.nodes))]
    plan = Plan("t", "/tmp/t", "/tmp/t.yaml", tuple(replicas), tiers=tuple(tiers),
                nodes={name: node_plan(spec) for name, spec in topology.nodes.items()})
    spawner, clock, err = FakeSpawner(), Clock(), io.BytesIO()
    printer = Printer([r.name for r in replicas], out=io.BytesIO(), err=err)
    sup = Supervisor(plan, spawner=spawner, printer=printer, clock=clock,
                     options=Options(**options), targets={"m:f": lambda node: 0},
                     run_child=lambda *a: 0, environ={})
    return sup, spawner, clock, err


def pid_of(sup: Supervisor, name: str) -> int:
    proc = sup.replicas[name].proc
    assert proc is not None, f"{name} is not running"
    return proc.pid


def advance(sup: Supervisor, clock: Clock, seconds: float) -> None:
    clock.t += seconds
    sup.fire_timers()


RUN = {"run": "m:f"}


def test_one_node_that_finishes_ends_the_run_with_0() -> None:
    sup, sp, clock, _ = build({"a": RUN})
    sup.start()
    assert sp.started == [("fork", 101)]
    sup.on_ready(101)
    assert sup.replicas["a.0"].status == "ready"
    sup.on_exit(101, 0)
    assert sup.done and sup.code == 0


def test_a_crash_after_a_healthy_run_restarts_at_once() -> None:
    sup, sp, clock, err = build({"a": RUN})
    sup.start()
    sup.on_ready(101)
    clock.t += 30
    sup.on_exit(101, 1)
    assert sp.started == [("fork", 101), ("fork", 102)]
    assert sup.replicas["a.0"].restarts == 1
    assert b"a.0 exited with code 1; restarting now" in err.getvalue()
    assert (101, signal.SIGKILL) in sp.signals  # the old group's leftovers


def test_a_crash_loop_backs_off_and_then_fails() -> None:
    sup, sp, clock, err = build({"a": {**RUN, "max_restarts": 3, "backoff": "100ms"}})
    sup.start()
    delays = []
    for _ in range(3):
        pid = pid_of(sup, "a.0")
        sup.on_exit(pid, 2)  # before ready: a quick failure
        assert sup.replicas["a.0"].status == "restarting"
        deadline = sup.next_deadline()
        assert deadline is not None
        delays.append(round(deadline - clock.t, 6))
        advance(sup, clock, deadline - clock.t - 0.001)
        assert sup.replicas["a.0"].proc is None  # not before its time
        advance(sup, clock, 0.001)
        assert sup.replicas["a.0"].proc is not None
    assert delays == [0.1, 0.2, 0.4]
    sup.on_exit(pid_of(sup, "a.0"), 2)
    assert sup.replicas["a.0"].status == "failed"
    assert sup.done and sup.code == 1
    assert b"failed (3 restart(s) within 60s" in err.getvalue()


def test_depends_on_waits_for_every_replica_to_be_ready() -> None:
    sup, sp, clock, _ = build({"a": {**RUN, "replicas": 2}, "b": {**RUN, "depends_on": ["a"]}})
    sup.start()
    assert len(sp.started) == 2
    sup.on_ready(101)
    assert len(sp.started) == 2
    sup.on_ready(102)
    assert len(sp.started) == 3 and sup.replicas["b.0"].status == "starting"


def test_a_dependency_that_fails_fails_its_dependents() -> None:
    sup, sp, clock, err = build({"a": {**RUN, "restart": "never"},
                                 "b": {**RUN, "depends_on": ["a"]}})
    sup.start()
    sup.on_exit(101, 1)
    assert sup.replicas["b.0"].status == "failed"
    assert b"b.0 not started" in err.getvalue()
    assert sup.done and sup.code == 1


def test_exit_code_from_returns_that_nodes_code_and_stops_the_rest() -> None:
    sup, sp, clock, _ = build({"srv": RUN, "cli": {**RUN, "restart": "never"}},
                              exit_code_from="cli")
    sup.start()
    sup.on_ready(101)
    sup.on_ready(102)
    sup.on_exit(102, 3)
    assert sup.stopping and sup.code == 3
    assert (101, signal.SIGTERM) in sp.signals
    sup.on_exit(101, 143)
    assert sup.done and sup.code == 3


def test_abort_on_failure() -> None:
    sup, sp, clock, _ = build({"a": RUN, "b": {**RUN, "restart": "never"}}, abort_on_failure=True)
    sup.start()
    sup.on_exit(102, 1)
    assert sup.stopping and sup.code == 1
    sup.on_exit(101, 143)
    assert sup.done


def test_timeout_stops_with_124_and_kills_after_stop_timeout() -> None:
    sup, sp, clock, err = build({"a": {**RUN, "stop_timeout": 2}}, timeout=5)
    sup.start()
    sup.on_ready(101)
    assert sup.next_deadline() == pytest.approx(clock.t + 5)
    advance(sup, clock, 5)
    assert sup.code == 124 and sp.signals == [(101, signal.SIGTERM)]
    assert sup.next_deadline() == pytest.approx(clock.t + 2)
    advance(sup, clock, 2)
    assert sp.signals[-1] == (101, signal.SIGKILL)
    assert b"sending SIGKILL" in err.getvalue()
    sup.on_exit(101, 137)
    assert sup.done and sup.code == 124


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_map_to_their_codes(signum: int, code: int) -> None:
    sup, sp, clock, _ = build({"a": {**RUN, "stop_signal": "SIGINT"}})
    sup.start()
    sup.on_signal(signum)
    assert sup.code == code and sp.signals == [(101, signal.SIGINT)]
    sup.on_signal(signum)  # a second one: no more waiting
    assert sp.signals[-1] == (101, signal.SIGKILL)
    sup.on_exit(101, 137)
    assert sup.done and sup.code == code


def test_shutdown_goes_tier_by_tier_in_reverse() -> None:
    sup, sp, clock, _ = build({
        "db": RUN, "api": {**RUN, "depends_on": ["db"], "replicas": 2},
        "web": {**RUN, "depends_on": ["api"]}, "side": RUN})
    sup.start()
    for pid in (101, 102):  # db, side
        sup.on_ready(pid)
    sup.on_ready(103)
    sup.on_ready(104)
    sup.on_ready(105)  # web
    sup.on_signal(signal.SIGTERM)

    def terms() -> list[int]:
        return [pgid for pgid, sig in sp.signals if sig == signal.SIGTERM]

    assert terms() == [105]  # web alone first
    sup.on_exit(105, 0)
    assert terms() == [105, 103, 104]
    sup.on_exit(103, 0)
    assert terms() == [105, 103, 104]  # the api tier is not gone yet
    sup.on_exit(104, 0)
    assert sorted(terms()[3:]) == [101, 102]
    sup.on_exit(101, 0)
    assert not sup.done
    sup.on_exit(102, 0)
    assert sup.done and sup.code == 143


def test_nothing_restarts_during_shutdown() -> None:
    sup, sp, clock, _ = build({"a": {**RUN, "restart": "always"}})
    sup.start()
    sup.on_signal(signal.SIGINT)
    sup.on_exit(101, 1)
    assert len(sp.started) == 1 and sup.done


def test_command_node_is_ready_when_started() -> None:
    sup, sp, clock, _ = build({"c": {"command": ["true"]}, "d": {**RUN, "depends_on": ["c"]}})
    sup.start()
    assert [k for k, _ in sp.started] == ["exec", "fork"]


def test_log_readiness_matches_whole_lines() -> None:
    sup, sp, clock, _ = build({"c": {"command": ["x"], "ready": {"log": "^listening on \\d+"}},
                               "d": {**RUN, "depends_on": ["c"]}})
    sup.start()
    sup.on_output(101, "c.0", b"hello\nlisten")
    assert not sup.replicas["c.0"].ready
    sup.on_output(101, "c.0", b"ing on 80\n")
    assert sup.replicas["c.0"].ready and len(sp.started) == 2


def test_not_ready_in_time_is_a_failed_start() -> None:
    sup, sp, clock, err = build({"c": {"command": ["x"], "ready": {"log": "up", "timeout": 1},
                                       "restart": "never"}})
    sup.start()
    advance(sup, clock, 1)
    assert (101, signal.SIGKILL) in sp.signals
    assert b"did not become ready within 1s" in err.getvalue()
    sup.on_exit(101, 0)  # even a clean exit: it was not ready
    assert sup.replicas["c.0"].status == "failed" and sup.code == 1


def test_command_probe_retries_with_growing_delays_until_exit_0() -> None:
    sup, sp, clock, _ = build({"c": {"command": ["x"], "ready": {"command": ["probe"]}}})
    sup.start()
    advance(sup, clock, 0.005)
    assert sp.started[-1][0] == "probe"
    sup.on_exit(sp.started[-1][1], 1)
    assert sup.next_deadline() == pytest.approx(clock.t + 0.01)
    advance(sup, clock, 0.01)
    probe = sp.started[-1]
    assert probe[0] == "probe" and probe[1] != 102
    sup.on_exit(probe[1], 0)
    assert sup.replicas["c.0"].ready


def test_file_probe(tmp_path: Any) -> None:
    flag = tmp_path / "up"
    sup, sp, clock, _ = build({"c": {"command": ["x"], "ready": {"file": str(flag)}}})
    sup.start()
    advance(sup, clock, 0.005)
    assert not sup.replicas["c.0"].ready
    flag.write_text("")
    advance(sup, clock, 0.01)
    assert sup.replicas["c.0"].ready


def test_a_start_that_cannot_fork_counts_as_a_failure() -> None:
    sup, sp, clock, err = build({"c": {"command": ["x"], "restart": "never"}})
    sp.fail_exec = True
    sup.start()
    assert sup.replicas["c.0"].status == "failed" and sup.done and sup.code == 1
    assert b"could not start" in err.getvalue()


def test_stale_events_are_ignored() -> None:
    sup, sp, clock, _ = build({"a": RUN})
    sup.start()
    sup.on_exit(999, 1)
    sup.on_ready(999)
    assert sup.replicas["a.0"].status == "starting"


def test_no_timer_is_pending_when_nothing_waits() -> None:
    sup, sp, clock, _ = build({"a": RUN})
    sup.start()
    sup.on_ready(101)
    assert sup.next_deadline() is None  # the loop then sleeps until an fd wakes it
