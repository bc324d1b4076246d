"""What cannot cross hosts (E150-E155, W250-W251): the checks only `topo export` runs.

Where each code is reported is tests/corpus/ (test_corpus.py); here: what is fine,
what the sentences say, and the folder the image holds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.spec import checks
from orchestrator.spec.checks.hosts import check_hosts
from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.validate import validate_file
from tests.topo_samples import ROOT, TEACHING


def hosts(tmp_path: Path, text: str, root: Path | None = None, name: str = "t.yaml",
          ) -> list[Diagnostic]:
    path = tmp_path / "app" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    loaded = validate_file(path)
    assert loaded.topology is not None, [d.format() for d in loaded.diagnostics]
    return check_hosts(loaded.topology, loaded.source, root)


def codes(diags: list[Diagnostic]) -> list[str]:
    return [d.code for d in diags]


def test_not_a_validator_pass() -> None:
    assert not any(p.__module__.endswith(".hosts") for p in checks.PASSES)


def test_a_file_that_crosses_hosts_says_nothing(tmp_path: Path) -> None:
    assert hosts(tmp_path, """
pythonpath: [., lib]
ipc:
  q: {type: msgqueue, key: "ftok:t.yaml:a"}
nodes:
  server:
    command: [./bin/server, --port, "7000"]
    cwd: .
    ready: {tcp: 7000}
    ipc: [q]
    sockets:
      s: {type: REP, bind: ["tcp://127.0.0.1:7000", "ipc://server"]}
  helper:
    command: [python3, -m, helper]
    cwd: tools/../bin
    ipc: [q]
    ready: {ipc: server}
    sockets:
      s: {type: REQ, connect: server.s@ipc}
  client:
    command: [/usr/bin/env, client]
    depends_on: [server]
    sockets:
      s: {type: REQ, connect: "tcp://localhost:7000"}
      far: {type: PUSH, connect: {endpoint: "tcp://10.1.2.3:9000", external: true}}
      open: {type: PULL, bind: {endpoint: "tcp://*:9100", external: true}}
""") == []


def test_every_teaching_topology_exports_from_the_project_folder() -> None:
    # `topo export` runs from the project folder, which the image holds: topologies/.. is in.
    for path in TEACHING:
        loaded = validate_file(path)
        assert loaded.topology is not None
        assert check_hosts(loaded.topology, loaded.source, ROOT) == [], path.name


def test_the_topology_folder_alone_holds_no_parent(tmp_path: Path) -> None:
    loaded = validate_file(ROOT / "topologies" / "ipc_socketpair.yaml")
    assert loaded.topology is not None
    found = check_hosts(loaded.topology, loaded.source)
    assert codes(found) == ["E155", "E151"]
    folder = ROOT / "topologies"
    assert found[1].message == (
        f"the cwd of node collector, '..', is {ROOT}, outside the topology's folder {folder}, "
        "which is all the image `topo export` builds holds")
    assert found[1].hint.startswith("put what the node needs in that folder")


def test_a_cwd_from_defaults_is_reported_once_for_every_node(tmp_path: Path) -> None:
    found = hosts(tmp_path, """
defaults:
  cwd: /srv/app
nodes:
  a: {command: [a]}
  b: {command: [b]}
  c: {command: [c], cwd: data}
""")
    assert [(d.code, d.line) for d in found] == [("E151", 3)]
    assert found[0].message.startswith("the cwd of nodes a, b, '/srv/app', is an absolute "
                                       "path of this host;")


def test_the_root_names_what_the_image_holds(tmp_path: Path) -> None:
    text = """
pythonpath: [..]
nodes:
  a: {command: [bin/a], cwd: ..}
  b: {command: [../bin/b]}
"""
    inside = hosts(tmp_path, text)
    assert codes(inside) == ["E155", "E151", "E152"]
    assert "outside the topology's folder" in inside[0].message
    # From the folder above, all of it is in the image.
    assert hosts(tmp_path, text, root=tmp_path) == []
    other = hosts(tmp_path, text, root=tmp_path / "app" / "sub")
    assert all(f"{tmp_path / 'app' / 'sub'}, the folder the image holds" in d.message
               for d in other)


def test_programs(tmp_path: Path) -> None:
    found = hosts(tmp_path, """
nodes:
  bare: {command: [php, x.php]}
  system: {command: [/bin/sh, -c, "echo hi"]}
  local: {command: [bin/run]}
  relative_to_cwd: {command: [../run], cwd: sub}
  string: {command: "/opt/x/run --fast"}
  climbs_in_cwd: {command: [./run], cwd: ../other}
""")
    assert [(d.code, d.message.split(",")[0]) for d in found] == [
        ("E152", "node string runs '/opt/x/run'"),
        ("E151", "the cwd of node climbs_in_cwd"),  # and not E152 on top
    ]


def test_a_probe_on_the_own_group_or_on_nothing_is_fine(tmp_path: Path) -> None:
    found = hosts(tmp_path, """
nodes:
  pool:
    command: [pool]
    replicas: 2
    sockets:
      s: {type: PUSH, bind: "ipc://jobs"}
  sink:
    command: [sink]
    ready: {ipc: jobs.1}
    sockets:
      s: {type: PULL, connect: pool.s}
  other:
    command: [other]
    ready: {ipc: "ipc://jobs.0"}
  self:
    command: [self]
    ready: {tcp: 9999}
""")
    # sink is in pool's group (ipc); other is not; self probes a port no node binds.
    assert [(d.code, d.message.split(",")[0]) for d in found] == [
        ("E154", "the readiness probe of node other")]
    assert "watches what node pool binds, in group pool" in found[0].message


def test_loopback_connects_and_binds(tmp_path: Path) -> None:
    found = hosts(tmp_path, """
nodes:
  app:
    command: [app]
    sockets:
      db: {type: REQ, connect: "tcp://localhost:5432"}
      v6: {type: REQ, connect: {endpoint: "tcp://[::1]:6379", external: true}}
      lan: {type: REQ, connect: {endpoint: "tcp://192.168.1.9:6379", external: true}}
      mine: {type: REQ, connect: "tcp://127.0.0.1:7000"}
  server:
    command: [server]
    sockets:
      s: {type: REP, bind: ["tcp://10.0.0.1:7000", {endpoint: "tcp://[::1]:7001",
                                                     external: true}]}
""")
    assert [(d.code, d.severity) for d in found] == [
        ("W250", "warning"), ("W250", "warning"), ("W251", "warning")]
    assert "connects to tcp://localhost:5432, which no node of the topology binds" in \
        found[0].message
    assert found[2].hint.startswith("bind on tcp://*:7001")


@pytest.mark.parametrize("transport", ["ipc://feed", "inproc://feed"])
def test_external_host_transports(tmp_path: Path, transport: str) -> None:
    found = hosts(tmp_path, f"""
nodes:
  a:
    command: [a]
    sockets:
      s: {{type: PULL, bind: {{endpoint: "{transport}", external: true}}}}
""")
    assert codes(found) == ["E150"]
    reach = "a Unix socket reaches only programs on its own host" if "ipc" in transport \
        else "inproc reaches only its own process"
    assert reach in found[0].message


def test_ftok_keys(tmp_path: Path) -> None:
    found = hosts(tmp_path, """
ipc:
  here: {type: shm, size: 4096, key: "ftok:.:a"}
  home: {type: shm, size: 4096, key: "ftok:~/.key:b"}
  up: {type: semaphore, key: "ftok:../x:c"}
  other: {type: fifo}
nodes:
  a: {command: [a], ipc: [here, home, up, other]}
""")
    assert [(d.code, d.message.split(",")[0]) for d in found] == [
        ("E153", "IPC resource home takes its key from the file '~/.key' (ftok)"),
        ("E153", "IPC resource up takes its key from the file '../x' (ftok)")]
    assert "ftok:t.yaml:a" in found[0].hint
