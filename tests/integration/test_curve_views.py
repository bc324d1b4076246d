"""`topo ps` and `topo keys` of live runs, with CURVE and without: `topo up -d` subprocesses.

The CURVE run is tests/curve_broker.yaml: a proxy broker (ROUTER on tcp, DEALER on
ipc), two echo workers, a client, and a node with an inproc pair. ``no_leftovers``
proves that nothing of either run is left.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.certs import is_z85_key, make_keys, read_public
from orchestrator.paths import KEYS_DIR
from orchestrator.runs.folder import read_state
from tests.conftest import Leftovers
from tests.integration.test_detached import (  # noqa: F401 - the fixture is autouse
    down_what_a_failed_test_left,
    topo,
)
from tests.integration.test_up import REPO, topology

SAMPLE = REPO / "tests" / "curve_broker.yaml"


def test_a_live_curve_run_in_ps_and_keys(no_leftovers: Leftovers) -> None:
    env = no_leftovers.env()
    up = topo(env, "up", "-d", str(SAMPLE), "-p", "sec")
    assert up.returncode == 0, up.stderr
    try:
        view = json.loads(topo(env, "ps", "sec", "--json").stdout)
        assert view["alive"] and view["curve"] is True
        assert {r["state"] for r in view["replicas"]} == {"ready"}
        lines = topo(env, "ps", "sec").stdout.splitlines()
        assert lines[1] == "security: CURVE on tcp and ipc links (public keys: `topo keys sec`)"

        listed = topo(env, "keys", "sec")
        assert listed.returncode == 0 and listed.stderr == ""
        rows = [line.split() for line in listed.stdout.splitlines()]
        assert [name for name, _ in rows] == ["broker", "worker", "pair", "client"]
        folder = no_leftovers.root / "sec" / KEYS_DIR
        for name, key in rows:
            assert is_z85_key(key) and key == read_public(folder / f"{name}.key")
        keys = dict(rows)
        state = read_state(no_leftovers.root / "sec")
        assert state is not None and state["curve"] is True and state["curve_keys"] == keys
        one = topo(env, "keys", "sec", "broker")
        assert (one.returncode, one.stdout) == (0, f"{keys['broker']}\n")
        by_file = topo(env, "keys", str(SAMPLE), "worker.1")  # the run started from the file
        assert (by_file.returncode, by_file.stdout) == (0, f"{keys['worker']}\n")
        unknown = topo(env, "keys", "sec", "nope")
        assert (unknown.returncode, unknown.stdout) == (1, "")
        assert unknown.stderr == ("topo: run sec has no node named nope "
                                  "(its nodes: broker, worker, pair, client)\n")
    finally:
        assert topo(env, "down", "sec").returncode == 0
    gone = topo(env, "keys", "sec")
    assert gone.returncode == 1 and gone.stderr.startswith("topo: no run named sec")


def test_keys_of_a_run_whose_key_files_came_from_elsewhere(
    tmp_path: Path, no_leftovers: Leftovers,
) -> None:
    """`topo up --keys DIR`: no keys/ in the run folder; the state still names every key."""
    made = make_keys(tmp_path / "keys", ["broker", "worker", "pair", "client"])
    env = no_leftovers.env()
    # What `topo up -d --keys DIR` calls, in a process of its own.
    start = ("import sys; from orchestrator.start.detached import up_detached; "
             "print(up_detached(sys.argv[1], run_id='given', keys=sys.argv[2]))")
    up = subprocess.run([sys.executable, "-c", start, str(SAMPLE), str(tmp_path / "keys")],
                        env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
                        check=False)
    assert (up.returncode, up.stdout) == (0, "given\n"), up.stderr
    try:
        assert not (no_leftovers.root / "given" / KEYS_DIR).exists()
        listed = topo(env, "keys", "given")
        assert listed.returncode == 0, listed.stderr
        assert [line.split() for line in listed.stdout.splitlines()] == [
            [n, made[n]] for n in ("broker", "worker", "pair", "client")]
    finally:
        assert topo(env, "down", "given").returncode == 0


def test_a_live_run_without_curve_in_ps_and_keys(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, """
        nodes:
          a: {run: "tests.nodes.funcs:serve"}
    """, name="open")
    env = no_leftovers.env()
    assert topo(env, "up", "-d", str(path)).returncode == 0
    try:
        view = json.loads(topo(env, "ps", "open", "--json").stdout)
        assert view["alive"] and view["curve"] is False
        assert topo(env, "ps", "open").stdout.splitlines()[1] == (
            "security: none (no CURVE; links are plain)")
        keys = topo(env, "keys", "open")
        assert (keys.returncode, keys.stdout) == (1, "")
        assert keys.stderr == ("topo: run open does not use CURVE (its topology has no "
                               "`security: {curve: true}`), so it has no keys\n")
    finally:
        assert topo(env, "down", "open").returncode == 0
