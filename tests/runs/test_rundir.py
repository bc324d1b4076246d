"""The run folder: creation, clean-up of a dead run's leftovers, the state file, node specs."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from orchestrator.errors import RunAlive
from orchestrator.plan import Plan, ReplicaPlan, SocketPlan
from orchestrator.runs.folder import (
    STATE_FILE,
    create_run_dir,
    kill_leftover,
    read_state,
    recorded_pids,
    remove_run_dir,
    supervisor_alive,
    write_specs,
    write_state,
)
from orchestrator.runs.procinfo import child_map, proc_start, subtree


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "root" / "myrun"


def dead_pid() -> tuple[int, int]:
    """A pid that existed a moment ago and its start time: what a dead supervisor leaves."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    start = proc_start(proc.pid)
    assert start is not None
    proc.communicate(timeout=10)
    return proc.pid, start


def sup(pid: int, start: int | None) -> dict[str, object]:
    return {"supervisor": {"pid": pid, "start": start}}


def unix_socket_file(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the file stays after close, like a killed node's ipc endpoint


def gone(pid: int, deadline: float) -> bool:
    """Poll until ``pid`` is gone or a zombie (reaping it if it is ours to reap)."""
    while time.monotonic() < deadline:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                if proc.ppid() == os.getpid():
                    os.waitpid(pid, 0)
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.01)
    return False


def start_python(
    procs: list[subprocess.Popen[bytes]], code: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a snippet in its own session; return it and the number it prints once running."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env,
                            start_new_session=True)
    procs.append(proc)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:  # whatever a failed test left
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        if p.stdout is not None:
            p.stdout.close()


# Each prints a line once it runs: right after fork/exec, /proc/<pid>/environ may still be empty.
SLEEPER = "import time; print(0, flush=True); time.sleep(60)"
FAMILY = ("import subprocess, sys, time; "
          "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
          "print(g.pid, flush=True); time.sleep(60)")


# -- creating -------------------------------------------------------------------------------------


def test_create_makes_a_private_folder_with_logs_and_spec(run_dir: Path) -> None:
    old = os.umask(0)  # even with a permissive umask the folder is exactly 0700
    try:
        create_run_dir(run_dir)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(run_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(run_dir.parent).st_mode) == 0o700
    assert (run_dir / "logs").is_dir() and (run_dir / "spec").is_dir()
    state = read_state(run_dir)
    assert state is not None and state["supervisor"]["pid"] == os.getpid()
    assert supervisor_alive(state)


def test_a_live_run_is_refused(run_dir: Path) -> None:
    create_run_dir(run_dir)  # the provisional state names this (live) process
    (run_dir / "logs" / "keep.log").write_text("x")
    alive = rf"run myrun is alive: its supervisor \(pid {os.getpid()}\) is still running"
    with pytest.raises(RunAlive, match=alive):
        create_run_dir(run_dir)
    assert (run_dir / "logs" / "keep.log").exists()


def test_a_live_run_in_the_supervisors_own_state_shape_is_refused(run_dir: Path) -> None:
    create_run_dir(run_dir)
    write_state(run_dir, {"run_id": "myrun", **sup(os.getpid(), proc_start(os.getpid()))})
    with pytest.raises(RunAlive, match=f"pid {os.getpid()}"):
        create_run_dir(run_dir)


def test_a_dead_runs_folder_is_cleaned_and_made_again(run_dir: Path, tmp_path: Path) -> None:
    create_run_dir(run_dir)
    pid, start = dead_pid()
    outside = tmp_path / "abs.sock"
    unix_socket_file(outside)
    unix_socket_file(run_dir / "backend")
    (run_dir / "logs" / "old.log").write_text("old")
    write_state(run_dir, {"run_id": "myrun", **sup(pid, start),
                          "endpoints": {"a.0": {"s": {"bind": [f"ipc://{outside}"]}}}})
    create_run_dir(run_dir)
    assert sorted(os.listdir(run_dir)) == ["logs", "spec", STATE_FILE]
    assert os.listdir(run_dir / "logs") == []
    assert not outside.exists()


def test_a_folder_without_state_is_stale(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "junk").write_text("x")
    create_run_dir(run_dir)
    assert not (run_dir / "junk").exists()


def test_leftover_processes_of_the_run_are_killed_with_their_group(
    run_dir: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    env = {**os.environ, "TOPO_RUN": "myrun"}
    leader, grandchild = start_python(procs, FAMILY, env)
    stranger, _ = start_python(procs, SLEEPER)
    create_run_dir(run_dir)
    pid, start = dead_pid()
    write_state(run_dir, {"run_id": "myrun", **sup(pid, start),
                          "replicas": {"a.0": {"pid": leader.pid}, "b.0": {"pid": stranger.pid},
                                       "c.0": {"pid": None}}})
    create_run_dir(run_dir)
    assert leader.wait(timeout=10) == -9
    assert gone(grandchild, time.monotonic() + 10)
    # Its pid is recorded, but it has no TOPO_RUN=myrun: a reused pid is never killed.
    assert stranger.poll() is None


def test_kill_leftover_trusts_a_matching_start_time(procs: list[subprocess.Popen[bytes]]) -> None:
    p, _ = start_python(procs, SLEEPER)
    start = proc_start(p.pid)
    assert start is not None
    assert not kill_leftover(p.pid, start + 5, "other")  # another process with that pid
    assert p.poll() is None
    assert kill_leftover(p.pid, start, "other")
    assert p.wait(timeout=10) == -9
    assert not kill_leftover(p.pid, start, "other")  # gone now


def test_kill_leftover_never_kills_its_own_group(procs: list[subprocess.Popen[bytes]]) -> None:
    # A leftover that shares our process group is killed alone, not with the group.
    p = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE,
                         env={**os.environ, "TOPO_RUN": "r"})
    procs.append(p)
    assert p.stdout is not None and p.stdout.readline()
    assert kill_leftover(p.pid, None, "r")
    assert p.wait(timeout=10) == -9


def test_recorded_pids_takes_only_well_formed_records() -> None:
    state = {"replicas": {"a.0": {"pid": 4, "start": 125}, "b.0": {"pid": 0}, "c.0": {"pid": "5"},
                          "d.0": "junk", "e.0": {"pid": 7}, "f.0": {"pid": True}}}
    assert list(recorded_pids(state)) == [(4, 125), (7, None)]
    assert list(recorded_pids({"replicas": [{"pid": 4}]})) == []


# -- state ----------------------------------------------------------------------------------------


def test_state_round_trip_is_atomic(tmp_path: Path) -> None:
    write_state(tmp_path, {"a": 1})
    write_state(tmp_path, {"a": 2, "b": [1, 2]})
    assert read_state(tmp_path) == {"a": 2, "b": [1, 2]}
    assert os.listdir(tmp_path) == [STATE_FILE]  # no temporary file left
    assert stat.S_IMODE(os.stat(tmp_path / STATE_FILE).st_mode) == 0o600


def test_read_state_of_nothing_or_garbage_is_none(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    (tmp_path / STATE_FILE).write_text("{not json")
    assert read_state(tmp_path) is None
    (tmp_path / STATE_FILE).write_text("[1, 2]")
    assert read_state(tmp_path) is None


def test_supervisor_alive_is_pid_reuse_safe() -> None:
    start = proc_start(os.getpid())
    assert start is not None
    assert supervisor_alive(sup(os.getpid(), start))
    assert not supervisor_alive(sup(os.getpid(), start - 9))  # the same pid, another process
    pid, dead_start = dead_pid()
    assert not supervisor_alive(sup(pid, dead_start))
    assert not supervisor_alive({})
    assert not supervisor_alive({"supervisor": {"pid": "1", "start": None}})
    assert not supervisor_alive({"supervisor": {"pid": True, "start": 1}})
    assert not supervisor_alive({"supervisor": [os.getpid(), start]})


# -- specs ----------------------------------------------------------------------------------------


def test_write_specs_writes_each_replicas_topo_spec(run_dir: Path) -> None:
    create_run_dir(run_dir)
    replicas = tuple(
        ReplicaPlan(node="w", replica=i, kind="run", run="m:f", params={"k": [1, 2]},
                    sockets=(SocketPlan("s", "PUSH", bind=(f"ipc://{run_dir}/s.{i}",),
                                        options={"sndhwm": 3}),),
                    spec_path=str(run_dir / "spec" / f"w.{i}.json"))
        for i in range(2)
    )
    plan = Plan(run_id="myrun", run_dir=str(run_dir), file="/f.yaml", replicas=replicas,
                pythonpath=("/a", "/b"))
    write_specs(plan)
    for r in replicas:
        path = Path(r.spec_path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        doc = json.loads(path.read_text())
        assert (doc["run_id"], doc["run_dir"], doc["file"], doc["pythonpath"]) == (
            "myrun", str(run_dir), "/f.yaml", ["/a", "/b"])
        assert ReplicaPlan.from_dict(doc["replica"]) == r


# -- removing -------------------------------------------------------------------------------------


def test_remove_run_dir_never_follows_symlinks(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "file").write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / "link").symlink_to(precious)
    (run / "filelink").symlink_to(precious / "file")
    unix_socket_file(run / "endpoint")
    remove_run_dir(run)
    assert not run.exists() and (precious / "file").read_text() == "keep me"
    alias = tmp_path / "alias"
    alias.symlink_to(precious)
    remove_run_dir(alias)  # the link goes, not what it points at
    assert not alias.is_symlink() and (precious / "file").exists()
    remove_run_dir(tmp_path / "never-existed")


def test_remove_run_dir_removes_outside_ipc_sockets_only(tmp_path: Path) -> None:
    sock, plain = tmp_path / "out.sock", tmp_path / "plain"
    unix_socket_file(sock)
    plain.write_text("a user's file at an ipc path")
    remove_run_dir(tmp_path / "run", ipc_paths=[str(sock), str(plain), str(tmp_path / "none")])
    assert not sock.exists() and plain.exists()


def test_child_map_and_subtree_agree_with_psutil() -> None:
    """The supervisor's own /proc walk finds a child and the grandchild it started."""
    code = ("import subprocess, sys, time; "
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
            "print(g.pid, flush=True); g.wait()")
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        try:
            kids = child_map()
            assert child.pid in kids[os.getpid()]
            assert subtree(kids, child.pid) == [child.pid, grandchild]
            assert set(subtree(kids, child.pid)) == {
                child.pid, *(p.pid for p in psutil.Process(child.pid).children(recursive=True))}
        finally:
            os.kill(grandchild, signal.SIGKILL)  # its parent reaps it and ends
    assert child.returncode == 0  # the with block waited: the grandchild is gone too
    assert subtree({}, 12345) == [12345]
