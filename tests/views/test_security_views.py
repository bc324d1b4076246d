"""What `topo explain` and `topo graph` show of ``security: {curve: true}``.

Per link (``spec/security.link_security``, the same resolver the planner's CURVE
uses): encrypted and authenticated (a run or role node binds), encrypted only (a
command node binds: no topo ZAP handler in its program), or plain (inproc, a peer
outside the file). Without CURVE both views are what they were, to the byte.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from hypothesis import given, settings

from orchestrator.spec.links import links
from orchestrator.spec.model import SecuritySpec, Topology
from orchestrator.spec.security import AUTHENTICATED, ENCRYPTED, PLAIN, link_security
from orchestrator.spec.validate import validate_file
from orchestrator.views.explain import explain
from orchestrator.views.graph import CURVE_LEGEND, LOCK, render
from orchestrator.views.words import CURVE_COMMAND_TEXT, CURVE_LINE
from tests.tools import need
from tests.topo_samples import ROOT, load, spec_example, topologies
from tests.views.test_explain import flat
from tests.views.test_graph import MERMAID_LINE, assert_mermaid_parses

SAMPLE = ROOT / "tests" / "curve_broker.yaml"

# A command node that binds, an outside peer connected to, and a bind marked external.
MIXED = """
name: mixed
security: {curve: true, allow: [client.key, other.key]}
nodes:
  pub:
    command: [prog]
    sockets:
      out: {type: PUB, bind: "tcp://127.0.0.1:*"}
  sub:
    run: m:f
    sockets:
      in: {type: SUB, subscribe: "",
           connect: [pub.out, {endpoint: "tcp://10.0.0.1:5555", external: true}, ghost.x]}
      inbox: {type: ROUTER, bind: [{endpoint: "tcp://127.0.0.1:7000", external: true}],
              options: {router_mandatory: 1}}
"""


def sample() -> Topology:
    loaded = validate_file(SAMPLE)
    assert loaded.topology is not None, [d.format() for d in loaded.diagnostics]
    assert not [d for d in loaded.diagnostics if d.is_error]
    return loaded.topology


def with_curve(topology: Topology, curve: bool) -> Topology:
    return topology.model_copy(update={"security": SecuritySpec(curve=curve)})


def section(text: str, title: str) -> str:
    """The lines of one ``Title\\n-----`` section of an explanation, up to the next one."""
    lines = text.splitlines()
    start = lines.index(title) + 2
    end = next((i - 1 for i in range(start + 1, len(lines))
                if set(lines[i]) == {"-"} and len(lines[i]) == len(lines[i - 1])), len(lines))
    return "\n".join(lines[start:end])


# -- what CURVE does to each link ----------------------------------------------------------------


def test_each_link_of_the_sample_is_authenticated_or_plain() -> None:
    topo = sample()
    found = {(str(lk.connector), str(lk.binder)): link_security(topo, lk) for lk in links(topo)}
    assert found == {
        ("worker.jobs", "broker.backend"): AUTHENTICATED,  # ipc, a role node binds
        ("client.server", "broker.frontend"): AUTHENTICATED,  # tcp
        ("pair.right", "pair.left"): PLAIN,  # inproc
    }


def test_a_command_binder_encrypts_only_and_outside_peers_connected_to_stay_plain() -> None:
    topo = load(MIXED)
    found = [(lk.endpoint, link_security(topo, lk)) for lk in links(topo)]
    assert found == [
        ("pub.out", ENCRYPTED),
        ("tcp://10.0.0.1:5555", PLAIN),
        ("ghost.x", ""),  # a broken link: CURVE has nothing to say about it
        ("tcp://127.0.0.1:7000", AUTHENTICATED),  # the node's ZAP handler checks `allow`
    ]


def test_without_curve_no_link_has_a_security() -> None:
    topo = with_curve(load(MIXED), False)
    assert {link_security(topo, lk) for lk in links(topo)} == {""}


# -- topo explain ----------------------------------------------------------------------------------


def test_explain_says_at_the_top_that_the_topology_uses_curve() -> None:
    text = explain(sample())
    paragraphs = text.split("\n\n")
    assert paragraphs[2].startswith("It has 4 nodes")
    assert flat(paragraphs[3]) == CURVE_LINE


def test_explain_tells_each_link_of_the_sample() -> None:
    text = section(explain(sample()), "Security")
    assert "`topo keys RUN` prints the public keys" in flat(text)
    assert "and the clients given with `topo up --allow`" in flat(text)
    items = [flat(p) for p in text.split("\n- ")[1:]]
    assert items == [
        "worker.jobs (REP) to broker.backend (DEALER) over ipc: encrypted and authenticated.",
        "pair.right (PAIR) to pair.left (PAIR) over inproc: plain: inproc never leaves its "
        "process.",
        "client.server (REQ) to broker.frontend (ROUTER) over tcp: encrypted and "
        "authenticated.",
    ]
    assert flat(CURVE_COMMAND_TEXT) not in flat(text)  # no command node here


def test_explain_tells_encrypted_only_plain_outside_and_external_binds() -> None:
    text = flat(section(explain(load(MIXED)), "Security"))
    assert ("- sub.in (SUB) to pub.out (PUB) over tcp: encrypted only: pub is a command node, "
            "which does not check who connects.") in text
    assert ("- sub.in (SUB) to tcp://10.0.0.1:5555 over tcp: plain: a peer outside this file, "
            "for which topo has no key.") in text
    assert ("- a peer outside this topology to sub.inbox (ROUTER) at tcp://127.0.0.1:7000 over "
            "tcp: encrypted and authenticated: only the clients of security.allow and `topo up "
            "--allow` get in.") in text
    assert "ghost.x" not in text  # the broken link is told where its socket is
    assert flat(CURVE_COMMAND_TEXT) in text
    assert ("the clients whose keys security.allow names (2 files) and those given with "
            "`topo up --allow`") in text


def test_explain_of_a_curve_file_whose_links_all_fail() -> None:
    topo = load("security: {curve: true}\n"
                "nodes: {a: {run: m:f, sockets: {s: {type: REQ, connect: ghost.x}}}}")
    assert ("No link of this file works yet, so CURVE has nothing to protect."
            in flat(section(explain(topo), "Security")))


def test_explain_without_curve_is_unchanged() -> None:
    head = "security: {curve: true, allow: [client.key, other.key]}\n"
    assert head in MIXED
    without = MIXED.replace(head, "")
    text = explain(load(without))
    assert text == explain(load(MIXED.replace(head, "security: {curve: false}\n")))
    assert text == explain(with_curve(load(MIXED), False))
    assert "CURVE" not in text and "\nSecurity\n" not in text
    assert "CURVE" not in explain(spec_example())


@settings(max_examples=60, deadline=None)
@given(topologies())
def test_any_topology_under_curve_tells_every_working_link(topo: Topology) -> None:
    on = with_curve(topo, True)
    text = explain(on)
    assert flat(CURVE_LINE) in flat(text)
    working = [lk for lk in links(on) if link_security(on, lk)]
    told = section(text, "Security").count("\n- ") + section(text, "Security").startswith("- ")
    assert told == len(working)
    off = explain(with_curve(topo, False))
    assert "\nSecurity\n--------\n" not in off and flat(CURVE_LINE) not in flat(off)


# -- topo graph ------------------------------------------------------------------------------------


def test_graph_locks_the_protected_edges_of_the_sample() -> None:
    text = render(sample(), "mermaid")
    lines = text.splitlines()
    assert f"  %% {CURVE_LEGEND}" in lines
    assert f'  n_worker -->|"REP → DEALER (ipc) {LOCK}"| n_broker' in lines
    assert f'  n_client -->|"REQ → ROUTER (tcp) {LOCK}"| n_broker' in lines
    assert '  n_pair -->|"PAIR → PAIR (inproc)"| n_pair' in lines
    dot = render(sample(), "dot")
    assert f'"n_worker" -> "n_broker" [label="REP → DEALER (ipc) {LOCK}"];' in dot
    assert '"n_pair" -> "n_pair" [label="PAIR → PAIR (inproc)"];' in dot
    assert f"under CURVE.\\n{CURVE_LEGEND}\";" in dot


def test_graph_marks_a_command_binder_and_leaves_outside_peers_open() -> None:
    text = render(load(MIXED), "mermaid")
    assert f'  n_sub -->|"SUB → PUB (tcp) {LOCK} no auth"| n_pub' in text
    assert '  n_sub -->|"SUB → ? (tcp)"| ext_1' in text
    assert '  n_sub -->|"SUB → ?"| m_2' in text
    assert f'  ext_3 -->|"external → ROUTER (tcp) {LOCK}"| n_sub' in text


@settings(max_examples=80, deadline=None)
@given(topologies())
def test_curve_only_adds_locks_and_a_legend(topo: Topology) -> None:
    for fmt in ("mermaid", "dot"):
        before = render(topo, fmt)
        assert render(with_curve(topo, False), fmt) == before and LOCK not in before
        after = render(with_curve(topo, True), fmt)
        if fmt == "mermaid":
            assert all(MERMAID_LINE.match(line) for line in after.splitlines())
        stripped = (after.replace(f"  %% {CURVE_LEGEND}\n", "")
                    .replace(f"\\n{CURVE_LEGEND}", "")
                    .replace(f" {LOCK} no auth", "").replace(f" {LOCK}", ""))
        assert stripped == before


# -- real syntax checks of the drawings with locks ---------------------------------------------


def _curve_drawings(fmt: str, tmp_path: Path) -> list[Path]:
    files = []
    for stem, topo in (("sample", sample()), ("mixed", load(MIXED)),
                       ("spec", with_curve(spec_example(), True))):
        path = tmp_path / f"{stem}.{'mmd' if fmt == 'mermaid' else 'dot'}"
        path.write_text(render(topo, fmt), encoding="utf-8")
        files.append(path)
    return files


def test_mermaid_parses_the_locks(tmp_path: Path) -> None:
    assert_mermaid_parses(_curve_drawings("mermaid", tmp_path))


def test_graphviz_takes_the_locks(tmp_path: Path) -> None:
    dot = need("dot", "Graphviz checks the DOT output; apt-get install graphviz")
    for path in _curve_drawings("dot", tmp_path):
        result = subprocess.run([dot, "-Tsvg", str(path)], capture_output=True, text=True,
                                timeout=30, check=False)
        assert result.returncode == 0 and not result.stderr, (path.name, result.stderr)
        assert LOCK in result.stdout
