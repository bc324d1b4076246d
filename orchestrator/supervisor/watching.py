"""What the supervisor knows of its run and role nodes' sockets, and the taps attached to them.

Each such node talks to the supervisor over its channel (the socket pair its
ready byte came down; ``child/watch.py`` is the other end): ``E`` records are
socket events (said as ``topo | node.N socket s: ...`` lines, and ``socket``
events under ``--json``), ``S`` records answer a stats request. ``Watching``
keeps per socket its peers (connected + accepted - disconnected), its last event
and its last counts, answers `topo top` / ``Run.stats()`` once every node asked
has answered (or ``STATS_WAIT`` passed), and keeps the taps: a tap is sent to
every replica it names, again to one that restarts, and taken back when the tap's
connection closes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from orchestrator.structs import field, struct
from orchestrator.supervisor.ports import Clock, Output
from orchestrator.supervisor.replica import Replica
from orchestrator.supervisor.timers import Timer, Timers

STATS_WAIT = 0.5  # seconds a stats answer waits for slow nodes; their last counts are used

Respond = Callable[[dict[str, Any]], None]


@struct
class _SocketView:
    peers: int = 0
    last: dict[str, Any] | None = None
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    tap_dropped: int = 0


@struct
class _Pending:
    respond: Respond
    waiting: set[str]
    timer: Timer | None = None


class Watching:
    def __init__(self, replicas: Mapping[str, Replica], printer: Output, timers: Timers,
                 clock: Clock) -> None:
        self.replicas = replicas
        self.printer = printer
        self.timers = timers
        self.clock = clock
        self.views: dict[tuple[str, str], _SocketView] = {}
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self.taps: dict[int, tuple[str, list[tuple[str, str]]]] = {}  # id -> endpoint, targets
        self.stopping = False  # the run stops: stats are answered from what is known

    def stop(self) -> None:
        """The run stops (its timers are cleared): answer every pending stats request now."""
        self.stopping = True
        for rid in list(self._pending):
            self._answer(rid)

    def new_id(self) -> int:
        return next(self._ids)

    def on_exited(self, r: Replica) -> None:
        """``r``'s process is gone, and its peers with it (its counts and last event stay)."""
        for s in r.plan.sockets:
            v = self.views.get((r.name, s.name))
            if v is not None:
                v.peers = 0

    @staticmethod
    def watched(r: Replica) -> bool:
        """Whether ``r`` has a channel of sockets to watch (a run or role node with sockets)."""
        return r.plan.kind != "command" and bool(r.plan.sockets)

    def view(self, replica: str, sock: str) -> _SocketView:
        key = (replica, sock)
        v = self.views.get(key)
        if v is None:
            v = self.views[key] = _SocketView()
        return v

    # -- a node's records -------------------------------------------------------------------------
    def on_started(self, r: Replica) -> None:
        """A new process for ``r``: its peers start from none; the taps on it are sent again."""
        if not self.watched(r):
            return
        for s in r.plan.sockets:
            v = self.view(r.name, s.name)
            v.peers = 0
            v.counts = [0, 0, 0, 0]
            v.tap_dropped = 0
        for sock in {s for _, targets in self.taps.values() for name, s in targets
                     if name == r.name}:
            self._send_taps(r, sock)

    def on_record(self, r: Replica, data: bytes) -> None:
        kind, body = data[:1], data[1:]
        try:
            doc = json.loads(body)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        if kind == b"E":
            self._event(r, doc)
        elif kind == b"S":
            self._counts(r, doc)
            self._answered(r, doc)
        elif kind == b"A":
            self._answered(r, doc)

    def _event(self, r: Replica, doc: dict[str, Any]) -> None:
        name = str(doc.get("socket", "?"))
        v = self.view(r.name, name)
        peers = doc.get("peers")
        if isinstance(peers, int):
            v.peers = max(0, v.peers + peers)
        text = str(doc.get("text", doc.get("event", "")))
        v.last = {"ts": round(time.time(), 3), "event": doc.get("event"),
                  "endpoint": doc.get("endpoint"), "text": text}
        # A stopping run's sockets lose their peers and retry as the nodes go: that is the
        # stop, not news (200 nodes would say 400 lines of it). Still counted for top.
        if doc.get("say", True) and not self.stopping:
            fields = {k: doc[k] for k in ("endpoint", "reason", "repeat") if k in doc}
            self.printer.socket_event(r.name, name, str(doc.get("event")), text, **fields)

    def _counts(self, r: Replica, doc: dict[str, Any]) -> None:
        sockets = doc.get("sockets")
        if isinstance(sockets, dict):
            for name, entry in sockets.items():
                if not isinstance(entry, dict):
                    continue
                v = self.view(r.name, str(name))
                # A process's counts only grow (``on_started`` zeroes them for the next one),
                # so a smaller one is stale: the watch thread's answer to a ``stats`` request,
                # computed just before the main thread's last counts but written after them
                # (both write to the one channel), or a proxy whose libzmq counts did not come.
                c = entry.get("counts")
                if isinstance(c, list) and len(c) == 4:
                    v.counts = [max(int(x), old) for x, old in zip(c, v.counts, strict=True)]
                v.tap_dropped = max(int(entry.get("tap_dropped", 0)), v.tap_dropped)

    def _answered(self, r: Replica, doc: dict[str, Any]) -> None:
        pending = self._pending.get(str(doc.get("id")))
        if pending is not None:
            pending.waiting.discard(r.name)
            if not pending.waiting:
                self._answer(str(doc.get("id")))

    # -- requests that wait for the nodes' answers ----------------------------------------------
    def _ask(self, asked: Iterable[Replica], record: Callable[[Replica, str], bytes],
             then: Callable[[], None]) -> None:
        """Send ``record(replica, id)`` to each of ``asked``; ``then()`` once each has answered,
        or after ``STATS_WAIT`` (a node that does not answer is busy, or gone)."""
        rid = str(next(self._ids))
        waiting = set() if self.stopping else {
            r.name for r in asked if self.watched(r) and self._send(r, record(r, rid))}
        if not waiting:
            then()
            return
        pending = self._pending[rid] = _Pending(lambda _doc: then(), waiting)
        pending.timer = self.timers.at(self.clock() + STATS_WAIT, lambda: self._answer(rid))

    def stats(self, respond: Respond, snapshot: Callable[[], dict[str, Any]]) -> None:
        """Ask every live watched node for its counts; ``respond(snapshot())`` once all
        answered, or after ``STATS_WAIT``."""
        self._ask(self.replicas.values(), lambda _r, rid: b"S" + rid.encode(),
                  lambda: respond(snapshot()))

    def _answer(self, rid: str) -> None:
        pending = self._pending.pop(rid, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        pending.respond({})

    def sockets_of(self, r: Replica) -> dict[str, dict[str, Any]]:
        """Per socket of ``r``: what `topo top` shows of it."""
        out: dict[str, dict[str, Any]] = {}
        watched = self.watched(r)
        for s in r.plan.sockets:
            v = self.views.get((r.name, s.name)) or _SocketView()
            mi, bi, mo, bo = v.counts
            out[s.name] = {
                "type": s.type, "bind": list(s.bind), "connect": list(s.connect),
                "watched": watched, "peers": v.peers if watched else None,
                "messages_in": mi if watched else None, "bytes_in": bi if watched else None,
                "messages_out": mo if watched else None, "bytes_out": bo if watched else None,
                "tap_dropped": v.tap_dropped, "last_event": v.last,
                "frames": r.plan.role == "proxy" and s.name in ("frontend", "backend"),
            }
        return out

    # -- taps -------------------------------------------------------------------------------------
    def tap(self, tap_id: int, endpoint: str, targets: Iterable[tuple[str, str]],
            then: Callable[[], None] = lambda: None) -> None:
        """Attach tap ``tap_id`` (a PULL at ``endpoint``) to each (replica, socket); ``then()``
        once every live replica has it."""
        chosen = list(targets)
        self.taps[tap_id] = (endpoint, chosen)
        asked = [self.replicas[name] for name, _ in chosen if name in self.replicas]
        sock = chosen[0][1] if chosen else ""
        self._ask(asked, lambda r, rid: self._taps_record(r, sock, rid), then)

    def untap(self, tap_id: int) -> None:
        entry = self.taps.pop(tap_id, None)
        if entry is None:
            return
        for name, sock in entry[1]:
            r = self.replicas.get(name)
            if r is not None:
                self._send_taps(r, sock)

    def _send_taps(self, r: Replica, sock: str) -> None:
        self._send(r, self._taps_record(r, sock, ""))

    def _taps_record(self, r: Replica, sock: str, rid: str) -> bytes:
        """The ``T`` record: every tap now on ``r``'s socket ``sock``."""
        endpoints = [ep for ep, targets in self.taps.values() if (r.name, sock) in targets]
        return b"T" + json.dumps({"socket": sock, "taps": endpoints, "id": rid}).encode()

    @staticmethod
    def _send(r: Replica, data: bytes) -> bool:
        """One record down ``r``'s channel; False when it has none (not running, not watched)."""
        fd = r.proc.ready_fd if r.proc is not None else None
        if fd is None:
            return False
        with contextlib.suppress(OSError):  # a full or closed channel: the node is busy or gone
            os.write(fd, data)
            return True
        return False


# -- what the control channel's requests need ----------------------------------------------------


class TapRefused(Exception):
    """A tap that names no socket of the run, or one topo cannot copy: the sentence says why."""


def stats(sup: Any) -> dict[str, Any]:
    """The run as `topo top` shows it: per replica its state and, per socket, its numbers."""
    state = sup.state()
    replicas = state["replicas"]
    for name, r in sup.replicas.items():
        entry = replicas.get(name)
        if entry is not None:
            entry["kind"] = r.plan.kind
            entry["sockets"] = sup.watching.sockets_of(r)
    return {"run_id": sup.plan.run_id, "ts": round(time.time(), 3), **state}


def tap(sup: Any, request: dict[str, Any]) -> dict[str, Any]:
    """What the tap of ``request`` (``target`` NODE[.N].SOCKET, ``endpoint`` its PULL) gets:
    its ``targets`` (replica, socket), or the endpoints a command node's PUB ``subscribe``
    takes; ``TapRefused`` with the sentence when it cannot be."""
    target, endpoint = request.get("target"), request.get("endpoint")
    if not isinstance(target, str) or not isinstance(endpoint, str):
        raise TapRefused("a tap needs a target NODE.SOCKET and an endpoint")
    replicas, sock = _tap_targets(sup, target)
    plans = [r.plan for r in replicas]
    splan = next(s for s in plans[0].sockets if s.name == sock)
    if plans[0].kind == "command":
        return _command_tap(target, plans[0].node, splan, [p.sockets for p in plans])
    return {"ok": True, "replicas": [r.name for r in replicas], "socket": sock,
            "type": splan.type, "targets": [(r.name, sock) for r in replicas]}


def _tap_targets(sup: Any, target: str) -> tuple[list[Replica], str]:
    parts = target.split(".")
    nodes = ", ".join(sup.nodes)
    if len(parts) not in (2, 3) or not all(parts):
        raise TapRefused(f"{target!r} is not NODE.SOCKET (or NODE.N.SOCKET): run "
                         f"{sup.plan.run_id} has the nodes {nodes}")
    node, sock = parts[0], parts[-1]
    if node not in sup.nodes:
        raise TapRefused(f"run {sup.plan.run_id} has no node {node!r}; its nodes: {nodes}")
    replicas: list[Replica] = list(sup.nodes[node])
    if len(parts) == 3:
        name = f"{node}.{parts[1]}"
        if name not in sup.replicas:
            raise TapRefused(f"node {node} has no replica {parts[1]!r}; its replicas: "
                             + ", ".join(r.name for r in replicas))
        replicas = [sup.replicas[name]]
    names = [s.name for s in replicas[0].plan.sockets]
    if sock not in names:
        has = f"its sockets: {', '.join(names)}" if names else "it has no sockets"
        raise TapRefused(f"node {node} has no socket {sock!r}; {has}")
    return replicas, sock


def _command_tap(target: str, node: str, splan: Any, sockets: list[Any]) -> dict[str, Any]:
    """A command node's socket: topo cannot see inside the program; a PUB that binds can be
    joined by a SUB."""
    if splan.type != "PUB":
        raise TapRefused(
            f"{target} is a {splan.type} socket of command node {node}: topo cannot see "
            "inside a program it only starts; only a command node's PUB socket can be tapped, "
            "by subscribing to it")
    if not splan.bind:
        raise TapRefused(f"{target} is a PUB socket that connects: a tap can only subscribe "
                         "to a PUB that binds (tap the socket it connects to instead)")
    if splan.curve:
        raise TapRefused(f"{target} is a CURVE server: a tap cannot subscribe to it")
    endpoints = [ep for socks in sockets for s in socks if s.name == splan.name
                 for ep in s.bind]
    return {"ok": True, "subscribe": endpoints, "socket": splan.name, "type": "PUB"}
