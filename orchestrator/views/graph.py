"""`topo graph`: draw a topology from the file alone, as Mermaid or Graphviz DOT.

Both drawings come from one small picture model (vertices and edges), so they
always show the same things: nodes as boxes, one edge per link from the
connecting node to the binding node labelled ``REQ → ROUTER (tcp)``, peers
outside the topology as hexagons, and each IPC resource in a shape of its own
with dotted edges to the nodes that use it. With ``security: {curve: true}``, a
link CURVE encrypts ends its label with a lock (``🔒``, or ``🔒 no auth`` when the
binder is a command node, which cannot check who connects); plain links (inproc, a
peer outside the file) have none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from orchestrator.errors import UsageError
from orchestrator.spec.links import Link, links
from orchestrator.spec.model import IpcSpec, NodeSpec, Topology
from orchestrator.spec.security import AUTHENTICATED, ENCRYPTED, link_security

FORMATS = ("mermaid", "dot")

# The end of an edge's label, by what CURVE does to the link (spec/security.py). A plain
# character both Mermaid's parser and Graphviz take as it is, in a quoted label.
LOCK = "🔒"
_LOCKS = {AUTHENTICATED: f" {LOCK}", ENCRYPTED: f" {LOCK} no auth"}
CURVE_LEGEND = f"security: CURVE; {LOCK} = encrypted link, {LOCK} no auth = encrypted only"

# shape per vertex kind: (Mermaid open, Mermaid close, DOT attributes)
_SHAPES: dict[str, tuple[str, str, str]] = {
    "node": ('["', '"]', 'shape=box, style="rounded"'),
    "external": ('{{"', '"}}', 'shape=hexagon, style="dashed"'),
    "missing": ('{{"', '"}}', 'shape=hexagon, style="dashed", color="red"'),
    "msgqueue": ('[("', '")]', "shape=cylinder"),
    "shm": ('[["', '"]]', "shape=box3d"),
    "semaphore": ('(("', '"))', "shape=octagon"),
    "socketpair": ('>"', '"]', "shape=cds"),
    "fifo": ('[/"', '"/]', "shape=parallelogram"),
}

_MERMAID_CLASSES = {
    "external": "stroke-dasharray: 5 5",
    "missing": "stroke:#c00,stroke-dasharray: 5 5",
    "ipc": "fill:#f4f4f4,stroke:#888",
}


@dataclass(frozen=True)
class Vertex:
    id: str  # a safe identifier in both languages
    kind: str  # a key of _SHAPES
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    label: str = ""
    dotted: bool = False  # IPC use: no direction, no label


@dataclass
class Picture:
    title: str
    description: str
    vertices: list[Vertex] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    curve: bool = False  # security.curve: the locks on the edges get a legend


def render(topology: Topology, fmt: str = "mermaid") -> str:
    """The topology drawn in ``fmt`` (``mermaid`` or ``dot``), ending with a newline."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown graph format '{fmt}'; use one of: {', '.join(FORMATS)}")
    picture = picture_of(topology)
    return to_mermaid(picture) if fmt == "mermaid" else to_dot(picture)


def picture_of(topology: Topology) -> Picture:
    """What both drawings show: one vertex per node, outside peer and IPC resource."""
    ids = _Ids()
    picture = Picture(topology.name, topology.description,
                      curve=topology.security.curve)
    for name, node in topology.nodes.items():
        picture.vertices.append(Vertex(ids.make("n", name), "node", _node_lines(name, node)))
    outside: dict[tuple[str, str], str] = {}  # (kind, endpoint) -> vertex id
    for link in links(topology):
        edge = _edge(link, ids, outside, picture)
        lock = _LOCKS.get(link_security(topology, link), "")
        picture.edges.append(replace(edge, label=edge.label + lock) if lock else edge)
    for name, res in topology.ipc.items():
        rid = ids.make("r", name)
        picture.vertices.append(Vertex(rid, res.type, (name, _ipc_detail(res))))
        users = [n for n, spec in topology.nodes.items() if name in spec.ipc]
        users += [n for n in res.between or [] if n in topology.nodes and n not in users]
        picture.edges.extend(Edge(rid, ids.get("n", n), dotted=True) for n in users)
    return picture


def _edge(link: Link, ids: _Ids, outside: dict[tuple[str, str], str], picture: Picture) -> Edge:
    def vertex_for(kind: str, lines: tuple[str, ...]) -> str:
        key = (kind, link.endpoint)
        if key not in outside:
            outside[key] = ids.make("m" if kind == "missing" else "ext", str(len(outside) + 1))
            picture.vertices.append(Vertex(outside[key], kind, lines))
        return outside[key]

    transport = f" ({link.transport})" if link.transport else ""
    if link.connector is None:  # an external peer connects to a bind marked external
        src = vertex_for("external", ("external peer", link.endpoint))
        dst = ids.get("n", link.binder.node) if link.binder else vertex_for("missing", ("?",))
        return Edge(src, dst, f"external → {link.binder_type}{transport}")
    src = ids.get("n", link.connector.node)
    if link.problem and link.binder_type is None:
        dst = vertex_for("missing", ("not found", link.endpoint))
        return Edge(src, dst, f"{link.connector_type} → ?")
    if link.binder is None:
        what = "external" if link.external else "not bound in this file"
        dst = vertex_for("external", (what, link.endpoint))
        return Edge(src, dst, f"{link.connector_type} → ?{transport}")
    return Edge(src, ids.get("n", link.binder.node),
                f"{link.connector_type} → {link.binder_type}{transport}")


def _node_lines(name: str, node: NodeSpec) -> tuple[str, ...]:
    if node.role is not None:
        what = f"role: {node.role}"
    elif node.run is not None:
        what = f"run: {node.run}"
    else:
        what = f"command: {node.command[0] if node.command else '?'}"
    lines = [name, what]
    if node.replicas > 1:
        lines.append(f"×{node.replicas}")
    return tuple(lines)


def _ipc_detail(res: IpcSpec) -> str:
    if res.type == "shm" and res.size is not None:
        return f"shm {human_size(res.size)}"
    if res.type == "semaphore":
        return f"semaphore = {res.value if res.value is not None else 0}"
    if res.type == "msgqueue" and res.max_bytes is not None:
        return f"msgqueue {human_size(res.max_bytes)}"
    return res.type


def human_size(n: int) -> str:
    """Bytes in the largest binary unit that divides them: 1MiB, 16KiB, 1000 B."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n} B"


class _Ids:
    """Identifiers safe in Mermaid and DOT, unique, stable for the same file."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], str] = {}
        self._used: set[str] = set()

    def make(self, prefix: str, name: str) -> str:
        base = f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
        ident, n = base, 1
        while ident in self._used:
            n += 1
            ident = f"{base}_{n}"
        self._used.add(ident)
        self._by_key[(prefix, name)] = ident
        return ident

    def get(self, prefix: str, name: str) -> str:
        return self._by_key[(prefix, name)]


# -- Mermaid ---------------------------------------------------------------------------------------

_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;",
                    "`": "#96;", "|": "#124;"}


def mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label (entity codes, one line)."""
    text = " ".join(text.split())
    return "".join(_MERMAID_ESCAPES.get(c, c) for c in text)


def _comment(text: str) -> str:
    # "%%{...}%%" is a Mermaid directive even inside a comment line.
    return " ".join(text.split()).replace("%%", "% %")


def to_mermaid(picture: Picture) -> str:
    out = ["flowchart LR", f"  %% topology {_comment(picture.title)}"]
    if picture.description:
        out.append(f"  %% {_comment(picture.description)}")
    if picture.curve:
        out.append(f"  %% {CURVE_LEGEND}")
    classes: dict[str, list[str]] = {}
    for v in picture.vertices:
        opening, closing, _ = _SHAPES[v.kind]
        label = "<br/>".join(mermaid_text(line) for line in v.lines)
        out.append(f"  {v.id}{opening}{label}{closing}")
        if v.kind != "node":
            classes.setdefault(v.kind if v.kind in _MERMAID_CLASSES else "ipc", []).append(v.id)
    for e in picture.edges:
        if e.dotted:
            out.append(f"  {e.src} -.- {e.dst}")
        else:
            out.append(f'  {e.src} -->|"{mermaid_text(e.label)}"| {e.dst}')
    for name, members in classes.items():
        out.append(f"  classDef {name} {_MERMAID_CLASSES[name]}")
        out.append(f"  class {','.join(members)} {name}")
    return "\n".join(out) + "\n"


# -- Graphviz DOT ----------------------------------------------------------------------------------


def dot_quote(text: str) -> str:
    """A DOT double-quoted string; backslashes and quotes escaped, newlines kept as \\n."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def _dot_title(picture: Picture) -> str:
    title = picture.description or picture.title
    return f"{title}\n{CURVE_LEGEND}" if picture.curve else title


def to_dot(picture: Picture) -> str:
    out = [
        f"digraph {dot_quote(picture.title)} {{",
        "  rankdir=LR;",
        f"  label={dot_quote(_dot_title(picture))};",
        "  labelloc=t;",
        '  fontname="Helvetica";',
        '  node [fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for v in picture.vertices:
        label = dot_quote("\n".join(v.lines))
        out.append(f"  {dot_quote(v.id)} [label={label}, {_SHAPES[v.kind][2]}];")
    for e in picture.edges:
        if e.dotted:
            out.append(f"  {dot_quote(e.src)} -> {dot_quote(e.dst)} [style=dotted, dir=none];")
        else:
            out.append(f"  {dot_quote(e.src)} -> {dot_quote(e.dst)} [label={dot_quote(e.label)}];")
    out.append("}")
    return "\n".join(out) + "\n"
