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
KEYS_DIR = "/etc/topo/keys"  # where a CURVE topology's Secret is mounted (`topo up --keys`)
PUBLIC_MODE, SECRET_MODE = 0o444, 0o440
# The group of the key files (pod securityContext.fsGroup): the kubelet gives the Secret's
# files this group and adds it to every process of the pod, so an image that runs as a user
# other than root reads its secret keys (0440) too. Any id would do; 1000 is the first user's
# group of most images.
KEYS_GROUP = 1000
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
    keys_secret: str | None = None  # CURVE: the Secret made from `topo keys --make DIR FILE`


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
        (service or workload).comments = _group_comments(work, target)
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


def keys_secret_name(topology_name: str) -> str:
    """The Secret that holds a CURVE topology's key files: ``TOPOLOGY-curve-keys``."""
    stem = re.sub(r"[^a-z0-9-]+", "-", topology_name.lower()).strip("-")[:52].rstrip("-")
    return f"{stem or 'topo'}-curve-keys"


def _group_comments(work: Workload, target: Target) -> list[str]:
    lines = [f"group {work.name}: {', '.join(work.group.nodes)}"]
    lines += [f"  {j}" for j in work.group.joins]
    lines.append(f"{work.kind}: {work.why}")
    lines += [f"note: {n}" for n in work.notes]
    lines += work.remarks
    if target.keys_secret is not None:
        lines.append(f"CURVE: Secret {target.keys_secret} at {KEYS_DIR} (`topo up --keys`): "
                     "every node's public key (mode 0444 = 292), and the secret keys of this "
                     f"group's nodes only (mode 0440 = 288, group {KEYS_GROUP}: fsGroup, so "
                     "that a container running as any user reads them)")
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
    if target.keys_secret is not None:
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
    if target.keys_secret is not None:
        container["volumeMounts"] = [{"name": "curve-keys", "mountPath": KEYS_DIR,
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
    if target.keys_secret is not None:
        pod["securityContext"] = {"fsGroup": KEYS_GROUP}
    if work.kind == JOB and work.headless:
        pod["subdomain"] = work.name  # pod N of an Indexed Job is GROUP-N.GROUP
    waits = _init_containers(work, target)
    if waits:
        pod["initContainers"] = waits
    pod["containers"] = [container]
    if target.keys_secret is not None:
        pod["volumes"] = [_keys_volume(export, work, target.keys_secret)]
    return pod


def _keys_volume(export: Export, work: Workload, secret: str) -> dict[str, Any]:
    """Every node's public key (the group checks its clients and knows its servers), and
    the secret keys of the group's own nodes: no pod holds another group's secret."""
    items = [{"key": f"{n}{PUBLIC_SUFFIX}", "path": f"{n}{PUBLIC_SUFFIX}", "mode": PUBLIC_MODE}
             for n in export.topology.nodes]
    items += [{"key": f"{n}{SECRET_SUFFIX}", "path": f"{n}{SECRET_SUFFIX}", "mode": SECRET_MODE}
              for n in work.group.nodes]
    return {"name": "curve-keys", "secret": {"secretName": secret, "defaultMode": SECRET_MODE,
                                             "items": items}}


def _init_containers(work: Workload, target: Target) -> list[dict[str, Any]]:
    by_group: dict[str, list[str]] = {}
    for wait in work.waits:
        targets = by_group.setdefault(wait.group, [])
        targets.extend(t for t in wait.targets if t not in targets)
    return [{"name": f"wait-for-{group}"[:63].rstrip("-"), "image": target.image,
             "command": ["python3", "-c", WAIT_SCRIPT, *targets]}
            for group, targets in by_group.items()]
