"""`topo export kubernetes`: every teaching topology as manifests the Kubernetes schemas take.

On top of the schemas (``kubernetes-validate``, strict, 1.30 and the newest), topo's
own checks (``tests/export/kube.py``): names, selectors, restart policies, port
names, and every connect to another group reaching a Service of the output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orchestrator.certs import make_keys, read_public
from orchestrator.cli import build_parser, main
from orchestrator.errors import InvalidTopology, RunError, TopoError
from orchestrator.export import kubernetes
from orchestrator.export.kubernetes import export_kubernetes
from orchestrator.export.manifests import keys_secret_name, public_keys_name
from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.model import Topology
from orchestrator.spec.source import SourceMap
from orchestrator.start.prepare import _check_secrets, _read_keys
from tests.export.kube import DNS_1123, load_all, problems, schema_errors
from tests.export.test_workloads import EXTERNAL, MESH, SPREAD
from tests.topo_samples import ROOT, TEACHING

IMAGE = "registry.example/topo:1"


def _export(file: Path, **kw: object) -> kubernetes.Exported:
    options: dict[str, object] = {"image": IMAGE, "environ": {}, "cwd": ROOT}
    options.update(kw)
    return export_kubernetes(file, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("file", TEACHING, ids=[f.stem for f in TEACHING])
def test_every_teaching_topology_exports_or_is_refused_with_a_sentence(file: Path) -> None:
    try:
        done = _export(file)
    except (InvalidTopology, RunError) as exc:  # errors in the file, or ports that do not fit
        assert str(exc) and "Traceback" not in str(exc)
        return
    docs = load_all(done.text)
    assert docs
    assert schema_errors(docs) == []
    assert done.export.topology is not None
    assert problems(docs, done.export.topology) == []


def test_the_schema_check_does_see_a_bad_manifest() -> None:
    docs = load_all(_export(ROOT / "topologies/rrbroker.yaml").text)
    docs[1]["spec"]["template"]["spec"]["containers"][0]["colour"] = "blue"
    docs[0]["spec"]["ports"][0]["port"] = "many"
    assert len(schema_errors(docs)) == 4  # two objects, two versions


@pytest.mark.parametrize("restart", ["on-failure", "never"])
def test_one_pod_per_replica_exports_valid_manifests(tmp_path: Path, restart: str) -> None:
    file = tmp_path / "spread.yaml"
    file.write_text(SPREAD.format(restart=restart))
    done = _export(file, cwd=tmp_path)
    docs = load_all(done.text)
    assert schema_errors(docs) == []
    assert problems(docs, done.export.topology) == []
    server = next(d for d in docs if d["metadata"]["name"] == "server" and d["kind"] != "Service")
    assert server["kind"] == ("StatefulSet" if restart == "on-failure" else "Job")
    container = server["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-4:-2] == ["--replica", "$(POD_INDEX)"] or \
        "$(POD_INDEX)" in container["command"]
    index = next(e for e in container["env"] if e["name"] == "POD_INDEX")
    assert "index" in index["valueFrom"]["fieldRef"]["fieldPath"]


def test_replicas_that_connect_to_one_another_export_a_statefulset(tmp_path: Path) -> None:
    file = tmp_path / "mesh.yaml"
    file.write_text(MESH.format(bind="tcp://127.0.0.1:*"))
    done = _export(file, cwd=tmp_path)
    docs = load_all(done.text)
    # problems() also checks that each replica's connects reach a pod the Service names.
    assert schema_errors(docs) == [] and problems(docs, done.export.topology) == []
    assert [(d["kind"], d["spec"].get("clusterIP")) for d in docs] == [
        ("Service", "None"), ("StatefulSet", None)]
    assert docs[1]["spec"]["template"]["spec"]["containers"][0]["command"][4:7] == [
        "peer", "--replica", "$(POD_INDEX)"]


def test_external_tcp_binds_are_in_a_service_and_the_container_ports(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(EXTERNAL.format(replicas=1, port="*"))
    done = _export(file, cwd=tmp_path)
    docs = load_all(done.text)
    assert schema_errors(docs) == [] and problems(docs, done.export.topology) == []
    service, deployment = docs
    assert (service["kind"], service["metadata"]["name"]) == ("Service", "gateway")
    assert service["spec"]["ports"] == [
        {"name": "api", "port": 5550, "targetPort": 5550, "protocol": "TCP"},
        {"name": "ops", "port": 7000, "targetPort": 7000, "protocol": "TCP"}]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"name": "api", "containerPort": 5550, "protocol": "TCP"},
        {"name": "ops", "containerPort": 7000, "protocol": "TCP"}]
    assert "give the Service type LoadBalancer" in done.notes[-1]


def test_the_checks_see_a_connect_to_a_host_no_service_names() -> None:
    done = _export(ROOT / "topologies/rrbroker.yaml")
    docs = [d for d in load_all(done.text) if d["kind"] != "Service"]
    said = problems(docs, done.export.topology)
    assert said == ["client.server connects to tcp://broker:5550, which no Service of the "
                    "output names on that port",
                    "client waits for broker:5550, which no Service names"]


def test_the_same_file_gives_the_same_bytes() -> None:
    for file in TEACHING:
        try:
            first = _export(file).text
        except TopoError:
            continue
        assert _export(file).text == first


def test_rrbroker_manifests() -> None:
    done = _export(ROOT / "topologies/rrbroker.yaml")
    docs = load_all(done.text)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Service", "broker"), ("Deployment", "broker"), ("Job", "client")]
    service, broker, client = docs
    labels = {
        "app.kubernetes.io/name": "broker", "app.kubernetes.io/instance": "rrbroker-broker",
        "app.kubernetes.io/component": "broker", "app.kubernetes.io/part-of": "rrbroker",
        "app.kubernetes.io/managed-by": "topo"}
    assert service["metadata"]["labels"] == labels
    assert service["spec"] == {
        "selector": {"app.kubernetes.io/part-of": "rrbroker",
                     "app.kubernetes.io/component": "broker"},
        "ports": [{"name": "frontend", "port": 5550, "targetPort": 5550, "protocol": "TCP"}]}
    assert broker["spec"]["replicas"] == 1
    assert broker["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    pod = broker["spec"]["template"]
    assert pod["metadata"]["labels"] == labels
    assert pod["spec"]["restartPolicy"] == "Always"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 15  # two tiers of 5 s, and 5 s
    (container,) = pod["spec"]["containers"]
    assert container == {
        "name": "broker", "image": IMAGE, "workingDir": "/app",
        "command": ["topo", "up", "topologies/rrbroker.yaml", "--group", "broker",
                    "--ready-file", "/tmp/topo-ready", "--no-color"],
        "env": [{"name": "TOPO_STATE_DIR", "value": "/tmp/topo"}],
        "ports": [{"name": "frontend", "containerPort": 5550, "protocol": "TCP"}],
        "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/topo-ready"]},
                           "periodSeconds": 2}}
    assert client["apiVersion"] == "batch/v1"
    assert client["spec"]["backoffLimit"] == 0
    spec = client["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    (wait,) = spec["initContainers"]
    assert wait["name"] == "wait-for-broker"
    assert wait["command"][:2] == ["python3", "-c"] and wait["command"][3:] == ["broker:5550"]
    compile(wait["command"][2], "wait", "exec")
    text = done.text
    assert text.startswith("# Kubernetes manifests of topology rrbroker (")
    assert "#     worker joins broker: ipc://backend\n" in text
    assert "#   broker.frontend: 5550 (its group's Service)\n" in text
    assert "# note: restart: on-failure (broker, worker): once every node" in text
    assert "ZeroMQ would\n#   reconnect anyway" in text or "ZeroMQ would reconnect" in text


def test_every_container_command_is_one_topo_takes() -> None:
    for file in TEACHING:
        try:
            docs = load_all(_export(file).text)
        except TopoError:
            continue
        for doc in docs:
            if doc["kind"] == "Service":
                continue
            command = doc["spec"]["template"]["spec"]["containers"][0]["command"]
            assert command[0] == "topo"
            args = build_parser().parse_args(
                [a if a != "$(POD_INDEX)" else "0" for a in command[1:]])
            assert (args.command, args.group, args.ready_file, args.no_color) == (
                "up", doc["metadata"]["name"], "/tmp/topo-ready", True)


def test_namespace_variables_and_workdir(tmp_path: Path) -> None:
    done = _export(ROOT / "topologies/rrbroker.yaml", namespace="zmq", workdir="/srv/p",
                   environ={"WORKERS": "5", "HOME": "/root"})
    docs = load_all(done.text)
    assert {d["metadata"].get("namespace") for d in docs} == {"zmq"}
    container = docs[1]["spec"]["template"]["spec"]["containers"][0]
    assert container["workingDir"] == "/srv/p"
    assert {"name": "WORKERS", "value": "5"} in container["env"]
    assert all(e["name"] != "HOME" for e in container["env"])  # the file does not use it
    assert "# Set when it was exported: WORKERS;" in done.text
    assert done.export.topology.nodes["worker"].replicas == 5


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["export", "kubernetes", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_to_a_file_and_says_the_notes_on_stderr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("WORKERS", raising=False)
    out = tmp_path / "k8s.yaml"
    code, stdout, stderr = _cli(capsys, "topologies/rrbroker.yaml", "--image", IMAGE,
                                "-o", str(out))
    assert (code, stdout) == (0, "")
    assert out.read_text() == _export(ROOT / "topologies/rrbroker.yaml").text
    assert stderr.startswith("note: broker: restart: on-failure (broker, worker): once every")


def test_cli_refuses_a_file_with_errors_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("nodes:\n  a: {run: m:f, sockets: {s: {type: NOPE}}}\n")
    code, stdout, stderr = _cli(capsys, "bad.yaml", "--image", IMAGE, "-o", "out.yaml")
    assert (code, stdout) == (1, "")
    assert "bad.yaml:2:" in stderr and "error[E110]" in stderr
    assert not (tmp_path / "out.yaml").exists()


def test_cli_refuses_what_cannot_cross_hosts_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(topology: Topology, source: SourceMap, root: Path) -> list[Diagnostic]:
        return [Diagnostic(source.file, 3, 5, "error", "E150", "an external ipc endpoint",
                           "use tcp")]

    monkeypatch.setattr(kubernetes, "host_checks", refuse)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out.yaml"
    code, stdout, stderr = _cli(capsys, "topologies/rrbroker.yaml", "--image", IMAGE,
                                "-o", str(out))
    assert (code, stdout) == (1, "")
    assert "topologies/rrbroker.yaml:3:5: error[E150] an external ipc endpoint" in stderr
    assert not out.exists()


IRONHOUSE_KEYS = [  # the header of ironhouse's export, --namespace zmq
    "#   topo keys --make keys/ topologies/ironhouse.yaml",
    "#   kubectl create configmap ironhouse-public-keys --from-file=keys/broker.key "
    "--from-file=keys/worker.key --from-file=keys/intruder.key --from-file=keys/client.key "
    "-n zmq",
    "#   kubectl create secret generic ironhouse-broker-keys "
    "--from-file=keys/broker.key_secret --from-file=keys/worker.key_secret -n zmq",
    "#   kubectl create secret generic ironhouse-intruder-keys "
    "--from-file=keys/intruder.key_secret -n zmq",
    "#   kubectl create secret generic ironhouse-client-keys "
    "--from-file=keys/client.key_secret -n zmq",
]


def test_curve_header_gives_the_commands_that_make_the_key_objects_once() -> None:
    done = _export(ROOT / "topologies/ironhouse.yaml", namespace="zmq")
    lines = done.text.splitlines()
    at = lines.index(IRONHOUSE_KEYS[0])
    assert lines[at:at + len(IRONHOUSE_KEYS)] == IRONHOUSE_KEYS  # one line each, to copy
    assert "secret-key" not in done.text  # no key is in the output
    assert done.text == _export(ROOT / "topologies/ironhouse.yaml", namespace="zmq").text
    words = " ".join(line.lstrip("# ") for line in lines)
    assert ("Secret keys are 0400 and belong to root: the usual image runs as root; one that "
            "runs as another user needs runAsUser: 0, or its own defaultMode or fsGroup."
            in words)
    plain = _export(ROOT / "topologies/ironhouse.yaml").text
    assert "#   kubectl create secret generic ironhouse-client-keys " \
           "--from-file=keys/client.key_secret\n" in plain


def test_curve_each_pod_mounts_every_public_key_and_only_its_own_groups_secret() -> None:
    done = _export(ROOT / "topologies/ironhouse.yaml", namespace="zmq")
    docs = load_all(done.text)
    assert schema_errors(docs) == []
    assert problems(docs, done.export.topology) == []
    publics = {f"{n}.key": 0o444 for n in done.export.topology.nodes}
    secrets = set()
    for doc in docs:
        if doc["kind"] == "Service":
            continue
        group = done.export.workload(doc["metadata"]["name"]).group
        pod = doc["spec"]["template"]["spec"]
        assert "securityContext" not in pod  # no fsGroup: the keys belong to root
        (volume,) = pod["volumes"]
        assert volume["name"] == "curve-keys"
        assert volume["projected"]["defaultMode"] == 0o400
        config, secret = volume["projected"]["sources"]
        assert config["configMap"]["name"] == "ironhouse-public-keys"
        assert {i["path"]: i["mode"] for i in config["configMap"]["items"]} == publics
        assert secret["secret"]["name"] == f"ironhouse-{group.name}-keys"
        assert {i["path"]: i["mode"] for i in secret["secret"]["items"]} == {
            f"{n}.key_secret": 0o400 for n in group.nodes}
        secrets.add(secret["secret"]["name"])
        container = pod["containers"][0]
        assert container["volumeMounts"] == [
            {"name": "curve-keys", "mountPath": "/etc/topo/keys", "readOnly": True}]
        command = container["command"]
        assert command[command.index("--keys") + 1] == "/etc/topo/keys"
    assert len(secrets) == len(done.export.workloads)


def test_curve_the_mounted_keys_are_what_topo_up_keys_reads(tmp_path: Path) -> None:
    # What kubectl makes from the header's commands, and the kubelet mounts in each pod.
    done = _export(ROOT / "topologies/ironhouse.yaml")
    topology = done.export.topology
    make_keys(tmp_path / "keys", topology.nodes)
    objects: dict[str, dict[str, bytes]] = {}
    for line in done.text.splitlines():
        words = line.lstrip("# ").split()
        if words[:2] == ["kubectl", "create"]:
            name = words[4] if words[2] == "secret" else words[3]
            objects[name] = {Path(w.partition("=")[2]).name: (tmp_path / w.partition("=")[2])
                             .read_bytes() for w in words if w.startswith("--from-file=")}
    for doc in load_all(done.text):
        if doc["kind"] == "Service":
            continue
        group = done.export.workload(doc["metadata"]["name"]).group
        mount = tmp_path / group.name
        mount.mkdir()
        for source in doc["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]:
            (ref,) = source.values()
            for item in ref["items"]:
                (mount / item["path"]).write_bytes(objects[ref["name"]][item["key"]])
                (mount / item["path"]).chmod(item["mode"])
        assert _read_keys(mount, topology.nodes) == {
            n: read_public(tmp_path / "keys" / f"{n}.key") for n in topology.nodes}
        _check_secrets(mount, group.nodes)  # every secret of the group, 0400
        assert sorted(p.name for p in mount.glob("*.key_secret")) == sorted(
            f"{n}.key_secret" for n in group.nodes)


def test_curve_key_objects_have_dns_names_of_at_most_63_one_secret_per_group() -> None:
    long = "A_" + "very-long-topology-name" * 4
    group = "g" * 52  # the longest group name
    assert public_keys_name(long) == ("a-" + "very-long-topology-name" * 4)[:51] + "-public-keys"
    names = {keys_secret_name(long, g) for g in (group, group[:-1] + "h", "broker")}
    assert len(names) == 3
    assert keys_secret_name(long, group) == f"a-ver-{group}-keys"  # the group's name whole
    assert keys_secret_name("ironhouse", "broker") == "ironhouse-broker-keys"
    for name in [*names, public_keys_name(long), public_keys_name("--")]:
        assert DNS_1123.fullmatch(name), name


@pytest.mark.parametrize(("args", "says"), [
    (["topologies/rrbroker.yaml"], "--image IMAGE is required"),
    (["topologies/rrbroker.yaml", "--image", IMAGE, "--namespace", "Not_A_Label"],
     "a namespace is a DNS label"),
    (["topologies/rrbroker.yaml", "--image", IMAGE, "--workdir", "app"], "absolute path"),
    (["/etc/hostname", "--image", IMAGE], "is outside"),
    (["nothing.yaml", "--image", IMAGE], "no such file"),
])
def test_cli_usage_errors_exit_2(args: list[str], says: str, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, stdout, stderr = _cli(capsys, *args)
    assert (code, stdout) == (2, "")
    assert says in stderr


def test_an_external_ipc_peer_is_refused_by_the_hosts_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The check is imported with the exporter: a module that fails to import later on (here:
    # one that cannot be imported at all) is never a silent export without the check.
    monkeypatch.setitem(sys.modules, "orchestrator.spec.checks.hosts", None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ext.yaml").write_text("""\
nodes:
  a:
    run: m:f
    sockets:
      s: {type: PULL, connect: {endpoint: "ipc:///run/outside.sock", external: true}}
""")
    code, stdout, stderr = _cli(capsys, "ext.yaml", "--image", IMAGE, "-o", "out.yaml")
    assert (code, stdout) == (1, "")
    assert "ext.yaml:5:" in stderr and "error[E150]" in stderr
    assert not (tmp_path / "out.yaml").exists()
