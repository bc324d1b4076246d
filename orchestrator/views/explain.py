"""`topo explain`: a topology told in plain words, for someone who does not know ZeroMQ.

What each node is and how many copies run, what each socket does with
messages, who waits for whom and who goes to whom, which way the messages flow
over each link, the IPC resources, and then what ``topo validate`` warns
about, each with its hint. With ``security: {curve: true}``, a line at the top
says so and a Security section tells for each link whether CURVE encrypts and
authenticates it, only encrypts it (a command node binds) or leaves it plain
(inproc, a peer outside the file). Pure: text in, text out. The vocabulary
lives in ``words.py``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from orchestrator.spec import zmqrules
from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.links import Link, SocketRef, links
from orchestrator.spec.model import IpcSpec, NodeSpec, SocketSpec, Topology
from orchestrator.spec.phrases import words
from orchestrator.spec.security import AUTHENTICATED, ENCRYPTED, PLAIN, link_security
from orchestrator.units import format_duration
from orchestrator.views.graph import human_size
from orchestrator.views.words import (
    CURVE_COMMAND_TEXT,
    CURVE_LINE,
    CURVE_TEXT,
    FLOW_TEXT,
    IPC_TEXT,
    PRIMER_IPC,
    PRIMER_ZMQ,
    PROXY_GENERIC,
    PROXY_KIND,
    READY_TEXT,
    RESTART_TEXT,
    ROLE_TEXT,
    SOCKET_TEXT,
    option_words,
    subscription_words,
    where_words,
)

WIDTH = 88


def explain(topology: Topology, diagnostics: Iterable[Diagnostic] = ()) -> str:
    """The whole explanation, ending with a newline."""
    all_links = links(topology)
    parts = [_heading(f"Topology {topology.name}", "=")]
    parts.append(_para(topology.description or "(This file has no description.)"))
    parts.append(_para(_summary(topology, all_links)))
    if topology.security.curve:
        parts.append(_para(CURVE_LINE))
    if any(node.sockets for node in topology.nodes.values()):
        parts.append(_para(PRIMER_ZMQ))
    if topology.ipc:
        parts.append(_para(PRIMER_IPC))
    parts.append(_heading("Nodes", "-"))
    for name, node in topology.nodes.items():
        parts.append(_node(topology, name, node, all_links))
    flows = [_flow(topology, lk) for lk in all_links if lk.internal and not lk.problem]
    if flows:
        parts.append(_heading("How messages flow", "-"))
        parts.append("\n".join(flows))
    if topology.security.curve:
        parts.append(_heading("Security", "-"))
        parts.extend(_security(topology, all_links))
    if topology.ipc:
        parts.append(_heading("IPC resources", "-"))
        parts.extend(_ipc(topology, name, res) for name, res in topology.ipc.items())
    parts.extend(_diagnostics(list(diagnostics)))
    return "\n\n".join(parts) + "\n"


def _summary(topology: Topology, all_links: Sequence[Link]) -> str:
    processes = sum(n.replicas for n in topology.nodes.values())
    n_nodes = len(topology.nodes)
    parts = [f"{_count(n_nodes, 'node')} ({_count(processes, 'process', 'processes')} in all)"]
    if all_links or not topology.ipc:
        parts.append(f"{_count(len(all_links), 'link')} between sockets")
    if topology.ipc:
        parts.append(_count(len(topology.ipc), "IPC resource"))
    return f"It has {words(parts)}."


def _node(topology: Topology, name: str, node: NodeSpec, all_links: Sequence[Link]) -> str:
    one = node.replicas == 1
    last = f"{name}.{node.replicas - 1}"
    copies = ("1 process" if one else f"{node.replicas} identical processes ({name}.0 "
              f"{'and' if node.replicas == 2 else 'to'} {last})")
    it = "It" if one else "Each"
    if node.role is not None:
        what = f"{it} runs topo's built-in role `{node.role}`, which {_role(node)}"
    elif node.run is not None:
        module, _, func = node.run.partition(":")
        ready = ("with its sockets already made, bound and connected" if node.sockets
                 else "with its IPC resources already open" if node.ipc else "")
        what = (f"{it} calls the Python function `{func}` from module `{module}` "
                f"({module.replace('.', '/')}.py) in a process forked from topo"
                f"{', ' + ready if ready else ''}.")
    else:
        what = f"{it} runs the program `{' '.join(node.command or [])}`" + (
            ", which makes its own sockets; topo hands it their addresses in "
            "TOPO_SOCKET_<NAME> variables." if node.sockets else ".")
    lines = [f"{name}: {copies}. {what}"]
    if node.with_ and node.role is None:
        params = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                           for k, v in node.with_.items())
        lines.append(f"Its `with:` parameters reach the function as node.params: {params}.")
    if node.depends_on:
        lines.append(f"It starts once {words(node.depends_on)} "
                     f"{'is' if len(node.depends_on) == 1 else 'are'} ready.")
    if node.ready is not None:
        kind = node.ready.kind
        value = getattr(node.ready, kind)
        value = " ".join(value) if isinstance(value, list) else value
        lines.append(f"It counts as ready once {READY_TEXT[kind].format(value=value)} "
                     f"(topo waits up to {format_duration(node.ready.timeout)}).")
    lines.append(RESTART_TEXT.get(node.restart, f"restart: {node.restart}."))
    if node.restart != "never" and {"backoff", "max_restarts"} & node.model_fields_set:
        lines.append(_backoff(node))
    if node.ipc:
        where = ("in node.ipc" if node.command is None
                 else "the program finds them in TOPO_IPC_<NAME>_* variables")
        lines.append(f"It uses the IPC resource{'s' if len(node.ipc) > 1 else ''} "
                     f"{words(node.ipc)} ({where}).")
    out = [_para(" ".join(lines))]
    if not node.sockets:
        out.append(_para("It has no ZeroMQ sockets.", indent=2))
    for sname, spec in node.sockets.items():
        out.append(_socket(topology, SocketRef(name, sname), spec, node, all_links))
    return "\n".join(out)


def _backoff(node: NodeSpec) -> str:
    b = node.backoff
    times = "twice" if b.factor == 2 else f"{b.factor:g} times"
    grows = (f"{times} as long after each quick failure in a row, up to "
             f"{format_duration(b.max)}" if b.factor > 1 else "the same delay each time")
    return (f"It waits {format_duration(b.initial)} before restarting, then {grows}; after "
            f"{node.max_restarts} restarts within {format_duration(node.restart_window)} "
            "topo gives up and marks it failed.")


def _role(node: NodeSpec) -> str:
    if node.role == "ticker":
        params: dict[str, Any] = node.with_
        interval = params.get("interval", "1s")
        seconds = interval if isinstance(interval, int | float) else None
        every = format_duration(float(seconds)) if seconds is not None else str(interval)
        count = params.get("count", 0)
        times = "forever" if count in (0, "0") else f"{count} times, then it ends"
        topic = params.get("topic", "")
        payload = params.get("payload", "tick {n}")
        topic_text = f"with the topic '{topic}'" if topic else "with no topic"
        return (f"sends a message every {every}, {times}, {topic_text} and the payload "
                f"'{payload}' ({{n}} counts up from 1).")
    if node.role == "proxy":
        front, back = (node.sockets[s].type if s in node.sockets else ""
                       for s in ("frontend", "backend"))
        return f"{ROLE_TEXT['proxy']} {PROXY_KIND.get((front, back), PROXY_GENERIC)}"
    if node.role in ROLE_TEXT:
        return ROLE_TEXT[node.role]
    return "topo does not know (`topo validate` says more)."


def _socket(topology: Topology, me: SocketRef, spec: SocketSpec, node: NodeSpec,
            all_links: Sequence[Link]) -> str:
    pattern = zmqrules.PATTERNS.get(spec.type)
    plain = SOCKET_TEXT.get(spec.type, "is of a type without a plain-words description here")
    text = [f"- Socket `{me.socket}` ({spec.type}) {plain}"
            + (f" (in ZeroMQ terms: {pattern})." if pattern else ".")]
    binds = [f"{ep.endpoint}{where_words(ep.endpoint)}" for ep in spec.bind]
    if len(binds) == 1:
        text.append(f"It binds: it waits for peers at {binds[0]}.")
    elif binds:
        text.append(f"It binds {len(binds)} addresses and waits for peers at all of them at "
                    f"once, as one socket: {'; '.join(binds)}.")
    for ep in spec.bind:
        if ep.external:
            text.append(f"{'That address' if len(binds) == 1 else ep.endpoint} is marked "
                        "external: a program outside this topology connects there.")
    mine = [lk for lk in all_links if lk.connector == me]
    good = [lk for lk in mine if lk.binder is not None and not lk.problem
            and lk.binder.node != me.node]
    if len(good) > 1:  # one socket, several peers: say it in one sentence
        peers = [f"{lk.binder} ({lk.binder_type}{_copies(topology, lk.binder)}){_over(lk)}"
                 for lk in good if lk.binder is not None]
        text.append(f"It connects to {words(peers)}.")
    text.extend(_outgoing(topology, lk) for lk in mine if len(good) < 2 or lk not in good)
    incoming = [lk for lk in all_links if lk.binder == me and lk.connector is not None]
    if incoming:
        who = [f"{lk.connector} ({lk.connector_type}{_copies(topology, lk.connector)})"
               f"{_over(lk)}" for lk in incoming if lk.connector is not None]
        text.append(f"Connected to it: {words(who)}.")
    if not spec.bind and not spec.connect:
        text.append("It neither binds nor connects, so nothing reaches it.")
    elif not incoming and not any(lk.connector == me for lk in all_links) and not any(
            e.external for e in spec.bind):
        text.append("No socket in this file connects to it.")
    if spec.type in zmqrules.SUBSCRIBERS:
        text.append(subscription_words(spec.type, spec.subscribe))
    if spec.options:
        opts = [option_words(k, v) for k, v in spec.options.items()]
        text.append(f"Options: {'; '.join(opts)}.")
    if node.command is not None:
        text.append(f"The program finds the address(es) in TOPO_SOCKET_{me.socket.upper()}.")
    return _para(" ".join(text), indent=2, hang=4)


def _outgoing(topology: Topology, link: Link) -> str:
    if link.binder is not None and not link.problem:
        if link.connector is not None and link.binder.node == link.connector.node:
            return (f"It connects to {link.binder} ({link.binder_type}), a socket of this same "
                    f"node,{_over(link)}: both ends live in one process, for example in two of its "
                    "threads.")
        return (f"It connects to {link.binder} ({link.binder_type}"
                f"{_copies(topology, link.binder)}){_over(link)}.")
    if link.problem:
        return f"It connects to {link.endpoint}, which does not work: {link.problem}."
    if link.external:
        return (f"It connects to {link.endpoint}, a peer outside this topology "
                "(marked external).")
    return (f"It connects to {link.endpoint}, but no node of this file binds that address, so "
            "its peer has to come from outside.")


def _flow(topology: Topology, link: Link) -> str:
    assert link.connector is not None and link.binder is not None
    a = (link.connector, link.connector_type or "?")
    b = (link.binder, link.binder_type or "?")
    key = (a[1], b[1])
    if key not in FLOW_TEXT and key[::-1] in FLOW_TEXT:
        key = key[::-1]
        a, b = b, a
    one_way, what = FLOW_TEXT.get(key, (False, "these two socket types cannot talk"))
    arrow = "->" if one_way else "<->"
    ends = [f"{ref} ({kind}{_copies(topology, ref)})" for ref, kind in (a, b)]
    return _para(f"- {ends[0]} {arrow} {ends[1]}{_over(link)}: {what}.", hang=2)


def _security(topology: Topology, all_links: Sequence[Link]) -> list[str]:
    """The Security section: what CURVE does, then what it does to each working link."""
    n_allow = len(topology.security.allow)
    allow = (f", the clients whose keys security.allow names ({_count(n_allow, 'file')}) and "
             "those given with `topo up --allow`" if n_allow
             else " and the clients given with `topo up --allow`")
    out = [_para(CURVE_TEXT.format(allow=allow))]
    told = [(lk, how) for lk in all_links if (how := link_security(topology, lk))]
    if any(how != PLAIN and topology.nodes[ref.node].command is not None
           for lk, how in told for ref in (lk.connector, lk.binder) if ref is not None):
        out.append(_para(CURVE_COMMAND_TEXT))
    if told:
        out.append("\n".join(_para(f"- {_ends(lk)}: {_protection(topology, lk, how)}.", hang=2)
                             for lk, how in told))
    else:
        out.append(_para("No link of this file works yet, so CURVE has nothing to protect."))
    return out


def _ends(link: Link) -> str:
    """Who joins whom over a link, connecting end first."""
    binder = (f"{link.binder} ({link.binder_type})" if link.binder is not None
              else link.endpoint)
    if link.connector is None:
        return f"a peer outside this topology to {binder} at {link.endpoint}{_over(link)}"
    return f"{link.connector} ({link.connector_type}) to {binder}{_over(link)}"


def _protection(topology: Topology, link: Link, how: str) -> str:
    if how == AUTHENTICATED:
        if link.connector is None:
            return ("encrypted and authenticated: only the clients of security.allow and "
                    "`topo up --allow` get in")
        return "encrypted and authenticated"
    if how == ENCRYPTED:
        assert link.binder is not None
        return (f"encrypted only: {link.binder.node} is a command node, which does not check "
                "who connects")
    if link.transport == "inproc":
        return "plain: inproc never leaves its process"
    if not link.transport or link.transport not in ("tcp", "ipc"):
        return f"plain: CURVE does not cover {link.transport or 'this transport'}"
    return "plain: a peer outside this file, for which topo has no key"


def _over(link: Link) -> str:
    return f" over {link.transport}" if link.transport else ""


def _copies(topology: Topology, ref: SocketRef) -> str:
    node = topology.nodes.get(ref.node)
    return f", {node.replicas} copies" if node is not None and node.replicas > 1 else ""


def _ipc(topology: Topology, name: str, res: IpcSpec) -> str:
    text = [f"{name}: {IPC_TEXT[res.type]}."]
    if res.size is not None:
        text.append(f"Size: {human_size(res.size)}.")
    if res.max_bytes is not None:
        text.append(f"It holds at most {human_size(res.max_bytes)} of waiting messages.")
    if res.type == "semaphore":
        text.append(f"It starts at {res.value if res.value is not None else 0}.")
    if res.type in ("msgqueue", "shm", "semaphore"):
        key = "topo picks its key" if res.key == "auto" else f"Its key is {res.key}"
        who = "only your user may use it" if res.mode == 0o600 else "its permissions are"
        text.append(f"{key[0].upper()}{key[1:]}, and {who} (mode {oct(res.mode)}).")
    if res.between:
        text.append(f"It joins {words(res.between)}.")
    users = [n for n, spec in topology.nodes.items() if name in spec.ipc]
    text.append(f"Used by {words(users)}." if users else "No node lists it under `ipc:`.")
    text.append("topo makes it before any node starts and removes it when the run ends.")
    return _para(" ".join(text))


def _diagnostics(diags: list[Diagnostic]) -> list[str]:
    title = "Errors and warnings" if any(d.is_error for d in diags) else "Warnings"
    if any(d.is_note for d in diags):
        title = title.replace(" and ", ", ") + " and notes"
    out = [_heading(title, "-")]
    if not diags:
        out.append(_para("None: `topo validate` finds nothing to warn about."))
    for d in diags:
        kind = "Error" if d.is_error else "Note" if d.is_note else "Warning"
        text = _para(f"{kind} {d.code}, line {d.line}: {_sentence(d.message)}")
        if d.hint:
            text += "\n" + _para(f"What to do: {_sentence(d.hint)}", indent=2)
        out.append(text)
    return out


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _heading(text: str, underline: str) -> str:
    return f"{text}\n{underline * len(text)}"


def _para(text: str, indent: int = 0, hang: int = 2) -> str:
    pad = " " * indent
    return textwrap.fill(text, WIDTH, initial_indent=pad, subsequent_indent=pad + " " * hang,
                         break_long_words=False, break_on_hyphens=False)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"
