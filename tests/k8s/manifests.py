"""Exported manifests made playable by ``podman kube play`` (podman 4.3), in a copy.

What podman 4.3 does with what ``topo export kubernetes`` writes, found by
trying, and what the copy does about it (the export itself never changes):

- Job, StatefulSet and DaemonSet are skipped in silence. A Job is played as a
  Pod of its name (its template). A StatefulSet is played as one Pod per
  replica, ``NAME-N``, rather than as a Deployment: a Deployment's pods share
  one template, and the export reads each pod's index from the label the
  StatefulSet controller sets (``apps.kubernetes.io/pod-index``), which the
  copy writes into each Pod. An Indexed Job is one Pod per index likewise
  (the ``batch.kubernetes.io/job-completion-index`` annotation).
- ``$(VAR)`` in a command is not expanded (podman 4.7 does it): the copy
  expands what Kubernetes would, from the container's env.
- A ``containerPort`` is published on the host at the same port (hostPort
  defaults to it): two pods that declare one port collide, and so does any
  program of the host on it. The copy leaves ``ports`` out; pods on one network
  reach each other's ports without them, as in Kubernetes, where they only
  document.
- Services are ignored, and on a network of our own only pod names resolve in
  DNS: not Deployment, Service or container names. Each Service name (and a
  StatefulSet pod's ``NAME-N.SERVICE``) goes into every pod's ``hostAliases``,
  with the addresses of the pods it selects; the pods get those addresses from
  ``kube play --ip``. hostAliases is plain Kubernetes, so the copy stays valid.
- readinessProbes are ignored: the runner (``kube.py``) runs each exec probe
  itself, and plays the Jobs only once every other pod is Ready, since a
  headless Service in /etc/hosts lists its pods before they are.
- An init container takes the pod's restartPolicy (fixed in podman 4.4,
  containers/podman#16343): under ``Always``, which every Deployment has, it
  is started again each time it ends, and the pod's start waits 20 s or fails
  ("failed to remove once init container"). A pod with initContainers is
  played with ``restartPolicy: OnFailure`` (Kubernetes would refuse that in a
  Deployment; podman takes it, and a container that fails still restarts).
- A Deployment ``X`` with N replicas becomes pods ``X-pod-0`` ... and
  containers ``POD-CONTAINER``.
- An ``emptyDir`` is one named volume, shared by every pod that names it: the
  copy gives each workload its own name (the replicas of one still share it).
- A Secret volume makes kube play panic unless ``optional`` is set (it is set
  to false here); its files hold ``data`` still in base64, and neither
  ``items`` nor modes are applied. ``kube down`` leaves ConfigMap and Secret
  volumes, and the Secrets: ``Playable.volumes`` and ``secrets`` name them.

Every name of the copy gets a prefix (``tag``): pod names are global in podman,
and two test runs may share a machine.

Pure: documents in, documents out.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Doc = dict[str, Any]
LOADS = ("Deployment", "StatefulSet", "Pod", "Job")
KINDS = (*LOADS, "Service", "ConfigMap", "Secret")
POD_INDEX = "apps.kubernetes.io/pod-index"
JOB_INDEX = "batch.kubernetes.io/job-completion-index"


@dataclass(frozen=True)
class Pod:
    name: str  # podman's pod name, also its hostname
    ip: str
    containers: tuple[str, ...]  # podman's names of its (main) containers
    probes: tuple[tuple[str, tuple[str, ...]], ...]  # (container, readinessProbe exec command)


@dataclass
class Unit:
    """One ``podman kube play`` of one file: one workload (and what it needs)."""

    workload: str  # "Deployment broker", as exported
    documents: list[Doc]
    pods: list[Pod]
    job: bool  # played after every other unit is Ready


@dataclass
class Playable:
    units: list[Unit]  # in play order
    aliases: dict[str, list[str]]  # host name -> pod addresses
    notes: list[str]  # what the copy changed, one line each
    volumes: list[str] = field(default_factory=list)  # named volumes kube down may leave
    secrets: list[str] = field(default_factory=list)

    def documents(self) -> list[Doc]:
        """Every played document, once: the file for ``podman kube down``."""
        seen: list[Doc] = []
        for unit in self.units:
            seen += [d for d in unit.documents if d not in seen]
        return seen

    def pods(self) -> list[Pod]:
        return [p for u in self.units for p in u.pods]


def for_podman(docs: list[Doc], tag: str, addresses: Iterator[str]) -> Playable:
    """The copy of ``docs`` that podman 4.3 plays; ``addresses`` are free on its network."""
    for doc in docs:
        if doc.get("kind") not in KINDS:
            raise ValueError(f"{doc.get('kind')} {_name(doc)}: not a kind topo exports, so "
                             "this runner has no podman form for it")
    loads = [d for d in docs if d["kind"] in LOADS]
    pods = {_name(d): _pod_names(d, tag) for d in loads}
    ips = {p: next(addresses) for names in pods.values() for p in names}
    aliases = _aliases(docs, pods, ips)
    notes = ["podman ignores Services: their names are hostAliases of every pod, to the "
             "addresses of the pods they select (kube play --ip)",
             "podman ignores readinessProbes: the test runs them itself (podman exec) and "
             "plays the Jobs once every other pod is Ready",
             "podman publishes each containerPort on the host: the copy's containers "
             "declare no ports (pods reach each other's without)"]
    names = {(d["kind"], _name(d)): f"{tag}-{_name(d)}" for d in docs
             if d["kind"] in ("ConfigMap", "Secret")}
    configmaps = {names[("ConfigMap", _name(d))]: _renamed(d, names[("ConfigMap", _name(d))])
                  for d in docs if d["kind"] == "ConfigMap"}
    secrets = [_renamed(d, names[("Secret", _name(d))]) for d in docs if d["kind"] == "Secret"]
    units: list[Unit] = []
    volumes: list[str] = []
    for doc in loads:
        played = _played(doc, f"{tag}-{_name(doc)}", pods[_name(doc)], notes)
        for one in played:
            spec = _pod_spec(one)
            spec["hostAliases"] = _host_aliases(spec.get("hostAliases", []), aliases)
            _refer(spec, names)
            volumes += _volumes(spec, f"{tag}-{_name(doc)}")
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                c.pop("ports", None)
        spec = _pod_spec(played[0])
        if spec.get("initContainers") and spec.get("restartPolicy", "Always") == "Always":
            for one in played:
                _pod_spec(one)["restartPolicy"] = "OnFailure"
            notes.append(f"podman 4.3 restarts init containers under restartPolicy Always: "
                         f"{doc['kind']} {_name(doc)} is played with restartPolicy OnFailure")
        used = [configmaps[v["configMap"]["name"]] for v in spec.get("volumes", [])
                if "configMap" in v and v["configMap"]["name"] in configmaps]
        unit_pods = [Pod(p, ips[p], tuple(f"{p}-{c['name']}" for c in spec["containers"]),
                         tuple((f"{p}-{c['name']}", tuple(c["readinessProbe"]["exec"]["command"]))
                               for c in spec["containers"] if _exec_probe(c)))
                     for p in pods[_name(doc)]]
        units.append(Unit(f"{doc['kind']} {_name(doc)}", [*used, *played], unit_pods,
                          doc["kind"] == "Job"))
    units.sort(key=lambda u: u.job)  # stable: file order within each phase
    if units and secrets:  # podman stores a Secret when a file that holds it is played
        units[0].documents[:0] = secrets
    if names:
        notes.append("ConfigMaps and Secrets get the prefix too; kube down leaves their "
                     "volumes and the Secrets, which the test removes")
    return Playable(units, aliases, notes, sorted(set(volumes)), [_name(s) for s in secrets])


def _pod_names(doc: Doc, tag: str) -> list[str]:
    name, spec = f"{tag}-{_name(doc)}", doc.get("spec", {})
    if doc["kind"] == "Deployment":
        return [f"{name}-pod-{i}" for i in range(int(spec.get("replicas", 1)))]
    if doc["kind"] == "StatefulSet":
        return [f"{name}-{i}" for i in range(int(spec.get("replicas", 1)))]
    if doc["kind"] == "Job" and spec.get("completionMode") == "Indexed":
        return [f"{name}-{i}" for i in range(int(spec.get("completions", 1)))]
    if doc["kind"] == "Job" and int(spec.get("completions", 1)) != 1:
        raise ValueError(f"Job {_name(doc)}: {spec['completions']} completions without "
                         "completionMode Indexed; topo exports none")
    return [name]


def _aliases(docs: list[Doc], pods: dict[str, list[str]],
             ips: dict[str, str]) -> dict[str, list[str]]:
    """Each Service's names -> the addresses of the pods it selects."""
    loads = {_name(d): d for d in docs if d["kind"] in LOADS}
    out: dict[str, list[str]] = {}
    for svc in (d for d in docs if d["kind"] == "Service"):
        selector = svc["spec"].get("selector") or {}
        chosen = [n for n, d in loads.items()
                  if selector and selector.items() <= _template_labels(d).items()]
        for host in _dns_names(svc, _name(svc)):
            out[host] = [ips[p] for n in chosen for p in pods[n]]
        for n in chosen:  # a StatefulSet's pods by ordinal, under its headless Service
            d = loads[n]
            if d["kind"] == "StatefulSet" and d["spec"].get("serviceName") == _name(svc):
                for i, p in enumerate(pods[n]):
                    for host in _dns_names(svc, f"{n}-{i}.{_name(svc)}"):
                        out[host] = [ips[p]]
    return out


def _dns_names(svc: Doc, name: str) -> list[str]:
    ns = svc.get("metadata", {}).get("namespace")
    return [name] if not ns else [name, f"{name}.{ns}", f"{name}.{ns}.svc",
                                  f"{name}.{ns}.svc.cluster.local"]


def _host_aliases(given: list[Doc], aliases: dict[str, list[str]]) -> list[Doc]:
    by_ip: dict[str, list[str]] = {a["ip"]: list(a.get("hostnames", [])) for a in given}
    for host, ips in aliases.items():
        for ip in ips:
            by_ip.setdefault(ip, []).append(host)
    return [{"ip": ip, "hostnames": hosts} for ip, hosts in by_ip.items()]


def _played(doc: Doc, base: str, pods: list[str], notes: list[str]) -> list[Doc]:
    """The documents one workload is played as: itself, renamed ``base``, for a Deployment
    (podman spreads it over ``pods``) and a Pod; else one Pod per name of ``pods``."""
    kind = doc["kind"]
    if kind in ("Deployment", "Pod"):
        out = copy.deepcopy(doc)
        out["metadata"]["name"] = base
        if kind == "Pod":
            _expand(out["metadata"], out["spec"])
        else:  # one template for every pod: its name is not known here
            template = out["spec"]["template"]
            _expand({k: v for k, v in template.get("metadata", {}).items() if k != "name"},
                    template["spec"])
        return [out]
    if kind == "StatefulSet" and doc["spec"].get("volumeClaimTemplates"):
        raise ValueError(f"StatefulSet {_name(doc)}: volumeClaimTemplates have no Pod form "
                         "here; topo exports none")
    indexed = kind == "StatefulSet" or doc["spec"].get("completionMode") == "Indexed"
    key = POD_INDEX if kind == "StatefulSet" else JOB_INDEX
    out_docs = []
    for i, name in enumerate(pods):
        template = copy.deepcopy(doc["spec"]["template"])
        meta = template.get("metadata", {})
        labels = {**meta.get("labels", {}), **({key: str(i)} if indexed else {})}
        annotations = {**meta.get("annotations", {}),
                       **({key: str(i)} if indexed and kind == "Job" else {})}
        pod_meta: Doc = {"name": name, "labels": labels,
                         **({"annotations": annotations} if annotations else {})}
        _expand(pod_meta, template["spec"])
        out_docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
                         "spec": template["spec"]})
    what = ("one Pod per replica, NAME-N with its pod-index label" if kind == "StatefulSet"
            else "one Pod per index, with its completion-index annotation" if indexed
            else "a Pod of its name (its template; the Job's backoffLimit has no Pod form)")
    notes.append(f"podman skips {kind}s: {kind} {_name(doc)} is played as {what}")
    return out_docs


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_FIELD = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


def _expand(meta: Doc, spec: Doc) -> None:
    """``$(VAR)`` in each container's command and args, as Kubernetes expands it, where
    the value is known: an env ``value``, or a field of the pod's ``meta``."""
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        values: dict[str, str] = {}
        for env in c.get("env", []):
            if "value" in env:
                values[env["name"]] = _substitute(str(env["value"]), values)
            path = env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
            if path == "metadata.name" and "name" in meta:
                values[env["name"]] = meta["name"]
            elif (m := _FIELD.fullmatch(path)) and m.group(2) in meta.get(m.group(1), {}):
                values[env["name"]] = meta[m.group(1)][m.group(2)]
        for key in ("command", "args"):
            if key in c:
                c[key] = [_substitute(str(a), values) for a in c[key]]


def _substitute(text: str, values: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return values.get(m.group(1), m.group(0))  # an unknown name stays as written

    return _REF.sub(one, text)


def _volumes(spec: Doc, workload: str) -> list[str]:
    """Gives each emptyDir a name of the workload's own; the named volumes kube play makes."""
    made = []
    renamed = {}
    for vol in spec.get("volumes", []):
        if "emptyDir" in vol:
            renamed[vol["name"]] = vol["name"] = f"{workload}-{vol['name']}"[:63]
            made.append(vol["name"])
        elif "secret" in vol:
            vol["secret"].setdefault("optional", False)  # podman 4.3 panics without it
            made.append(vol["secret"]["secretName"])
        elif "configMap" in vol:
            made.append(vol["configMap"]["name"])
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        for mount in c.get("volumeMounts", []):
            mount["name"] = renamed.get(mount["name"], mount["name"])
    return made


# Where a pod spec names a ConfigMap or a Secret: the key, and the kind it names.
_REFS = {"configMap": ("ConfigMap", "name"), "configMapRef": ("ConfigMap", "name"),
         "configMapKeyRef": ("ConfigMap", "name"), "secret": ("Secret", "secretName"),
         "secretRef": ("Secret", "name"), "secretKeyRef": ("Secret", "name")}


def _refer(node: object, names: dict[tuple[str, str], str]) -> None:
    """Points every reference to a ConfigMap or Secret of the file at its new name."""
    if isinstance(node, list):
        for item in node:
            _refer(item, names)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in _REFS and isinstance(value, dict):
                kind, field_name = _REFS[key]
                new = names.get((kind, value.get(field_name, "")))
                if new is not None:
                    value[field_name] = new
            _refer(value, names)


def _renamed(doc: Doc, name: str) -> Doc:
    out = copy.deepcopy(doc)
    out["metadata"]["name"] = name
    return out


def _exec_probe(container: Doc) -> bool:
    probe = container.get("readinessProbe")
    if probe is None:
        return False
    if "exec" not in probe:
        raise ValueError(f"container {container['name']}: only exec readinessProbes are run "
                         "here; topo exports no other kind")
    return True


def _pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
    return spec


def _template_labels(doc: Doc) -> dict[str, str]:
    meta = doc["metadata"] if doc["kind"] == "Pod" else doc["spec"]["template"]["metadata"]
    labels: dict[str, str] = meta.get("labels", {})
    return labels


def _name(doc: Doc) -> str:
    name: str = doc.get("metadata", {}).get("name", "?")
    return name
