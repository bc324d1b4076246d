"""topo's own checks of exported manifests, on top of the Kubernetes schemas.

``kubernetes-validate`` checks each object against the API's OpenAPI schemas (strict:
no unknown field). What the schemas cannot see, the API server or a run would:
object names, port names, selectors that select nothing, a connect to a host that
no Service names. ``problems`` lists every such thing as a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import yaml

from orchestrator.spec.group_run import GroupRun
from orchestrator.spec.model import Topology

# The oldest version the export is for (pod-index labels, 1.28+, are beta and on by
# default there), and the newest this kubernetes-validate knows.
KUBERNETES = ("1.30.0", kubernetes_validate.utils.latest_version())
DNS_1123 = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
DNS_1035 = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def schema_errors(docs: Sequence[dict[str, Any]]) -> list[str]:
    found = []
    for doc in docs:
        for version in KUBERNETES:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                found.append(f"{doc['kind']} {doc['metadata']['name']} ({version}): {exc}")
    return found


def port_name_ok(name: str) -> bool:
    return (len(name) <= 15 and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name) is not None
            and "--" not in name and re.search("[a-z]", name) is not None)


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = doc["spec"]["template"]
    return template


def problems(docs: Sequence[dict[str, Any]], topology: Topology) -> list[str]:
    said: list[str] = []
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    workloads = [d for d in docs if d["kind"] != "Service"]
    for doc in docs:
        name = doc["metadata"]["name"]
        pattern = DNS_1035 if doc["kind"] == "Service" else DNS_1123
        if not pattern.fullmatch(name):
            said.append(f"{doc['kind']} {name}: not a valid name")
        for key, value in doc["metadata"].get("labels", {}).items():
            if not LABEL_VALUE.fullmatch(value) or len(value) > 63:
                said.append(f"{doc['kind']} {name}: label {key}={value!r} is not a label value")
    pods: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for doc in workloads:
        name, kind = doc["metadata"]["name"], doc["kind"]
        pod = _pod(doc)
        pods[name] = (doc, pod)
        labels = pod["metadata"]["labels"]
        selector = doc["spec"].get("selector", {}).get("matchLabels")
        if kind != "Job" and (not selector or any(labels.get(k) != v
                                                  for k, v in selector.items())):
            said.append(f"{kind} {name}: its selector does not match its pod labels")
        policy = pod["spec"]["restartPolicy"]
        if kind in ("Deployment", "StatefulSet") and policy != "Always":
            said.append(f"{kind} {name}: restartPolicy {policy}; it must be Always")
        for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
            if not DNS_1123.fullmatch(c["name"]):
                said.append(f"{kind} {name}: container name {c['name']} is not a DNS label")
            for p in c.get("ports", []):
                if not port_name_ok(p["name"]):
                    said.append(f"{kind} {name}: port name {p['name']!r} is not valid")
        for vol in pod["spec"].get("volumes", []):
            for source in vol.get("projected", {}).get("sources", []):
                for ref_kind, ref in source.items():
                    if not DNS_1123.fullmatch(ref["name"]):
                        said.append(f"{kind} {name}: {ref_kind} {ref['name']} is not a DNS "
                                    "label of at most 63")
    for name, svc in services.items():
        matched = [pod for _, pod in pods.values()
                   if all(pod["metadata"]["labels"].get(k) == v
                          for k, v in svc["spec"]["selector"].items())]
        if len(matched) != 1:
            said.append(f"Service {name} selects {len(matched)} workloads, not 1")
            continue
        exposed = {p["containerPort"] for c in matched[0]["spec"]["containers"]
                   for p in c.get("ports", [])}
        for p in svc["spec"].get("ports", []):
            if not port_name_ok(p["name"]):
                said.append(f"Service {name}: port name {p['name']!r} is not valid")
            if p["targetPort"] not in exposed:
                said.append(f"Service {name}: port {p['port']} has no containerPort")
    said += _cross_group_hosts(topology, services, pods)
    said += _wait_targets(services, pods)
    return said


def _wait_targets(services: dict[str, dict[str, Any]],
                  pods: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    """Each initContainer waits for HOST:PORT (a Service's port) or HOST=N (a headless
    Service over N pods): both must be in the output."""
    said = []
    for name, (_, pod) in pods.items():
        for init in pod["spec"].get("initContainers", []):
            for target in init["command"][3:]:
                host, eq, count = target.partition("=")
                if not eq:
                    host, _, port = target.rpartition(":")
                    if not _reachable(host, int(port), services, pods):
                        said.append(f"{name} waits for {target}, which no Service names")
                    continue
                svc = services.get(host)
                doc = pods.get(host, ({}, {}))[0]
                spec = doc.get("spec", {})
                if svc is None or svc["spec"].get("clusterIP") != "None" or int(count) != \
                        spec.get("replicas", spec.get("completions", 1)):
                    said.append(f"{name} waits for {target}, which is no headless Service "
                                "over that many pods")
    return said


def _cross_group_hosts(topology: Topology, services: dict[str, dict[str, Any]],
                       pods: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    """Every connect to another group must reach a Service (or a named pod) on its port."""
    said = []
    for name in pods:
        run = GroupRun(topology, name)
        for node in run.group.nodes:
            for sock, spec in topology.nodes[node].sockets.items():
                for i in range(len(spec.connect)):
                    for endpoint in run.connects(node, sock, i) or []:
                        host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
                        if not _reachable(host, int(port), services, pods):
                            said.append(f"{node}.{sock} connects to {endpoint}, which no "
                                        "Service of the output names on that port")
    return said


def _reachable(host: str, port: int, services: dict[str, dict[str, Any]],
               pods: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> bool:
    pod_name, _, service = host.partition(".")
    if service:  # GROUP-N.GROUP: pod N of a StatefulSet or an Indexed Job under Service GROUP
        svc = services.get(service)
        if svc is None or svc["spec"].get("clusterIP") != "None" or service not in pods:
            return False
        doc, pod = pods[service]
        count = doc["spec"].get("replicas", doc["spec"].get("completions", 1))
        named = (doc["kind"] == "StatefulSet" and doc["spec"]["serviceName"] == service) or (
            doc["kind"] == "Job" and pod["spec"].get("subdomain") == service
            and doc["spec"].get("completionMode") == "Indexed")
        index = pod_name.removeprefix(f"{service}-")
        if not named or not index.isdigit() or int(index) >= count:
            return False
    else:
        svc = services.get(host)
        if svc is None:
            return False
    return port in {p["port"] for p in svc["spec"].get("ports", [])}
