"""What the state file says of a run beyond its processes: whether it uses CURVE, and
its nodes' public keys.

`topo ps` shows the flag and `topo keys` prints the keys, also once the supervisor is dead.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from orchestrator.plan import Plan, ReplicaPlan
from orchestrator.supervisor.spawn import Spawner
from orchestrator.supervisor.statefile import StateFile


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
