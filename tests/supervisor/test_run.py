"""The composition root (``supervisor/run.py``) gives back all it took, also when it fails half-way.

An in-process run changes the calling process: the soft RLIMIT_NOFILE, ``gc.freeze``,
the child-subreaper flag, a guardian child, log files, epoll, the control socket.
Each failure below is injected after all of those were taken; afterwards the process
must be as it was, and ``no_leftovers`` proves that no process, run folder, ipc file
or SysV object is left.
"""

from __future__ import annotations

import gc
import io
import os
import resource
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.plan import IpcPlan, Plan
from orchestrator.runs.folder import read_state, remove_run_dir, write_state
from orchestrator.start.prepare import prepare
from orchestrator.supervisor import run as run_module
from orchestrator.supervisor import statefile
from orchestrator.supervisor.childsetup import PR_GET_CHILD_SUBREAPER, prctl_get
from orchestrator.supervisor.run import Hooks, run_plan
from orchestrator.supervisor.supervisor import Replica
from tests.conftest import Leftovers

REPO = Path(__file__).resolve().parents[2]
LOW_NOFILE = 512  # below what a run raises it to, so that the raise is visible


def topology(tmp_path: Path) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\npythonpath: [{REPO}]\n" + textwrap.dedent("""
        ipc:
          jobs: {type: msgqueue}
        nodes:
          a: {run: "tests.nodes.funcs:serve", replicas: 2, ipc: [jobs]}
          sh:
            command: ["sh", "-c", "sleep 60 & echo up; wait"]
            ready: {log: "^up$"}
        """))
    return path


def process_state() -> dict[str, Any]:
    """What a run may change in the calling process."""
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the fd of the listing itself
    return {"nofile": resource.getrlimit(resource.RLIMIT_NOFILE), "frozen": gc.get_freeze_count(),
            "subreaper": prctl_get(PR_GET_CHILD_SUBREAPER), "fds": fds}


@pytest.fixture
def low_nofile() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= LOW_NOFILE:
        pytest.skip(f"the hard fd limit ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_NOFILE, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def assert_taken() -> None:
    """Everything the failure must give back was taken by the time it came."""
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > LOW_NOFILE
    assert gc.get_freeze_count() > 0
    assert prctl_get(PR_GET_CHILD_SUBREAPER) == 1


def test_a_control_socket_that_cannot_be_made_gives_everything_back(
    tmp_path: Path, low_nofile: None, no_leftovers: Leftovers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any) -> Any:
        assert_taken()
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(run_module, "serve_control", refuse)
    plan = prepare(topology(tmp_path), err=io.BytesIO())
    before = process_state()
    with pytest.raises(OSError, match="Address already in use"):
        run_plan(plan, out=io.BytesIO(), err=io.BytesIO())
    assert process_state() == before
    assert not Path(plan.run_dir).exists()


def test_a_failure_while_nodes_run_stops_them_and_gives_everything_back(
    tmp_path: Path, low_nofile: None, no_leftovers: Leftovers,
) -> None:
    ready: list[str] = []

    def fail_when_all_are_up(r: Replica) -> None:
        ready.append(r.name)
        if len(ready) == 3:
            assert_taken()
            raise RuntimeError("a hook failed")

    plan = prepare(topology(tmp_path), err=io.BytesIO())
    before = process_state()
    with pytest.raises(RuntimeError, match="a hook failed"):
        run_plan(plan, out=io.BytesIO(), err=io.BytesIO(),
                 hooks=Hooks(ready_hook=fail_when_all_are_up))
    assert sorted(ready) == ["a.0", "a.1", "sh.0"]
    assert process_state() == before
    assert not Path(plan.run_dir).exists()  # no_leftovers: no process, no SysV queue either


def test_the_state_file_names_each_ipc_resource_from_the_moment_it_exists(
    state_dir: Path, no_leftovers: Leftovers,
) -> None:
    run_dir = state_dir / "r"
    run_dir.mkdir()
    write_state(run_dir, {"run_id": "r", "supervisor": {"pid": os.getpid(), "start": None}})
    seen: list[list[str]] = []
    real_write = write_state

    def spy(folder: Path, state: dict[str, Any]) -> None:
        seen.append([rec["name"] for rec in state["ipc"]])
        real_write(folder, state)

    plan = Plan("r", str(run_dir), "/x/t.yaml", (), ipc={
        "a": IpcPlan("a", "msgqueue", key_from="auto"), "b": IpcPlan("b", "semaphore",
                                                                      key_from="auto")})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(statefile, "write_state", spy)
        res = statefile.create_ipc(plan)
    try:
        assert seen == [["a"], ["a", "b"]]
        state = read_state(run_dir)
        assert state is not None and state["file"] == "/x/t.yaml"
        assert state["ipc"] == res.records() and state["supervisor"]["pid"] == os.getpid()
    finally:
        res.remove()
        remove_run_dir(run_dir)
