"""`topo tap RUN NODE.SOCKET`: every message crossing one socket, as it crosses.

The tap binds a PULL socket in the run's private folder and asks the supervisor
(over the control socket, a connection it keeps open) to attach it: each replica
of a run or role node then copies the socket's traffic, both directions, to the
PULL without ever blocking (``child/watch.py``); what the tap cannot take is
dropped and counted, and said as "tap dropped N messages". Closing the
connection (the tap ends, or is killed) detaches it; the supervisor closing it
means the run ended. A command node's PUB socket that binds is joined by a SUB
instead; nothing else of a command node can be seen.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from orchestrator.child.roles import format_frame
from orchestrator.child.watch import TAP_HEADER
from orchestrator.errors import UsageError
from orchestrator.paths import IPC_PATH_MAX
from orchestrator.runs.client import live_run
from orchestrator.runs.control import exists, session

SHOW = 120  # characters of a frame shown; a longer one is cut, with its length
_ids = itertools.count()


@dataclass
class TapMessage:
    """One message that crossed the tapped socket."""

    ts: float  # when it crossed (seconds since the epoch)
    replica: str  # e.g. worker.0
    socket: str
    direction: str  # "in" (received by the socket) or "out" (sent)
    frames: list[bytes] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ts": round(self.ts, 6), "replica": self.replica, "socket": self.socket,
                "direction": self.direction, "frames": [show(f) for f in self.frames],
                "sizes": [len(f) for f in self.frames]}

    def line(self) -> str:
        when = (time.strftime("%H:%M:%S", time.localtime(self.ts))
                + f".{int(self.ts * 1000) % 1000:03d}")
        frames = " | ".join(show(f) for f in self.frames)
        verb = "recv" if self.direction == "in" else "send"
        return f"{when} {self.replica}.{self.socket} {verb} {frames}"


def show(frame: bytes) -> str:
    """A frame as text when printable, else hex; cut at ``SHOW`` characters with its size."""
    if not frame:
        return "''"
    text = format_frame(frame)
    if len(text) > SHOW:
        return f"{text[:SHOW]}... ({len(frame)} bytes)"
    return text


@dataclass
class Dropped:
    """Messages the tap could not take (it was behind): the node dropped them."""

    count: int


class Tap:
    """A tap on ``target`` (NODE.SOCKET, NODE.N.SOCKET) of a live run; iterate for messages."""

    def __init__(self, run_dir: str | os.PathLike[str], target: str) -> None:
        self.run_dir = Path(run_dir)
        self.target = target
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.ended = False
        self._conn: Any = None
        self._path: str | None = None
        self.subscribed = False  # a command node's PUB, joined by a SUB
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        path = str(self.run_dir / f"tap-{os.getpid()}.{next(_ids)}.sock")
        if len(path.encode()) > IPC_PATH_MAX:
            raise UsageError(f"the tap's socket path {path} is longer than {IPC_PATH_MAX} bytes;"
                             " set TOPO_STATE_DIR to a shorter folder")
        pull: zmq.Socket[Any] = self.ctx.socket(zmq.PULL)
        pull.linger = 0
        pull.bind(f"ipc://{path}")
        self._path = path
        self.sock = pull
        self._conn, reply = session(self.run_dir, {"cmd": "tap", "target": self.target,
                                                   "endpoint": f"ipc://{path}"})
        self.socket_name = str(reply.get("socket", ""))
        self.type = str(reply.get("type", ""))
        self.replicas = [str(r) for r in reply.get("replicas", [])]
        subscribe = reply.get("subscribe")
        if subscribe:  # a command node's PUB: join it as a subscriber
            self._conn.close()
            self._conn = None
            self._unlink()
            pull.close()
            sub: zmq.Socket[Any] = self.ctx.socket(zmq.SUB)
            sub.linger = 0
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            for ep in subscribe:
                sub.connect(str(ep))
            self.sock = sub
            self.subscribed = True
            self.replicas = [self.target.rsplit(".", 1)[0]]

    def messages(self, timeout: float | None = None) -> Iterator[TapMessage | Dropped]:
        """Each message as it comes; ends when the run ends (``ended``) or after ``timeout``
        seconds without one."""
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        if self._conn is not None:
            poller.register(self._conn.fileno(), zmq.POLLIN)
        quiet_until = None if timeout is None else time.monotonic() + timeout
        while not self.ended:
            wait = 1.0 if quiet_until is None else min(1.0, quiet_until - time.monotonic())
            ready = dict(poller.poll(int(max(0.0, wait) * 1000)))
            if not ready:
                if self._gone():
                    self.ended = True
                    return
                if quiet_until is not None and time.monotonic() >= quiet_until:
                    return
                continue
            if quiet_until is not None:
                quiet_until = time.monotonic() + timeout  # type: ignore[operator]
            if self.sock in ready:
                while True:
                    try:
                        frames = self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    yield self._decode(frames)
            elif self._conn is not None and self._conn.fileno() in ready:
                self.ended = True  # the supervisor closed it: the run ended
                return

    def _gone(self) -> bool:
        # A kept connection says so itself (its close wakes the poll); a subscriber looks.
        return self.subscribed and not exists(self.run_dir)

    def _decode(self, frames: list[bytes]) -> TapMessage | Dropped:
        if self.subscribed:
            return TapMessage(time.time(), self.replicas[0], self.socket_name, "out", frames)
        direction, ts, number = TAP_HEADER.unpack(frames[0])
        if direction == b"D":
            return Dropped(number)
        node = self.target.split(".", 1)[0]
        return TapMessage(ts, f"{node}.{number}", self.socket_name,
                          "in" if direction == b"i" else "out", frames[1:])

    def _unlink(self) -> None:
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
            self._path = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.ctx.destroy(linger=0)
        self._unlink()

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tap(run: str, target: str, *, count: int | None, as_json: bool) -> int:
    """The CLI: print messages until ``count`` of them, Ctrl-C, or the run's end (exit 0)."""
    found = live_run(run)
    seen = 0
    with Tap(found.folder, target) as t:
        if not as_json:
            print(f"tapping {target} ({t.type}) of run {found.run_id}: "
                  + ", ".join(t.replicas) + "; Ctrl-C stops", file=sys.stderr, flush=True)
        try:
            for item in t.messages():
                if isinstance(item, Dropped):
                    if as_json:
                        print(json.dumps({"event": "dropped", "count": item.count}), flush=True)
                    else:
                        print(f"tap dropped {item.count} messages", file=sys.stderr, flush=True)
                    continue
                print(json.dumps(item.as_dict()) if as_json else item.line(), flush=True)
                seen += 1
                if count is not None and seen >= count:
                    return 0
        except KeyboardInterrupt:
            return 0
        if t.ended:
            print(f"run {found.run_id} ended", file=sys.stderr, flush=True)
    return 0
