"""What each group becomes: kinds, pods, ports, waits and notes, decided from the file."""

from __future__ import annotations

import pytest

from orchestrator.export.workloads import (
    DEPLOYMENT,
    GRACE_MARGIN,
    JOB,
    STATEFULSET,
    plan_export,
    port_name,
)
from orchestrator.spec.validate import validate_file
from tests.export.kube import port_name_ok
from tests.topo_samples import ROOT, load

SPREAD = """
nodes:
  server:
    run: m:f
    replicas: 3
    restart: {restart}
    sockets:
      clients: {{type: REP, bind: "tcp://127.0.0.1:*"}}
  client:
    run: m:f
    restart: never
    depends_on: [server]
    sockets:
      server: {{type: REQ, connect: server.clients}}
"""


def test_a_replicated_node_others_connect_to_is_a_statefulset_one_pod_per_replica() -> None:
    export = plan_export(load(SPREAD.format(restart="on-failure")))
    server = export.workload("server")
    assert (server.kind, server.pods, server.per_pod, server.headless) == (
        STATEFULSET, 3, True, True)
    assert server.replica_arg == "$(POD_INDEX)"
    assert [(p.name, p.port, p.replica) for p in server.ports] == [
        ("clients-0", 5550, 0), ("clients-1", 5551, 1), ("clients-2", 5552, 2)]
    assert server.hosts() == ["server-0.server", "server-1.server", "server-2.server"]
    client = export.workload("client")
    assert client.kind == JOB and not client.ports
    # depends_on waits for every replica, each on its own port
    assert [w.targets for w in client.waits] == [
        ("server-0.server:5550", "server-1.server:5551", "server-2.server:5552")]


def test_a_replicated_restart_never_node_others_connect_to_is_an_indexed_job() -> None:
    server = plan_export(load(SPREAD.format(restart="never"))).workload("server")
    assert (server.kind, server.pods, server.headless, server.replica_arg) == (
        JOB, 3, True, "$(POD_INDEX)")
    assert "Indexed Job" in server.why


def test_a_replicated_node_nobody_connects_to_is_a_deployment_of_replica_0_pods() -> None:
    export = plan_export(load("""
nodes:
  sink: {run: m:f, sockets: {in: {type: PULL, bind: "tcp://127.0.0.1:*"}}}
  worker:
    run: m:f
    replicas: 4
    sockets: {out: {type: PUSH, connect: sink.in}}
"""))
    worker = export.workload("worker")
    assert (worker.kind, worker.pods, worker.replica_arg, worker.ports) == (
        DEPLOYMENT, 4, "0", ())
    assert any("each runs as replica 0" in n for n in worker.notes)


MESH = """
nodes:
  peer:
    run: m:f
    replicas: 3
    sockets:
      out: {{type: PUB, bind: "{bind}"}}
      in: {{type: SUB, subscribe: "", connect: peer.out}}
"""


def test_replicas_that_connect_to_one_another_over_tcp_are_a_statefulset() -> None:
    (peer,) = plan_export(load(MESH.format(bind="tcp://127.0.0.1:*"))).workloads
    assert (peer.kind, peer.pods, peer.headless, peer.replica_arg) == (
        STATEFULSET, 3, True, "$(POD_INDEX)")
    assert peer.why == ("one pod per replica of peer, and its replicas connect to one another, "
                        "so its pods need names")
    assert [(p.name, p.port) for p in peer.ports] == [
        ("out-0", 5550), ("out-1", 5551), ("out-2", 5552)]
    assert peer.hosts() == ["peer-0.peer", "peer-1.peer", "peer-2.peer"]


def test_replicas_that_connect_to_one_another_over_ipc_are_one_pod_and_say_why() -> None:
    (peer,) = plan_export(load(MESH.format(bind="ipc://out"))).workloads
    assert (peer.kind, peer.pods, peer.per_pod, peer.replica_arg, peer.ports) == (
        DEPLOYMENT, 1, False, None, ())
    assert peer.why.endswith("; one pod for the 3 replicas of peer, which link to each other "
                             "over ipc://out")


def test_nodes_sharing_ipc_are_one_pod_with_every_replica() -> None:
    export = plan_export(load("""
nodes:
  broker:
    role: proxy
    sockets:
      frontend: {type: ROUTER, bind: "tcp://127.0.0.1:*"}
      backend: {type: DEALER, bind: "ipc://backend"}
  worker:
    run: m:f
    replicas: 3
    sockets: {jobs: {type: REP, connect: broker.backend}}
"""))
    (broker,) = export.workloads
    assert (broker.kind, broker.pods, broker.per_pod, broker.replica_arg) == (
        DEPLOYMENT, 1, False, None)
    assert [str(j) for j in broker.group.joins] == ["worker joins broker: ipc://backend"]
    assert broker.ports == ()  # nobody outside the group connects: no Service


EXTERNAL = """
nodes:
  gateway:
    run: m:f
    replicas: {replicas}
    sockets:
      api: {{type: ROUTER, bind: {{endpoint: "tcp://*:{port}", external: true}}}}
      ops: {{type: REP, bind: ["ipc://ops", {{endpoint: "tcp://*:7000", external: true}}]}}
"""


def test_external_tcp_binds_get_a_service_port_and_a_note() -> None:
    (work,) = plan_export(load(EXTERNAL.format(replicas=1, port="*"))).workloads
    assert [(p.name, p.port, p.socket, p.external) for p in work.ports] == [
        ("api", 5550, "api", True), ("ops", 7000, "ops", True)]
    assert work.service and not work.headless
    assert [n for n in work.notes if "external" in n] == [
        "gateway.api binds for peers outside the topology (external): Service gateway has "
        "it, port 5550 (api), reached from inside the cluster; from outside it, give the "
        "Service type LoadBalancer or NodePort",
        "gateway.ops binds for peers outside the topology (external): Service gateway has "
        "it, port 7000 (ops), reached from inside the cluster; from outside it, give the "
        "Service type LoadBalancer or NodePort"]


def test_replicas_with_an_external_bind_each_get_a_name() -> None:
    (work,) = plan_export(load(EXTERNAL.format(replicas=2, port="*"))).workloads
    assert (work.kind, work.headless, work.pods) == (STATEFULSET, True, 2)
    assert "peers outside the topology connect to each replica" in work.why
    assert [(p.name, p.port) for p in work.ports] == [
        ("api-0", 5550), ("api-1", 5551), ("ops", 7000)]


def test_restart_policies_that_a_deployment_cannot_keep_are_notes() -> None:
    export = plan_export(load("""
nodes:
  a:
    run: m:f
    restart: on-failure
    max_restarts: 2
    ready: {tcp: 5555}
    sockets: {s: {type: PAIR, bind: "ipc://x"}}
  b: {run: m:f, restart: always, sockets: {s: {type: PAIR, connect: a.s}}}
"""))
    (work,) = export.workloads
    assert work.kind == DEPLOYMENT
    text = "\n".join(work.notes)
    assert "restart: on-failure (a):" in text and "(b)" not in text
    assert "a: max_restarts 2 within 60s" in text
    assert "a: `ready: {tcp: ...}` is checked by topo inside the pod" in text


def test_grace_is_the_stop_budget_of_the_group_plus_a_margin() -> None:
    export = plan_export(load("""
nodes:
  a: {run: m:f, stop_timeout: 3s, sockets: {s: {type: PAIR, bind: "ipc://x"}}}
  b:
    run: m:f
    stop_timeout: 2500ms
    depends_on: [a]
    sockets: {s: {type: PAIR, connect: a.s}}
  c: {run: m:f, stop_timeout: 20s}
"""))
    assert export.workload("a").grace == 3 + 3 + GRACE_MARGIN  # two tiers: 3 s and 2.5 s
    assert export.workload("c").grace == 20 + GRACE_MARGIN


def test_depends_on_a_group_without_ports_waits_for_its_headless_service() -> None:
    export = plan_export(load("""
nodes:
  a: {run: m:f, replicas: 2}
  b: {run: m:f, depends_on: [a]}
"""))
    a, b = export.workload("a"), export.workload("b")
    assert [(w.node, w.on, w.targets) for w in b.waits] == [("b", "a", ("a=2",))]
    assert (a.service, a.ports, a.waited_on) == (True, (), True)
    assert a.hosts() == []  # nobody connects to it: the Service is only for the wait


def test_depends_on_a_job_is_not_waited_for_but_said() -> None:
    # A Job's pods leave its Service once they end: a wait that starts after that (or a Job
    # that is Ready for a moment only) would never end.
    export = plan_export(load("""
nodes:
  once: {run: m:f, restart: never}
  server:
    run: m:f
    restart: never
    sockets: {in: {type: REP, bind: "tcp://127.0.0.1:*"}}
  client:
    run: m:f
    depends_on: [once, server]
    sockets: {out: {type: REQ, connect: server.in}}
"""))
    client, once = export.workload("client"), export.workload("once")
    assert client.waits == []
    assert [n.split(",")[0] for n in client.notes if "is a Job" in n] == [
        "client depends_on once", "client depends_on server"]
    assert "so client starts without waiting" in client.notes[-1]
    assert (once.kind, once.waited_on, once.service) == (JOB, False, False)


def test_waits_between_groups_never_form_a_circle() -> None:
    export = plan_export(load("""
nodes:
  a1:
    run: m:f
    depends_on: [b]
    sockets:
      out: {type: REQ, connect: b.in}
      pair: {type: PAIR, bind: "ipc://p"}
  a2:
    run: m:f
    sockets:
      pair: {type: PAIR, connect: a1.pair}
      in: {type: REP, bind: "tcp://127.0.0.1:*"}
  b:
    run: m:f
    depends_on: [a2]
    sockets:
      in: {type: REP, bind: "tcp://127.0.0.1:*"}
      out: {type: REQ, connect: a2.in}
"""))
    a, b = export.workload("a1"), export.workload("b")
    assert [(w.node, w.on, w.targets) for w in a.waits] == [("a1", "b", ("b:5551",))]
    assert b.waits == []
    assert any("would wait in a circle" in n for n in b.notes)


def test_port_names_are_iana_service_names() -> None:
    taken: list[str] = []
    for base, suffix in [("frontend", []), ("a_very_long_socket_name", ["1", "12"]),
                         ("9", []), ("x--y", ["0"]), ("frontend", [])]:
        name = port_name(base, suffix, taken=taken, port=5550 + len(taken))
        assert port_name_ok(name), name
        assert name not in taken
        taken.append(name)
    assert taken[:2] == ["frontend", "a-very-lon-1-12"]
    assert taken[3] == "x-y-0"
    assert taken[2] == "port-5552" and taken[4] == "port-5554"


@pytest.mark.parametrize("sockets", [1, 2])
def test_two_nodes_of_a_group_with_one_socket_name_get_distinct_port_names(sockets: int) -> None:
    second = 'b: {run: m:f, sockets: {out: {type: PUB, bind: "tcp://127.0.0.1:*"}, ' \
             'p: {type: PAIR, connect: a.p}}}' if sockets == 2 else "b: {run: m:f}"
    export = plan_export(load(f"""
nodes:
  a:
    run: m:f
    sockets:
      out: {{type: PUB, bind: "tcp://127.0.0.1:*"}}
      p: {{type: PAIR, bind: "ipc://p"}}
  {second}
  c:
    run: m:f
    sockets:
      in: {{type: SUB, subscribe: "", connect: [a.out{", b.out" * (sockets == 2)}]}}
"""))
    names = [p.name for p in export.workload("a").ports]
    assert names == (["a-out", "b-out"] if sockets == 2 else ["out"])


def test_ironhouse_client_does_not_wait_for_the_intruder_which_ends_at_once() -> None:
    topology = validate_file(ROOT / "topologies/ironhouse.yaml").topology
    assert topology is not None
    client = plan_export(topology).workload("client")
    assert [(w.on, w.targets) for w in client.waits] == [
        ("broker", ("broker:5550",)), ("worker", ("broker:5550",))]
    assert any(n.startswith("client depends_on intruder, but group intruder is a Job")
               for n in client.notes)
