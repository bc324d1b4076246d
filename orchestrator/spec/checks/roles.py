"""E103: the built-in roles' contract (docs/reference.md#built-in-roles), which the runtime
implements exactly.

    proxy    sockets frontend and backend, optional capture, nothing else; no `with:`
    echo     one socket that receives and sends back on itself, or `in` + `out`; no `with:`
    printer  one or more receiving sockets; no `with:`
    ticker   exactly one sending socket; with: interval, count, topic, payload
"""

from __future__ import annotations

import string
from typing import Any

from orchestrator import units
from orchestrator.spec.checks.context import Context
from orchestrator.spec.phrases import did_you_mean, quote_boolean

ROLES = ("proxy", "echo", "printer", "ticker")

# Types that can sit in a receive loop. REQ must send first and REP must answer
# before its next receive, so neither can just keep receiving.
RECEIVING = frozenset({"SUB", "XSUB", "PULL", "DEALER", "ROUTER", "PAIR", "XPUB", "STREAM",
                       "DISH", "GATHER", "SERVER", "CLIENT", "PEER", "CHANNEL", "DGRAM"})
# Types that can send without being asked. REQ may tick (the runtime reads each reply).
SENDING = frozenset({"PUB", "PUSH", "PAIR", "DEALER", "XPUB", "REQ", "RADIO", "SCATTER",
                     "CLIENT", "CHANNEL"})
# One socket that receives a message and sends it back. XPUB / XSUB are left out on
# purpose: echoing data as subscriptions (or the reverse) is never what is meant.
ECHOING = frozenset({"REP", "ROUTER", "DEALER", "PAIR", "STREAM", "SERVER", "CLIENT", "PEER",
                     "CHANNEL", "DGRAM"})

TICKER_PARAMS = ("interval", "count", "topic", "payload")
PAYLOAD_FIELDS = ("n", "node", "replica", "time")


def check_roles(ctx: Context) -> None:
    for name, node in ctx.topology.nodes.items():
        role = node.role
        if role is None:
            continue
        if role not in ROLES:
            ctx.emit(("nodes", name, "role"), "E103",
                     f"node {name} has the unknown role '{role}'{did_you_mean(role, ROLES)}",
                     "the built-in roles are proxy, echo, printer and ticker; "
                     "for your own code use `run:` or `command:`")
            continue
        if role != "ticker" and node.with_:
            ctx.emit(("nodes", name, "with"), "E103",
                     f"the {role} role of node {name} takes no parameters",
                     "remove `with:`", key=True)
        {"proxy": _proxy, "echo": _echo, "printer": _printer, "ticker": _ticker}[role](ctx, name)


def _types(ctx: Context, name: str) -> dict[str, str]:
    return {s: spec.type for s, spec in ctx.topology.nodes[name].sockets.items()}


def _role_pos(name: str) -> tuple[str, ...]:
    return ("nodes", name, "role")


def _proxy(ctx: Context, name: str) -> None:
    socks = _types(ctx, name)
    missing = [s for s in ("frontend", "backend") if s not in socks]
    if missing:
        ctx.emit(_role_pos(name), "E103",
                 f"the proxy node {name} needs sockets named frontend and backend; "
                 f"it has no {' and no '.join(missing)}",
                 "declare `frontend:` (facing the clients) and `backend:` (facing the workers) "
                 "under `sockets:`")
    for s in socks:
        if s not in ("frontend", "backend", "capture"):
            ctx.emit(("nodes", name, "sockets", s), "E103",
                     f"the proxy node {name} cannot use a socket named {s}",
                     "a proxy has exactly frontend, backend and optionally capture", key=True)


def _echo(ctx: Context, name: str) -> None:
    socks = _types(ctx, name)
    if len(socks) == 1:
        (s, stype), = socks.items()
        if stype not in ECHOING:
            ctx.emit(("nodes", name, "sockets", s, "type"), "E103",
                     f"the echo node {name} sends each message back on {name}.{s}, but a {stype} "
                     "socket cannot both receive and send that way",
                     "use a REP, ROUTER, DEALER or PAIR socket, or two sockets named in and out")
        return
    if set(socks) != {"in", "out"}:
        ctx.emit(_role_pos(name), "E103",
                 f"the echo node {name} needs either one socket or two named in and out "
                 f"(it has {len(socks)}: {', '.join(socks) or 'none'})",
                 "give it one REP/ROUTER/DEALER/PAIR socket, or `in` (receives) and `out` (sends)")
        return
    if socks["in"] not in RECEIVING:
        ctx.emit(("nodes", name, "sockets", "in", "type"), "E103",
                 f"the echo node {name} receives on {name}.in, but a {socks['in']} socket "
                 "cannot keep receiving", "make `in` a SUB, PULL, DEALER, ROUTER or PAIR socket")
    if socks["out"] not in SENDING or socks["out"] == "REQ":
        ctx.emit(("nodes", name, "sockets", "out", "type"), "E103",
                 f"the echo node {name} sends on {name}.out, but a {socks['out']} socket "
                 "cannot send on its own", "make `out` a PUB, PUSH, DEALER or PAIR socket")


def _printer(ctx: Context, name: str) -> None:
    socks = _types(ctx, name)
    if not socks:
        ctx.emit(_role_pos(name), "E103", f"the printer node {name} has no socket to print from",
                 "give it at least one receiving socket, like a SUB or a PULL")
    for s, stype in socks.items():
        if stype not in RECEIVING:
            ctx.emit(("nodes", name, "sockets", s, "type"), "E103",
                     f"the printer node {name} prints what {name}.{s} receives, but a {stype} "
                     "socket cannot keep receiving",
                     "printer sockets are SUB, XSUB, PULL, DEALER, ROUTER, PAIR or XPUB")


def _ticker(ctx: Context, name: str) -> None:
    socks = _types(ctx, name)
    if len(socks) != 1:
        ctx.emit(_role_pos(name), "E103",
                 f"the ticker node {name} needs exactly one socket to send on "
                 f"(it has {len(socks)})", "give it one PUB, PUSH, DEALER or PAIR socket")
    else:
        (s, stype), = socks.items()
        if stype not in SENDING:
            ctx.emit(("nodes", name, "sockets", s, "type"), "E103",
                     f"the ticker node {name} sends on {name}.{s}, but a {stype} socket cannot "
                     "send on its own", "use a PUB, PUSH, DEALER or PAIR socket")
    for key, value in ctx.topology.nodes[name].with_.items():
        path = ("nodes", name, "with", key)
        if key not in TICKER_PARAMS:
            ctx.emit(path, "E103", f"the ticker role has no parameter '{key}'"
                     f"{did_you_mean(key, TICKER_PARAMS)}",
                     "ticker takes interval, count, topic and payload", key=True)
            continue
        problem = _ticker_param(key, value)
        if problem:
            written = ctx.source.written_boolean(*path) if key in ("topic", "payload") else None
            ctx.emit(path, "E103", f"ticker node {name}: {problem}",
                     _PARAM_HINTS[key] if written is None else quote_boolean(written))


_PARAM_HINTS = {
    "interval": "write a duration like 250ms, 1s or 1m",
    "count": "write a whole number; 0 ticks forever",
    "topic": "write the topic as text, like \"weather\"",
    "payload": "fields are {n}, {node}, {replica} and {time}; write {{ for a literal brace",
}


def _ticker_param(key: str, value: Any) -> str:
    if key == "interval":
        try:
            if units.parse_duration(value) <= 0:
                return "interval must be longer than zero"
        except ValueError as exc:
            return str(exc)
        return ""
    if key == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"count must be a whole number, zero or more (got {value!r})"
        return ""
    if not isinstance(value, str):
        return f"{key} must be text (got {value!r})"
    if key == "payload":
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:
            return f"payload is not a valid template: {exc}"
        unknown = [f for f in fields if f.split(".")[0].split("[")[0].split("!")[0] not in
                   PAYLOAD_FIELDS]
        if unknown:
            return f"payload uses the unknown field {{{unknown[0]}}}"
    return ""
