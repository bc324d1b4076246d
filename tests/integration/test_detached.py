"""Detached runs for real: `topo up -d`, then `ps`, `ls`, `logs`, `restart`, `down` from outside.

Every command is a `topo` subprocess with a deadline; ``no_leftovers`` proves
that no process, ipc file, run folder or SysV object outlived the run,
including after a SIGKILL of the supervisor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from orchestrator.runs.folder import read_state, supervisor_alive
from orchestrator.runs.procinfo import is_alive, proc_start
from tests.conftest import Leftovers, wait_until
from tests.integration.test_up import REPO, TopoProcess, topology

# A command node that starts a grandchild and says so: both must go with the run.
FAMILY = ("import subprocess, sys, time; "
          "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
          "print('tool up, grandchild', g.pid, flush=True); time.sleep(60)")

BODY = f"""
nodes:
  worker:
    run: tests.nodes.funcs:serve
    replicas: 2
    stop_timeout: 5s
  tool:
    command: [{sys.executable}, -c, "{FAMILY}"]
    ready: {{log: "tool up"}}
    depends_on: [worker]
"""


def topo(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def ps(env: dict[str, str], run: str) -> dict[str, Any]:
    result = topo(env, "ps", run, "--json")
    assert result.returncode == 0, result.stderr
    view: dict[str, Any] = json.loads(result.stdout)
    return view


def pids(view: dict[str, Any]) -> dict[str, int]:
    return {r["name"]: r["pid"] for r in view["replicas"] if r["pid"]}


def recorded(state_dir: Path, run: str) -> list[tuple[int, int | None]]:
    """(pid, start) of the supervisor and every replica, from the run's state file."""
    state = json.loads((state_dir / run / "state.json").read_text())
    found = [(state["supervisor"]["pid"], state["supervisor"]["start"])]
    found += [(r["pid"], r["start"]) for r in state["replicas"].values() if r["pid"]]
    return found


@pytest.fixture(autouse=True)
def down_what_a_failed_test_left(no_leftovers: Leftovers) -> Iterator[None]:
    """A detached run outlives a test that fails half-way: stop it before the leftover check."""
    yield
    for folder in no_leftovers.root.iterdir():
        state = read_state(folder)
        if state is not None and supervisor_alive(state):
            topo(no_leftovers.env(), "down", folder.name)


@pytest.fixture
def family(tmp_path: Path) -> Path:
    return topology(tmp_path, BODY, name="fam")


def test_up_d_ps_logs_restart_down(family: Path, no_leftovers: Leftovers) -> None:
    env = no_leftovers.env()
    up = topo(env, "up", "-d", str(family), "-p", "d1")
    assert up.returncode == 0, up.stderr
    assert up.stdout == "d1\n" and "run d1 is up" in up.stderr
    supervisor = psutil.Process(recorded(no_leftovers.root, "d1")[0][0])
    assert supervisor.terminal() is None and os.getsid(supervisor.pid) != os.getsid(0)
    assert supervisor.pid != os.getsid(supervisor.pid)  # not a session leader: no tty to gain
    assert os.readlink(f"/proc/{supervisor.pid}/fd/0") == os.devnull
    assert os.readlink(f"/proc/{supervisor.pid}/fd/2").endswith("/d1/supervisor.log")
    # The lean supervisor (launch.py): it forks the nodes without the validator in memory.
    assert "from orchestrator.supervisor.lean import main" in " ".join(supervisor.cmdline())
    maps = Path(f"/proc/{supervisor.pid}/maps").read_text()
    assert "pydantic" not in maps and "_yaml" not in maps
    assert not (no_leftovers.root / "d1" / "launch.json").exists()
    tool = next(p for p, _ in recorded(no_leftovers.root, "d1")[1:]
                if "tool up" in " ".join(psutil.Process(p).cmdline()))
    assert sorted(int(fd) for fd in os.listdir(f"/proc/{tool}/fd")) == [0, 1, 2]  # no stray fds
    view = ps(env, "d1")
    assert view["alive"] and [r["state"] for r in view["replicas"]] == ["ready"] * 3
    assert all(r["cpu_seconds"] is not None and r["rss_bytes"] > 0 for r in view["replicas"])
    before = pids(view)
    table = topo(env, "ps", "d1").stdout
    assert "REPLICA" in table and "worker.1" in table and "ready" in table
    ls = json.loads(topo(env, "ls", "--json").stdout)
    assert [(r["run_id"], r["alive"], r["replicas"]) for r in ls] == [("d1", True, 3)]

    logs = topo(env, "logs", "d1", "--no-color")
    assert "tool.0   | tool up, grandchild" in logs.stdout
    assert "worker.0 | serving pid=" in logs.stdout
    last = topo(env, "logs", "d1", "--tail", "1", "worker.0").stdout  # the filter, then the tail
    assert last.startswith("worker.0 | serving pid=") and last.count("\n") == 1
    assert topo(env, "logs", "--tail", "1", "tool").stdout.startswith("tool.0   | tool up")
    follow = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "logs", "-f", "d1", "worker", "--no-color"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        restarted = topo(env, "restart", "d1", "worker.1")
        assert restarted.returncode == 0 and "restarted worker.1" in restarted.stderr
        after = ps(env, "d1")
        assert pids(after)["worker.0"] == before["worker.0"]
        assert pids(after)["worker.1"] != before["worker.1"]
        assert [r["restarts"] for r in after["replicas"]] == [0, 1, 0]
        down = topo(env, "down", "d1")
        assert down.returncode == 0 and "run d1 is down" in down.stderr
        out, err = follow.communicate(timeout=15)  # -f ends by itself with the run
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
    assert follow.returncode == 0, err
    assert out.count("worker.1 | serving pid=") == 2 and "tool.0" not in out
    assert not (no_leftovers.root / "d1").exists()


def test_a_node_that_never_gets_ready_fails_up_d_by_name(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    path = topology(tmp_path, f"""
        nodes:
          fine:
            run: tests.nodes.funcs:serve
          slow:
            command: [{sys.executable}, -c, "print('waiting for a port nobody opens', flush=True);
              import time; time.sleep(60)"]
            ready: {{tcp: 1, timeout: 300ms}}
    """)
    result = topo(no_leftovers.env(), "up", "-d", str(path))
    assert result.returncode == 1 and result.stdout == ""
    assert "slow.0 did not become ready within 0.3s (its ready check: tcp)" in result.stderr
    assert "waiting for a port nobody opens" in result.stderr  # its last words
    assert not (no_leftovers.root / "t").exists()


def test_sigkill_of_the_supervisor_then_ps_shows_it_dead_and_down_cleans(
    family: Path, no_leftovers: Leftovers
) -> None:
    env = no_leftovers.env()
    assert topo(env, "up", "-d", str(family)).returncode == 0
    everyone = recorded(no_leftovers.root, "fam")
    grandchild = int(topo(env, "logs", "fam", "tool").stdout.split()[-1])
    everyone.append((grandchild, proc_start(grandchild)))
    assert all(is_alive(p, s) for p, s in everyone)
    os.kill(everyone[0][0], signal.SIGKILL)
    wait_until(lambda: not any(is_alive(p, s) for p, s in everyone),  # zombies count as gone
               timeout=5, message="every node and the grandchild to die with the supervisor")
    view = ps(env, "fam")
    assert not view["alive"] and {r["state"] for r in view["replicas"]} == {"dead"}
    assert "DEAD" in topo(env, "ps", "fam").stdout
    assert json.loads(topo(env, "ls", "--json").stdout)[0]["alive"] is False
    down = topo(env, "down", str(family))  # by file: its name is the run id
    assert down.returncode == 0, down.stderr
    assert not (no_leftovers.root / "fam").exists()


def test_down_names_the_nodes_it_had_to_kill(tmp_path: Path, no_leftovers: Leftovers) -> None:
    """A node that ignores SIGTERM makes `down` wait its stop_timeout: `down` says so."""
    path = topology(tmp_path, f"""
        nodes:
          fine:
            run: tests.nodes.funcs:serve
          deaf:
            command: [{sys.executable}, -c, "import signal, time;
              signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True);
              time.sleep(60)"]
            ready: {{log: "^up$"}}
            stop_timeout: 300ms
    """, name="deaf")
    env = no_leftovers.env()
    assert topo(env, "up", "-d", str(path)).returncode == 0
    down = topo(env, "down", "deaf")
    assert down.returncode == 0, down.stderr
    assert down.stderr.splitlines() == [
        "topo: deaf.0 still running 0.3s after SIGTERM; sending SIGKILL", "run deaf is down"]
    assert not (no_leftovers.root / "deaf").exists()


def test_up_over_a_dead_run_of_the_same_id_cleans_it_first(
    family: Path, no_leftovers: Leftovers
) -> None:
    env = no_leftovers.env()
    assert topo(env, "up", "-d", str(family), "-p", "again").returncode == 0
    first = recorded(no_leftovers.root, "again")
    os.kill(first[0][0], signal.SIGKILL)
    (no_leftovers.root / "again" / "logs" / "stale.log").write_text("from the dead run")
    up = topo(env, "up", "-d", str(family), "-p", "again")
    assert up.returncode == 0, up.stderr
    assert not (no_leftovers.root / "again" / "logs" / "stale.log").exists()
    assert not any(is_alive(p, s) for p, s in first)
    assert topo(env, "down", "again").returncode == 0


def test_a_foreground_run_is_reachable_too(family: Path, no_leftovers: Leftovers) -> None:
    env = no_leftovers.env()
    fg = TopoProcess([str(family), "--no-color"], env)
    fg.wait_for(r"tool\.0 +\| tool up")
    assert topo(env, "up", "-d", str(family)).returncode == 1  # the id is taken
    assert ps(env, "fam")["alive"]
    assert topo(env, "down").returncode == 0  # the only run: no id needed
    assert fg.finish() == 0
    assert "stopping (topo down)" in fg.err.decode()


@pytest.mark.parametrize("args, code, message", [
    (["ps", "nope"], 1, "no run named nope"),
    (["logs", "nope"], 1, "no run is known"),  # a name that is no run is a node name
    (["down", "nope"], 1, "no run named nope"),
    (["restart", "nope", "x"], 1, "no run named nope"),
    (["down"], 1, "no run is known"),
    (["restart"], 2, "the following arguments are required: RUN, NODE"),
    (["logs", "--tail", "x"], 2, "expected a whole number"),
    (["ps", "../etc"], 2, "neither a run id nor a topology file"),
    (["up", "-d", "--exit-code-from", "a", "f.yaml"], 2, "cannot go with -d"),
    (["up", "-d", "tests/corpus/e121_req_pub.yaml"], 1, "error[E121]"),
])
def test_bad_requests_are_one_sentence(
    args: list[str], code: int, message: str, no_leftovers: Leftovers
) -> None:
    result = topo(no_leftovers.env(), *args)
    assert result.returncode == code and message in result.stderr, result.stderr


def test_restart_of_an_unknown_node_and_ps_of_every_run(
    family: Path, no_leftovers: Leftovers
) -> None:
    env = no_leftovers.env()
    assert topo(env, "up", "-d", str(family)).returncode == 0
    try:
        bad = topo(env, "restart", "fam", "nobody")
        assert bad.returncode == 1
        assert "run fam has no node or replica named nobody (its nodes: worker, tool)" in bad.stderr
        assert "run fam: alive" in topo(env, "ps").stdout
    finally:
        assert topo(env, "down", "fam").returncode == 0


def test_with_no_run_ps_and_ls_say_so(no_leftovers: Leftovers) -> None:
    env = no_leftovers.env()
    assert topo(env, "ps").stdout == "no runs\n"
    assert json.loads(topo(env, "ps", "--json").stdout) == []
    assert json.loads(topo(env, "ls", "--json").stdout) == []


def test_gc_removes_dead_runs_only(family: Path, no_leftovers: Leftovers) -> None:
    env = no_leftovers.env()
    assert topo(env, "gc").stdout == "nothing to clean: no dead run is left\n"
    for run in ("live", "dead"):
        assert topo(env, "up", "-d", str(family), "-p", run).returncode == 0
    os.kill(recorded(no_leftovers.root, "dead")[0][0], signal.SIGKILL)
    result = topo(env, "gc")
    assert result.returncode == 0 and result.stdout.startswith("dead: removed the dead run")
    assert not (no_leftovers.root / "dead").exists()
    assert ps(env, "live")["alive"]
    assert topo(env, "down", "live").returncode == 0


def test_ps_shows_each_ipc_resource_with_its_live_state(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    path = topology(tmp_path, """
        ipc:
          jobs: {type: msgqueue, max_bytes: 4KiB}
          frame: {type: shm, size: 64KiB}
          room: {type: semaphore, value: 1}
        nodes:
          a:
            run: tests.nodes.funcs:serve
            ipc: [jobs, frame, room]
    """, name="res")
    env = no_leftovers.env()
    assert topo(env, "up", "-d", str(path)).returncode == 0
    try:
        ipc = {r["name"]: r for r in ps(env, "res")["ipc"]}
        assert ipc["jobs"]["max_bytes"] == 4096 and ipc["jobs"]["messages"] == 0
        assert ipc["frame"]["size"] == 65536 and ipc["frame"]["attached"] == 1
        assert ipc["room"]["value"] == 1 and ipc["room"]["mode"] == "0600"
        table = topo(env, "ps", "res").stdout.splitlines()
        header = next(line for line in table if line.startswith("IPC"))
        assert header.split()[:5] == ["IPC", "TYPE", "KEY", "ID", "MODE"]
        assert any(line.split()[:3] == ["jobs", "msgqueue", f"0x{ipc['jobs']['key']:08x}"]
                   for line in table)
    finally:
        assert topo(env, "down", "res").returncode == 0


def test_up_d_validates_the_file_once(tmp_path: Path, no_leftovers: Leftovers) -> None:
    """The supervisor forked by `topo up -d` plans from the topology its parent checked."""
    path = topology(tmp_path, """
        nodes:
          one: {command: [sleep, "60"]}
    """)
    script = ("import sys; import orchestrator.start.prepare as p\n"
              "def twice(*a, **k): raise SystemExit('validated a second time')\n"
              "p.load_or_raise = twice\n"
              "from orchestrator.cli import main; sys.exit(main(sys.argv[1:]))")
    env = no_leftovers.env()
    result = subprocess.run([sys.executable, "-c", script, "up", "-d", str(path)], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert topo(env, "down", "t").returncode == 0


def test_ready_file_is_there_while_the_run_is_ready(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    path = topology(tmp_path, """
        nodes:
          one: {command: [sleep, "60"]}
    """)
    env = no_leftovers.env()
    ready = tmp_path / "ready"
    assert topo(env, "up", "-d", str(path), "--ready-file", str(ready)).returncode == 0
    assert ready.exists()
    assert topo(env, "down", "t").returncode == 0
    assert not ready.exists()
    result = topo(env, "up", "-d", str(path), "--ready-file", str(tmp_path / "no" / "ready"))
    assert result.returncode == 2 and "does not exist" in result.stderr
