"""Topologies the graph, explain, schema and CLI tests share.

``SPEC_EXAMPLE`` is the full example of the file format that topo was designed from
(every section of docs/reference.md#the-topology-file in one file): it loads, but its
socketpair names nodes the example leaves out, so the validator rejects it.
``TEACHING`` is every file under ``topologies/`` (the IPC ones too), found afresh
at each test run, so the graph, explain and run tests cover a new file at once.
Each must validate without errors, and with warnings only where its opening
comment names them (tests/integration/test_topologies.py).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from orchestrator.spec import zmqrules
from orchestrator.spec.loader import load_text
from orchestrator.spec.model import Topology

ROOT = Path(__file__).resolve().parent.parent
TEACHING = sorted((ROOT / "topologies").glob("*.yaml"))

SPEC_EXAMPLE = """\
name: rrbroker                 # optional; default: file stem; [a-z0-9][a-z0-9_-]*
description: Request-reply through a ROUTER/DEALER broker.
pythonpath: [., ..]            # optional; where `run` modules are imported from
vars:                          # optional defaults for ${VAR}; the environment overrides
  WORKERS: 3
defaults:                      # optional; applied to every node unless it sets its own
  restart: on-failure
  stop_timeout: 5s

ipc:                           # IPC resources; created before any node starts
  jobs:
    type: msgqueue             # msgqueue | shm | semaphore | socketpair | fifo
    key: auto                  # auto (default) | integer | "ftok:<path>:<char>"
    mode: 0o600                # permission bits; default 0o600
    max_bytes: 16384           # msgqueue only: msg_qbytes
  frame:
    type: shm
    size: 1MiB                 # shm only: bytes; suffixes KiB MiB GiB
  room:
    type: semaphore
    value: 1                   # semaphore only: initial value
  results:
    type: socketpair           # a Unix socket pair made before forking;
    between: [pool, collector] # one end to each node, kept across restarts
  log:
    type: fifo                 # a named pipe inside the run folder

nodes:
  broker:
    role: proxy                # exactly one of: role | run | command
    sockets:
      frontend: {type: ROUTER, bind: "tcp://127.0.0.1:*"}
      backend:  {type: DEALER, bind: "ipc://backend"}
  worker:
    run: examples.rr:worker    # Python "module:function", forked from the supervisor
    replicas: ${WORKERS}
    sockets:
      jobs: {type: REP, connect: broker.backend}
    ipc: [frame]
  client:
    command: ["php", "examples/php/client.php"]   # any program, exec'd
    env: {GREETING: hello}
    cwd: .                     # relative to the topology file's folder
    sockets:
      server: {type: REQ, connect: broker.frontend}
    restart: never
    depends_on: [broker]
"""


def load(text: str, file: str = "t.yaml") -> Topology:
    """The topology of ``text`` as the loader makes it (no semantic checks); fails loudly."""
    loaded = load_text(text, file, environ={})
    assert loaded.topology is not None, [d.format() for d in loaded.diagnostics]
    return loaded.topology


def spec_example() -> Topology:
    return load(SPEC_EXAMPLE, "spec.yaml")


# -- random topologies for property tests ------------------------------------------------------

NAMES = st.from_regex(r"[a-z_][a-z0-9_-]{0,5}", fullmatch=True)
# Text that breaks naive quoting in Mermaid, DOT and YAML.
NASTY = st.sampled_from(['a"b', "x<y>&z", "#35;", "`tick`", "a|b", "back\\slash", "new\nline",
                         "end", "graph", "subgraph", "{curly}", "[square]", "o", "x", "é ü ×"])
TEXT = st.one_of(NASTY, st.text(max_size=20))
LITERALS = st.sampled_from(["tcp://127.0.0.1:*", "tcp://127.0.0.1:5555", "tcp://*:5556",
                            "tcp://localhost:5555", "ipc://jobs", "ipc:///tmp/x.sock",
                            "inproc://pipe", 'ipc://odd"name<>#|`'])


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    """Any loadable topology: names, types, references (good or dangling), nasty text."""
    node_names = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    ipc_names = draw(st.lists(NAMES, max_size=3, unique=True))
    ipc: dict[str, dict[str, object]] = {
        n: {"type": draw(st.sampled_from(["msgqueue", "shm", "semaphore", "socketpair", "fifo"]))}
        for n in ipc_names}
    for spec in ipc.values():
        if spec["type"] == "shm":
            spec["size"] = draw(st.integers(1, 1 << 31))
        if spec["type"] == "socketpair":
            spec["between"] = draw(st.lists(st.sampled_from(node_names), max_size=2))
    plan = {n: draw(st.lists(NAMES, max_size=3, unique=True)) for n in node_names}
    refs = [f"{n}.{s}" for n, socks in plan.items() for s in socks] + ["ghost.sock", "a.b@ipc"]
    nodes = {}
    for name, socket_names in plan.items():
        kind = draw(st.sampled_from(["role", "run", "command"]))
        node: dict[str, object] = {
            "role": {"role": draw(st.sampled_from(["proxy", "echo", "printer", "ticker", "odd"]))},
            "run": {"run": "examples.mod:main"},
            "command": {"command": draw(st.lists(TEXT.filter(bool), min_size=1, max_size=3))},
        }[kind]  # type: ignore[assignment]
        node["replicas"] = draw(st.integers(1, 4))
        node["ipc"] = draw(st.lists(st.sampled_from(ipc_names), max_size=2)) if ipc_names else []
        sockets = {}
        for sname in socket_names:
            sock: dict[str, object] = {"type": draw(st.sampled_from(zmqrules.ALL_TYPES))}
            sock["bind"] = draw(st.lists(st.one_of(LITERALS, st.builds(
                lambda e: {"endpoint": e, "external": True}, LITERALS)), max_size=2))
            sock["connect"] = draw(st.lists(st.one_of(st.sampled_from(refs), LITERALS, st.builds(
                lambda e: {"endpoint": e, "external": True}, LITERALS)), max_size=2))
            if sock["type"] in ("SUB", "XSUB"):
                sock["subscribe"] = draw(st.one_of(st.none(), st.lists(TEXT, max_size=2)))
            sockets[sname] = sock
        node["sockets"] = sockets
        nodes[name] = node
    return Topology.model_validate({
        "name": "random", "description": draw(TEXT), "ipc": ipc, "nodes": nodes,
    })
