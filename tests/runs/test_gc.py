"""`topo gc` (``runs/gc.py``): dead runs are cleaned, live ones and unknown folders left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestrator.ipc.keys import live_table
from orchestrator.ipc.resources import create_all
from orchestrator.plan import IpcPlan, Plan
from orchestrator.runs.folder import me, write_state
from orchestrator.runs.gc import gc
from orchestrator.runs.procinfo import proc_start
from tests.conftest import Leftovers


def make_plan(run_dir: Path, *ipc: IpcPlan, run_id: str) -> Plan:
    return Plan(run_id=run_id, run_dir=str(run_dir), file="/t.yaml", replicas=(),
                ipc={p.name: p for p in ipc})


def test_gc_cleans_dead_runs_and_leaves_live_ones(tmp_path: Path, no_leftovers: Leftovers) -> None:
    root = no_leftovers.root
    dead, live, bare = root / "dead", root / "live", root / "bare"
    for folder in (dead, live, bare):
        folder.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    res_dead = create_all(make_plan(dead, IpcPlan("jobs", "msgqueue", key_from="auto"),
                                    run_id="dead"))
    res_live = create_all(make_plan(live, IpcPlan("jobs", "msgqueue", key_from="auto"),
                                    run_id="live"))
    try:
        write_state(dead, {"run_id": "dead", "supervisor": {"pid": dead_pid, "start": 1},
                           "ipc": res_dead.records()})
        write_state(live, {"run_id": "live", "supervisor": me(), "ipc": res_live.records()})
        said = gc(root)
        assert not dead.exists() and live.exists() and bare.exists()
        dead_id = res_dead.records()[0]["id"]
        assert dead_id not in live_table("msg")
        assert res_live.records()[0]["id"] in live_table("msg")
        assert said == [
            "bare: left alone, it has no state file topo can read",
            f"dead: removed the dead run; removed message queue jobs "
            f"(key {res_dead.records()[0]['key']:#x}, id {dead_id})",
        ]
        assert proc_start(os.getpid()) is not None
    finally:
        res_live.remove()
        res_dead.close()
        bare.rmdir()
        live.joinpath("state.json").unlink()
        live.rmdir()


def test_gc_of_a_missing_state_root_says_nothing(tmp_path: Path) -> None:
    assert gc(tmp_path / "nope") == []
