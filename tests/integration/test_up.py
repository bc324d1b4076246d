"""`topo up` with real processes: restarts, exit codes, signals, and nothing left behind.

Every wait has a deadline; every test proves, through ``no_leftovers``, that
no process, ipc file, run folder or SysV object outlived its run.
"""

from __future__ import annotations

import io
import os
import re
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from orchestrator.cli import main as topo_main
from orchestrator.errors import InvalidTopology, RunAlive, UsageError
from orchestrator.start.foreground import run_file as up
from orchestrator.supervisor.supervisor import Replica, Supervisor
from tests.conftest import Leftovers, wait_until

REPO = Path(__file__).resolve().parents[2]
FUNCS = "tests.nodes.funcs"


def topology(tmp_path: Path, body: str, name: str = "t") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\npythonpath: [{REPO}]\n" + textwrap.dedent(body))
    return path


def run_up(path: Path, **kwargs: Any) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    code = up(path, out=out, err=err, **kwargs)
    return code, out.getvalue().decode(), err.getvalue().decode()


class TopoProcess:
    """A `topo up` subprocess whose output we read against deadlines."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "up", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
        self.out = b""
        self.err = b""
        self.sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream in (self.proc.stdout, self.proc.stderr):
            os.set_blocking(stream.fileno(), False)
            self.sel.register(stream, selectors.EVENT_READ)

    def _pump(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            data = key.fileobj.read()  # type: ignore[union-attr]
            if not data:
                self.sel.unregister(key.fileobj)
            elif key.fileobj is self.proc.stdout:
                self.out += data
            else:
                self.err += data

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern.encode(), self.out + self.err)) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.get_map():
                pytest.fail(f"no {pattern!r} x{count} within {timeout}s:\n"
                            f"{self.out.decode()}\n{self.err.decode()}")
            self._pump(left)

    def finish(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.sel.get_map() and time.monotonic() < deadline:
            self._pump(deadline - time.monotonic())
        code = self.proc.wait(max(0.1, deadline - time.monotonic()))
        self.sel.close()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()  # type: ignore[union-attr]
        return code


# -- in-process runs -------------------------------------------------------------------

def test_run_and_command_nodes_finish_and_print_prefixed_lines(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, f"""
        nodes:
          greeter: {{run: "{FUNCS}:ok", replicas: 2, restart: never}}
          shell:
            command: ["sh", "-c", "printf 'one\\ntwo'; echo $TOPO_NODE.$TOPO_REPLICA"]
            restart: never
            depends_on: [greeter]
        """)
    code, out, err = run_up(path)
    assert code == 0, err
    assert "greeter.0 | hello from greeter.0\n" in out
    assert "greeter.1 | hello from greeter.1\n" in out
    assert "shell.0   | one\n" in out and "shell.0   | twoshell.0\n" in out
    assert "no node is left to run" in err


def test_each_run_node_has_its_own_env_and_the_supervisor_keeps_its(
        tmp_path: Path, no_leftovers: Leftovers, monkeypatch: pytest.MonkeyPatch) -> None:
    # The supervisor sets what a node's replicas share around their forks (launch.py):
    # each replica must still see its own values, in Python and in what it starts, and
    # the supervisor's own environment must be as it was once they are forked.
    monkeypatch.setenv("SHARED", "the caller's")
    path = topology(tmp_path, f"""
        nodes:
          a: {{run: "{FUNCS}:env_seen", replicas: 3, restart: never,
               env: {{COLOR: red, SHARED: a's}}}}
          b: {{run: "{FUNCS}:env_seen", replicas: 2, restart: never, env: {{COLOR: blue}}}}
        """)
    before = dict(os.environ)
    code, out, err = run_up(path)
    assert code == 0, err
    assert dict(os.environ) == before
    for node, n, color, shared in (("a", 3, "red", "a's"), ("b", 2, "blue", "the caller's")):
        for i in range(n):
            seen = f"TOPO_NODE={node},TOPO_REPLICA={i},COLOR={color},SHARED={shared}"
            assert f"{node}.{i}  | py {seen} sh {seen}\n" in out, out


def test_a_failed_node_makes_the_run_fail(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, f"""
        nodes:
          bad: {{run: "{FUNCS}:fail", restart: never}}
        """)
    code, out, err = run_up(path)
    assert code == 1
    assert "bad.0 | failing on purpose" in out and "bad.0 exited with code 3" in err


def test_a_crash_restarts_within_policy(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, f"""
        nodes:
          a: {{run: "{FUNCS}:crash_once", backoff: 10ms}}
        """)
    seen: list[int] = []
    box: dict[str, Supervisor] = {}

    def ready(r: Replica) -> None:
        seen.append(r.restarts)
        if r.restarts == 1:
            box["sup"].handle_term()

    started = time.monotonic()
    code, out, err = run_up(path, ready_hook=ready, on_start=lambda s: box.setdefault("sup", s))
    assert code == 143
    assert seen == [0, 1]
    assert re.search(r"a.0 +\| crashing", out) and "restarting in 0.01s" in err
    assert time.monotonic() - started < 5


def test_a_crash_loop_ends_failed(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, f"""
        nodes:
          a: {{run: "{FUNCS}:flap", backoff: {{initial: 5ms, max: 20ms}}, max_restarts: 3}}
        """)
    code, out, err = run_up(path)
    assert code == 1
    assert err.count("restarting in") == 3
    assert "failed (3 restart(s) within 60s" in err


def test_exit_code_from(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, f"""
        nodes:
          srv: {{run: "{FUNCS}:serve"}}
          job: {{command: ["sh", "-c", "exit 7"], restart: never, depends_on: [srv]}}
        """)
    code, out, err = run_up(path, exit_code_from="job")
    assert code == 7, err
    assert "job finished" in err


def test_timeout_exits_124(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, f"""
        nodes:
          srv: {{run: "{FUNCS}:serve"}}
          sh: {{command: ["sleep", "300"]}}
        """)
    started = time.monotonic()
    code, out, err = run_up(path, timeout=0.3)
    assert code == 124 and "timeout after 0.3s" in err
    assert time.monotonic() - started < 3


def test_stop_timeout_escalates_to_sigkill(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, """
        nodes:
          stubborn:
            command: ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 1; done"]
            stop_timeout: 200ms
            ready: {log: up}
        """)
    code, out, err = run_up(path, timeout=0.2)
    assert code == 124
    assert "still running 0.2s after SIGTERM; sending SIGKILL" in err


def test_readiness_probes_gate_depends_on(tmp_path: Path, no_leftovers: Leftovers) -> None:
    flag = tmp_path / "flag"
    path = topology(tmp_path, f"""
        nodes:
          maker:
            command: ["sh", "-c", "echo starting; touch {flag}; exec sleep 300"]
            ready: {{file: {flag}, timeout: 5s}}
          waiter:
            command: ["sh", "-c", "test -e {flag} && echo saw-flag"]
            restart: never
            depends_on: [maker]
        """)
    code, out, err = run_up(path, exit_code_from="waiter")
    assert code == 0, out + err
    assert "waiter.0 | saw-flag" in out


def test_not_ready_in_time_fails(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, """
        nodes:
          mute:
            command: ["sleep", "300"]
            ready: {log: never-printed, timeout: 100ms}
            restart: never
        """)
    code, out, err = run_up(path)
    assert code == 1 and "did not become ready within 0.1s (log)" in err


def test_validation_errors_start_nothing(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, """
        nodes:
          a: {command: ["true"], bogus: 1}
        """)
    with pytest.raises(InvalidTopology):
        up(path)
    assert topo_main(["up", str(path)]) == 1


def test_unknown_exit_code_from_node_is_a_usage_error(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, """
        nodes:
          a: {command: ["true"]}
        """)
    with pytest.raises(UsageError, match="no node by that name"):
        up(path, exit_code_from="nope")
    assert topo_main(["up", str(path), "--exit-code-from", "nope"]) == 2


# -- `topo up` as a subprocess -----------------------------------------------------------

SERVING = f"""
nodes:
  srv: {{run: "{FUNCS}:serve", replicas: 2}}
  kids:
    command: ["sh", "-c", "echo serving; sleep 300 & setsid sleep 300 & wait"]
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_to_topo_up_leave_nothing(
        tmp_path: Path, no_leftovers: Leftovers, sig: int, code: int) -> None:
    path = topology(tmp_path, SERVING)
    topo = TopoProcess([str(path)], no_leftovers.env())
    topo.wait_for("serving", count=3)
    topo.proc.send_signal(sig)
    assert topo.finish() == code, topo.err.decode()


def test_a_forked_nodes_lines_come_as_printed_not_when_it_ends(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    # Line-buffered: the supervisor of a `topo` command makes its own stdout and stderr so
    # before it forks (childsetup.keep_stdio), and the nodes keep them.
    path = topology(tmp_path, f"""
        nodes:
          w: {{run: "{FUNCS}:say_then_wait", replicas: 2}}
        """)
    env = no_leftovers.env()
    env.pop("PYTHONUNBUFFERED", None)  # it would unbuffer every stream: nothing left to test
    topo = TopoProcess([str(path)], env)
    for i in range(2):
        topo.wait_for(rf"w\.{i} +\| out line of {i}\n")
        topo.wait_for(rf"w\.{i} +\| err line of {i}\n")
    topo.proc.send_signal(signal.SIGINT)
    assert topo.finish() == 130, topo.err.decode()


def test_two_runs_of_one_file_side_by_side(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, SERVING)
    one = TopoProcess([str(path), "-p", "one"], no_leftovers.env())
    two = TopoProcess([str(path), "-p", "two"], no_leftovers.env())
    one.wait_for("serving", count=3)
    two.wait_for("serving", count=3)
    again = TopoProcess([str(path), "-p", "one"], no_leftovers.env())
    assert again.finish() == 1
    assert b"alive" in again.err
    with pytest.raises(RunAlive):
        up(path, run_id="two")
    for topo in (one, two):
        topo.proc.send_signal(signal.SIGTERM)
    assert (one.finish(), two.finish()) == (143, 143)


def test_sigkill_of_topo_up_takes_every_node_and_grandchild_with_it(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, SERVING)
    topo = TopoProcess([str(path), "-p", "killed"], no_leftovers.env())
    topo.wait_for("serving", count=3)
    # guardian, 2 srv, sh, sleep, setsid sleep
    pids = wait_until(lambda: [p.pid for p in psutil.Process(topo.proc.pid).children(
        recursive=True)] if len(psutil.Process(topo.proc.pid).children(recursive=True)) >= 6
        else None, message="every node and grandchild to start")
    assert isinstance(pids, list)
    topo.proc.kill()
    killed_at = time.monotonic()
    assert topo.finish() == -signal.SIGKILL
    wait_until(lambda: not any(psutil.pid_exists(p) and _not_zombie(p) for p in pids),
               timeout=1.0, message="every node and grandchild to die")
    assert time.monotonic() - killed_at < 1.0
    # The run folder stays for `topo down` / the next `topo up` of the id to clean.
    from orchestrator.runs.folder import remove_run_dir

    remove_run_dir(no_leftovers.root / "killed")


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


CHILD_FACTS = (
    "import ctypes, os; libc = ctypes.CDLL(None); v = ctypes.c_int(); "
    "libc.prctl(2, ctypes.byref(v), 0, 0, 0); "
    "print('pgid', os.getpgid(0) == os.getpid(), 'pdeathsig', v.value, "
    "'spec', os.path.exists(os.environ['TOPO_SPEC']), 'stdin', os.read(0, 1))"
)


def test_every_child_gets_its_group_pdeathsig_and_default_signals(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    # grep, not python, reads the signal masks: python ignores SIGPIPE itself at startup.
    path = topology(tmp_path, f"""
        nodes:
          facts: {{command: ["{sys.executable}", "-c", "{CHILD_FACTS}"], restart: never}}
          masks: {{command: ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"], restart: never}}
        """)
    code, out, err = run_up(path)
    assert code == 0, out + err
    assert "pgid True pdeathsig 9 spec True stdin b''" in out
    assert "masks.0 | SigBlk:\t0000000000000000" in out
    assert "masks.0 | SigIgn:\t0000000000000000" in out


def test_a_forked_node_finds_every_signal_at_its_default_but_its_stop_signal(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    # The supervisor resets in each child only what is not at its default in itself
    # (childsetup.py's signals_to_reset): here the caller has a handler and an ignore too.
    old = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGQUIT, signal.SIGHUP)}
    signal.signal(signal.SIGUSR1, lambda *_: None)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    try:
        path = topology(tmp_path, f"""
            nodes:
              s: {{run: "{FUNCS}:signals_seen", restart: never}}
            """)
        code, out, err = run_up(path)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    assert code == 0, out + err
    assert "s.0  | not default: SIGTERM SigBlk:0000000000000000 SigIgn:0000000000000000" in out


def test_a_forked_nodes_collector_leaves_the_supervisors_objects_alone(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    # A collection writes to the header of every object it tracks: a child that tracked the
    # supervisor's objects would copy its heap page by page (childsetup.py's gc.freeze).
    path = topology(tmp_path, f"""
        nodes:
          g: {{run: "{FUNCS}:collector_seen", restart: never, replicas: 2}}
        """)
    code, out, err = run_up(path)
    assert code == 0, out + err
    for name in ("g.0", "g.1"):
        assert f"{name}  | enabled True theirs 0 cycle freed True" in out


def test_an_in_process_run_leaves_the_callers_own_children_alone(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    mine = subprocess.Popen(["sleep", "30"])
    try:
        path = topology(tmp_path, """
            nodes:
              quick: {command: ["true"], restart: never}
            """)
        assert run_up(path)[0] == 0
        assert mine.poll() is None
    finally:
        mine.kill()
        mine.wait(5)


def test_an_in_process_run_gives_the_subreaper_setting_back(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    # A caller left as a subreaper adopts every orphan of its other children and, not
    # reaping them, collects zombies.
    from orchestrator.supervisor.childsetup import PR_GET_CHILD_SUBREAPER, prctl_get

    path = topology(tmp_path, f"""
        nodes:
          a: {{run: "{FUNCS}:ok", restart: never}}
        """)
    assert prctl_get(PR_GET_CHILD_SUBREAPER) == 0
    assert run_up(path)[0] == 0
    assert prctl_get(PR_GET_CHILD_SUBREAPER) == 0
