"""What the state file says of a run beyond its processes: here, whether it uses CURVE.

`topo ps` shows the flag and `topo keys` reads it, also once the supervisor is dead.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from orchestrator.plan import Plan
from orchestrator.supervisor.spawn import Spawner
from orchestrator.supervisor.statefile import StateFile


@pytest.mark.parametrize("curve", [True, False])
def test_the_state_says_whether_the_run_uses_curve(curve: bool) -> None:
    plan = Plan(run_id="r", run_dir="/nowhere/r", file="/x/t.yaml", replicas=(), curve=curve)
    spawner = cast(Spawner, SimpleNamespace(guardian_pid=None))
    assert StateFile(plan, spawner, None).base["curve"] is curve
