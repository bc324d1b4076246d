"""Each node and socket on its own: what a node runs, socket types and options, depends_on.

    E102  exactly one of role / run / command
    E110  socket types; E101 socket options and `subscribe:` on a non-subscriber
    W201  a subscriber with no subscription; W207 a ROUTER that drops unroutable messages
    E140  depends_on names that are no node, and cycles (from ``depgraph``)
"""

from __future__ import annotations

from orchestrator.spec import zmqrules
from orchestrator.spec.checks.context import Context
from orchestrator.spec.depgraph import dependency_order
from orchestrator.spec.phrases import did_you_mean, quote_boolean, words

# Options that libzmq only lets a program read: setting them fails at run time.
READ_ONLY_OPTIONS = frozenset({"type", "rcvmore", "fd", "events", "last_endpoint", "mechanism",
                               "thread_safe"})


def check_kinds(ctx: Context) -> None:
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


def check_sockets(ctx: Context) -> None:
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
            written = ctx.source.written_boolean(*path)
            ctx.emit(path, "E101", f"option '{opt}' of socket {node}.{sname} takes a string, "
                     f"not {value!r}", "write it in quotes, like \"worker-1\"" if written is None
                     else quote_boolean(written))


def check_depends_on(ctx: Context) -> None:
    """E140: unknown names, then cycles (each named by the nodes on it)."""
    nodes = ctx.topology.nodes
    order = dependency_order({name: node.depends_on for name, node in nodes.items()})
    for bad in order.unknown:
        ctx.emit(ctx.item(("nodes", bad.node, "depends_on"), bad.index), "E140",
                 f"node {bad.node} depends on '{bad.name}', but there is no node of that name"
                 f"{did_you_mean(bad.name, nodes)}", "depends_on lists names of other nodes")
    for cycle in order.cycles:
        ctx.emit(ctx.item(("nodes", cycle.node, "depends_on"), cycle.index), "E140",
                 f"depends_on forms a cycle: {' -> '.join(cycle.nodes)}",
                 "a node cannot wait for itself; drop one of these dependencies")
