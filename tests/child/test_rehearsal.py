"""The rehearsal of a forked node's start in the supervisor: what it plays, and that it
leaves the supervisor as it found it (threads, fds, signals, environment, output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.child.rehearsal import NODES_PER_ROUND, ROUNDS, _model, rounds_for
from orchestrator.plan import Plan, ReplicaPlan, SocketPlan
from tests.conftest import Leftovers
from tests.integration.test_detached import topo
from tests.integration.test_up import topology

DEADLINE = 60.0
PUSH = SocketPlan("out", "PUSH", connect=("ipc:///tmp/x/sink",))
PULL = SocketPlan("in", "PULL", bind=("ipc:///tmp/x/sink",), options={"rcvhwm": 10})


def plan_of(*replicas: ReplicaPlan) -> Plan:
    return Plan(run_id="r", run_dir="/tmp/x", file="/tmp/x.yaml", replicas=replicas)


def replicas(node: str, n: int, kind: str = "run",
             sockets: tuple[SocketPlan, ...] = (PUSH,)) -> list[ReplicaPlan]:
    return [ReplicaPlan(node, i, kind, run="m:f" if kind == "run" else None,
                        argv=("true",) if kind == "command" else None, sockets=sockets,
                        env={"TOPO_NODE": node}) for i in range(n)]


@given(run=st.integers(0, 60), command=st.integers(0, 60))
def test_one_round_per_four_forked_nodes_at_most_eight(run: int, command: int) -> None:
    plan = plan_of(*replicas("w", run), *replicas("c", command, "command"))
    assert rounds_for(plan) == min(ROUNDS, run // NODES_PER_ROUND)


def test_the_model_is_the_most_replicated_forked_node_on_endpoints_of_its_own() -> None:
    plan = plan_of(*replicas("sink", 1, sockets=(PULL,)), *replicas("w", 5),
                   *replicas("c", 9, "command"), *replicas("bare", 7, sockets=()))
    model = _model(plan)
    assert model is not None and (model.node, model.replica) == ("w", 0)
    assert model.env == {}  # the supervisor's environment stays as it is
    [sock] = model.sockets
    assert sock.type == "PUSH" and sock.bind == ()
    assert [ep.split("://")[0] for ep in sock.connect] == ["inproc"]
    assert _model(plan_of(*replicas("c", 9, "command"), *replicas("bare", 7, sockets=()))) \
        is None


SCRIPT = """
import atexit, json, os, signal, sys, threading, time
from orchestrator.child import rehearsal
from orchestrator.plan import Plan, ReplicaPlan, SocketPlan

def threads():
    # A joined thread may take a moment more to be gone from the kernel's list.
    deadline = time.monotonic() + 5
    while len(os.listdir("/proc/self/task")) > 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    return len(os.listdir("/proc/self/task"))

def seen():
    return {
        "threads": threads(),
        "fds": sorted(os.listdir("/proc/self/fd")),
        "environ": dict(os.environ),
        "handler": repr(signal.getsignal(signal.SIGTERM)),
        "mask": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    }

# Run last at exit: an exit function the rehearsal left (a node's) would end the process first.
atexit.register(lambda: os.write(1, b"exit functions ran\\n"))
got = []
signal.signal(signal.SIGTERM, lambda *a: got.append("TERM"))
sockets = (SocketPlan("out", "PUSH", connect=("ipc:///nowhere/sink",), options={"sndhwm": 5}),
           SocketPlan("sub", "SUB", bind=("ipc:///nowhere/pub",), subscribe=("a", "b")),
           SocketPlan("x", "XSUB", connect=("ipc:///nowhere/x",), subscribe=("t",)))
plan = Plan("r", "/nowhere", "/nowhere.yaml", tuple(
    ReplicaPlan("w", i, "run", run="m:f", sockets=sockets, env={"TOPO_NODE": "w"})
    for i in range(40)))
mode = sys.argv[1]
if mode == "signal":
    played = rehearsal._played

    def sends_term(node):  # a SIGTERM while the rehearsal runs waits for its end
        os.kill(os.getpid(), signal.SIGTERM)
        assert not got
        return played(node)

    rehearsal._played = sends_term
if mode == "fails":
    rehearsal._played = lambda node: 1 / 0
before = seen()
done = rehearsal.rehearse(plan)
after = seen()
print(json.dumps({"done": done, "same": before == after, "before": before, "after": after,
                  "got": got, "ids": next(__import__("orchestrator.child.watch",
                                                     fromlist=["_ids"])._ids)}))
"""


def rehearse_in_a_process(mode: str) -> tuple[dict[str, object], str]:
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                       timeout=DEADLINE)
    assert r.returncode == 0, r.stderr
    *lines, last, ran = r.stdout.splitlines()
    assert ran == "exit functions ran", r.stdout
    return json.loads(last), "\n".join(lines) + r.stderr


@pytest.mark.parametrize("mode", ["plain", "signal", "fails"])
def test_a_rehearsal_leaves_the_process_as_it_found_it(mode: str,
                                                       no_leftovers: Leftovers) -> None:
    out, printed = rehearse_in_a_process(mode)
    assert out["same"], (out["before"], out["after"])
    assert printed == ""  # nothing said, a failure included
    if mode == "fails":
        assert out["done"] is False and out["ids"] == 3  # one round, then it stopped
    else:
        assert out["done"] is True
        assert out["ids"] == ROUNDS * 3  # a monitor per socket, per round: all 8 played
    # the signals sent during it reached the process's own handler once it was over (one
    # pending SIGTERM, however many were sent)
    assert out["got"] == (["TERM"] if mode == "signal" else [])


@pytest.mark.parametrize(("senders", "rounds"), [(2, 0), (7, 2), (40, ROUNDS)])
def test_forked_nodes_start_rehearsed_as_many_rounds_as_pay(
        senders: int, rounds: int, tmp_path: Path, no_leftovers: Leftovers) -> None:
    # Each node says which monitor id its socket got: the ids count per process from 0, and
    # the supervisor made one per round before it forked the nodes (1 socket: `rounds`).
    path = topology(tmp_path, f"""
        nodes:
          sink:
            run: tests.nodes.funcs:count_in
            with: {{n: {senders}}}
            sockets:
              in: {{type: PULL, bind: "ipc://sink"}}
          w:
            run: tests.nodes.funcs:monitor_id
            replicas: {senders}
            sockets:
              out: {{type: PUSH, connect: sink.in}}
    """)
    assert rounds_for(plan_of(*replicas("w", senders + 1))) == rounds
    r = topo(no_leftovers.env(), "up", str(path), timeout=DEADLINE)
    assert r.returncode == 0, r.stderr
    ids = [line.split("monitor id ")[1] for line in r.stdout.splitlines() if "monitor id" in line]
    assert ids == [str(rounds)] * senders, r.stdout
    assert f"sink.0 | {senders} in" in r.stdout
