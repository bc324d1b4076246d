"""`topo keys RUN [NODE]` and the CURVE line of `topo ps`, on run folders made by hand.

No process is started: a run is a folder with the state file a supervisor writes
(its supervisor, pid 1 at start tick 1, is not alive) and, for a CURVE run, the key
folder `topo up` makes (``certs.make_keys``). tests/integration/test_curve_views.py
does the same on a live run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.certs import is_z85_key, make_keys, read_public
from orchestrator.cli import main
from orchestrator.errors import ControlError, RunError
from orchestrator.paths import KEYS_DIR
from orchestrator.runs.client import find_run
from orchestrator.runs.folder import write_state
from orchestrator.views.keys import keys, public_keys
from orchestrator.views.ps import ps

# File order, which is not the sorted order.
NODES = ["broker", "worker", "client"]


def made_run(root: Path, run_id: str, *, curve: bool | None, nodes: list[str] = NODES,
             with_keys: bool | None = None) -> Path:
    """A run folder; ``curve`` None leaves the flag out of the state (a run still starting)."""
    folder = root / run_id
    folder.mkdir()
    state: dict[str, Any] = {
        "run_id": run_id, "supervisor": {"pid": 1, "start": 1},
        "replicas": {f"{n}.{i}": {"node": n, "pid": None, "status": "ready"}
                     for n in nodes for i in range(2 if n == "worker" else 1)}}
    if curve is not None:
        state["curve"] = curve
    write_state(folder, state)
    if curve if with_keys is None else with_keys:
        make_keys(folder / KEYS_DIR, sorted(nodes))
    return folder


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_lists_every_node_in_file_order(
    state_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    folder = made_run(state_dir, "sec", curve=True)
    code, out, err = run_cli(capsys, "keys", "sec")
    assert (code, err) == (0, "")
    rows = [line.split("  ") for line in out.splitlines()]
    assert [r[0] for r in rows] == NODES
    for row in rows:
        name, key = row[0], row[-1].strip()
        assert is_z85_key(key)
        assert key == read_public(folder / KEYS_DIR / f"{name}.key")
    # One column of keys: the names are padded to the longest.
    assert len({line.index(row[-1].strip()) for line, row in zip(out.splitlines(), rows,
                                                                   strict=True)}) == 1


def test_keys_of_one_node_is_the_key_alone_a_replica_names_its_node(
    state_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    folder = made_run(state_dir, "sec", curve=True)
    worker = read_public(folder / KEYS_DIR / "worker.key")
    assert run_cli(capsys, "keys", "sec", "worker") == (0, f"{worker}\n", "")
    assert run_cli(capsys, "keys", "sec", "worker.1") == (0, f"{worker}\n", "")


@pytest.mark.parametrize(("args", "message"), [
    (["keys", "sec", "nope"], "topo: run sec has no node named nope "
                              "(its nodes: broker, worker, client)\n"),
    (["keys", "sec", "worker.x"], "topo: run sec has no node named worker.x "
                                  "(its nodes: broker, worker, client)\n"),
    (["keys", "plain"], "topo: run plain does not use CURVE (its topology has no "
                        "`security: {curve: true}`), so it has no keys\n"),
    (["keys", "plain", "broker"], "topo: run plain does not use CURVE (its topology has no "
                                  "`security: {curve: true}`), so it has no keys\n"),
    (["keys", "ghost"], "topo: no run named ghost (known runs: plain, sec)\n"),
])
def test_what_keys_cannot_print_is_one_sentence_and_exit_1(
    state_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str,
) -> None:
    made_run(state_dir, "sec", curve=True)
    made_run(state_dir, "plain", curve=False)
    assert run_cli(capsys, *args) == (1, "", message)


def test_keys_needs_a_run_and_takes_one_node(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "keys")
    assert code == 2 and out == "" and "the following arguments are required: RUN" in err
    code, _, err = run_cli(capsys, "keys", "a", "b", "c")
    assert code == 2 and "unrecognized arguments: c" in err


def test_the_keys_the_state_records_need_no_key_folder(
    state_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A run started with `topo up --keys DIR` has its key files in DIR, not in keys/."""
    made_run(state_dir, "given", curve=True, with_keys=False)
    elsewhere = make_keys(state_dir / "dir", ["worker", "broker", "client"])
    state = json.loads((state_dir / "given" / "state.json").read_text())
    state["curve_keys"] = {n: elsewhere[n] for n in NODES}
    write_state(state_dir / "given", state)
    (state_dir / "dir" / "worker.key").unlink()  # only the state is read
    code, out, _ = run_cli(capsys, "keys", "given")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [[n, elsewhere[n]] for n in NODES]
    assert run_cli(capsys, "keys", "given", "client") == (0, f"{elsewhere['client']}\n", "")


def test_keys_in_the_state_that_are_not_keys_are_not_printed(state_dir: Path) -> None:
    folder = made_run(state_dir, "odd", curve=True)
    write_state(folder, {"run_id": "odd", "curve": True, "curve_keys": {"broker": "nope"}})
    found = public_keys(find_run("odd"))  # the certificates in keys/ instead
    assert found == {n: read_public(folder / KEYS_DIR / f"{n}.key") for n in sorted(NODES)}


def test_a_curve_run_whose_keys_are_gone_says_so(state_dir: Path) -> None:
    made_run(state_dir, "gone", curve=True, with_keys=False)
    with pytest.raises(ControlError, match=r"run gone uses CURVE, but its keys are gone"):
        public_keys(find_run("gone"))


def test_a_key_file_that_is_not_a_certificate_is_named(state_dir: Path) -> None:
    folder = made_run(state_dir, "bad", curve=True)
    (folder / KEYS_DIR / "worker.key").write_text("not a certificate\n")
    with pytest.raises(RunError, match=r"cannot read the key of node worker of run bad: "
                                       r".*worker\.key is not a ZeroMQ certificate"):
        keys("bad")


def test_without_a_state_the_keys_come_sorted(state_dir: Path) -> None:
    folder = made_run(state_dir, "young", curve=None, with_keys=True)
    (folder / "state.json").unlink()  # the supervisor has not written anything yet
    assert list(public_keys(find_run("young"))) == sorted(NODES)


def test_nodes_the_state_does_not_name_yet_follow_sorted(state_dir: Path) -> None:
    folder = made_run(state_dir, "half", curve=True, nodes=["zeta", "alpha"])
    make_keys(folder / "more", ["omega", "beta"])
    for name in ("omega", "beta"):
        (folder / "more" / f"{name}.key").rename(folder / KEYS_DIR / f"{name}.key")
    assert list(public_keys(find_run("half"))) == ["zeta", "alpha", "beta", "omega"]


def test_the_order_also_comes_from_the_endpoints_of_a_state(state_dir: Path) -> None:
    folder = made_run(state_dir, "ep", curve=True)
    write_state(folder, {"run_id": "ep", "curve": True,
                         "endpoints": {"client.0": {"node": {"bind": []}}, "worker.0": {},
                                       "broker.0": {}}})
    assert list(public_keys(find_run("ep"))) == ["client", "worker", "broker"]


# -- topo ps ---------------------------------------------------------------------------------------


def test_ps_json_says_whether_the_run_uses_curve(
    state_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    made_run(state_dir, "sec", curve=True)
    made_run(state_dir, "plain", curve=False)
    assert ps("sec", as_json=True) == 0
    assert json.loads(capsys.readouterr().out)["curve"] is True
    assert ps("plain", as_json=True) == 0
    assert json.loads(capsys.readouterr().out)["curve"] is False
    assert ps(None, as_json=True) == 0
    assert [(v["run_id"], v["curve"]) for v in json.loads(capsys.readouterr().out)] == [
        ("plain", False), ("sec", True)]


def test_ps_text_has_a_security_line_under_the_run(
    state_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    made_run(state_dir, "sec", curve=True)
    made_run(state_dir, "plain", curve=False)
    assert ps("sec", as_json=False) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run sec: DEAD")
    assert lines[1] == "security: CURVE on tcp and ipc links (public keys: `topo keys sec`)"
    assert lines[2].split()[0] == "REPLICA"
    assert ps("plain", as_json=False) == 0
    assert capsys.readouterr().out.splitlines()[1] == "security: none (no CURVE; links are plain)"


def test_ps_of_a_state_without_the_flag_looks_at_the_key_folder(
    state_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    made_run(state_dir, "starting", curve=None, with_keys=True)
    made_run(state_dir, "old", curve=None, with_keys=False)
    assert ps("starting", as_json=True) == 0
    assert json.loads(capsys.readouterr().out)["curve"] is True
    assert ps("old", as_json=True) == 0
    assert json.loads(capsys.readouterr().out)["curve"] is False
