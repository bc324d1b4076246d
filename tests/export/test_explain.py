"""`topo export kubernetes --explain`: which link put which nodes together, and what each
group becomes, in words instead of YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.export.kubernetes import export_kubernetes
from tests.export.kube import load_all
from tests.export.test_kubernetes import IMAGE
from tests.export.test_workloads import SPREAD
from tests.topo_samples import ROOT


def test_rrbroker_in_words() -> None:
    text = export_kubernetes(ROOT / "topologies/rrbroker.yaml", image=None, explain=True,
                             environ={}, cwd=ROOT).text
    assert text == """\
Topology rrbroker (topologies/rrbroker.yaml): 2 groups, each one workload whose container
  runs `topo up FILE --group GROUP`.

Group broker: broker, worker
  worker joins broker: ipc://backend
  Deployment broker, 1 pod: its nodes are not all restart: never, so Kubernetes keeps the
    group running
  Service broker: 5550 (frontend: broker.frontend); reached as broker
  note: restart: on-failure (broker, worker): once every node of the group has ended,
    `topo up` ends and Kubernetes starts the pod again, even after a clean end: a Deployment
    knows only restartPolicy Always

Group client: client
  client alone: no ipc or inproc link, System V resource, socket pair or fifo ties it to
    another node
  Job client, 1 pod: every node has restart: never, so the group runs once, to its end
  no Service: no other group connects to it or waits for it
  waits for broker:5550 (client depends_on broker)
  waits for broker:5550 (client depends_on worker)
"""


def test_one_pod_per_replica_in_words(tmp_path: Path) -> None:
    file = tmp_path / "spread.yaml"
    file.write_text(SPREAD.format(restart="always"))
    text = " ".join(export_kubernetes(file, image=None, explain=True, environ={},
                                      cwd=tmp_path).text.split())
    assert "StatefulSet server, 3 pods: one pod per replica of server" in text
    assert ("headless Service server: 5550 (clients-0: server.0.clients), 5551 (clients-1: "
            "server.1.clients), 5552") in text
    assert "reached as server-N.server (N = 0..2)" in text
    assert ("waits for server-0.server:5550, server-1.server:5551, server-2.server:5552 "
            "(client depends_on server)") in text


def test_cli_explain_needs_no_image_and_prints_no_yaml(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["export", "kubernetes", "topologies/pipeline_kill.yaml", "--explain"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # the notes are in the text
    assert "apiVersion" not in out
    assert "ventilator joins sink: ipc://sync" in out
    assert "worker joins sink: ipc://results" in out
    assert "Job sink, 1 pod: every node has restart: never" in out


def test_a_group_others_only_wait_for_has_a_headless_service_in_words() -> None:
    export = export_kubernetes(ROOT / "topologies/pubsub.yaml", image=IMAGE, environ={},
                               cwd=ROOT)
    kinds = [(d["kind"], d["metadata"]["name"], d["spec"].get("clusterIP"))
             for d in load_all(export.text)]
    assert ("Service", "printer", "None") in kinds
    text = " ".join(export_kubernetes(ROOT / "topologies/pubsub.yaml", image=None,
                                      explain=True, environ={}, cwd=ROOT).text.split())
    assert "no Service" not in text.split("Group weather")[0]
    assert ("headless Service printer, no ports: no other group connects to it, but others "
            "wait for it (it lists the group's pods once they are Ready)") in text
