"""IPC resources in real `topo up` runs: the teaching examples prove their point, nodes get
their resources, failures start nothing, and no queue, segment or semaphore outlives its run
(also after the supervisor is SIGKILLed).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import sysv_ipc

from examples.ipc_semaphore import check_no_overlap
from orchestrator.ipc.keys import keys_in_use, live_table
from orchestrator.start.foreground import run_file as up
from tests.conftest import Leftovers, wait_until
from tests.tools import need_php_extension
from tests.topo_samples import ROOT

KIND_FILE = {"msgqueue": "msg", "shm": "shm", "semaphore": "sem"}


def topo(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def run_topology(stem: str, leftovers: Leftovers) -> str:
    result = topo("up", str(ROOT / "topologies" / f"{stem}.yaml"), "-p",
                  f"{stem}-{leftovers.token[:6]}", "--no-color", "--timeout", "60",
                  env=leftovers.env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    return output


def lines_of(output: str, node: str) -> list[str]:
    return [ln.split("| ", 1)[1] for ln in output.splitlines() if re.match(rf"{node} +\|", ln)]


def write_topology(tmp_path: Path, body: str, name: str = "t") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\npythonpath: [{ROOT}]\n" + textwrap.dedent(body))
    return path


# -- the teaching examples ----------------------------------------------------------------------


def test_semaphore_lets_one_visitor_at_a_time_in(no_leftovers: Leftovers) -> None:
    output = run_topology("ipc_semaphore", no_leftovers)
    sections = []
    for v in range(4):
        for line in lines_of(output, f"visitor\\.{v}"):
            m = re.fullmatch(r"visitor\.\d: section \d from (\S+) to (\S+)", line)
            assert m, line
            sections.append((f"visitor.{v}", float(m[1]), float(m[2])))
    assert len(sections) == 20
    check_no_overlap(sections)  # raises naming the first two sections that overlap
    assert lines_of(output, "judge\\.0") == [
        "judge: 20 critical sections by 4 visitors, none overlapped"]


def test_message_queue_delivers_every_message_exactly_once(no_leftovers: Leftovers) -> None:
    output = run_topology("ipc_msgqueue", no_leftovers)
    for w in range(4):
        assert lines_of(output, f"writer\\.{w}") == [f"writer.{w}: sent 25 messages"]
    assert lines_of(output, "reader\\.0") == [
        "reader: 100 messages from 4 writers, each exactly once"]


def test_consumer_reads_what_the_producer_wrote_in_shared_memory(
        no_leftovers: Leftovers) -> None:
    output = run_topology("ipc_shm", no_leftovers)
    wrote = [ln.split("wrote ", 1)[1] for ln in lines_of(output, "producer\\.0") if "wrote" in ln]
    read = [ln.split("read ", 1)[1] for ln in lines_of(output, "consumer\\.0") if " read " in ln]
    assert len(wrote) == 5 and wrote == read
    assert wrote[2].startswith("'frame 3: ***' sha ")
    assert "consumer: done, 5 frames" in lines_of(output, "consumer\\.0")


def test_worker_and_collector_talk_over_a_socket_pair(no_leftovers: Leftovers) -> None:
    output = run_topology("ipc_socketpair", no_leftovers)
    assert lines_of(output, "collector\\.0") == [
        *(f"collector: task {n} -> {n * n}" for n in range(1, 11)),
        "collector: 10 results, sum of squares 385"]
    assert lines_of(output, "worker\\.0") == ["worker: sent 10 results"]


def test_php_and_python_share_a_queue_and_a_segment(no_leftovers: Leftovers) -> None:
    need_php_extension("sysvmsg")
    need_php_extension("shmop")
    output = run_topology("ipc_php", no_leftovers)
    assert lines_of(output, "php\\.0") == ["php: read 'hello from python' from shared memory",
                                          "php: wrote my answer at offset 256"]
    assert lines_of(output, "python\\.0")[-1] == \
        "python: php answered 'HELLO FROM PYTHON, READ BY PHP'"


def test_the_examples_own_checks_catch_what_they_claim_to() -> None:
    from collections import Counter

    from examples.ipc_msgqueue import check_exactly_once
    from examples.ipc_semaphore import check_log

    ok = ["v.0 enter 1.0", "v.0 leave 2.0", "v.1 enter 2.5", "v.1 leave 3.0"]
    assert [s[0] for s in check_log(ok)] == ["v.0", "v.1"]
    with pytest.raises(ValueError, match="two visitors were inside at once"):
        check_log(["v.0 enter 1.0", "v.1 enter 1.5", "v.0 leave 2.0", "v.1 leave 3.0"])
    with pytest.raises(ValueError, match=r"v\.1 entered at 1\.500000 while v\.0 was inside"):
        check_no_overlap([("v.0", 1.0, 2.0), ("v.1", 1.5, 3.0)])
    expected = {"w.0 1", "w.0 2"}
    assert check_exactly_once(Counter(expected), expected) == []
    problems = check_exactly_once(Counter({"w.0 1": 2, "w.9 9": 1}), expected)
    assert problems == ["1 missing, like 'w.0 2'", "1 arrived more than once, like 'w.0 1'",
                        "1 unexpected, like 'w.9 9'"]


def test_php_takes_turns_with_python_using_a_queue_token_as_lock(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    php = need_php_extension("sysvmsg")
    path = write_topology(tmp_path, f"""
        ipc:
          token: {{type: msgqueue}}
        nodes:
          seed: {{run: "tests.nodes.ipcnodes:seed_token", restart: never, ipc: [token]}}
          py: {{run: "tests.nodes.ipcnodes:token_turns", replicas: 2, restart: never,
               ipc: [token]}}
          php: {{command: [{php}, tests/nodes/token_lock.php], cwd: {ROOT}, replicas: 2,
                restart: never, ipc: [token]}}
        """)
    out, err = io.BytesIO(), io.BytesIO()
    assert up(path, out=out, err=err, no_color=True, timeout=30) == 0, err.getvalue()
    sections = [(m[1], int(m[2]) / 1e9, int(m[3]) / 1e9) for m in re.finditer(
        r"\| (\w+\.\d) inside from (\d+) to (\d+)", out.getvalue().decode())]
    assert sorted({s[0] for s in sections}) == ["php.0", "php.1", "py.0", "py.1"]
    assert len(sections) == 20
    check_no_overlap(sections)


# -- nodes get their resources ------------------------------------------------------------------


def test_run_and_command_nodes_share_queue_segment_and_pair(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = write_topology(tmp_path, f"""
        ipc:
          jobs: {{type: msgqueue}}
          frame: {{type: shm, size: 1KiB}}
          pipe: {{type: socketpair, between: [prog, taker]}}
          log: {{type: fifo}}
        nodes:
          prog:
            command: [{sys.executable}, -m, tests.nodes.ipcnodes]
            cwd: {ROOT}
            restart: never
            ipc: [jobs, frame, pipe, log]
          taker:
            run: tests.nodes.ipcnodes:take_from_program
            restart: never
            ipc: [jobs, frame, pipe]
        """)
    out, err = io.BytesIO(), io.BytesIO()
    code = up(path, out=out, err=err, no_color=True, timeout=30)
    text = out.getvalue().decode() + err.getvalue().decode()
    assert code == 0, text
    assert re.search(r"prog\.0 +\| program has frame=SharedMemory jobs=MessageQueue log=str "
                     r"pipe=socket; fifo at .*/fifo/log", text), text
    assert ("taker.0 | run node got 'hello from prog.0' type 7 and b'over the pair'; "
            "frame=SharedMemory jobs=MessageQueue pipe=socket") in text


def test_a_socket_pair_end_reaches_exactly_its_own_node(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    prog = f"[{sys.executable}, -m, tests.nodes.ipcnodes, fds]"
    path = write_topology(tmp_path, f"""
        ipc:
          pipe: {{type: socketpair, between: [cmd, fork]}}
        nodes:
          cmd: {{command: {prog}, cwd: {ROOT}, restart: never, ipc: [pipe]}}
          fork: {{run: "tests.nodes.ipcnodes:report_fds", restart: never, ipc: [pipe]}}
          cmd_other: {{command: {prog}, cwd: {ROOT}, restart: never}}
          fork_other: {{run: "tests.nodes.ipcnodes:report_fds", restart: never}}
        """)
    out, err = io.BytesIO(), io.BytesIO()
    assert up(path, out=out, err=err, no_color=True, timeout=30) == 0, err.getvalue()
    facts = {m[1]: (int(m[2]), {int(i) for i in m[3].split()})
             for m in re.finditer(r"(\w+)\.0 mine (\d+) all ([\d ]*)", out.getvalue().decode())}
    assert set(facts) == {"cmd", "fork", "cmd_other", "fork_other"}, out.getvalue()
    ends = {facts["cmd"][0], facts["fork"][0]}
    assert len(ends) == 2 and 0 not in ends
    assert facts["cmd"][1] & ends == {facts["cmd"][0]}
    assert facts["fork"][1] & ends == {facts["fork"][0]}
    assert not facts["cmd_other"][1] & ends and not facts["fork_other"][1] & ends


def test_a_restarted_node_gets_its_socket_pair_end_back(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = write_topology(tmp_path, """
        ipc:
          pipe: {type: socketpair, between: [sender, collector]}
        nodes:
          sender:
            run: tests.nodes.ipcnodes:crash_after_first
            restart: on-failure
            backoff: 10ms
            ipc: [pipe]
          collector:
            run: tests.nodes.ipcnodes:collect
            restart: never
            ipc: [pipe]
        """)
    out, err = io.BytesIO(), io.BytesIO()
    code = up(path, out=out, err=err, no_color=True, timeout=30)
    text = out.getvalue().decode() + err.getvalue().decode()
    assert code == 0, text
    got = re.findall(r"got (first|second) from pid (\d+)", text)
    assert [g[0] for g in got] == ["first", "second"] and got[0][1] != got[1][1], text
    assert "collected all" in text and "sender.0 exited with code 3; restarting" in text


# -- failures start nothing and leave nothing ------------------------------------------------------


def test_a_key_taken_by_a_foreign_queue_starts_nothing(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    used = keys_in_use()
    key = next(k for k in range(0x5EED_0000, 0x5EED_9000) if k not in used)
    stranger = sysv_ipc.MessageQueue(key, sysv_ipc.IPC_CREX, 0o600)
    try:
        path = write_topology(tmp_path, f"""
            ipc:
              mine: {{type: semaphore}}
              jobs: {{type: msgqueue, key: {key}}}
            nodes:
              n: {{run: tests.nodes.ipcnodes:started, ipc: [jobs, mine], restart: never}}
            """)
        result = topo("up", str(path), "-p", "taken", "--no-color", env=no_leftovers.env())
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == (
            f"topo: the key {key:#x} of IPC resource jobs is taken by an existing message queue "
            f"(id {stranger.id}) that this run did not create; choose another key or "
            f"`key: auto`, or remove it with `ipcrm -q {stranger.id}`")
        assert not (no_leftovers.root / "started-taken").exists()
        assert live_table("msg")[stranger.id].key == key
    finally:
        stranger.remove()


def test_a_startup_that_fails_half_way_removes_the_resources(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    # The resources exist by the time the node module fails to import.
    path = write_topology(tmp_path, """
        ipc:
          jobs: {type: msgqueue}
          frame: {type: shm, size: 4KiB}
          room: {type: semaphore}
          log: {type: fifo}
        nodes:
          n: {run: "tests.nodes.no_such_module:main", ipc: [jobs, frame, room, log]}
        """)
    result = topo("up", str(path), "-p", "halfway", "--no-color", env=no_leftovers.env())
    assert result.returncode == 1, result.stderr
    assert "cannot import module 'tests.nodes.no_such_module' for node n" in result.stderr


# -- removal after a SIGKILLed supervisor -------------------------------------------------------


HOLDER = """
    ipc:
      jobs: {type: msgqueue, max_bytes: 4KiB}
      frame: {type: shm, size: 64KiB}
      room: {type: semaphore, value: 2}
    nodes:
      holder:
        run: tests.nodes.ipcnodes:hold
        ipc: [jobs, frame, room]
    """


def start_and_sigkill(path: Path, run_id: str, leftovers: Leftovers) -> list[dict[str, Any]]:
    """Start a run, wait until it holds its resources, SIGKILL its supervisor; its records."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "up", str(path), "-p", run_id,
                             "--no-color"], cwd=ROOT, env=leftovers.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = leftovers.root / run_id / "state.json"

    def holding() -> list[dict[str, Any]] | None:
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            return None
        replicas = state.get("replicas") or {}
        ready = replicas.get("holder.0", {}).get("status") == "ready"
        return state["ipc"] if ready and len(state.get("ipc") or ()) == 3 else None

    try:
        records = wait_until(holding, timeout=20, message="the run to hold its resources")
        descendants = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    wait_until(lambda: not any(_running(pid) for pid in descendants), timeout=5,
               message="the guardian and the nodes to die")
    for pid in descendants:
        # An earlier in-process up() made this process a subreaper: the orphans are ours to reap.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    assert isinstance(records, list)
    for rec in records:
        assert live_table(KIND_FILE[rec["type"]])[rec["id"]].key == rec["key"]
    return records


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def gone(records: list[dict[str, Any]]) -> bool:
    return all(rec["id"] not in live_table(KIND_FILE[rec["type"]]) or
               live_table(KIND_FILE[rec["type"]])[rec["id"]].key != rec["key"] for rec in records)


def test_topo_down_after_a_sigkilled_supervisor_removes_its_resources(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = write_topology(tmp_path, HOLDER)
    records = start_and_sigkill(path, "killed", no_leftovers)
    result = topo("down", "killed", env=no_leftovers.env())
    assert result.returncode == 0, result.stderr
    assert gone(records)


def test_the_next_up_of_the_same_id_removes_a_dead_runs_resources(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = write_topology(tmp_path, HOLDER)
    records = start_and_sigkill(path, "again", no_leftovers)
    quick = write_topology(tmp_path, """
        nodes:
          n: {run: tests.nodes.funcs:ok, restart: never}
        """, name="quick")
    started = time.monotonic()
    result = topo("up", str(quick), "-p", "again", "--no-color", env=no_leftovers.env())
    assert result.returncode == 0, result.stderr
    assert gone(records) and time.monotonic() - started < 30


def test_gc_removes_what_a_dead_run_left(tmp_path: Path, no_leftovers: Leftovers) -> None:
    from orchestrator.runs.gc import gc

    path = write_topology(tmp_path, HOLDER)
    records = start_and_sigkill(path, "forgotten", no_leftovers)
    said = gc(no_leftovers.root)
    assert gone(records)
    assert len(said) == 1 and said[0].startswith("forgotten: removed the dead run; removed ")
    assert not (no_leftovers.root / "forgotten").exists()
    assert [n for n in os.listdir(no_leftovers.root) if n != ".cache"] == []  # .cache: plans
