"""The Python API (``orchestrator.up``) and `topo up --json`, driven from this test process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

import orchestrator
from orchestrator.errors import InvalidTopology, NotReady, UsageError
from tests.conftest import Leftovers
from tests.integration.test_up import REPO, topology

EXAMPLE = REPO / "examples" / "ci" / "topology.yaml"


def test_up_gives_endpoints_sockets_logs_and_replicas(no_leftovers: Leftovers) -> None:
    with orchestrator.up(EXAMPLE, timeout=10) as run:
        assert run.run_id.startswith("upper-") and run.folder.is_dir()
        front = run.endpoint("broker.frontend")
        assert front.startswith("tcp://127.0.0.1:") and not front.endswith(":*")
        assert run.endpoints("broker.backend@ipc") == [f"ipc://{run.folder}/backend"]
        assert run.endpoint("worker.1.jobs") == f"ipc://{run.folder}/backend"  # it connects
        assert run.socket_type("broker.frontend") == "ROUTER"
        served = run.ipc("served")
        assert served["type"] == "msgqueue" and served["key"] > 0 and served["id"] >= 0
        sock = run.connect("broker.frontend")
        assert sock.type == zmq.REQ
        sock.send(b"hi")
        assert sock.recv_multipart()[0] == b"HI"
        assert run.wait_for_log("worker", r"worker\.(\d) ready").group(1) in "01"
        assert {r["name"]: r["state"] for r in run.ps()} == {
            "broker.0": "ready", "worker.0": "ready", "worker.1": "ready"}
        assert run.exit_codes() == {"broker.0": None, "worker.0": None, "worker.1": None}
        assert run.logs("worker.0") == ["worker.0 ready"]
        pid = run.pid("worker.0")
        run.kill("worker.0")
        assert run.wait_ready("worker.0", restarts=1) != pid
        assert run.exit_codes()["worker.0"] == 128 + signal.SIGKILL
        run.restart("worker.1")
        assert {r["name"]: r["restarts"] for r in run.ps()}["worker.1"] == 1
        folder = run.folder
    assert not folder.exists() and run.closed
    run.down()  # twice is harmless


def test_leaving_on_an_exception_still_tears_down(no_leftovers: Leftovers) -> None:
    with pytest.raises(RuntimeError, match="boom"), orchestrator.up(EXAMPLE) as run:
        folder = run.folder
        raise RuntimeError("boom")
    assert not folder.exists()


def test_bad_requests_are_clear(no_leftovers: Leftovers) -> None:
    with orchestrator.up(EXAMPLE, run_id="mine") as run:
        assert run.run_id == "mine"
        with pytest.raises(UsageError, match="a PUB cannot talk to the ROUTER socket"):
            run.connect("broker.frontend", "PUB")
        with pytest.raises(UsageError, match=r"no socket broker.nope \(its sockets: broker"):
            run.endpoint("broker.nope")
        with pytest.raises(UsageError, match=r"no IPC resource nope \(its resources: served\)"):
            run.ipc("nope")
        with pytest.raises(UsageError, match="has no tcp endpoint"):
            run.endpoint("broker.backend@tcp")
        with pytest.raises(TimeoutError, match=r"no line of worker.0 matched 'never'.*\n"
                                               r"  worker.0 ready"):
            run.wait_for_log("worker.0", "never", timeout=0.05)
        with pytest.raises(NotReady, match="run mine is alive"):
            orchestrator.up(EXAMPLE, run_id="mine")


def test_up_validates_the_file_once_and_starts_the_plan_it_made(
        no_leftovers: Leftovers, monkeypatch: pytest.MonkeyPatch) -> None:
    # `topo up -d` in a subprocess checked the file a second time (pydantic loaded there
    # again): most of the time up() took.
    # Imported before the patch, so that none of them keeps the patched function.
    from orchestrator.spec import validate
    from orchestrator.start import prepare

    checks: list[str] = []
    real_load, real_popen = validate.load_or_raise, subprocess.Popen
    started: list[list[str]] = []

    def load(file: str, environ: object = None) -> object:
        checks.append(file)
        return real_load(file, environ)  # type: ignore[arg-type]

    def popen(argv: list[str], **kwargs: object) -> object:
        started.append(argv)
        return real_popen(argv, **kwargs)  # type: ignore[call-overload]

    for module in (validate, prepare):  # start/detached.py imports it when it runs
        monkeypatch.setattr(module, "load_or_raise", load)
    monkeypatch.setattr(subprocess, "Popen", popen)
    with orchestrator.up(EXAMPLE, timeout=10, env=no_leftovers.env()) as run:
        assert checks == [str(EXAMPLE)]
        assert len(started) == 1 and "from orchestrator.supervisor.lean import detach" in \
            started[0][2]
        assert {r["state"] for r in run.ps()} == {"ready"}


def test_a_supervisor_that_cannot_start_leaves_nothing(no_leftovers: Leftovers) -> None:
    # The python that would run the plan dies at once: what prepare made goes again.
    env = {**no_leftovers.env(), "PYTHONHOME": "/nonexistent/topo-test"}
    with pytest.raises(NotReady, match=r"the supervisor could not start: .*No module named"):
        orchestrator.up(EXAMPLE, timeout=10, env=env)


def test_a_run_that_does_not_get_ready_raises_not_ready(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    path = topology(tmp_path, """
        nodes:
          late:
            command: [sleep, "60"]
            ready: {file: never-there, timeout: 5s}
    """)
    with pytest.raises(NotReady, match=r"not ready within 0.3s \(--wait-timeout\): "
                                       r"still waiting for late.0"):
        orchestrator.up(path, timeout=0.3)


def test_an_invalid_file_raises_invalid_topology(no_leftovers: Leftovers) -> None:
    with pytest.raises(InvalidTopology, match=r"error\[E121\]"):
        orchestrator.up(REPO / "tests" / "corpus" / "e121_req_pub.yaml")


def test_up_json_prints_one_event_per_line(no_leftovers: Leftovers) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "up", "--json",
         str(REPO / "topologies" / "hello_reqrep.yaml")],
        cwd=REPO, env=no_leftovers.env(), capture_output=True, text=True, timeout=60,
        check=False)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["run_started", "started"] and kinds[-1] == "run_ended"
    assert events[0]["replicas"] == 2
    assert events[-1]["code"] == 0 and events[-1]["run_id"] == "hello_reqrep"
    assert kinds.index("run_ready") > max(i for i, k in enumerate(kinds) if k == "ready")
    started = {e["replica"]: e["pid"] for e in events if e["event"] == "started"}
    assert set(started) == {"server.0", "client.0"} and all(started.values())
    lines = [e["line"] for e in events if e["event"] == "output" and e["replica"] == "client.0"]
    assert lines[-1] == "client: done, 5 replies"
    assert {(e["replica"], e["code"]) for e in events if e["event"] == "exited"} == {
        ("server.0", 0), ("client.0", 0)}
    assert all(isinstance(e["ts"], float) for e in events)
    assert "up -d" not in result.stderr


def test_json_events_of_a_restart_and_a_failure(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, """
        nodes:
          bad:
            run: tests.nodes.funcs:fail
            restart: on-failure
            max_restarts: 1
            backoff: {initial: 10ms}
    """)
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "up", "--json", str(path)], cwd=REPO,
        env=no_leftovers.env(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [(e["event"], e.get("code")) for e in events if e["event"] in ("restarting", "failed")]
    assert kinds == [("restarting", 3), ("failed", 3)]
    assert events[-1] == {**events[-1], "event": "run_ended", "code": 1}
