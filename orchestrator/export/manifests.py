"""The Kubernetes objects of an export: a Service and a workload per group, as plain data.

Each object is a ``Document``: the object as a dict (in the order a reader expects:
apiVersion, kind, metadata, spec) and the comment lines printed above it. Only
stable APIs (v1, apps/v1, batch/v1), nothing a plain ``kubectl apply -f`` or
``podman kube play`` would not take.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.certs import PUBLIC_SUFFIX, SECRET_SUFFIX
from orchestrator.export.workloads import JOB, STATEFULSET, Export, Workload

READY_FILE = "/tmp/topo-ready"
STATE_DIR = "/tmp/topo"
# Where a CURVE topology's keys are mounted (`topo up --keys`): one projected volume, the
# public keys of every node from a ConfigMap, the secret keys of the group's own nodes from
# the group's Secret, side by side as `topo up --keys` reads them.
KEYS_DIR = "/etc/topo/keys"
KEYS_VOLUME = "curve-keys"
# The kubelet's files belong to root (no fsGroup): 0400 is readable by root in the container
# only, and `topo up --keys` refuses a secret key that every user can read.
PUBLIC_MODE, SECRET_MODE = 0o444, 0o400
NAME_MAX = 63  # a ConfigMap's or Secret's name, as a DNS label
PART_OF, COMPONENT = "app.kubernetes.io/part-of", "app.kubernetes.io/component"
INDEX_FIELDS = {
    STATEFULSET: "metadata.labels['apps.kubernetes.io/pod-index']",
    JOB: "metadata.annotations['batch.kubernetes.io/job-completion-index']",
}

# What an initContainer runs to wait for `depends_on` in another group, for each target:
# HOST:PORT until it accepts a tcp connection, HOST=N until HOST resolves to N addresses
# (a headless Service lists only the pods that are Ready). Python, since the image has it.
WAIT_SCRIPT = """\
import socket, sys, time

def ready(target):
    try:
        if "=" in target:
            host, _, count = target.partition("=")
            found = {a[4][0] for a in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
            return len(found) >= int(count)
        host, _, port = target.rpartition(":")
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False

for target in sys.argv[1:]:
    print(f"waiting for {target}", flush=True)
    while not ready(target):
        time.sleep(1)
"""


@dataclass
class Document:
    body: dict[str, Any]
    comments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """Where the manifests run: the image, the topology file inside it, the namespace."""

    image: str
    file: str  # the topology file, relative to workdir
    workdir: str = "/app"
    namespace: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)  # ${VAR}s set at export
    curve: bool = False  # CURVE: the keys come from the objects the header says to make


def label_value(text: str) -> str:
    """``text`` as a label value: at most 63 of ``A-Za-z0-9-_.``, alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value) or "topo"


def selector(export: Export, work: Workload) -> dict[str, str]:
    return {PART_OF: label_value(export.topology.name), COMPONENT: work.name}


def labels(export: Export, work: Workload) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": work.name,
        "app.kubernetes.io/instance": label_value(f"{export.topology.name}-{work.name}"),
        COMPONENT: work.name,
        PART_OF: label_value(export.topology.name),
        "app.kubernetes.io/managed-by": "topo",
    }


def documents(export: Export, target: Target) -> list[Document]:
    """Per group, in the order of the groups: its Service (if any), then its workload."""
    docs = []
    for work in export.workloads:
        service = _service(export, work, target)
        workload = _workload(export, work, target)
        (service or workload).comments = _group_comments(export, work, target)
        if service is not None:
            docs.append(service)
        docs.append(workload)
    return docs


def _metadata(export: Export, work: Workload, target: Target) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": work.name}
    if target.namespace:
        meta["namespace"] = target.namespace
    meta["labels"] = labels(export, work)
    return meta


def _stem(topology_name: str, room: int) -> str:
    """The topology's name in at most ``room`` characters of a DNS label."""
    stem = re.sub(r"[^a-z0-9-]+", "-", topology_name.lower()).strip("-")[:room].rstrip("-")
    return stem or "topo"


def public_keys_name(topology_name: str) -> str:
    """The ConfigMap of a CURVE topology's public keys: ``TOPOLOGY-public-keys``."""
    suffix = "-public-keys"
    return _stem(topology_name, NAME_MAX - len(suffix)) + suffix


def keys_secret_name(topology_name: str, group: str) -> str:
    """The Secret of a group's secret keys: ``TOPOLOGY-GROUP-keys``. The group's name (a DNS
    label of at most 52) stays whole, so that two groups never share a Secret; the
    topology's name is cut to what is left."""
    suffix = f"-{group}-keys"
    return _stem(topology_name, NAME_MAX - len(suffix)) + suffix


def keys_commands(export: Export, target: Target) -> list[str]:
    """The commands that make the ConfigMap and each group's Secret from ``topo keys --make
    keys/ FILE``: the output holds no key."""
    topology = export.topology
    ns = f" -n {target.namespace}" if target.namespace else ""
    files = [f"--from-file=keys/{n}{PUBLIC_SUFFIX}" for n in topology.nodes]
    lines = [f"kubectl create configmap {public_keys_name(topology.name)} {' '.join(files)}{ns}"]
    for work in export.workloads:
        files = [f"--from-file=keys/{n}{SECRET_SUFFIX}" for n in work.group.nodes]
        lines.append(f"kubectl create secret generic "
                     f"{keys_secret_name(topology.name, work.name)} {' '.join(files)}{ns}")
    return lines


def _group_comments(export: Export, work: Workload, target: Target) -> list[str]:
    lines = [f"group {work.name}: {', '.join(work.group.nodes)}"]
    lines += [f"  {j}" for j in work.group.joins]
    lines.append(f"{work.kind}: {work.why}")
    lines += [f"note: {n}" for n in work.notes]
    lines += work.remarks
    if target.curve:
        name = export.topology.name
        lines.append(f"CURVE: at {KEYS_DIR} (`topo up --keys`), every node's public key from "
                     f"the ConfigMap {public_keys_name(name)} (mode 0444 = 292), and the "
                     "secret keys of this group's nodes only, from the Secret "
                     f"{keys_secret_name(name, work.name)} (mode 0400 = 256)")
    return lines


def _service(export: Export, work: Workload, target: Target) -> Document | None:
    if not work.service:
        return None
    spec: dict[str, Any] = {}
    if work.headless or not work.ports:
        spec["clusterIP"] = "None"
    spec["selector"] = selector(export, work)
    if work.ports:
        spec["ports"] = [{"name": p.name, "port": p.port, "targetPort": p.port,
                          "protocol": "TCP"} for p in work.ports]
    body = {"apiVersion": "v1", "kind": "Service",
            "metadata": _metadata(export, work, target), "spec": spec}
    return Document(body)


def _workload(export: Export, work: Workload, target: Target) -> Document:
    template = {"metadata": {"labels": labels(export, work)},
                "spec": _pod_spec(export, work, target)}
    spec: dict[str, Any]
    if work.kind == JOB:
        spec = {"backoffLimit": 0}
        if work.per_pod:
            spec.update(completions=work.pods, parallelism=work.pods, completionMode="Indexed")
        spec["template"] = template
        api = "batch/v1"
    else:
        spec = {"replicas": work.pods}
        if work.kind == STATEFULSET:
            spec.update(serviceName=work.name, podManagementPolicy="Parallel")
        spec["selector"] = {"matchLabels": selector(export, work)}
        spec["template"] = template
        api = "apps/v1"
    body = {"apiVersion": api, "kind": work.kind,
            "metadata": _metadata(export, work, target), "spec": spec}
    return Document(body)


def _pod_spec(export: Export, work: Workload, target: Target) -> dict[str, Any]:
    command = ["topo", "up", target.file, "--group", work.name]
    if work.replica_arg is not None:
        command += ["--replica", work.replica_arg]
    if target.curve:
        command += ["--keys", KEYS_DIR]
    command += ["--ready-file", READY_FILE, "--no-color"]
    env: list[dict[str, Any]] = [{"name": "TOPO_STATE_DIR", "value": STATE_DIR}]
    if work.indexed:
        env.append({"name": "POD_INDEX",
                    "valueFrom": {"fieldRef": {"fieldPath": INDEX_FIELDS[work.kind]}}})
    env += [{"name": k, "value": v} for k, v in target.variables.items()]
    container: dict[str, Any] = {
        "name": work.name, "image": target.image, "workingDir": target.workdir,
        "command": command, "env": env,
    }
    if work.ports:
        container["ports"] = [{"name": p.name, "containerPort": p.port, "protocol": "TCP"}
                              for p in work.ports]
    if target.curve:
        container["volumeMounts"] = [{"name": KEYS_VOLUME, "mountPath": KEYS_DIR,
                                      "readOnly": True}]
    container["readinessProbe"] = {"exec": {"command": ["test", "-f", READY_FILE]},
                                   "periodSeconds": 2}
    pod: dict[str, Any] = {
        "restartPolicy": "Never" if work.kind == JOB else "Always",
        "terminationGracePeriodSeconds": work.grace,
        # Service links would put a BROKER_PORT=... for every Service into the environment,
        # where a ${VAR} of the topology file could pick it up.
        "enableServiceLinks": False,
    }
    if work.kind == JOB and work.headless:
        pod["subdomain"] = work.name  # pod N of an Indexed Job is GROUP-N.GROUP
    waits = _init_containers(work, target)
    if waits:
        pod["initContainers"] = waits
    pod["containers"] = [container]
    if target.curve:
        pod["volumes"] = [_keys_volume(export, work)]
    return pod


def _keys_volume(export: Export, work: Workload) -> dict[str, Any]:
    """Every node's public key (the group checks its clients and knows its servers), and,
    from the group's own Secret, the secret keys of its nodes: no pod names another group's
    Secret. The items make a key missing from either object fail the pod's start."""
    name = export.topology.name
    public = [{"key": f"{n}{PUBLIC_SUFFIX}", "path": f"{n}{PUBLIC_SUFFIX}", "mode": PUBLIC_MODE}
              for n in export.topology.nodes]
    secret = [{"key": f"{n}{SECRET_SUFFIX}", "path": f"{n}{SECRET_SUFFIX}", "mode": SECRET_MODE}
              for n in work.group.nodes]
    return {"name": KEYS_VOLUME, "projected": {"defaultMode": SECRET_MODE, "sources": [
        {"configMap": {"name": public_keys_name(name), "items": public}},
        {"secret": {"name": keys_secret_name(name, work.name), "items": secret}},
    ]}}


def _init_containers(work: Workload, target: Target) -> list[dict[str, Any]]:
    by_group: dict[str, list[str]] = {}
    for wait in work.waits:
        targets = by_group.setdefault(wait.group, [])
        targets.extend(t for t in wait.targets if t not in targets)
    return [{"name": f"wait-for-{group}"[:63].rstrip("-"), "image": target.image,
             "command": ["python3", "-c", WAIT_SCRIPT, *targets]}
            for group, targets in by_group.items()]
