"""`topo explain`: plain words about nodes, sockets, links, IPC resources and warnings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings

from orchestrator.spec import zmqrules
from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.model import Topology
from orchestrator.spec.validate import validate_file
from orchestrator.views.explain import WIDTH, explain
from orchestrator.views.words import FLOW_TEXT, PRIMER_IPC, PRIMER_ZMQ, SOCKET_TEXT
from tests.topo_samples import TEACHING, load, spec_example, topologies


def flat(text: str) -> str:
    """The text with its line wrapping undone, so phrases can be searched whole."""
    return " ".join(text.split())


def test_description_nodes_kinds_and_copies() -> None:
    text = flat(explain(spec_example()))
    assert text.startswith("Topology rrbroker ================= "
                           "Request-reply through a ROUTER/DEALER broker.")
    assert ("It has 3 nodes (5 processes in all), 2 links between sockets and 5 IPC "
            "resources.") in text
    assert "broker: 1 process. It runs topo's built-in role `proxy`, which passes every" in text
    assert ("worker: 3 identical processes (worker.0 to worker.2). Each calls the Python "
            "function `worker` from module `examples.rr`") in text
    assert "client: 1 process. It runs the program `php examples/php/client.php`" in text
    assert "It starts once broker is ready." in text
    assert "Once it ends, topo leaves it ended (restart: never)." in text
    assert ("If it fails (ends with a non-zero status), topo starts it again "
            "(restart: on-failure).") in text


def test_sockets_pattern_bind_connect_and_peers() -> None:
    text = flat(explain(spec_example()))
    assert (f"- Socket `frontend` (ROUTER) {SOCKET_TEXT['ROUTER']} (in ZeroMQ terms: "
            f"{zmqrules.PATTERNS['ROUTER']}). It binds: it waits "
            "for peers at tcp://127.0.0.1:* (a TCP port for this machine only; topo picks a "
            "free port when the run starts). Connected to it: client.server (REQ) over tcp."
            ) in text
    assert ("It binds: it waits for peers at ipc://backend (a Unix socket file inside the "
            "run's private folder). Connected to it: worker.jobs (REP, 3 copies) over ipc.") in text
    assert (f"- Socket `jobs` (REP) {SOCKET_TEXT['REP']} (in ZeroMQ terms: "
            f"{zmqrules.PATTERNS['REP']}). It connects to broker.backend (DEALER) over ipc."
            ) in text
    assert "It connects to broker.frontend (ROUTER) over tcp." in text
    assert "The program finds the address(es) in TOPO_SOCKET_SERVER." in text


@pytest.mark.parametrize("socket_type", sorted(zmqrules.PATTERNS))
def test_every_pattern_is_told(socket_type: str) -> None:
    topo = load(f"nodes: {{a: {{run: m:f, sockets: {{s: {{type: {socket_type}}}}}}}}}")
    assert zmqrules.PATTERNS[socket_type] in flat(explain(topo))


def test_pattern_words_cover_fan_out_round_robin_and_friends() -> None:
    topo = load("""
nodes:
  a:
    run: m:f
    sockets:
      p: {type: PUB, bind: "ipc://p"}
      u: {type: PUSH, bind: "ipc://u"}
      r: {type: ROUTER, bind: "ipc://r", options: {router_mandatory: 1}}
      x: {type: PAIR, bind: "ipc://x"}
  b:
    run: m:f
    sockets:
      s: {type: SUB, connect: a.p, subscribe: ""}
      l: {type: PULL, connect: a.u}
""")
    text = flat(explain(topo))
    for words in ("fan-out", "round-robin", "fair-queue", "explicit addressing", "exclusive pair"):
        assert words in text


@pytest.mark.parametrize(("subscribe", "expected"), [
    ("", "It has no subscription, so it receives nothing"),
    ("subscribe: ['']", "It subscribes to everything (the empty prefix)."),
    ("subscribe: [weather, sports]",
     "It only takes messages whose first frame starts with 'weather' or 'sports'."),
])
def test_subscriptions(subscribe: str, expected: str) -> None:
    topo = load(f"nodes: {{a: {{run: m:f, sockets: {{s: {{type: SUB, {subscribe}}}}}}}}}")
    assert expected in flat(explain(topo))


def test_roles_in_words() -> None:
    topo = load("""
nodes:
  t:
    role: ticker
    with: {interval: 200ms, count: 10, topic: weather, payload: "report {n}"}
    sockets: {out: {type: PUB, bind: "ipc://t"}}
  f:
    role: ticker
    sockets: {out: {type: PUB, bind: "ipc://f"}}
  e: {role: echo}
  p: {role: printer}
  u: {role: juggler}
""")
    text = flat(explain(topo))
    assert ("sends a message every 200ms, 10 times, then it ends, with the topic 'weather' and "
            "the payload 'report {n}'") in text
    assert "sends a message every 1s, forever, with no topic and the payload 'tick {n}'" in text
    assert "sends every message it receives straight back" in text
    assert "prints every message it receives" in text
    assert "role `juggler`, which topo does not know" in text


def test_external_unbound_and_broken_connects() -> None:
    topo = load("""
nodes:
  a:
    run: m:f
    sockets:
      s:
        type: DEALER
        connect: [{endpoint: "tcp://10.0.0.1:1", external: true}, "tcp://127.0.0.1:2", ghost.x]
      r:
        type: ROUTER
        bind: [{endpoint: "tcp://*:3", external: true}]
      lonely: {type: PULL, bind: "inproc://l"}
      idle: {type: PUSH}
""")
    text = flat(explain(topo))
    assert ("It connects to tcp://10.0.0.1:1, a peer outside this topology (marked external)."
            in text)
    assert "It connects to tcp://127.0.0.1:2, but no node of this file binds that address" in text
    assert "It connects to ghost.x, which does not work: there is no node named 'ghost'." in text
    assert "(on every network interface, so other machines can reach it too)" in text
    assert "That address is marked external: a program outside this topology connects" in text
    assert "inproc://l (inside one process only). No socket in this file connects to it." in text
    assert "It neither binds nor connects, so nothing reaches it." in text


def test_ipc_resources_in_words() -> None:
    text = flat(explain(spec_example()))
    assert "jobs: a System V message queue" in text
    assert "It holds at most 16KiB of waiting messages." in text
    assert "frame: a System V shared-memory segment" in text and "Size: 1MiB." in text
    assert "room: a System V semaphore" in text and "It starts at 1." in text
    assert "results: a Unix socket pair" in text and "It joins pool and collector." in text
    assert "log: a named pipe (FIFO)" in text
    assert "Topo picks its key, and only your user may use it (mode 0o600)." in text
    assert "Used by worker." in text
    assert "It uses the IPC resource frame (in node.ipc)." in text


def test_no_ipc_section_without_resources() -> None:
    assert "IPC resources" not in explain(load("nodes: {a: {run: m:f}}"))


def test_warnings_with_hints() -> None:
    diags = [
        Diagnostic("f.yaml", 7, 3, "warning", "W207", "ROUTER socket a.r drops messages",
                   "set `options: {router_mandatory: 1}`"),
        Diagnostic("f.yaml", 9, 1, "warning", "W205", "socket a.s has no peer", ""),
    ]
    text = explain(load("nodes: {a: {run: m:f}}"), diags)
    assert "Warnings\n--------" in text
    assert "Warning W207, line 7: ROUTER socket a.r drops messages.\n" in text
    assert "  What to do: set `options: {router_mandatory: 1}`." in text
    assert text.endswith("Warning W205, line 9: socket a.s has no peer.\n")


def test_no_warnings_says_so() -> None:
    assert "None: `topo validate` finds nothing to warn about." in explain(spec_example(), [])


def test_errors_are_told_too() -> None:
    diag = Diagnostic("f.yaml", 2, 1, "error", "E121", "REQ cannot talk to PUB", "use REP")
    text = explain(spec_example(), [diag])
    assert "Errors and warnings" in text and "Error E121, line 2: REQ cannot talk to PUB." in text


@pytest.mark.parametrize("path", TEACHING, ids=lambda p: p.stem)
def test_teaching_topologies_explain_their_warnings(path: Path) -> None:
    loaded = validate_file(path)
    assert loaded.topology is not None
    text = explain(loaded.topology, loaded.diagnostics)
    for d in loaded.diagnostics:
        assert f"{d.code}, line {d.line}:" in text
    for name, node in loaded.topology.nodes.items():
        assert re.search(rf"^{re.escape(name)}: ", text, re.M)
        for sname in node.sockets:
            assert f"- Socket `{sname}`" in text


@settings(max_examples=150, deadline=None)
@given(topologies())
def test_any_topology_is_explained_whole(topo: Topology) -> None:
    text = explain(topo)
    assert text.endswith("\n")
    for name, node in topo.nodes.items():
        assert re.search(rf"^{re.escape(name)}: ", text, re.M)
        for sname, spec in node.sockets.items():
            assert f"- Socket `{sname}` ({spec.type})" in text
    for name in topo.ipc:
        assert re.search(rf"^{re.escape(name)}: ", text, re.M)
    for line in text.splitlines():
        # textwrap keeps long words whole (endpoints, commands); everything else fits.
        assert len(line) <= WIDTH or " " not in line.strip() or len(max(
            line.split(), key=len)) > WIDTH // 4


def test_run_node_parameters_and_option_words() -> None:
    topo = load("""
nodes:
  a:
    run: m:f
    with: {requests: 5, greeting: hi}
    sockets:
      s: {type: ROUTER, bind: "ipc://s", options: {router_mandatory: 1, linger: 0,
                                                   tcp_keepalive: 1}}
""")
    text = flat(explain(topo))
    assert "parameters reach the function as node.params: requests=5, greeting='hi'." in text
    assert ("Options: router_mandatory=1 (a message to an unknown peer is an error instead of "
            "vanishing); linger=0 (how long unsent messages") in text
    assert "; tcp_keepalive=1." in text


def test_primers_only_for_what_the_topology_uses() -> None:
    both = flat(explain(spec_example()))
    assert flat(PRIMER_ZMQ) in both and flat(PRIMER_IPC) in both
    sockets_only = flat(explain(load("nodes: {a: {run: m:f, sockets: {s: {type: PAIR}}}}")))
    assert flat(PRIMER_ZMQ) in sockets_only and flat(PRIMER_IPC) not in sockets_only
    ipc_only = load("ipc: {q: {type: msgqueue}}\nnodes: {a: {run: m:f, ipc: [q]}, "
                    "b: {command: [prog], ipc: [q]}}")
    text = flat(explain(ipc_only))
    assert flat(PRIMER_ZMQ) not in text
    assert "It has 2 nodes (2 processes in all) and 1 IPC resource." in text
    assert "in a process forked from topo, with its IPC resources already open." in text
    assert "It runs the program `prog`. Once it ends" not in text  # restart default: on-failure
    assert "It runs the program `prog`. If it fails" in text
    assert "(the program finds them in TOPO_IPC_<NAME>_* variables)" in text


def test_every_socket_type_has_plain_words_and_every_peer_pair_a_flow() -> None:
    assert set(SOCKET_TEXT) >= set(zmqrules.STANDARD_TYPES) | {"STREAM"}
    for a in zmqrules.STANDARD_TYPES:
        for b in zmqrules.valid_peers(a):
            assert (a, b) in FLOW_TEXT or (b, a) in FLOW_TEXT, (a, b)


def test_how_messages_flow_one_way_and_both_ways() -> None:
    topo = load("""
nodes:
  pub: {run: m:f, sockets: {out: {type: PUB, bind: "ipc://p"}}}
  sub:
    run: m:f
    replicas: 2
    sockets: {in: {type: SUB, connect: pub.out, subscribe: [""]}}
  rep: {run: m:f, sockets: {s: {type: REP, bind: "tcp://127.0.0.1:*"}}}
  req: {run: m:f, sockets: {c: {type: REQ, connect: rep.s}}}
""")
    text = explain(topo)
    assert "How messages flow\n-----------------\n" in text
    flows = flat(text.split("How messages flow")[1])
    assert "- pub.out (PUB) -> sub.in (SUB, 2 copies) over ipc: messages go one way" in flows
    assert "- req.c (REQ) <-> rep.s (REP) over tcp: requests go one at a time" in flows


def test_proxy_says_what_it_is_from_its_socket_types() -> None:
    def proxy(front: str, back: str) -> str:
        return flat(explain(load(f"""
nodes:
  p:
    role: proxy
    sockets: {{frontend: {{type: {front}, bind: "ipc://f"}}, backend: {{type: {back},
              bind: "ipc://b"}}}}
""")))
    assert "Here it is a request-reply broker" in proxy("ROUTER", "DEALER")
    assert "Here it is a forwarder" in proxy("XSUB", "XPUB")
    assert "It has no subscription of its own" in proxy("XSUB", "XPUB")
    assert "Here it is a streamer" in proxy("PULL", "PUSH")
    assert "With ROUTER/DEALER it is a broker" in proxy("DEALER", "DEALER")


def test_restart_backoff_ready_and_two_copies_in_words() -> None:
    topo = load("""
nodes:
  s:
    command: [srv]
    replicas: 2
    backoff: {initial: 100ms, factor: 2, max: 2s}
    max_restarts: 4
    ready: {log: "listening"}
  t: {run: m:f, restart: never, backoff: 1s}
""")
    text = flat(explain(topo))
    assert "2 identical processes (s.0 and s.1)" in text
    assert ("It waits 100ms before restarting, then twice as long after each quick failure in "
            "a row, up to 2s; after 4 restarts within 1m topo gives up and marks it failed."
            ) in text
    assert "It counts as ready once a line of its output matches 'listening' (topo waits " in text
    assert text.count("before restarting") == 1  # not for a node that never restarts


def test_a_link_inside_one_node_is_told_as_such() -> None:
    topo = load("""
nodes:
  n:
    run: m:f
    sockets:
      hub: {type: DEALER, bind: "inproc://hub"}
      leg: {type: REP, connect: n.hub}
""")
    assert ("It connects to n.hub (DEALER), a socket of this same node, over inproc: both ends "
            "live in one process, for example in two of its threads.") in flat(explain(topo))


def test_several_binds_are_one_socket() -> None:
    topo = load("""
nodes:
  s:
    run: m:f
    sockets:
      r: {type: REP, bind: ["tcp://127.0.0.1:*", "ipc://r", {endpoint: "tcp://*:7000",
                                                            external: true}]}
""")
    text = flat(explain(topo))
    assert ("It binds 3 addresses and waits for peers at all of them at once, as one socket: "
            "tcp://127.0.0.1:* (a TCP port for this machine only; topo picks a free port when "
            "the run starts); ipc://r (a Unix socket file inside the run's private folder); "
            "tcp://*:7000 (on every network interface, so other machines can reach it too)."
            ) in text
    assert "tcp://*:7000 is marked external: a program outside this topology connects" in text


def test_several_connects_are_told_in_one_sentence() -> None:
    topo = load("""
nodes:
  a: {run: m:f, sockets: {out: {type: PUB, bind: "tcp://127.0.0.1:*"}}}
  b: {run: m:f, replicas: 2, sockets: {out: {type: PUB, bind: "ipc://b"}}}
  s: {run: m:f, sockets: {in: {type: SUB, connect: [a.out, b.out, ghost.x], subscribe: [""]}}}
""")
    text = flat(explain(topo))
    assert "It connects to a.out (PUB) over tcp and b.out (PUB, 2 copies) over ipc." in text
    assert "It connects to ghost.x, which does not work: there is no node named 'ghost'." in text
