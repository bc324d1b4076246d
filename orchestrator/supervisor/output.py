"""Foreground output: every line a node writes, prefixed ``node.replica | ``.

Prefixes are padded to one width so the ``|`` align, and coloured per node only
when the stream is a terminal and neither ``--no-color`` nor ``NO_COLOR`` says
otherwise. Partial lines wait in a per-replica buffer until their newline (or
until the replica's pipe closes). Each line is also appended to the replica's
log file, and, as ``node.replica | line``, to the run's merged log (what
`topo logs` reads). The supervisor's own messages go to stderr, and to the
merged log, as ``topo | ...``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import BinaryIO

_PALETTE = (36, 33, 32, 35, 34, 91, 92, 93, 94, 95, 96)
_MAX_PARTIAL = 1 << 16  # a line longer than this is cut, so one chatty node cannot eat memory


def use_color(stream: BinaryIO | object, no_color: bool, environ: Mapping[str, str]) -> bool:
    if no_color or environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Printer:
    def __init__(
        self,
        names: Iterable[str],
        *,
        out: BinaryIO | None = None,
        err: BinaryIO | None = None,
        color: bool = False,
        log_paths: Mapping[str, str] | None = None,
        merged_path: str | None = None,
    ) -> None:
        self.names = list(names)
        self.out = out if out is not None else sys.stdout.buffer
        self.err = err if err is not None else sys.stderr.buffer
        width = max([len(n) for n in self.names] + [len("topo")])
        nodes = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in self.names))
        colours = {node: _PALETTE[i % len(_PALETTE)] for i, node in enumerate(nodes)}
        self._prefix: dict[str, bytes] = {}
        for name in self.names:
            text = f"{name:<{width}} | "
            if color:
                text = f"\x1b[{colours[name.rsplit('.', 1)[0]]}m{text}\x1b[0m"
            self._prefix[name] = text.encode()
        self._topo = (f"\x1b[1m{'topo':<{width}} | \x1b[0m" if color else f"{'topo':<{width}} | ")
        self._partial: dict[str, bytes] = {}
        self._log_paths = dict(log_paths or {})
        self._logs: dict[str, int] = {}
        self._merged: int | None = None
        if merged_path:
            with contextlib.suppress(OSError):
                self._merged = os.open(
                    merged_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def feed(self, name: str, data: bytes) -> list[bytes]:
        """Print the complete lines in ``data`` (after what was buffered); return them."""
        buf = self._partial.pop(name, b"") + data
        *lines, rest = buf.split(b"\n")
        if len(rest) > _MAX_PARTIAL:
            lines.append(rest)
            rest = b""
        if rest:
            self._partial[name] = rest
        if lines:
            self._emit(name, lines)
        return lines

    def flush(self, name: str) -> list[bytes]:
        """The replica's pipe closed: print what is left of its last line."""
        rest = self._partial.pop(name, b"")
        if rest:
            self._emit(name, [rest])
            return [rest]
        return []

    def event(self, message: str) -> None:
        """A supervisor message (exit, restart, failure), on stderr."""
        try:
            self.err.write(f"{self._topo}{message}\n".encode())
            self.err.flush()
        except (OSError, ValueError):
            pass
        if self._merged is not None:
            with contextlib.suppress(OSError):
                os.write(self._merged, f"topo | {message}\n".encode())

    def record(self, event: str, replica: str | None = None, **fields: object) -> None:
        """A structured event (started, ready, exited, ...): only ``JsonPrinter`` prints them."""

    def socket_event(self, replica: str, sock: str, kind: str, text: str,
                     **fields: object) -> None:
        """``topo | node.N socket s: text`` on stderr, in the run's log and the node's own."""
        line = f"{replica} socket {sock}: {text}"
        self._say(line)
        fd = self._log_fd(replica)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.write(fd, f"topo | {line}\n".encode())

    def _say(self, line: str) -> None:
        self.event(line)

    def _emit(self, name: str, lines: list[bytes]) -> None:
        self._write(name, lines)
        self._to_logs(name, lines)

    def _write(self, name: str, lines: list[bytes]) -> None:
        prefix = self._prefix.get(name, name.encode() + b" | ")
        self._out(b"".join(prefix + line + b"\n" for line in lines))

    def _out(self, data: bytes) -> None:
        try:
            self.out.write(data)
            self.out.flush()
        except (OSError, ValueError):
            pass  # our stdout is gone (closed pipe): the log files still get it

    def _to_logs(self, name: str, lines: list[bytes]) -> None:
        fd = self._log_fd(name)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.write(fd, b"".join(line + b"\n" for line in lines))
        if self._merged is not None:
            head = name.encode() + b" | "
            with contextlib.suppress(OSError):
                os.write(self._merged, b"".join(head + line + b"\n" for line in lines))

    def _log_fd(self, name: str) -> int | None:
        fd = self._logs.get(name)
        if fd is None and self._log_paths.get(name):
            try:
                fd = os.open(
                    self._log_paths[name],
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                    0o600,
                )
            except OSError:
                return None
            self._logs[name] = fd
        return fd

    def close(self) -> None:
        for name in list(self._partial):
            self.flush(name)
        for fd in self._logs.values():
            os.close(fd)
        self._logs.clear()
        if self._merged is not None:
            os.close(self._merged)
            self._merged = None


class JsonPrinter(Printer):
    """`topo up --json`: one JSON object per line on stdout, for CI logs and programs.

    Every object has ``ts`` (seconds since the epoch) and ``event``; replica
    events carry ``replica`` and ``node``. Events: ``started`` (pid), ``ready``,
    ``output`` (line), ``socket`` (socket, kind, endpoint, text, and reason for a
    failed handshake), ``restarting`` (code, delay), ``exited`` (code),
    ``failed`` (code, reason), ``run_started`` (replicas), ``run_ready``,
    ``run_ended`` (code). topo's own
    sentences still go to stderr.
    """

    def record(self, event: str, replica: str | None = None, **fields: object) -> None:
        doc: dict[str, object] = {"ts": round(time.time(), 6), "event": event}
        if replica is not None:
            doc["replica"] = replica
            doc["node"] = replica.rsplit(".", 1)[0]
        doc.update(fields)
        self._out(json.dumps(doc).encode() + b"\n")

    def _write(self, name: str, lines: list[bytes]) -> None:
        for line in lines:
            self.record("output", name, line=line.decode(errors="replace"))

    def socket_event(self, replica: str, sock: str, kind: str, text: str,
                     **fields: object) -> None:
        self.record("socket", replica, socket=sock, kind=kind, text=text, **fields)
        fd = self._log_fd(replica)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.write(fd, f"topo | {replica} socket {sock}: {text}\n".encode())
