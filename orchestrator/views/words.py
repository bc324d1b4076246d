"""The words `topo explain` uses: what each socket type, link, role, IPC resource and option
does, said for someone who has never used ZeroMQ, and the small phrases built from a
socket's settings. Pure; ``explain.py`` puts it all together.
"""

from __future__ import annotations

from orchestrator.spec.endpoints import WILDCARD_HOSTS, WILDCARD_PORTS
from orchestrator.spec.links import split_tcp
from orchestrator.spec.phrases import words

PRIMER_ZMQ = (
    "How to read this: topo starts each node as a process (or as several identical copies). "
    "The nodes talk through ZeroMQ sockets, and a socket's type decides what it does with "
    "messages: ask and answer (REQ, REP), route by sender (ROUTER, DEALER), broadcast by "
    "topic (PUB, SUB), hand out work (PUSH, PULL). Of the two ends of a link, one binds: it "
    "waits at an address; the other connects to that address. Which end binds only decides "
    "who waits for whom, not which way the messages go."
)

PRIMER_IPC = (
    "IPC resources are things the kernel keeps so that processes on this machine can share "
    "data or take turns without a network: message queues, shared memory, semaphores, socket "
    "pairs and named pipes. topo makes them before any node starts, hands each one to the "
    "nodes that list it under `ipc:`, and removes them when the run ends."
)

# With security.curve: the line at the top, and what the Security section starts with.
CURVE_LINE = (
    "Security: CURVE is on (`security: {curve: true}`): the links on tcp and ipc between "
    "the nodes of this file are encrypted; the Security section below says which link gets "
    "what."
)

CURVE_TEXT = (
    "topo makes a key pair for every node of each run (`topo keys RUN` prints the public "
    "keys). A link on tcp or ipc between two nodes of this file is encrypted with CURVE. It is "
    "authenticated too when the node that binds is a `run` or `role` node: that socket lets "
    "in only the nodes this file connects to it{allow}, and refuses any other key. A `command` "
    "node that binds encrypts but does not check who connects: its program has no topo ZAP "
    "handler (unless it is Python and uses orchestrator.node.from_env()), so any client that "
    "knows the node's public key gets in. inproc links never leave their process and stay "
    "plain, and so do connects to peers outside this file: topo has no key for them."
)

CURVE_COMMAND_TEXT = (
    "A `command` node sets CURVE on its sockets itself: topo hands it its key pair "
    "(TOPO_CURVE_SECRET_FILE, TOPO_CURVE_PUBLIC_KEY) and, per socket, the public keys of the "
    "nodes it connects to (TOPO_SOCKET_<NAME>_SERVERKEY)."
)

# What a socket of each type does, as a clause after "Socket `x` (TYPE)".
SOCKET_TEXT = {
    "REQ": "asks and waits: each request it sends must get its reply before it may send the "
           "next one; with several peers it asks them in turn",
    "REP": "answers: it takes one request at a time, from its peers in turn, and must send "
           "the reply before it reads the next request",
    "DEALER": "sends and receives freely, with no waiting for replies: it hands its messages "
              "to its peers in turn and takes what comes back from all of them",
    "ROUTER": "knows who is who: ZeroMQ puts the sender's identity in front of every message "
              "it receives, and the first frame of every message it sends names the peer "
              "that gets it",
    "PUB": "broadcasts: each message goes to every connected subscriber whose subscription "
           "matches its start; it never waits, and a subscriber not connected yet misses it",
    "SUB": "listens: it receives what its publishers send, only the topics it subscribed to, "
           "and never sends",
    "XPUB": "broadcasts like PUB, and also receives its subscribers' subscriptions as "
            "messages, so it can pass them on",
    "XSUB": "listens like SUB, but its subscriptions are messages it sends, so it can pass on "
            "subscriptions that come from elsewhere",
    "PUSH": "hands out work: each message goes to one of its pullers, the next in turn; with "
            "no puller connected it waits",
    "PULL": "collects: it takes messages from all its pushers, one from each in turn, and "
            "never sends",
    "PAIR": "is a private line to exactly one other PAIR socket, both ways",
    "STREAM": "talks raw TCP to programs that do not speak ZeroMQ",
}

# What flows over a link, by the pair of socket types (in either order). The first type
# of each key is the sender when the flow goes one way.
FLOW_TEXT: dict[tuple[str, str], tuple[bool, str]] = {
    # (one_way, words)
    ("REQ", "REP"): (False, "requests go one at a time, and each reply comes back before "
                            "the next request leaves"),
    ("REQ", "ROUTER"): (False, "requests go to the ROUTER, which keeps track of who asked "
                               "and sends each reply back to that requester"),
    ("DEALER", "REP"): (False, "the DEALER hands requests out in turn, without waiting, and "
                               "the replies come back"),
    ("DEALER", "ROUTER"): (False, "messages go both ways freely; the ROUTER sees which "
                                  "DEALER sent each one and can answer that one"),
    ("DEALER", "DEALER"): (False, "messages go both ways freely, with no addresses"),
    ("ROUTER", "ROUTER"): (False, "both sides address each other by identity"),
    ("PUB", "SUB"): (True, "messages go one way, to the subscriber, if it subscribed to "
                           "their topic"),
    ("PUB", "XSUB"): (True, "messages go one way, to the XSUB, for the topics it asked for"),
    ("XPUB", "SUB"): (True, "messages go one way, to the subscriber, if it subscribed to "
                            "their topic; the subscriptions travel back to the XPUB"),
    ("XPUB", "XSUB"): (True, "messages go one way, to the XSUB; subscriptions travel back"),
    ("PUSH", "PULL"): (True, "messages go one way, from pusher to puller (a pusher deals "
                             "its messages out to its pullers in turn)"),
    ("PAIR", "PAIR"): (False, "messages go both ways between exactly these two sockets"),
}

ROLE_TEXT = {
    "proxy": "passes every message that arrives on its frontend socket out of its backend "
             "socket, and everything that comes back the other way, so the two sides never "
             "need to know each other (libzmq's own zmq_proxy; with a capture socket it also "
             "copies all traffic there).",
    "echo": "sends every message it receives straight back on the same socket, or forwards "
            "what arrives on its `in` socket to its `out` socket.",
    "printer": "prints every message it receives: the socket, the topic and each frame.",
}

# What the proxy role is, by (frontend type, backend type).
PROXY_KIND = {
    ("ROUTER", "DEALER"): "Here it is a request-reply broker: requests from the clients on "
                          "`frontend` go out to the workers on `backend`, and each reply "
                          "comes back to the client that asked.",
    ("XSUB", "XPUB"): "Here it is a forwarder: what the publishers send to `frontend` goes "
                      "out to the subscribers on `backend`, and the subscribers' "
                      "subscriptions travel the other way, up to the publishers.",
    ("PULL", "PUSH"): "Here it is a streamer: work pushed into `frontend` is dealt out to the "
                      "pullers on `backend`.",
}
PROXY_GENERIC = ("With ROUTER/DEALER it is a broker, with XSUB/XPUB a forwarder, with "
                 "PULL/PUSH a streamer.")

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
    "on-failure": "If it fails (ends with a non-zero status), topo starts it again "
                  "(restart: on-failure).",
    "always": "Whenever it ends, topo starts it again (restart: always).",
}

READY_TEXT = {
    "tcp": "something accepts connections on tcp port {value}",
    "ipc": "the Unix socket {value} accepts connections",
    "file": "the file {value} exists",
    "log": "a line of its output matches '{value}'",
    "command": "the command `{value}` succeeds",
}


def option_words(name: str, value: object) -> str:
    shown = f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"
    return f"{shown} ({OPTION_TEXT[name]})" if name in OPTION_TEXT else shown


def where_words(endpoint: str) -> str:
    transport = endpoint.partition("://")[0].lower()
    tcp = split_tcp(endpoint)
    if tcp is not None:
        host, port = tcp
        bits = []
        if host in ("127.0.0.1", "localhost", "[::1]", "::1"):
            bits.append("a TCP port for this machine only")
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


def subscription_words(socket_type: str, topics: list[str] | None) -> str:
    if not topics and socket_type == "XSUB":
        return ("It has no subscription of its own: it takes the subscriptions sent through "
                "it (in a forwarder, those of the subscribers downstream).")
    if not topics:
        return ("It has no subscription, so it receives nothing: a subscriber must say which "
                "topics it wants.")
    if "" in topics:
        return "It subscribes to everything (the empty prefix)."
    return ("It only takes messages whose first frame starts with "
            f"{words([repr(t) for t in topics], 'or')}.")
