"""`topo graph`: structure of the Mermaid and DOT drawings, then real syntax checks.

The structural tests need no tool. Mermaid's own parser (Node + the npm
packages ``mermaid`` and ``jsdom``, see tests/mermaid_check.mjs) and Graphviz's
``dot`` check every drawing when they are installed, and skip with the reason
otherwise (CI sets TOPO_REQUIRE_TOOLS=1, which turns a missing tool into a
failure).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings

from orchestrator.errors import UsageError
from orchestrator.spec.model import Topology
from orchestrator.spec.validate import validate_file
from orchestrator.views.graph import dot_quote, mermaid_text, picture_of, render
from tests.tools import need
from tests.topo_samples import ROOT, TEACHING, load, spec_example, topologies

SAFE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
MERMAID_LINE = re.compile(
    r"^(flowchart LR"
    r"|  %% .*"
    r"|  [A-Za-z]\w*(\[\"|\[\(\"|\[\[\"|\(\(\"|\{\{\"|>\"|\[/\")"  # a vertex: opening,
    r"[^\"]*"  # a label with no raw quote,
    r"(\"\]|\"\)\]|\"\]\]|\"\)\)|\"\}\}|\"/\])"  # closing
    r"|  [A-Za-z]\w* -->\|\"[^\"]*\"\| [A-Za-z]\w*"
    r"|  [A-Za-z]\w* -\.- [A-Za-z]\w*"
    r"|  classDef \w+ [^;\n]+"
    r"|  class [\w,]+ \w+)$"
)


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="mermaid, dot"):
        render(spec_example(), "svg")


def test_spec_example_mermaid() -> None:
    text = render(spec_example(), "mermaid")
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert text.endswith("\n")
    assert '  n_broker["broker<br/>role: proxy"]' in lines
    assert '  n_worker["worker<br/>run: examples.rr:worker<br/>×3"]' in lines
    assert '  n_client["client<br/>command: php"]' in lines
    assert '  n_client -->|"REQ → ROUTER (tcp)"| n_broker' in lines
    assert '  n_worker -->|"REP → DEALER (ipc)"| n_broker' in lines
    assert "  r_frame -.- n_worker" in lines


def test_ipc_resources_each_have_their_own_shape() -> None:
    text = render(spec_example(), "mermaid")
    shapes = {
        "jobs": '[("jobs<br/>msgqueue 16KiB")]',
        "frame": '[["frame<br/>shm 1MiB"]]',
        "room": '(("room<br/>semaphore = 1"))',
        "results": '>"results<br/>socketpair"]',
        "log": '[/"log<br/>fifo"/]',
    }
    for name, shape in shapes.items():
        assert f"  r_{name}{shape}\n" in text
    dot = render(spec_example(), "dot")
    for name, shape in {"jobs": "cylinder", "frame": "box3d", "room": "octagon",
                        "results": "cds", "log": "parallelogram"}.items():
        assert re.search(rf'"r_{name}" \[label="[^"]*", shape={shape}\]', dot), name


def test_ipc_users_get_dotted_edges_socketpair_ends_too() -> None:
    topo = load("""
ipc:
  pair: {type: socketpair, between: [a, b]}
  q: {type: msgqueue}
nodes:
  a: {run: m:f, ipc: [pair, q]}
  b: {run: m:f}
""")
    text = render(topo, "mermaid")
    assert "  r_pair -.- n_a\n" in text and "  r_pair -.- n_b\n" in text
    assert "  r_q -.- n_a\n" in text
    assert '"r_q" -> "n_a" [style=dotted, dir=none];' in render(topo, "dot")


def test_external_unbound_and_missing_peers_get_their_own_nodes() -> None:
    topo = load("""
nodes:
  a:
    run: m:f
    sockets:
      out: {type: DEALER, connect: [{endpoint: "tcp://10.0.0.1:5555", external: true},
                                    "tcp://127.0.0.1:9", ghost.sock]}
      inbox: {type: ROUTER, bind: [{endpoint: "tcp://127.0.0.1:7000", external: true}],
              options: {router_mandatory: 1}}
""")
    text = render(topo, "mermaid")
    assert 'ext_1{{"external<br/>tcp://10.0.0.1:5555"}}' in text
    assert 'ext_2{{"not bound in this file<br/>tcp://127.0.0.1:9"}}' in text
    assert 'm_3{{"not found<br/>ghost.sock"}}' in text
    assert 'ext_4{{"external peer<br/>tcp://127.0.0.1:7000"}}' in text
    assert '  n_a -->|"DEALER → ? (tcp)"| ext_1' in text
    assert '  n_a -->|"DEALER → ?"| m_3' in text
    assert '  ext_4 -->|"external → ROUTER (tcp)"| n_a' in text
    assert "class ext_1,ext_2,ext_4 external" in text
    assert "class m_3 missing" in text


def test_replicas_shown_only_when_more_than_one() -> None:
    topo = load("nodes: {a: {run: m:f}, b: {run: m:f, replicas: 12}}")
    text = render(topo, "mermaid")
    assert 'n_a["a<br/>run: m:f"]' in text and 'n_b["b<br/>run: m:f<br/>×12"]' in text


def test_ids_are_safe_and_unique_for_lookalike_names() -> None:
    topo = load("nodes: {a-b: {run: m:f}, a_b: {run: m:f}, end: {run: m:f}, o: {run: m:f}}")
    ids = [v.id for v in picture_of(topo).vertices]
    assert len(set(ids)) == 4
    assert all(SAFE_ID.match(i) for i in ids)
    assert ids == ["n_a_b", "n_a_b_2", "n_end", "n_o"]


def test_mermaid_text_escapes_what_breaks_labels() -> None:
    assert mermaid_text('a"b') == "a#quot;b"
    assert mermaid_text("<b>&#") == "#lt;b#gt;#amp;#35;"
    assert mermaid_text("x|`y`") == "x#124;#96;y#96;"
    assert mermaid_text("two\nlines\t here") == "two lines here"


def test_description_cannot_smuggle_a_directive() -> None:
    topo = load("description: 'x %%{init: {}}%% y'\nnodes: {a: {run: m:f}}")
    assert "  %% x % %{init: {}}% % y\n" in render(topo, "mermaid")


def test_dot_quote() -> None:
    assert dot_quote('say "hi"') == '"say \\"hi\\""'
    assert dot_quote("a\\b") == '"a\\\\b"'
    assert dot_quote("one\ntwo") == '"one\\ntwo"'


def test_dot_structure() -> None:
    text = render(spec_example(), "dot")
    assert text.startswith('digraph "rrbroker" {\n  rankdir=LR;\n')
    assert text.endswith("}\n")
    assert '"n_client" -> "n_broker" [label="REQ → ROUTER (tcp)"];' in text
    assert '"n_worker" [label="worker\\nrun: examples.rr:worker\\n×3", shape=box' in text


@settings(max_examples=120, deadline=None)
@given(topologies())
def test_any_topology_draws_well_formed_mermaid(topo: Topology) -> None:
    text = render(topo, "mermaid")
    for line in text.splitlines():
        assert MERMAID_LINE.match(line), line
    picture = picture_of(topo)
    assert len({v.id for v in picture.vertices}) == len(picture.vertices)
    ids = {v.id for v in picture.vertices}
    assert all(e.src in ids and e.dst in ids for e in picture.edges)
    nodes = [v for v in picture.vertices if v.kind == "node"]
    assert [v.lines[0] for v in nodes] == list(topo.nodes)


@settings(max_examples=120, deadline=None)
@given(topologies())
def test_any_topology_draws_balanced_dot(topo: Topology) -> None:
    text = render(topo, "dot")
    # Outside quoted strings, only the graph's own braces appear.
    unquoted = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    assert unquoted.count("{") == unquoted.count("}") == 1
    for line in unquoted.splitlines()[1:-1]:
        assert line.endswith(";"), line


# -- real syntax checks ---------------------------------------------------------------------------

NASTY_TOPOLOGY = """
name: nasty
description: 'Quotes " and <tags> & #hash; `ticks` | pipes, on
  two lines'
ipc:
  q: {type: msgqueue, max_bytes: 1000}
  m: {type: shm, size: 3KiB}
  s: {type: semaphore}
  p: {type: socketpair, between: [end, o]}
  f: {type: fifo}
nodes:
  end:
    command: ['/bin/"odd" <prog>', x]
    ipc: [q, m, s, p, f]
    sockets:
      s: {type: SUB, connect: [o.t, 'ipc://we"ird<>#|`', ghost.x], subscribe: ""}
  o:
    role: ticker
    ipc: [p]
    sockets:
      t: {type: PUB, bind: [tcp://127.0.0.1:*, {endpoint: "tcp://*:6000", external: true}]}
"""


def _drawings(fmt: str, tmp_path: Path) -> list[Path]:
    sources = [(p.stem, validate_file(p).topology) for p in TEACHING]
    sources += [("spec", spec_example()), ("nasty", load(NASTY_TOPOLOGY))]
    files = []
    for stem, topo in sources:
        assert topo is not None, f"{stem} does not validate"
        path = tmp_path / f"{stem}.{'mmd' if fmt == 'mermaid' else 'dot'}"
        path.write_text(render(topo, fmt), encoding="utf-8")
        files.append(path)
    return files


def _mermaid_modules() -> Path:
    need("node", "Node.js runs Mermaid's parser")
    modules = Path(os.environ.get("TOPO_MERMAID_MODULES", "/tmp/mmd/node_modules"))
    if not (modules / "mermaid").is_dir() or not (modules / "jsdom").is_dir():
        message = (f"mermaid and jsdom are not installed in {modules} "
                   "(npm install --prefix /tmp/mmd mermaid@11.17.2 jsdom@24.1.3)")
        if os.environ.get("TOPO_REQUIRE_TOOLS"):
            pytest.fail(message + "; TOPO_REQUIRE_TOOLS is set, so this is an error")
        pytest.skip(message)
    return modules


def assert_mermaid_parses(files: list[Path]) -> None:
    """Mermaid's own parser takes every file (tests/mermaid_check.mjs)."""
    modules = _mermaid_modules()
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, str(ROOT / "tests" / "mermaid_check.mjs"), *map(str, files)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TOPO_MERMAID_MODULES": str(modules)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == len(files)


def test_mermaid_parses_every_drawing(tmp_path: Path) -> None:
    assert_mermaid_parses(_drawings("mermaid", tmp_path))


def test_mermaid_check_rejects_a_broken_diagram(tmp_path: Path) -> None:
    modules = _mermaid_modules()
    node = shutil.which("node")
    assert node is not None
    bad = tmp_path / "bad.mmd"
    bad.write_text('flowchart LR\n  a["x "q" y"] --> b\n', encoding="utf-8")
    result = subprocess.run(
        [node, str(ROOT / "tests" / "mermaid_check.mjs"), str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TOPO_MERMAID_MODULES": str(modules)},
    )
    assert result.returncode == 1 and "FAIL" in result.stdout


def test_graphviz_accepts_every_drawing(tmp_path: Path) -> None:
    dot = need("dot", "Graphviz checks the DOT output; apt-get install graphviz")
    for path in _drawings("dot", tmp_path):
        result = subprocess.run([dot, "-Tsvg", str(path)], capture_output=True, text=True,
                                timeout=30, check=False)
        assert result.returncode == 0 and not result.stderr, (path.name, result.stderr)
        assert "<svg" in result.stdout
