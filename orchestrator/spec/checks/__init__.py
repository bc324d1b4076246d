"""Semantic checks of a loaded topology (SPEC §2): every E1xx beyond the schema, and W2xx.

``check`` is called once the loader produced a ``Topology``; it returns
diagnostics and never raises. The work is split by subject:

    checks.py        nodes and sockets on their own (E102 E110 E140, option names, W201 W207)
    checks_roles.py  the built-in roles' contract (E103)
    checks_links.py  binds and who talks to whom (E120-E128, W202-W206, W208), from the
                     links that links.py resolves for the graph and explain too
    checks_endpoints.py  parsing one endpoint or reference (E124-E126)
    checks_ipc.py    IPC resources (E130-E132)

Every pass is linear in the size of the file: binds are indexed by endpoint,
nothing compares all sockets pairwise.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from orchestrator.spec import zmqrules
from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.loader import PathKey, SourceMap, paused_gc
from orchestrator.spec.model import Topology

# Options that libzmq only lets a program read: setting them fails at run time.
READ_ONLY_OPTIONS = frozenset({"type", "rcvmore", "fd", "events", "last_endpoint", "mechanism",
                               "thread_safe"})


@dataclass
class Context:
    """What every pass needs: the topology, where its parts sit in the file, and the output."""

    topology: Topology
    source: SourceMap
    environ: Mapping[str, str]
    diags: list[Diagnostic] = field(default_factory=list)

    def emit(self, path: PathKey, code: str, message: str, hint: str, *, key: bool = False) -> None:
        pos = self.source.key(*path) if key else self.source.value(*path)
        self.diags.append(Diagnostic.at(pos, code, message, hint))

    def item(self, path: PathKey, index: int) -> PathKey:
        """The path of a list item, or of the list itself when YAML gave a lone scalar."""
        p = path + (index,)
        return p if p in self.source.values else path

    def replicas(self, node: str) -> int:
        spec = self.topology.nodes.get(node)
        return spec.replicas if spec is not None else 1


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def words(items: Iterable[str], last: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def check(
    topology: Topology, source: SourceMap, environ: Mapping[str, str] | None = None
) -> list[Diagnostic]:
    with paused_gc():
        return _check(topology, source, environ)


def _check(topology: Topology, source: SourceMap,
           environ: Mapping[str, str] | None) -> list[Diagnostic]:
    # The passes' modules use Context only for type hints, so importing them here is safe.
    from orchestrator.spec.checks import ipc as checks_ipc
    from orchestrator.spec.checks import links as checks_links
    from orchestrator.spec.checks import roles as checks_roles

    ctx = Context(topology, source, os.environ if environ is None else environ)
    passes = (_check_kinds, checks_roles.check_roles, _check_sockets, _check_depends_on,
              checks_links.check_links, checks_ipc.check_ipc)
    for run_pass in passes:
        try:
            run_pass(ctx)
        except Exception as exc:  # noqa: BLE001 - a validator bug must not hide the other findings
            ctx.diags.append(Diagnostic(
                source.file, 1, 1, "error", "E199",
                f"internal error in topo's validator ({type(exc).__name__}: {exc}); "
                "this is a bug in topo, not in your file",
                "please report it with the file that caused it"))
    return ctx.diags


def _check_kinds(ctx: Context) -> None:
    """E102: exactly one of role / run / command."""
    for name, node in ctx.topology.nodes.items():
        given = [k for k in ("role", "run", "command") if getattr(node, k) is not None]
        if len(given) == 1:
            continue
        if not given:
            ctx.emit(("nodes", name), "E102",
                     f"node {name} says neither what to run nor which role to play",
                     "give it exactly one of `role:` (proxy, echo, printer, ticker), "
                     "`run: module:function` or `command: [...]`", key=True)
        else:
            ctx.emit(("nodes", name, given[1]), "E102",
                     f"node {name} has both `{given[0]}` and `{given[1]}`, "
                     "but a node does one thing",
                     "keep exactly one of role, run and command", key=True)


def _check_sockets(ctx: Context) -> None:
    """E110 socket types, E101 option names and subscribe, W201 and W207."""
    for name, node in ctx.topology.nodes.items():
        for sname, sock in node.sockets.items():
            base = ("nodes", name, "sockets", sname)
            stype = sock.type
            if stype not in zmqrules.ALL_TYPES:
                ctx.emit(base + ("type",), "E110",
                         f"socket {name}.{sname} has the unknown type '{stype}'"
                         f"{did_you_mean(stype, zmqrules.ALL_TYPES)}",
                         "socket types are " + words(zmqrules.STANDARD_TYPES + ("STREAM",), "or"))
            elif not zmqrules.is_available(stype):
                ctx.emit(base + ("type",), "E110",
                         f"socket {name}.{sname} is a {stype} socket, a draft type that this "
                         "libzmq was built without",
                         "use a standard socket type, or a libzmq built with the draft API")
            _check_options(ctx, name, sname)
            if sock.subscribe is not None and stype not in zmqrules.SUBSCRIBERS:
                ctx.emit(base + ("subscribe",), "E101",
                         f"socket {name}.{sname} is a {stype} socket and cannot subscribe; "
                         "only SUB and XSUB sockets take `subscribe:`",
                         "remove `subscribe:`, or make the socket a SUB", key=True)
            elif (stype in zmqrules.SUBSCRIBERS and not sock.subscribe
                  # An XSUB in a proxy forwards its subscribers' subscriptions upstream.
                  and not (stype == "XSUB" and node.role == "proxy")):
                ctx.emit(base, "W201",
                         f"{stype} socket {name}.{sname} has no subscription, so it receives "
                         "nothing", "add `subscribe: \"\"` to receive every message, or list "
                         "the topic prefixes it wants", key=True)
            if stype == "ROUTER" and "router_mandatory" not in sock.options:
                ctx.emit(base, "W207",
                         f"ROUTER socket {name}.{sname} silently drops messages addressed to a "
                         "peer it does not know",
                         "set `options: {router_mandatory: 1}` so such a send fails loudly instead",
                         key=True)


def _check_options(ctx: Context, node: str, sname: str) -> None:
    options = ctx.topology.nodes[node].sockets[sname].options
    for opt, value in options.items():
        path = ("nodes", node, "sockets", sname, "options", opt)
        known = zmqrules.SOCKET_OPTIONS.get(opt)
        if known is None:
            ctx.emit(path, "E101",
                     f"socket {node}.{sname} has the unknown option '{opt}'"
                     f"{did_you_mean(opt, zmqrules.SOCKET_OPTIONS)}",
                     "options use pyzmq's lower-case names, like sndhwm, linger, router_mandatory",
                     key=True)
            continue
        if opt in READ_ONLY_OPTIONS:
            ctx.emit(path, "E101", f"option '{opt}' of socket {node}.{sname} can only be read, "
                     "not set", "remove it from `options:`", key=True)
            continue
        kind = known._opt_type.name if hasattr(known, "_opt_type") else "int"
        if kind in ("int", "int64", "fd") and not isinstance(value, int):
            ctx.emit(path, "E101", f"option '{opt}' of socket {node}.{sname} takes a whole number, "
                     f"not {value!r}", "write a number, like `1000`")
        elif kind == "bytes" and not isinstance(value, str):
            ctx.emit(path, "E101", f"option '{opt}' of socket {node}.{sname} takes a string, "
                     f"not {value!r}", "write it in quotes, like \"worker-1\"")


def _check_depends_on(ctx: Context) -> None:
    """E140: unknown names, then cycles (each named by the nodes on it)."""
    nodes = ctx.topology.nodes
    graph: dict[str, list[tuple[str, int]]] = {}
    for name, node in nodes.items():
        edges = []
        for i, dep in enumerate(node.depends_on):
            if dep in nodes:
                edges.append((dep, i))
            else:
                ctx.emit(ctx.item(("nodes", name, "depends_on"), i), "E140",
                         f"node {name} depends on '{dep}', but there is no node of that name"
                         f"{did_you_mean(dep, nodes)}", "depends_on lists names of other nodes")
        graph[name] = edges
    # Iterative depth-first search: a 10,000-node chain must not hit the recursion limit.
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for root in graph:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            name, nxt = stack[-1]
            if nxt == len(graph[name]):
                state[name] = 2
                stack.pop()
                continue
            stack[-1] = (name, nxt + 1)
            dep, index = graph[name][nxt]
            if state.get(dep) == 1:
                on_stack = [n for n, _ in stack]
                cycle = on_stack[on_stack.index(dep):] + [dep]
                ctx.emit(ctx.item(("nodes", name, "depends_on"), index), "E140",
                         f"depends_on forms a cycle: {' -> '.join(cycle)}",
                         "a node cannot wait for itself; drop one of these dependencies")
            elif dep not in state:
                state[dep] = 1
                stack.append((dep, 0))
