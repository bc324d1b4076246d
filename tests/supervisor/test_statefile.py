"""What the state file says of a run beyond its processes: whether it uses CURVE, and
its nodes' public keys; how often it is written; and what the control socket tidies
after a tap.

`topo ps` shows the flag and `topo keys` prints the keys, also once the supervisor is dead.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from orchestrator.plan import Plan, ReplicaPlan
from orchestrator.supervisor import statefile
from orchestrator.supervisor.spawn import Spawner
from orchestrator.supervisor.statefile import STATE_EVERY, StateFile, _remove_tap_socket
from orchestrator.supervisor.supervisor import Supervisor


@pytest.mark.parametrize("curve", [True, False])
def test_the_state_says_whether_the_run_uses_curve(curve: bool) -> None:
    plan = Plan(run_id="r", run_dir="/nowhere/r", file="/x/t.yaml", replicas=(), curve=curve)
    spawner = cast(Spawner, SimpleNamespace(guardian_pid=None))
    assert StateFile(plan, spawner, None).base["curve"] is curve


def test_the_state_records_each_nodes_public_key_in_file_order() -> None:
    replicas = (ReplicaPlan("worker", 0, "run", curve_public_key="W" * 40),
                ReplicaPlan("worker", 1, "run", curve_public_key="W" * 40),
                ReplicaPlan("broker", 0, "role", curve_public_key="B" * 40))
    plan = Plan(run_id="r", run_dir="/nowhere/r", file="/x/t.yaml", replicas=replicas,
                curve=True)
    base = StateFile(plan, cast(Spawner, SimpleNamespace(guardian_pid=None)), None).base
    assert list(base["curve_keys"].items()) == [("worker", "W" * 40), ("broker", "B" * 40)]
    plain = Plan(run_id="r", run_dir="/nowhere/r", file="/x/t.yaml",
                 replicas=(ReplicaPlan("a", 0, "run"),))
    assert StateFile(plain, cast(Spawner, SimpleNamespace(guardian_pid=None)), None
                     ).base["curve_keys"] == {}


def test_only_a_tap_socket_right_in_the_run_folder_is_removed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    made = []
    for path in (run / "tap-1.0.sock", run / "node.sock", tmp_path / "tap-2.0.sock"):
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
        made.append(path)
    (run / "tap-3.0.sock").write_text("not a socket")
    for endpoint in ("ipc://" + str(run / "tap-1.0.sock"), "ipc://" + str(run / "node.sock"),
                     "ipc://" + str(run / ".." / "tap-2.0.sock"), str(run / "tap-3.0.sock"),
                     "ipc://" + str(run / "tap-3.0.sock"), "tcp://127.0.0.1:5555"):
        _remove_tap_socket(str(run), endpoint)
    assert not made[0].exists()  # the tap's: removed
    assert made[1].exists() and made[2].exists()  # not a tap's, or not in the run folder
    assert (run / "tap-3.0.sock").read_text() == "not a socket"  # a file, not a socket


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_state_file_is_written_at_most_every_state_every(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A large start changes the state every loop turn; writing it whole each time made
    # the start quadratic in the number of nodes.
    clock = _Clock()
    monkeypatch.setattr("orchestrator.supervisor.statefile.time", SimpleNamespace(
        monotonic=clock, time=time.time))
    writes: list[dict[str, object]] = []
    monkeypatch.setattr(statefile, "write_state", lambda _dir, state: writes.append(state))
    timers: list[float] = []
    turn = [0]
    sup = SimpleNamespace(stopping=False, clock=clock, state=lambda: {"turn": turn[0]},
                          call_at=lambda when, fn: timers.append(when))
    plan = Plan(run_id="r", run_dir=str(tmp_path), file="/x/t.yaml", replicas=())
    state = StateFile(plan, cast(Spawner, SimpleNamespace(guardian_pid=None)), None)
    state.sup = cast(Supervisor, sup)
    state.flush()
    assert [w["turn"] for w in writes] == [0] and not state.dirty
    for _ in range(3):  # three changes within STATE_EVERY: none written, one timer
        turn[0] += 1
        clock.now += STATE_EVERY / 10
        state.mark(state.sup)
        state.flush()
    assert len(writes) == 1 and state.dirty
    assert timers == [pytest.approx(100.0 + STATE_EVERY)]
    clock.now = timers[0]
    state._due()  # wakes the loop; its next turn writes the last change
    state.flush()
    assert [w["turn"] for w in writes] == [0, 3] and not state.dirty
    state.mark(state.sup)
    state.flush(force=True)  # the run is ready: written at once
    assert len(writes) == 3
