"""`topo export kubernetes`, run on a real container engine: podman kube play.

Two topologies of tests/k8s/ are exported as they would be for `kubectl apply
-f`, with an image built here with no registry (tests/k8s/image.py), and played
under podman, each pod running `topo up FILE --group G`, linked only by tcp
across pods:

- broker.yaml: a broker, two worker pods (a Deployment) and a client (a Job);
  the client's log must show replies from both worker pods;
- indexed.yaml: two server replicas with names of their own (a StatefulSet)
  and two clients (an Indexed Job); each client must reach each server pod,
  and each pod must run the replica of its index.

podman 4.3 is not Kubernetes, so the test plays a copy (tests/k8s/manifests.py
says how and why; the export itself is not touched): podman skips Jobs and
StatefulSets, so a Job runs as a Pod of its name and a StatefulSet as one Pod
per replica (as a Deployment its pods would lose their index); it ignores
Services, so their names become hostAliases; it ignores readinessProbes, so the
test runs them itself. Every such change is one line of the test's output
("podman play: ...").

Needs root, podman, runc and mmdebstrap: skipped with the reason when missing,
a failure when TOPO_REQUIRE_TOOLS=1 (CI installs them). Select it with
`pytest tests/integration/test_kube_play.py` or `-m podman`. The first run on a
machine builds the image (about a minute); later ones find it by its hash.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Leftovers
from tests.k8s.engine import Podman
from tests.k8s.image import ROOT, build
from tests.k8s.kube import Played, played
from tests.k8s.manifests import Pod
from tests.tools import need

pytestmark = [pytest.mark.slow, pytest.mark.podman, pytest.mark.timeout(900)]

REPLY = re.compile(r"client: hello (\d+) -> world \d+ \(from (\w+\.\d+) on (\S+)\)")


def _need_engine() -> None:
    need("podman", "apt-get install podman runc")
    need("runc", "apt-get install runc: crun cannot run containers on this machine")
    need("mmdebstrap", "apt-get install mmdebstrap: it builds the image's rootfs")
    if os.geteuid() != 0:
        message = "podman kube play here needs root (mmdebstrap and rootful podman)"
        if os.environ.get("TOPO_REQUIRE_TOOLS"):
            pytest.fail(message + "; TOPO_REQUIRE_TOOLS is set, so this is an error")
        pytest.skip(message)


@pytest.fixture(scope="module")
def image(pytestconfig: pytest.Config) -> str:
    _need_engine()
    started = time.monotonic()
    name = build()
    _say(pytestconfig, f"image {name}: ready in {time.monotonic() - started:.1f}s")
    return name


def _say(config: pytest.Config, line: str) -> None:
    """A line in the test output even when pytest captures it."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        print(f"\n{line}", end="", flush=True)


def _export(file: str, image: str) -> list[dict[str, Any]]:
    """``file`` (relative to ROOT: the path the image has under /app), exported."""
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "export", "kubernetes", file, "--image", image],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(f"{d['kind']} {d['metadata']['name']}" for d in docs)


@contextlib.contextmanager
def _playing(docs: list[dict[str, Any]], guard: Leftovers, folder: Path,
             config: pytest.Config) -> Iterator[Played]:
    """Every workload up and Ready, then the Jobs started; after the block, nothing left."""
    podman = Podman(env=guard.env())  # conmon inherits the token: none may outlive the test
    with played(podman, docs, f"kt{guard.token[:8]}", folder) as run:
        for note in run.playable.notes:
            _say(config, f"podman play: {note}")
        run.start(jobs=False, ready_within=120)
        run.start(jobs=True)
        yield run
    assert run.leftovers() == []


def _client_log(run: Played, pod: Pod, requests: int) -> tuple[str, list[tuple[str, str]]]:
    """The log of ``pod``'s client, which must end with 0, and (replica, pod) of each reply
    in it."""
    container = pod.containers[0]
    code = run.wait_exit(container, within=90)
    log = run.logs(container)
    assert code == 0, log + run.describe()
    replies = REPLY.findall(log)
    assert [n for n, _, _ in replies] == [str(i) for i in range(1, requests + 1)], log
    assert f"client: done, {requests} replies" in log, log
    return log, [(replica, host) for _, replica, host in replies]


def test_the_broker_topology_runs_across_pods(
        image: str, no_leftovers: Leftovers, tmp_path: Path,
        pytestconfig: pytest.Config) -> None:
    docs = _export("tests/k8s/broker.yaml", image)
    assert _kinds(docs) == ["Deployment broker", "Deployment worker", "Job client",
                            "Service broker", "Service worker"]
    with _playing(docs, no_leftovers, tmp_path, pytestconfig) as run:
        (client,) = run.pod("client")
        _, replies = _client_log(run, client, requests=3)
        # The requests crossed from the client's pod through the broker's to both worker
        # pods, found by the names the export gave (tcp://broker:5550, tcp://broker:5551).
        # A Deployment's pods have no index: each runs replica 0.
        assert {host for _, host in replies} == {p.name for p in run.pod("worker")}
        assert {replica for replica, _ in replies} == {"worker.0"}


def test_a_statefulset_and_an_indexed_job_run_the_replica_of_their_index(
        image: str, no_leftovers: Leftovers, tmp_path: Path,
        pytestconfig: pytest.Config) -> None:
    docs = _export("tests/k8s/indexed.yaml", image)
    assert _kinds(docs) == ["Job cli", "Service srv", "StatefulSet srv"]
    with _playing(docs, no_leftovers, tmp_path, pytestconfig) as run:
        servers = run.pod("srv")
        clients = run.pod("cli")
        assert len(servers) == len(clients) == 2
        for i, client in enumerate(clients):
            log, replies = _client_log(run, client, requests=4)
            assert re.search(rf"^cli\.{i} +\| client: done", log, re.MULTILINE), log
            # One connect per server replica (srv-0.srv, srv-1.srv): the REQ socket takes
            # turns, so each server pod answers, and it is the replica of its index.
            assert sorted(set(replies)) == [(f"srv.{n}", p.name) for n, p in enumerate(servers)]
