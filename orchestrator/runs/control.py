"""The control channel: how `topo ps`, `restart` and `down` reach a running supervisor.

A Unix stream socket, ``control.sock`` in the run's 0700 folder, so only its
owner (and root) can reach it; the server also checks the peer's uid. One
request per connection: the client sends one JSON object on one line, the
supervisor answers with one JSON object on one line and closes.

Requests: ``{"cmd": "ps"}``, ``{"cmd": "restart", "targets": ["node", "node.1"]}``,
``{"cmd": "down"}``, ``{"cmd": "stats"}`` (answered once the nodes have given their
counts) and ``{"cmd": "tap", ...}`` (whose connection stays open while the tap
lasts: its close detaches the tap). Answers: ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``.

Why not a ZeroMQ socket: a libzmq context starts two threads in the
supervisor, which then forks every run node from a multi-threaded process; a
plain socket in the same epoll set keeps the supervisor single-threaded and
costs nothing while idle.
"""

from __future__ import annotations

import _socket  # the C module under `socket`: a client needs nothing more (see request)
import contextlib
import json
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import ControlError, RunError, UsageError
from orchestrator.paths import IPC_PATH_MAX

if TYPE_CHECKING:
    import socket

SOCKET_NAME = "control.sock"
_MAX_REQUEST = 1 << 16

# A request -> its answer, or None when the handler answers later with ``respond(fd, ...)``
# (the fd is the client's, given with the request).
Handler = Callable[[dict[str, Any], int], "dict[str, Any] | None"]


def socket_path(run_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(run_dir), SOCKET_NAME)


class ControlServer:
    """The supervisor's end: a listening socket and the half-read requests of its clients.

    The event loop watches ``fileno()`` and each client's fd, and calls
    ``on_readable(fd)``; nothing here blocks for longer than one small send.
    """

    def __init__(self, run_dir: str | os.PathLike[str], handler: Handler) -> None:
        path = socket_path(run_dir)
        if len(path.encode()) > IPC_PATH_MAX:
            raise RunError(f"the control socket path {path} is longer than {IPC_PATH_MAX} bytes; "
                           "set TOPO_STATE_DIR to a shorter folder")
        import socket  # deferred: only the server needs it (the supervisor has it: spawn.py)

        self.path = path
        self.handler = handler
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.listener.bind(path)
        os.chmod(path, 0o600)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.clients: dict[int, tuple[socket.socket, bytearray]] = {}
        self.on_client: Callable[[int], None] = lambda fd: None  # the loop watches new fds
        self.on_gone: Callable[[int], None] = lambda fd: None
        self.kept: dict[int, Callable[[], None]] = {}  # open connections (taps): on close
        self._answered: set[int] = set()

    def fileno(self) -> int:
        return self.listener.fileno()

    def fds(self) -> list[int]:
        return [self.listener.fileno(), *self.clients]

    def on_readable(self, fd: int) -> None:
        if fd == self.listener.fileno():
            self._accept()
            return
        entry = self.clients.get(fd)
        if entry is None:
            return
        conn, buf = entry
        try:
            data = conn.recv(_MAX_REQUEST)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        if fd in self._answered:
            return  # a kept connection: only its close means something
        buf += data
        if b"\n" not in buf and len(buf) < _MAX_REQUEST:
            return
        line = bytes(buf).split(b"\n", 1)[0]
        self._answer(fd, conn, line)

    def close(self) -> None:
        for fd in list(self.clients):
            self._drop(fd)
        self.listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not _same_user(conn):
                conn.close()
                continue
            conn.setblocking(False)
            self.clients[conn.fileno()] = (conn, bytearray())
            self.on_client(conn.fileno())

    def _answer(self, fd: int, conn: socket.socket, line: bytes) -> None:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            reply: dict[str, Any] = {"ok": False, "error": "the request is not a JSON object"}
        else:
            # Marked first: a handler may answer (and close) this fd before it returns.
            self._answered.add(fd)
            try:
                answer = self.handler(request, fd)
            except Exception as exc:  # noqa: BLE001 - a bad request must not end the run
                answer = {"ok": False, "error": f"internal error: {exc!r}"}
            if answer is None:
                return  # the handler answers later (or did already)
            reply = answer
        self._answered.add(fd)
        self.respond(fd, reply)

    def responder(self, fd: int) -> Callable[..., None]:
        """``respond`` for client ``fd`` as it is now: an answer that comes after that client
        closed (and its fd number went to another) goes nowhere."""
        conn = self.clients[fd][0] if fd in self.clients else None

        def answer(reply: dict[str, Any], on_close: Callable[[], None] | None = None) -> None:
            entry = self.clients.get(fd)
            if entry is not None and entry[0] is conn:
                self.respond(fd, reply, on_close)
            elif on_close is not None:
                on_close()

        return answer

    def respond(self, fd: int, reply: dict[str, Any],
                on_close: Callable[[], None] | None = None) -> None:
        """Send the answer to client ``fd``; close it, unless ``on_close`` says what its close
        (by the client, or when the run ends) must undo."""
        entry = self.clients.get(fd)
        if entry is None:
            if on_close is not None:
                on_close()
            return
        conn = entry[0]
        payload = json.dumps(reply, separators=(",", ":")).encode() + b"\n"
        try:
            conn.setblocking(True)
            conn.settimeout(2.0)  # a client that stops reading cannot hold the run for long
            conn.sendall(payload)
        except OSError:
            self._drop(fd)
            if on_close is not None:
                on_close()
            return
        if on_close is None:
            self._drop(fd)
        else:
            conn.setblocking(False)
            self.kept[fd] = on_close

    def _drop(self, fd: int) -> None:
        entry = self.clients.pop(fd, None)
        self._answered.discard(fd)
        if entry is not None:
            self.on_gone(fd)
            entry[0].close()
        on_close = self.kept.pop(fd, None)
        if on_close is not None:
            on_close()


def _same_user(conn: socket.socket) -> bool:
    creds = conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (os.getuid(), 0)


def request(run_dir: str | os.PathLike[str], message: dict[str, Any],
            timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the supervisor of ``run_dir``; return its answer.

    Raises ``ControlError`` when no supervisor answers (it is gone, or the
    folder holds no control socket) or the answer says ``ok: false``.
    """
    # ``_socket``'s, not ``socket``'s: importing ``socket`` builds its enums, 3.5 ms of every
    # `topo ps`, `down` and `restart`.
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        return _ask(sock, run_dir, message, timeout)
    finally:
        sock.close()


def session(run_dir: str | os.PathLike[str], message: dict[str, Any],
            timeout: float = 5.0) -> tuple[socket.socket, dict[str, Any]]:
    """A request whose connection stays open (a tap): the socket and the answer.

    The supervisor undoes the request when the socket closes; its EOF on the
    caller's side means the run ended. ``ControlError`` as for ``request``.
    """
    import socket  # deferred: a tap loads pyzmq too; `request`'s callers need neither

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        return sock, _ask(sock, run_dir, message, timeout)
    except BaseException:
        sock.close()
        raise


def _ask(sock: _socket.socket, run_dir: str | os.PathLike[str], message: dict[str, Any],
         timeout: float) -> dict[str, Any]:
    path = socket_path(run_dir)
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while b"\n" not in data:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlError(
            f"no supervisor answers at {path}: the run is not running") from None
    except TimeoutError:
        raise ControlError(f"the supervisor at {path} did not answer within "
                           f"{timeout:g}s") from None
    except OSError as exc:
        raise ControlError(f"cannot reach the supervisor at {path}: "
                           f"{exc.strerror or exc}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError(f"the supervisor at {path} closed the connection "
                           "without an answer") from None
    if not isinstance(reply, dict):
        raise ControlError(f"the supervisor at {path} answered nonsense")
    if not reply.get("ok"):
        error = str(reply.get("error", "the supervisor refused the request"))
        if reply.get("usage"):
            raise UsageError(error)
        raise ControlError(error)
    return reply


def exists(run_dir: str | os.PathLike[str]) -> bool:
    return Path(socket_path(run_dir)).exists()
