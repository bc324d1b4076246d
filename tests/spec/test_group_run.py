"""`topo up FILE --group G`: one group's endpoints and plan when every group has its own host.

The endpoint rewriting and the plan are pure (GroupRun, plan_run); the refusals are
also run through ``python -m orchestrator up`` for their exit status and sentence.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import UsageError
from orchestrator.plan import Plan
from orchestrator.spec.group_run import GroupChoice, GroupRun
from orchestrator.spec.groups import PORT_BASE
from orchestrator.spec.model import Topology
from orchestrator.spec.planner import plan_run
from tests.conftest import Leftovers
from tests.topo_samples import ROOT

FILE = Path("/srv/topos/app.yaml")
RUN_DIR = Path("/run/topo/app-x")
P0, P1, P2 = PORT_BASE, PORT_BASE + 1, PORT_BASE + 2


def topo(nodes: dict[str, Any], **top: Any) -> Topology:
    return Topology.model_validate({"name": "app", "nodes": nodes, **top})


def run(**more: Any) -> dict[str, Any]:
    return {"run": "m:f", **more}


# rrbroker's shape: broker and workers share ipc://backend; the client reaches the broker by tcp.
RR = {
    "broker": run(sockets={"front": {"type": "ROUTER", "bind": "tcp://127.0.0.1:*"},
                           "back": {"type": "DEALER", "bind": "ipc://backend"}}),
    "worker": run(replicas=3, depends_on=["broker"],
                  sockets={"jobs": {"type": "REP", "connect": "broker.back"}}),
    "client": run(depends_on=["broker", "worker"], ipc=["log"],
                  sockets={"s": {"type": "REQ", "connect": "broker.front"}}),
}
RR_IPC = {"log": {"type": "fifo"}, "spare": {"type": "msgqueue"}}


def no_ports(host: str) -> int:
    raise AssertionError(f"a group run asked the allocator for a port on {host}")


def plan(t: Topology, group: GroupRun) -> Plan:
    return plan_run(t, FILE, "app-x", RUN_DIR, environ={}, allocate_port=no_ports, group=group)


def sock(p: Plan, node: str, name: str, replica: int = 0) -> Any:
    r = next(r for r in p.replicas if r.node == node and r.replica == replica)
    return next(s for s in r.sockets if s.name == name)


# -- endpoints -------------------------------------------------------------------------------------


def test_a_bind_other_groups_reach_listens_everywhere_on_its_fixed_port() -> None:
    t = topo(RR, ipc=RR_IPC)
    p = plan(t, GroupRun(t, "broker"))
    assert sock(p, "broker", "front").bind == (f"tcp://*:{P0}",)
    assert sock(p, "broker", "back").bind == (f"ipc://{RUN_DIR}/backend",)
    assert sock(p, "worker", "jobs", 2).connect == (f"ipc://{RUN_DIR}/backend",)


def test_a_connect_to_another_group_goes_to_its_service_name_or_resolved_host() -> None:
    t = topo(RR, ipc=RR_IPC)
    assert sock(plan(t, GroupRun(t, "client")), "client", "s").connect == (f"tcp://broker:{P0}",)
    local = GroupRun(t, "client", resolve_hosts={"broker": "127.0.0.1"})
    assert sock(plan(t, local), "client", "s").connect == (f"tcp://127.0.0.1:{P0}",)


def test_a_group_of_one_replicated_node_is_reached_pod_by_pod() -> None:
    t = topo({
        "pool": run(replicas=3, sockets={"out": {"type": "PUSH", "bind": "tcp://127.0.0.1:*"}}),
        "sink": run(sockets={"in": {"type": "PULL", "connect": "pool.out"}}),
    })
    g = GroupRun(t, "sink")
    assert g.per_pod == {"pool"}
    assert sock(plan(t, g), "sink", "in").connect == (
        f"tcp://pool-0.pool:{P0}", f"tcp://pool-1.pool:{P1}", f"tcp://pool-2.pool:{P2}")
    local = GroupRun(t, "sink", resolve_hosts={"pool": "10.0.0.7"})
    assert sock(plan(t, local), "sink", "in").connect == (
        f"tcp://10.0.0.7:{P0}", f"tcp://10.0.0.7:{P1}", f"tcp://10.0.0.7:{P2}")
    # Each replica's pod binds its own fixed port.
    for r in range(3):
        p = plan(t, GroupRun(t, "pool", replica=r))
        assert [x.replica for x in p.replicas] == [r]
        assert sock(p, "pool", "out", r).bind == (f"tcp://*:{P0 + r}",)


def test_replicas_that_share_a_resource_stay_in_one_pod() -> None:
    t = topo({
        "pool": run(replicas=2, ipc=["room"],
                    sockets={"out": {"type": "PUSH", "bind": "tcp://127.0.0.1:*"}}),
        "sink": run(sockets={"in": {"type": "PULL", "connect": "pool.out"}}),
    }, ipc={"room": {"type": "semaphore", "value": 1}})
    g = GroupRun(t, "sink")
    assert g.per_pod == set()
    assert sock(plan(t, g), "sink", "in").connect == (f"tcp://pool:{P0}", f"tcp://pool:{P1}")
    with pytest.raises(UsageError, match="share IPC resource room, so they run in one pod"):
        GroupRun(t, "pool", replica=0)


def mesh(bind: str) -> Topology:
    """Replicas that connect to one another: each SUB connects to every replica's PUB."""
    return topo({"peer": run(replicas=3, sockets={
        "out": {"type": "PUB", "bind": bind},
        "in": {"type": "SUB", "subscribe": "", "connect": "peer.out"}})})


def test_replicas_that_connect_to_one_another_over_tcp_reach_each_pod() -> None:
    t = mesh("tcp://127.0.0.1:*")
    g = GroupRun(t, "peer", replica=1)
    assert g.per_pod == {"peer"} and g.meshed == {("peer", "out")} and g.crossing == set()
    p = plan(t, g)
    assert [r.replica for r in p.replicas] == [1]
    assert sock(p, "peer", "out", 1).bind == (f"tcp://*:{P1}",)
    assert sock(p, "peer", "in", 1).connect == (
        f"tcp://peer-0.peer:{P0}", f"tcp://peer-1.peer:{P1}", f"tcp://peer-2.peer:{P2}")
    local = GroupRun(t, "peer", resolve_hosts={"peer": "127.0.0.1"})
    assert sock(plan(t, local), "peer", "in", 2).connect == (
        f"tcp://127.0.0.1:{P0}", f"tcp://127.0.0.1:{P1}", f"tcp://127.0.0.1:{P2}")


def test_replicas_that_connect_to_one_another_over_ipc_stay_in_one_pod() -> None:
    t = mesh("ipc://out")
    g = GroupRun(t, "peer")
    assert g.per_pod == set() and g.exposed == set()
    assert sock(plan(t, g), "peer", "in", 2).connect == tuple(
        f"ipc://{RUN_DIR}/out.{r}" for r in range(3))
    with pytest.raises(UsageError, match=r"the replicas of node peer \(group peer\) link to "
                                         r"each other over ipc://out, so they run in one pod"):
        GroupRun(t, "peer", replica=0)


def test_literal_ports_and_literal_connects() -> None:
    t = topo({
        "server": run(sockets={"s": {"type": "REP", "bind": ["ipc://x", "tcp://127.0.0.1:7000",
                                                             "tcp://127.0.0.1:*"]}}),
        "lit": run(sockets={"s": {"type": "REQ", "connect": "tcp://127.0.0.1:7000"}}),
        "ref": run(sockets={"s": {"type": "REQ", "connect": "server.s@tcp"}}),
    })
    p = plan(t, GroupRun(t, "server"))
    # Every tcp bind of a socket another group reaches listens everywhere; ipc stays.
    assert sock(p, "server", "s").bind == (f"ipc://{RUN_DIR}/x", "tcp://*:7000", f"tcp://*:{P0}")
    # A literal connect reaches the one bind it names, on the binder's host.
    assert sock(plan(t, GroupRun(t, "lit")), "lit", "s").connect == ("tcp://server:7000",)
    # A reference reaches every tcp bind (on one machine it reached each bind of the transport).
    assert sock(plan(t, GroupRun(t, "ref")), "ref", "s").connect == (
        "tcp://server:7000", f"tcp://server:{P0}")


def test_what_stays_inside_a_group_keeps_its_host() -> None:
    t = topo({
        "a": run(ipc=["q"], sockets={"pub": {"type": "PUB", "bind": "tcp://127.0.0.1:*"},
                                     "lit": {"type": "PUB", "bind": "tcp://127.0.0.1:7001"}}),
        "b": run(ipc=["q"], sockets={"sub": {"type": "SUB", "subscribe": "",
                                             "connect": ["a.pub", "a.lit"]},
                                     "out": {"type": "PUSH",
                                             "connect": "tcp://example.org:9000"}}),
    }, ipc={"q": {"type": "msgqueue"}})
    g = GroupRun(t, "a")
    assert g.exposed == set()
    p = plan(t, g)
    assert sock(p, "a", "pub").bind == (f"tcp://127.0.0.1:{P0}",)  # fixed, still loopback
    assert sock(p, "a", "lit").bind == ("tcp://127.0.0.1:7001",)
    assert sock(p, "b", "sub").connect == (f"tcp://127.0.0.1:{P0}", "tcp://127.0.0.1:7001")
    assert sock(p, "b", "out").connect == ("tcp://example.org:9000",)  # outside: as written


def test_the_groups_of_one_file_agree_on_ports() -> None:
    t = topo(RR, ipc=RR_IPC)
    broker, client = GroupRun(t, "broker"), GroupRun(t, "client")
    assert broker.ports == client.ports == {("broker", "front", 0, 0): P0}


# -- the plan of one group ------------------------------------------------------------------------


def test_the_plan_keeps_only_the_group_its_resources_and_its_tiers() -> None:
    t = topo(RR, ipc=RR_IPC)
    p = plan(t, GroupRun(t, "broker"))
    assert [(r.node, r.replica) for r in p.replicas] == [
        ("broker", 0), ("worker", 0), ("worker", 1), ("worker", 2)]
    assert set(p.nodes) == {"broker", "worker"}
    assert p.ipc == {}  # the fifo is the client's; nobody lists the queue
    assert p.tiers == (("broker",), ("worker",))
    c = plan(t, GroupRun(t, "client"))
    assert [(r.node, r.replica) for r in c.replicas] == [("client", 0)]
    assert set(c.nodes) == {"client"} and set(c.ipc) == {"log"}
    assert c.tiers == (("client",),)
    # depends_on across groups stays in the plan; the supervisor waits only on its own nodes.
    assert c.nodes["client"].depends_on == ("broker", "worker")


def test_without_a_group_the_plan_is_the_whole_file() -> None:
    t = topo(RR, ipc=RR_IPC)
    p = plan_run(t, FILE, "app", RUN_DIR, environ={}, allocate_port=lambda host: 20000)
    assert len(p.replicas) == 5 and set(p.ipc) == {"log", "spare"}


def test_a_choice_becomes_a_group_run() -> None:
    t = topo(RR, ipc=RR_IPC)
    g = GroupChoice("client", None, (("broker", "127.0.0.1"),)).of(t)
    assert (g.name, g.replica, g.hosts) == ("client", None, {"broker": "127.0.0.1"})
    assert g.runs("client", 0) and not g.runs("broker", 0)


def test_the_default_run_id_names_the_group_and_the_replica() -> None:
    t = topo({"pool": run(replicas=2), "other": run()})
    assert GroupRun(t, "pool").run_id("app") == "app-pool"
    assert GroupRun(t, "pool", replica=1).run_id("app") == "app-pool-1"


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "sentence"), [
    ({"name": "nope"}, "--group nope: the topology has no group by that name (its groups: "
                       "broker, client;"),
    ({"name": "worker"}, "--group worker: the topology has no group by that name (node worker "
                         "is in group broker; its groups: broker, client;"),
    ({"name": "client", "resolve_hosts": {"ghost": "h"}},
     "--resolve ghost=...: the topology has no group by that name (its groups: broker, client)"),
    ({"name": "broker", "replica": 0},
     "--replica 0: group broker has 2 nodes (broker, worker), which run in one pod; --replica "
     "is for a group of one replicated node"),
    ({"name": "client", "replica": 1},
     "--replica 1: group client is node client, which has 1 replica, 0"),
])
def test_refusals_say_what_is_wrong(kwargs: dict[str, Any], sentence: str) -> None:
    t = topo(RR, ipc=RR_IPC)
    with pytest.raises(UsageError) as err:
        GroupRun(t, **kwargs)
    assert str(err.value).startswith(sentence), str(err.value)


def test_a_replica_past_the_last_is_refused() -> None:
    t = topo({"pool": run(replicas=3)})
    with pytest.raises(UsageError, match=r"group pool is node pool, which has 3 replicas, 0 to 2"):
        GroupRun(t, "pool", replica=3)


POOL = """\
name: pool
nodes:
  pool:
    command: [prog]
    replicas: 2
"""


@pytest.mark.parametrize(("args", "sentence"), [
    (["rrbroker", "--group", "nope"], "topo: --group nope: the topology has no group by that name"),
    (["rrbroker", "--group", "client", "--resolve", "ghost=127.0.0.1"],
     "topo: --resolve ghost=...: the topology has no group by that name"),
    (["rrbroker", "--group", "broker", "--replica", "1"],
     "topo: --replica 1: group broker has 2 nodes (broker, worker)"),
    (["rrbroker", "-d", "--group", "broker", "--replica", "0"],
     "topo: --replica 0: group broker has 2 nodes"),
    (["pool", "--group", "pool", "--replica", "2"],
     "topo: --replica 2: group pool is node pool, which has 2 replicas, 0 to 1"),
    (["rrbroker", "--replica", "0"], "topo: --replica and --resolve go with --group"),
    (["rrbroker", "--group", "client", "--resolve", "broker"],
     "expected GROUP=HOST, not 'broker'"),
    (["ironhouse", "--group", "broker"], "security.curve"),
])
def test_the_cli_refuses_with_exit_2_and_a_sentence(
        args: list[str], sentence: str, tmp_path: Path, no_leftovers: Leftovers) -> None:
    (tmp_path / "pool.yaml").write_text(POOL)
    files = {"pool": str(tmp_path / "pool.yaml")}
    file = files.get(args[0], str(ROOT / "topologies" / f"{args[0]}.yaml"))
    result = subprocess.run([sys.executable, "-m", "orchestrator", "up", file, *args[1:]],
                            cwd=ROOT, env=no_leftovers.env(), capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert sentence in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
