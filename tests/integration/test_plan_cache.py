"""`topo up FILE` of a file planned before, unchanged: the kept plan (orchestrator/spec/cache.py),
without loading the checks, and only when the plan is the same each time.

Every test starts real runs and checks with ``no_leftovers`` that nothing is left.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import Leftovers
from tests.integration.test_detached import topo
from tests.integration.test_up import REPO, topology

HELLO = """
    nodes:
      a:
        run: tests.nodes.funcs:ok
        replicas: 2
        env: {GREETING: "${GREETING:-hi}"}
        sockets:
          out: {type: PUSH, bind: "ipc://a-out"}
"""


def imported(stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines()
            if line.startswith("import time:")}


def said(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


def hellos(stdout: str) -> list[str]:
    return sorted(" ".join(line.split()) for line in stdout.splitlines())


def plans(root: Path) -> list[Path]:
    return sorted((root / ".cache").glob("plan-*.json"))


def topo_importing(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`topo ARGS` under ``-X importtime``: its stderr lists every module it imported."""
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "orchestrator", *args],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)


SERVE = """
    nodes:
      a:
        run: tests.nodes.funcs:serve
"""


def kept_serving(tmp_path: Path, no_leftovers: Leftovers, name: str) -> tuple[Path, dict[str, str]]:
    """A file of one node that serves until stopped, its plan kept by a first run."""
    path = topology(tmp_path, SERVE, name=name)
    env = no_leftovers.env()
    assert topo(env, "up", str(path), "--timeout", "0.2").returncode == 124  # plan kept
    assert plans(no_leftovers.root)
    return path, env


def test_a_file_planned_before_starts_from_its_kept_plan(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, HELLO)
    env = no_leftovers.env()
    runs = [topo(env, "up", str(path), timeout=60) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
        assert hellos(r.stdout) == ["a.0 | hello from a.0", "a.1 | hello from a.1"]
    # the warning (a PUSH nobody pulls from) is shown both times
    assert all(any("W205" in line for line in said(r.stderr)) for r in runs)
    [entry] = plans(no_leftovers.root)
    assert oct(entry.stat().st_mode & 0o777) == "0o600"
    # the second time, neither the checks nor pydantic were loaded
    warm = topo_importing(env, "up", str(path))
    assert warm.returncode == 0, warm.stderr
    assert "pydantic" not in imported(warm.stderr)
    assert "orchestrator.spec.model" not in imported(warm.stderr)


def test_a_kept_plan_runs_in_the_topo_process_itself(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    # A new plan is made with pydantic loaded: the supervisor is a lean process exec'd in
    # place of `topo`. A kept plan loads no validator: `topo up` supervises it itself.
    path = topology(tmp_path, """
        nodes:
          a:
            run: tests.nodes.funcs:supervisor_is
    """)
    env = no_leftovers.env()
    runs = [topo(env, "up", str(path), timeout=60) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    assert [hellos(r.stdout) for r in runs] == [
        ["a.0 | supervisor exec'd, pydantic not loaded"],
        ["a.0 | supervisor in place, pydantic not loaded"],
    ]


def test_a_variable_the_plan_read_changes_it(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, HELLO.replace("run: tests.nodes.funcs:ok",
                                            "command: [sh, -c, 'echo $GREETING']"))
    env = no_leftovers.env()
    assert topo(env, "up", str(path)).stdout.count("| hi") == 2
    assert topo(env, "up", str(path)).stdout.count("| hi") == 2  # from the kept plan
    assert topo({**env, "GREETING": "hello"}, "up", str(path)).stdout.count("| hello") == 2
    assert topo(env, "up", str(path)).stdout.count("| hi") == 2


def test_plans_that_differ_each_time_are_not_kept(tmp_path: Path,
                                                  no_leftovers: Leftovers) -> None:
    ports = topology(tmp_path, """
        nodes:
          a:
            run: tests.nodes.funcs:ok
            sockets:
              out: {type: PUSH, bind: "tcp://127.0.0.1:*"}
    """, name="ports")
    curve = topology(tmp_path, """
        security: {curve: true}
        nodes:
          a:
            run: tests.nodes.funcs:ok
            sockets:
              out: {type: PUSH, bind: "ipc://a-out"}
    """, name="curve")
    env = no_leftovers.env()
    for path in (ports, curve, ports, curve):
        result = topo(env, "up", str(path), timeout=60)
        assert result.returncode == 0, result.stderr
    assert plans(no_leftovers.root) == []


def test_a_kept_plan_still_finds_its_run_alive(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path, env = kept_serving(tmp_path, no_leftovers, "alive")
    first = subprocess.Popen([sys.executable, "-m", "orchestrator", "up", str(path)], env=env,
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert first.stdout is not None and "serving" in first.stdout.readline()
        second = topo(env, "up", str(path))
        assert second.returncode == 1
        assert "run alive is alive: its supervisor" in second.stderr, second.stderr
    finally:
        first.terminate()
        first.communicate(timeout=30)
    assert first.returncode == 143  # stopped by SIGTERM (docs/reference.md#exit-codes)


def test_a_kept_plan_that_cannot_be_trusted_is_made_anew(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, HELLO)
    env = no_leftovers.env()
    assert topo(env, "up", str(path)).returncode == 0
    [entry] = plans(no_leftovers.root)
    doc = json.loads(entry.read_text())
    for damage in ({**doc, "plan": {"run_id": "t"}},  # not a plan: made anew
                   {**doc, "plan": {**doc["plan"], "run_dir": "/elsewhere/t"}}):
        entry.write_text(json.dumps(damage))
        result = topo(env, "up", str(path))
        assert result.returncode == 0, result.stderr
        assert hellos(result.stdout) == ["a.0 | hello from a.0", "a.1 | hello from a.1"]
        assert json.loads(entry.read_text())["plan"] == doc["plan"]  # written anew


def test_topo_up_d_keeps_its_plan_and_runs_a_kept_one_in_place(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    # Detached, the same as in the foreground: the first `topo up -d` checks the file and
    # keeps the plan, its supervisor exec'd lean; the next one starts from the kept plan,
    # loads no validator, and its detached child supervises the plan itself.
    path = topology(tmp_path, """
        nodes:
          a:
            run: tests.nodes.funcs:supervisor_is
          b:
            run: tests.nodes.funcs:serve
            sockets:
              out: {type: PUSH, bind: "ipc://b-out"}
    """, name="kept")
    env = no_leftovers.env()
    seen = []
    for _ in range(2):
        up = topo_importing(env, "up", "-d", str(path))
        assert up.returncode == 0, up.stderr
        assert any("W205" in line for line in said(up.stderr))  # the warning, both times
        assert up.stdout.strip() == "kept"
        seen.append(imported(up.stderr))
        logs = topo(env, "logs", "kept", "a")
        assert logs.returncode == 0, logs.stderr
        assert "Traceback" not in (Path(no_leftovers.root) / "kept" / "supervisor.log").read_text()
        assert topo(env, "down", "kept").returncode == 0
        seen.append({" ".join(line.split()) for line in logs.stdout.splitlines()})
    assert "pydantic" in seen[0] and "orchestrator.spec.model" in seen[0]
    assert seen[1] == {"a.0 | supervisor exec'd, pydantic not loaded"}
    assert "pydantic" not in seen[2] and "orchestrator.spec.model" not in seen[2]
    assert seen[3] == {"a.0 | supervisor in place, pydantic not loaded"}
    assert len(plans(no_leftovers.root)) == 1


def test_topo_up_d_of_a_kept_plan_still_finds_its_run_alive(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path, env = kept_serving(tmp_path, no_leftovers, "twice")
    first = topo(env, "up", "-d", str(path))
    assert first.returncode == 0, first.stderr
    try:
        again = topo(env, "up", "-d", str(path))
        assert again.returncode == 1
        assert "run twice is alive: its supervisor" in again.stderr, again.stderr
        assert topo(env, "ps", "twice").returncode == 0  # the live run is untouched
    finally:
        assert topo(env, "down", "twice").returncode == 0


def test_topo_up_d_keeps_no_plan_that_differs_each_time(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, """
        nodes:
          a:
            run: tests.nodes.funcs:serve
            sockets:
              out: {type: PUSH, bind: "tcp://127.0.0.1:*"}
    """, name="port")
    env = no_leftovers.env()
    for _ in range(2):
        assert topo(env, "up", "-d", str(path)).returncode == 0
        assert topo(env, "down", "port").returncode == 0
    assert plans(no_leftovers.root) == []
