"""What each group of a topology becomes on Kubernetes, decided before any YAML is written.

A group (``spec/groups.py``) is one workload whose container runs ``topo up FILE
--group G``: topo's own supervisor, so restarts, readiness and IPC inside the pod
work as on one machine. The choices, per group:

- every node ``restart: never``: a **Job** (it runs to its end once); otherwise a
  **Deployment**, whose pods Kubernetes keeps running;
- a group of one replicated node: one pod per replica (unless its replicas must
  share a host, ``Group.together``). Its pods need names when other groups, peers
  outside the topology or its own replicas (over tcp) connect to each replica
  (``GROUP-N.GROUP``, as ``group_run`` says):
  a **StatefulSet** (or an Indexed Job) under a headless Service, each pod running
  its own replica (``--replica $(POD_INDEX)``). A Deployment's pods have no index:
  each runs replica 0;
- a **Service** named after the group for the tcp binds other groups connect to,
  and for its ``external: true`` tcp binds (peers outside the topology), with the
  fixed ports of ``groups.fixed_ports``;
- ``depends_on`` a node of another group: wait for that group's Service port
  (it accepts once the group's pod is Ready, i.e. every node of it is ready), or,
  for a group without ports, until its headless Service resolves to every pod.
  Not for a Job: its pods leave the Service once they end, so a wait that starts
  late (or a Job that is Ready only for a moment) would never end; a note says so.

Whatever has no faithful form is a *note*: a comment in the output and a line on
stderr. *Remarks* say how something maps; they are comments only.

Pure: a topology in, decisions out.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.spec.group_run import GroupRun
from orchestrator.spec.groups import Group, Grouping, fixed_ports, group_nodes
from orchestrator.spec.model import Topology
from orchestrator.spec.planner import dependency_tiers

DEPLOYMENT, STATEFULSET, JOB = "Deployment", "StatefulSet", "Job"
# topo's own tear-down after the last node stopped, on top of the nodes' stop budget.
GRACE_MARGIN = 5
PORT_NAME_MAX = 15  # an IANA service name, as Kubernetes wants port names


@dataclass(frozen=True)
class ServicePort:
    """A tcp bind another group connects to: one port of the group's Service."""

    name: str
    port: int
    node: str
    socket: str
    bind_index: int
    replica: int
    external: bool = False  # an `external: true` bind: for peers outside the topology


@dataclass(frozen=True)
class Wait:
    """``node`` (of this group) depends_on ``on``, a node of group ``group``."""

    node: str
    on: str
    group: str
    targets: tuple[str, ...]  # HOST:PORT to wait for; () when there is nothing to wait on


@dataclass
class Workload:
    group: Group
    kind: str  # DEPLOYMENT, STATEFULSET or JOB
    why: str
    pods: int
    per_pod: bool  # one pod per replica of the group's one node
    replica_arg: str | None  # what `--replica` gets: "0", "$(POD_INDEX)", or no --replica
    ports: tuple[ServicePort, ...]  # the Service's; empty: no Service
    headless: bool  # the Service names each pod: GROUP-N.GROUP
    grace: int  # terminationGracePeriodSeconds
    waits: list[Wait] = field(default_factory=list)
    waited_on: bool = False  # another group's depends_on waits for this one
    notes: list[str] = field(default_factory=list)  # no faithful form: comment and stderr
    remarks: list[str] = field(default_factory=list)  # how it maps: comment only

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def service(self) -> bool:
        """Whether the group has a Service: others connect to it, or wait for it."""
        return bool(self.ports) or self.waited_on

    @property
    def indexed(self) -> bool:
        """Each pod knows its replica from the downward API (``POD_INDEX``)."""
        return self.replica_arg == "$(POD_INDEX)"

    def hosts(self) -> list[str]:
        """The names other groups reach this group by: the Service, or each pod."""
        if not self.ports:
            return []
        if self.headless:
            return [f"{self.name}-{r}.{self.name}" for r in range(self.pods)]
        return [self.name]


@dataclass
class Export:
    topology: Topology
    grouping: Grouping
    ports: dict[tuple[str, str, int, int], int]  # every fixed port, exposed or not
    workloads: list[Workload]

    def workload(self, group: str) -> Workload:
        return next(w for w in self.workloads if w.name == group)


def plan_export(topology: Topology) -> Export:
    """The workload of every group of ``topology``, in the order of the groups."""
    grouping = group_nodes(topology)
    ports = fixed_ports(topology)
    workloads = []
    tiers = dependency_tiers(topology)
    for group in grouping.groups:
        run = GroupRun(topology, group.name)
        workloads.append(_workload(topology, group, run, tiers))
    export = Export(topology, grouping, ports, workloads)
    _add_waits(export)
    return export


def _workload(topology: Topology, group: Group, run: GroupRun,
              tiers: tuple[tuple[str, ...], ...]) -> Workload:
    nodes = {n: topology.nodes[n] for n in group.nodes}
    per_pod = group.name in run.per_pod
    pods = nodes[group.nodes[0]].replicas if per_pod else 1
    ports = _service_ports(topology, group, run)
    restart = {n: spec.restart for n, spec in nodes.items()}
    if all(p == "never" for p in restart.values()):
        kind = JOB
        why = ("every node has restart: never, so the group runs once, to its end"
               + (f", one pod per replica of {group.nodes[0]} (an Indexed Job)" if per_pod
                  else ""))
    elif per_pod and ports:
        kind = STATEFULSET
        why = (f"one pod per replica of {group.nodes[0]}, and {_who(ports, run)}, so its pods "
               "need names")
    else:
        kind = DEPLOYMENT
        why = ("its nodes are not all restart: never, so Kubernetes keeps the group running"
               + (f", one pod per replica of {group.nodes[0]}" if per_pod else ""))
    if group.together:
        why += (f"; one pod for the {nodes[group.nodes[0]].replicas} replicas of "
                f"{group.nodes[0]}, which {group.together}")
    replica_arg = None
    if per_pod:
        replica_arg = "$(POD_INDEX)" if kind in (STATEFULSET, JOB) else "0"
    work = Workload(group, kind, why, pods, per_pod, replica_arg, ports,
                    headless=per_pod and bool(ports), grace=_grace(topology, group, tiers))
    _explain_restarts(work, topology)
    outside: dict[tuple[str, str, int], list[ServicePort]] = {}
    for p in ports:
        if p.external:
            outside.setdefault((p.node, p.socket, p.bind_index), []).append(p)
    for (node, sock, _), each in outside.items():
        said = ", ".join(f"{p.port} ({p.name})" for p in each)
        work.notes.append(
            f"{node}.{sock} binds for peers outside the topology (external): Service "
            f"{group.name} has it, port {said}, reached from inside the cluster; from "
            "outside it, give the Service type LoadBalancer or NodePort")
    for name, spec in nodes.items():
        if spec.ready is not None:
            work.notes.append(
                f"{name}: `ready: {{{spec.ready.kind}: ...}}` is checked by topo inside the pod; "
                "Kubernetes sees it only through the readinessProbe (the pod is Ready once "
                "every node of the group is)")
    return work


def _explain_restarts(work: Workload, topology: Topology) -> None:
    nodes = {n: topology.nodes[n] for n in work.group.nodes}
    if work.kind == JOB:
        work.remarks.append("restartPolicy Never, backoffLimit 0: the Job runs once and "
                            "succeeds when `topo up` does (every node ended with 0)")
    else:
        work.remarks.append("topo restarts the group's nodes inside the pod, each by its own "
                            "restart policy; Kubernetes restarts the pod only when `topo up` "
                            "itself ends")
        ending: dict[str, list[str]] = {}
        for n, s in nodes.items():
            if s.restart != "always":
                ending.setdefault(s.restart, []).append(n)
        if ending:
            said = ", ".join(f"{p} ({', '.join(ns)})" for p, ns in ending.items())
            work.notes.append(
                f"restart: {said}: once every node of the group has ended, `topo up` ends and "
                f"Kubernetes starts the pod again, even after a clean end: a {work.kind} knows "
                "only restartPolicy Always")
    if work.per_pod and work.indexed:
        label = ("apps.kubernetes.io/pod-index label" if work.kind == STATEFULSET
                 else "batch.kubernetes.io/job-completion-index annotation")
        work.remarks.append(
            f"one pod per replica: POD_INDEX comes from the pod's {label} through the "
            "downward API (Kubernetes 1.28+), so pod N runs `--replica N`"
            + (f" and is reached as {work.name}-N.{work.name}" if work.headless else ""))
    elif work.per_pod:
        work.notes.append(
            f"{work.group.nodes[0]}: {work.pods} replicas, one per pod; a Deployment's pods have "
            "no index, so each runs as replica 0 (TOPO_REPLICA=0 in every pod)")
    for n, s in nodes.items():
        if s.restart != "never" and {"max_restarts", "restart_window"} & s.model_fields_set:
            work.notes.append(
                f"{n}: max_restarts {s.max_restarts} within {_seconds(s.restart_window)} is "
                "counted by topo inside the pod; a node that runs out of restarts stays down "
                "while the pod runs on, and a new pod counts afresh")


def _grace(topology: Topology, group: Group, tiers: tuple[tuple[str, ...], ...]) -> int:
    """What ``topo down`` waits: each tier's longest stop_timeout, summed; plus a margin."""
    mine = set(group.nodes)
    budget = sum(max((topology.nodes[n].stop_timeout for n in tier if n in mine), default=0.0)
                 for tier in tiers)
    return math.ceil(budget) + GRACE_MARGIN


def _who(ports: tuple[ServicePort, ...], run: GroupRun) -> str:
    """Who connects to the replicas of a group of one pod per replica, in words."""
    who = ["other groups"] * any((p.node, p.socket) in run.crossing for p in ports)
    who += ["peers outside the topology"] * any(p.external for p in ports)
    said = f"{' and '.join(who)} connect to each replica" if who else ""
    if any((p.node, p.socket) in run.meshed for p in ports):
        said = "its replicas connect to one another" + (f", and {said}" if said else "")
    return said


def _service_ports(topology: Topology, group: Group, run: GroupRun) -> tuple[ServicePort, ...]:
    """The tcp binds of sockets other groups connect to, and the external tcp binds."""
    found: list[tuple[str, str, int, int, int]] = []
    external: set[tuple[str, str, int]] = set()
    for node in group.nodes:
        spec = topology.nodes[node]
        for sock, sspec in spec.sockets.items():
            exposed = (node, sock) in run.exposed
            for i, ep in enumerate(sspec.bind):
                if ep.transport != "tcp" or not (exposed or ep.external):
                    continue
                if ep.external:
                    external.add((node, sock, i))
                for r in range(spec.replicas):
                    port = run.ports.get((node, sock, i, r))
                    if port is None:
                        port = int(ep.endpoint.rpartition(":")[2])
                        if r:  # a literal port: every replica binds it (in its own pod)
                            break
                    found.append((node, sock, i, r, port))
    # A port is named after its socket; the node's name too when two nodes of the group
    # share a socket name, and the bind and the replica when the socket has several.
    count = Counter(sock for _, sock in {(n, s) for n, s, *_ in found})
    binds = Counter((n, s) for n, s, i, r, _ in found if r == 0)
    reps = Counter((n, s) for n, s, i, r, _ in found if i == 0)
    names: list[str] = []
    out = []
    for node, sock, i, r, port in found:
        base = f"{node}-{sock}" if count[sock] > 1 else sock
        suffix = [str(i)] * (binds[(node, sock)] > 1) + [str(r)] * (reps[(node, sock)] > 1)
        name = port_name(base, suffix, taken=names, port=port)
        names.append(name)
        out.append(ServicePort(name, port, node, sock, i, r, (node, sock, i) in external))
    return tuple(out)


def port_name(base: str, suffix: list[str], *, taken: list[str], port: int) -> str:
    """An IANA service name (at most 15 of ``a-z0-9-``, a letter, no ``--``) for a port."""
    stem = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")
    tail = "".join(f"-{s}" for s in suffix)
    stem = stem[:PORT_NAME_MAX - len(tail)].rstrip("-")
    name = f"{stem}{tail}".strip("-")
    if not name or not re.search("[a-z]", name) or name in taken:
        name = f"port-{port}"
    return name


def _add_waits(export: Export) -> None:
    """``depends_on`` across groups: a wait for the named group's Service; no circles."""
    topology = export.topology
    of = export.grouping.of
    edges: dict[str, set[str]] = {}

    def reaches(a: str, b: str) -> bool:
        todo, seen = [a], set()
        while todo:
            g = todo.pop()
            if g == b:
                return True
            seen.add(g)
            todo.extend(edges.get(g, set()) - seen)
        return False

    for work in export.workloads:
        for node in work.group.nodes:
            for on in topology.nodes[node].depends_on:
                other = of[on]
                if other == work.name:
                    continue
                peer = export.workload(other)
                if peer.kind == JOB:
                    work.notes.append(
                        f"{node} depends_on {on}, but group {other} is a Job, whose pods leave "
                        "its Service once they end: a wait could miss them and never end, so "
                        f"{node} starts without waiting for it (ZeroMQ connects whenever "
                        "its peers are up; only the order is lost)")
                    continue
                if reaches(other, work.name):
                    work.notes.append(
                        f"{node} depends_on {on}, but group {other} already waits for this "
                        f"group: waiting here too would wait in a circle, so {node} starts "
                        "without waiting")
                    continue
                edges.setdefault(work.name, set()).add(other)
                peer.waited_on = True
                work.waits.append(Wait(node, on, other, _targets(peer)))
    for work in export.workloads:
        if work.waits:
            work.remarks.append(
                "depends_on across groups: an initContainer waits until each group named is "
                "Ready (every node of it is): its Service accepts connections on its port, or "
                "a headless Service resolves to every pod (HOST=N), which happens once the pods "
                "are Ready; ZeroMQ would reconnect anyway, the wait keeps the order depends_on "
                "asks for")
        if work.waited_on and not work.ports:
            work.remarks.append(
                "a headless Service without ports: only for other groups' depends_on, as it "
                "resolves to this group's pods once they are Ready")


def _targets(peer: Workload) -> tuple[str, ...]:
    if not peer.ports:  # a headless Service that resolves to the pods that are Ready
        return (f"{peer.name}={peer.pods}",)
    if peer.headless:
        first: dict[int, int] = {}
        for p in peer.ports:
            first.setdefault(p.replica, p.port)
        return tuple(f"{peer.name}-{r}.{peer.name}:{first.get(r, peer.ports[0].port)}"
                     for r in range(peer.pods))
    return (f"{peer.name}:{peer.ports[0].port}",)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def variables_used(names: list[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The ``${VAR}`` names set in ``environ``: each container gets them, as the export saw them."""
    return {n: environ[n] for n in sorted(set(names)) if n in environ}
