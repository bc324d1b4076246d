"""`topo explain`: a topology told in plain words, for someone who does not know ZeroMQ.

What each node is and how many copies run, what each socket does with
messages, who waits for whom and who goes to whom, the IPC resources, and then
what ``topo validate`` warns about, each with its hint. Pure: text in, text out.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from . import zmqrules
from .checks import words
from .checks_endpoints import WILDCARD_HOSTS, WILDCARD_PORTS
from .diagnostics import Diagnostic
from .graph import human_size
from .links import Link, SocketRef, links, split_tcp
from .model import IpcSpec, NodeSpec, SocketSpec, Topology
from .units import format_duration

WIDTH = 88

ROLE_TEXT = {
    "proxy": "passes every message that arrives on its frontend socket out of its backend "
             "socket, and everything that comes back the other way, so the two sides never need "
             "to know each other (libzmq's own zmq_proxy; with a capture socket it also copies "
             "all traffic there). With ROUTER/DEALER it is a broker, with XSUB/XPUB a "
             "forwarder, with PULL/PUSH a streamer.",
    "echo": "sends every message it receives straight back on the same socket, or forwards "
            "what arrives on its `in` socket to its `out` socket.",
    "printer": "prints every message it receives: the socket, the topic and each frame.",
}

IPC_TEXT = {
    "msgqueue": "a System V message queue: processes put messages in and take them out in "
                "order, on this machine only, with no network in between",
    "shm": "a System V shared-memory segment: memory that several processes see at once, the "
           "fastest way to share data, as long as they agree who writes when",
    "semaphore": "a System V semaphore: a counter processes use to take turns (wait makes it "
                 "smaller and blocks at zero, post makes it bigger)",
    "socketpair": "a Unix socket pair: two connected sockets made before the nodes start, one "
                  "end for each of two nodes, kept across restarts",
    "fifo": "a named pipe (FIFO) in the run's private folder: one process writes bytes in, "
            "another reads them out, like a shell pipe with a name",
}

OPTION_TEXT = {
    "linger": "how long unsent messages may wait to leave once the socket closes, in ms",
    "router_mandatory": "a message to an unknown peer is an error instead of vanishing",
    "sndhwm": "at most this many outgoing messages queue per peer",
    "rcvhwm": "at most this many incoming messages queue per peer",
    "identity": "the name peers see for this socket",
    "routing_id": "the name peers see for this socket",
    "rcvtimeo": "a receive gives up after this many ms",
    "sndtimeo": "a send gives up after this many ms",
    "immediate": "queue messages only for peers that are really connected",
    "conflate": "keep only the latest message",
    "reconnect_ivl": "wait this many ms before reconnecting",
}

RESTART_TEXT = {
    "never": "Once it ends, topo leaves it ended (restart: never).",
    "on-failure": "If it fails, topo starts it again (restart: on-failure).",
    "always": "Whenever it ends, topo starts it again (restart: always).",
}


def explain(topology: Topology, diagnostics: Iterable[Diagnostic] = ()) -> str:
    """The whole explanation, ending with a newline."""
    all_links = links(topology)
    parts = [_heading(f"Topology {topology.name}", "=")]
    parts.append(_para(topology.description or "(This file has no description.)"))
    parts.append(_para(_summary(topology, all_links)))
    parts.append(_heading("Nodes", "-"))
    for name, node in topology.nodes.items():
        parts.append(_node(topology, name, node, all_links))
    if topology.ipc:
        parts.append(_heading("IPC resources", "-"))
        parts.extend(_ipc(topology, name, res) for name, res in topology.ipc.items())
    parts.extend(_diagnostics(list(diagnostics)))
    return "\n\n".join(parts) + "\n"


def _summary(topology: Topology, all_links: Sequence[Link]) -> str:
    processes = sum(n.replicas for n in topology.nodes.values())
    n_nodes = len(topology.nodes)
    text = (f"It has {_count(n_nodes, 'node')} ({_count(processes, 'process', 'processes')} "
            f"in all) and {_count(len(all_links), 'link')} between sockets")
    if topology.ipc:
        text += f", and {_count(len(topology.ipc), 'IPC resource')}"
    text += (". A socket that binds waits at an address for peers to come; a socket that "
             "connects goes to a peer's address. Messages flow both ways once they are linked.")
    return text


def _node(topology: Topology, name: str, node: NodeSpec, all_links: Sequence[Link]) -> str:
    one = node.replicas == 1
    copies = ("1 process" if one
              else f"{node.replicas} identical processes ({name}.0 to {name}.{node.replicas - 1})")
    it = "It" if one else "Each"
    if node.role is not None:
        what = f"{it} runs topo's built-in role `{node.role}`, which {_role(node)}"
    elif node.run is not None:
        module, _, func = node.run.partition(":")
        what = (f"{it} calls the Python function `{func}` from module `{module}` in a process "
                "forked from topo, with its sockets already made, bound and connected.")
    else:
        what = (f"{it} runs the program `{' '.join(node.command or [])}`, which makes its own "
                "sockets; topo hands it their addresses in TOPO_SOCKET_<NAME> variables.")
    lines = [f"{name}: {copies}. {what}"]
    if node.with_ and node.role is None:
        params = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                           for k, v in node.with_.items())
        lines.append(f"Its `with:` parameters reach the function as node.params: {params}.")
    if node.depends_on:
        lines.append(f"It starts once {words(node.depends_on)} "
                     f"{'is' if len(node.depends_on) == 1 else 'are'} ready.")
    lines.append(RESTART_TEXT.get(node.restart, f"restart: {node.restart}."))
    if node.ipc:
        lines.append(f"It uses the IPC resource{'s' if len(node.ipc) > 1 else ''} "
                     f"{words(node.ipc)}.")
    out = [_para(" ".join(lines))]
    if not node.sockets:
        out.append(_para("It has no ZeroMQ sockets.", indent=2))
    for sname, spec in node.sockets.items():
        out.append(_socket(topology, SocketRef(name, sname), spec, node, all_links))
    return "\n".join(out)


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
    if node.role in ROLE_TEXT:
        return ROLE_TEXT[node.role]
    return "topo does not know (`topo validate` says more)."


def _socket(topology: Topology, me: SocketRef, spec: SocketSpec, node: NodeSpec,
            all_links: Sequence[Link]) -> str:
    pattern = zmqrules.PATTERNS.get(spec.type, "a type without a plain-words description here")
    text = [f"- Socket `{me.socket}` ({spec.type}): {pattern}."]
    for ep in spec.bind:
        text.append(f"It binds: it waits for peers at {ep.endpoint}{_where(ep.endpoint)}.")
        if ep.external:
            text.append("That address is marked external: a program outside this topology "
                        "connects there.")
    for link in all_links:
        if link.connector == me:
            text.append(_outgoing(topology, link))
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
        text.append(_subscriptions(spec.subscribe))
    if spec.options:
        opts = [_option(k, v) for k, v in spec.options.items()]
        text.append(f"Options: {'; '.join(opts)}.")
    if node.command is not None:
        text.append(f"The program finds the address(es) in TOPO_SOCKET_{me.socket.upper()}.")
    return _para(" ".join(text), indent=2, hang=4)


def _option(name: str, value: object) -> str:
    shown = f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"
    return f"{shown} ({OPTION_TEXT[name]})" if name in OPTION_TEXT else shown


def _outgoing(topology: Topology, link: Link) -> str:
    if link.binder is not None and not link.problem:
        return (f"It connects to {link.binder} ({link.binder_type}"
                f"{_copies(topology, link.binder)}){_over(link)}.")
    if link.problem:
        return f"It connects to {link.endpoint}, which does not work: {link.problem}."
    if link.external:
        return (f"It connects to {link.endpoint}, a peer outside this topology "
                "(marked external).")
    return (f"It connects to {link.endpoint}, but no node of this file binds that address, so "
            "its peer has to come from outside.")


def _over(link: Link) -> str:
    return f" over {link.transport}" if link.transport else ""


def _copies(topology: Topology, ref: SocketRef) -> str:
    node = topology.nodes.get(ref.node)
    return f", {node.replicas} copies" if node is not None and node.replicas > 1 else ""


def _where(endpoint: str) -> str:
    transport = endpoint.partition("://")[0].lower()
    tcp = split_tcp(endpoint)
    if tcp is not None:
        host, port = tcp
        bits = []
        if port in WILDCARD_PORTS:
            bits.append("topo picks a free port when the run starts")
        if host in WILDCARD_HOSTS:
            bits.append("on every network interface, so other machines can reach it too")
        return f" ({'; '.join(bits)})" if bits else ""
    if transport == "ipc":
        path = endpoint.partition("://")[2]
        if path.startswith("/"):
            return " (a Unix socket file at that absolute path)"
        return " (a Unix socket file inside the run's private folder)"
    if transport == "inproc":
        return " (inside one process only)"
    return ""


def _subscriptions(topics: list[str] | None) -> str:
    if not topics:
        return ("It has no subscription, so it receives nothing: a subscriber must say which "
                "topics it wants.")
    if "" in topics:
        return "It subscribes to everything (the empty prefix)."
    return ("It only takes messages whose first frame starts with "
            f"{words([repr(t) for t in topics], 'or')}.")


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
    out = [_heading(title, "-")]
    if not diags:
        out.append(_para("None: `topo validate` finds nothing to warn about."))
    for d in diags:
        kind = "Error" if d.is_error else "Warning"
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
