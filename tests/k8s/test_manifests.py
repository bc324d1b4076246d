"""The podman copy of exported manifests (tests/k8s/manifests.py), with no engine."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.export.kubernetes import export_kubernetes
from tests.export.kube import load_all, schema_errors
from tests.k8s.image import ROOT
from tests.k8s.manifests import Doc, for_podman


def addresses() -> Iterator[str]:
    return (f"10.89.7.{i}" for i in itertools.count(10))


def exported(file: str = "tests/k8s/broker.yaml") -> list[Doc]:
    done = export_kubernetes(ROOT / file, image="localhost/topo-k8s:test", cwd=ROOT)
    return load_all(done.text)


def workload(kind: str, name: str, spec: Doc, replicas: int = 1, **extra: Any) -> Doc:
    labels = {"app": name}
    template = {"metadata": {"labels": labels}, "spec": spec}
    doc: Doc = {"apiVersion": "batch/v1" if kind == "Job" else "apps/v1", "kind": kind,
                "metadata": {"name": name}, "spec": {"template": template, **extra}}
    if kind != "Job":
        doc["spec"] |= {"replicas": replicas, "selector": {"matchLabels": labels}}
    return doc


def service(name: str, app: str, headless: bool = False) -> Doc:
    spec: Doc = {"selector": {"app": app}}
    spec |= {"clusterIP": "None"} if headless else {"ports": [{"port": 5550}]}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def pod_spec(**extra: Any) -> Doc:
    return {"containers": [{"name": "main", "image": "i:1", **extra}]}


def test_the_exported_broker_topology_plays_in_two_phases() -> None:
    play = for_podman(exported(), "kt1", addresses())
    assert [(u.workload, u.job) for u in play.units] == [
        ("Deployment broker", False), ("Deployment worker", False), ("Job client", True)]
    assert [p.name for p in play.pods()] == ["kt1-broker-pod-0", "kt1-worker-pod-0",
                                              "kt1-worker-pod-1", "kt1-client"]
    assert play.aliases == {"broker": ["10.89.7.10"], "worker": ["10.89.7.11", "10.89.7.12"]}
    client = play.units[-1]
    assert client.documents[-1]["kind"] == "Pod"
    assert client.documents[-1]["metadata"]["name"] == "kt1-client"
    assert client.pods[0].containers == ("kt1-client-client",)
    assert client.pods[0].probes == (("kt1-client-client", ("test", "-f", "/tmp/topo-ready")),)
    spec = client.documents[-1]["spec"]
    assert {"ip": "10.89.7.11", "hostnames": ["worker"]} in spec["hostAliases"]
    assert spec["restartPolicy"] == "Never"
    worker = play.units[1].documents[-1]["spec"]["template"]["spec"]
    broker = play.units[0].documents[-1]["spec"]["template"]["spec"]
    assert "ports" not in broker["containers"][0]  # podman would publish them on the host
    assert worker["restartPolicy"] == "OnFailure"  # podman 4.3 restarts its init containers
    assert any("Job client is played as a Pod" in n for n in play.notes)
    assert not play.volumes and not play.secrets


def test_the_copy_still_passes_the_kubernetes_schemas() -> None:
    play = for_podman(exported(), "kt1", addresses())
    assert schema_errors(play.documents()) == []


def test_the_export_is_left_as_it_was() -> None:
    docs = exported()
    before = repr(docs)
    for_podman(docs, "kt1", addresses())
    assert repr(docs) == before


INDEX_ENV = [{"name": "POD_INDEX", "valueFrom": {"fieldRef": {
    "fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}}]


def test_a_statefulset_is_a_pod_per_replica_with_its_index_and_its_dns_name() -> None:
    spec = pod_spec(command=["topo", "up", "f.yaml", "--replica", "$(POD_INDEX)", "$$(x)"],
                    env=INDEX_ENV)
    docs = [service("pool", "pool", headless=True),
            workload("StatefulSet", "pool", spec, replicas=2, serviceName="pool")]
    play = for_podman(docs, "kt1", addresses())
    (unit,) = play.units
    assert [(d["kind"], d["metadata"]["name"]) for d in unit.documents] == [
        ("Pod", "kt1-pool-0"), ("Pod", "kt1-pool-1")]
    second = unit.documents[1]
    assert second["metadata"]["labels"] == {"app": "pool", "apps.kubernetes.io/pod-index": "1"}
    # podman 4.3 expands no $(VAR); the copy does, as Kubernetes would ($$ is a lone $).
    assert second["spec"]["containers"][0]["command"] == [
        "topo", "up", "f.yaml", "--replica", "1", "$(x)"]
    assert [p.name for p in unit.pods] == ["kt1-pool-0", "kt1-pool-1"]
    assert play.aliases == {"pool": ["10.89.7.10", "10.89.7.11"],
                            "pool-0.pool": ["10.89.7.10"], "pool-1.pool": ["10.89.7.11"]}
    assert any("StatefulSet pool is played as one Pod per replica" in n for n in play.notes)
    assert schema_errors(play.documents()) == []


def test_an_indexed_job_is_a_pod_per_index() -> None:
    env = [{"name": "POD_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
        {"name": "GREETING", "value": "hi $(POD_INDEX)"}]
    spec = pod_spec(command=["echo", "$(GREETING)", "$(UNKNOWN)"], env=env)
    spec["restartPolicy"] = "Never"
    docs = [workload("Job", "cli", spec, completions=2, parallelism=2,
                     completionMode="Indexed")]
    play = for_podman(docs, "kt1", addresses())
    (unit,) = play.units
    assert unit.job and [p.name for p in unit.pods] == ["kt1-cli-0", "kt1-cli-1"]
    second = unit.documents[1]
    assert second["metadata"]["annotations"] == {"batch.kubernetes.io/job-completion-index": "1"}
    assert second["spec"]["containers"][0]["command"] == ["echo", "hi 1", "$(UNKNOWN)"]


def test_a_service_in_a_namespace_answers_to_its_longer_names_too() -> None:
    svc = service("broker", "broker")
    svc["metadata"]["namespace"] = "demo"
    play = for_podman([svc, workload("Deployment", "broker", pod_spec())], "kt1", addresses())
    assert sorted(play.aliases) == ["broker", "broker.demo", "broker.demo.svc",
                                    "broker.demo.svc.cluster.local"]


def test_empty_dirs_configmaps_and_secrets_get_names_of_the_run() -> None:
    mounts = [{"name": "scratch", "mountPath": "/s"}, {"name": "conf", "mountPath": "/c"},
              {"name": "keys", "mountPath": "/k"}]
    spec = pod_spec(volumeMounts=mounts,
                    env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "keys",
                                                                      "key": "a"}}}])
    spec["volumes"] = [{"name": "scratch", "emptyDir": {}},
                       {"name": "conf", "configMap": {"name": "settings"}},
                       {"name": "keys", "secret": {"secretName": "keys"}}]
    docs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
             "data": {"a": "1"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"},
             "data": {"a": "MQ=="}},
            workload("Job", "once", {**spec, "restartPolicy": "Never"}),
            workload("Deployment", "app", spec)]
    play = for_podman(docs, "kt1", addresses())
    first, job = play.units
    assert first.workload == "Deployment app"
    # The Secret is stored by the first play; a ConfigMap goes with each pod that mounts it.
    assert [(d["kind"], d["metadata"]["name"]) for d in first.documents] == [
        ("Secret", "kt1-keys"), ("ConfigMap", "kt1-settings"), ("Deployment", "kt1-app")]
    assert [d["kind"] for d in job.documents] == ["ConfigMap", "Pod"]
    played = first.documents[-1]["spec"]["template"]["spec"]
    assert played["volumes"] == [
        {"name": "kt1-app-scratch", "emptyDir": {}},
        {"name": "conf", "configMap": {"name": "kt1-settings"}},
        {"name": "keys", "secret": {"secretName": "kt1-keys", "optional": False}}]
    assert [m["name"] for m in played["containers"][0]["volumeMounts"]] == [
        "kt1-app-scratch", "conf", "keys"]
    assert played["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "kt1-keys"
    assert play.volumes == ["kt1-app-scratch", "kt1-keys", "kt1-once-scratch", "kt1-settings"]
    assert play.secrets == ["kt1-keys"]
    assert "scratch" in [v["name"] for v in docs[3]["spec"]["template"]["spec"]["volumes"]]


def test_a_kind_topo_does_not_export_is_refused() -> None:
    docs = [workload("DaemonSet", "agent", pod_spec())]
    with pytest.raises(ValueError, match="DaemonSet agent: not a kind topo exports"):
        for_podman(docs, "kt1", addresses())


def test_only_exec_readiness_probes_are_run() -> None:
    docs = [workload("Deployment", "web", pod_spec(readinessProbe={"tcpSocket": {"port": 80}}))]
    with pytest.raises(ValueError, match="only exec readinessProbes"):
        for_podman(docs, "kt1", addresses())
