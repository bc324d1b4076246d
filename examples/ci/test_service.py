"""Tests of a project that uses topo's pytest plugin: the service runs for real, per test.

`topology_run` is the run `@pytest.mark.topology` asked for; `topology` starts more.
Each run has its own id, port and ipc folder, so these tests may run in parallel
(`pytest -n 2`), even two sessions at once.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.topology("topology.yaml", timeout=10)


def ask(sock, text: str) -> tuple[str, str]:
    sock.send(text.encode())
    reply, worker = sock.recv_multipart()
    return reply.decode(), worker.decode()


def test_the_service_answers_in_upper_case(topology_run) -> None:
    sock = topology_run.connect("broker.frontend")  # a REQ socket: the natural peer of ROUTER
    answers = [ask(sock, f"hello {i}") for i in range(10)]
    assert [reply for reply, _ in answers] == [f"HELLO {i}" for i in range(10)]
    assert {worker for _, worker in answers} == {"worker.0", "worker.1"}  # round robin


def test_every_request_is_posted_to_the_served_queue(topology_run) -> None:
    import sysv_ipc

    sock = topology_run.connect("broker.frontend")
    for i in range(5):
        ask(sock, f"job {i}")
    queue = sysv_ipc.MessageQueue(topology_run.ipc("served")["key"])
    posted = []
    deadline = time.monotonic() + 5
    while len(posted) < 5 and time.monotonic() < deadline:  # a worker posts after it replies
        try:
            posted.append(queue.receive(block=False)[0].decode().split(": ", 1)[1])
        except sysv_ipc.BusyError:
            time.sleep(0.01)
    assert sorted(posted) == [f"job {i}" for i in range(5)]


def test_a_crashed_worker_is_restarted(topology_run) -> None:
    before = topology_run.wait_ready("worker.1")
    topology_run.kill("worker.1")  # SIGKILL: a crash, as its restart policy sees it
    after = topology_run.wait_ready("worker.1", restarts=1)
    assert after != before
    topology_run.wait_for_log("worker.1", r"ready")
    sock = topology_run.connect("broker.frontend")
    assert ask(sock, "still there?")[0] == "STILL THERE?"


def test_two_runs_of_one_file_never_meet(topology) -> None:
    a, b = topology("topology.yaml"), topology("topology.yaml")
    assert a.run_id != b.run_id
    assert a.endpoint("broker.frontend") != b.endpoint("broker.frontend")
    assert ask(a.connect("broker.frontend"), "a")[0] == "A"
    assert ask(b.connect("broker.frontend"), "b")[0] == "B"
