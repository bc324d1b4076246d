"""The Python API: a topology up for the length of a ``with`` block, for tests and scripts.

::

    import orchestrator

    with orchestrator.up("topologies/rrbroker.yaml", timeout=10) as run:
        sock = run.connect("broker.frontend")          # a REQ socket, connected
        sock.send(b"hello"); print(sock.recv())
        run.wait_for_log("worker.0", r"hello", timeout=5)

Entering validates and plans the file here, then starts the run detached, as
``topo up -d`` does, in a new ``python`` (so the supervisor never forks from the
caller's process, which may have threads), and returns once every node is ready;
leaving stops it and removes all it made, also when the block raises. The
supervisor watches the calling process too: if the caller dies (SIGKILL, Ctrl-C
that skips clean-up), the run stops by itself.
``run_id=None`` picks a unique id, so runs of one file side by side (pytest-xdist)
never meet: ports, ipc paths and SysV keys all derive from the run.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

from orchestrator import paths
from orchestrator.errors import NotReady, RunError, TopoError, UsageError
from orchestrator.paths import OUTPUT_LOG
from orchestrator.runs.client import Run as Found
from orchestrator.runs.client import down_run, restart_run
from orchestrator.runs.folder import read_state
from orchestrator.spec.zmqrules import PEERS

# A fitting peer for each socket type when the caller does not name one: what a client
# or a test probe of that socket would be.
PEER_OF = {
    "REP": "REQ", "ROUTER": "REQ", "REQ": "REP", "DEALER": "REP", "PUB": "SUB", "XPUB": "SUB",
    "SUB": "PUB", "XSUB": "PUB", "PUSH": "PULL", "PULL": "PUSH", "PAIR": "PAIR",
}


def up(
    file: str | os.PathLike[str],
    run_id: str | None = None,
    timeout: float = 10.0,
    *,
    env: Mapping[str, str] | None = None,
) -> Run:
    """Start ``file`` and return its ``Run`` once every node is ready (use it in ``with``).

    ``timeout``: seconds to wait for readiness; then the run is torn down and
    ``NotReady`` raised, naming the node. ``env``: the environment of the run
    (default ``os.environ``), e.g. to set ``${VARS}`` or ``TOPO_STATE_DIR``.
    """
    # deferred: pydantic, the file model and libzmq (certs) load on the first up(), not on
    # `import orchestrator`
    from orchestrator.certs import keypair, write_public
    from orchestrator.spec.validate import load_or_raise
    from orchestrator.start.detached import run_detached
    from orchestrator.start.prepare import prepare

    environ = dict(os.environ if env is None else env)
    file = os.fspath(file)
    loaded = load_or_raise(file, environ)  # InvalidTopology, with its diagnostics
    topology = loaded.topology
    assert topology is not None
    if run_id is None:
        run_id = f"{topology.name[:40]}-{uuid.uuid4().hex[:8]}"
    curve = None
    if topology.security.curve:
        curve = keypair()
    # Validated and planned here, once: the process that runs the plan never loads the
    # validator (`topo up -d` in a subprocess would check the file a second time).
    with tempfile.TemporaryDirectory(prefix="topo-client-key-") as folder:
        allow = []
        if curve is not None:
            # This process's own client key, allowed on every CURVE server of the run; the
            # plan holds it, so the file can go with the folder.
            allowed = os.path.join(folder, "client.key")
            write_public(allowed, curve[0])
            allow.append(allowed)
        try:
            plan = prepare(file, run_id=run_id, environ=environ, allow=allow, loaded=loaded)
            run_detached(plan, {"wait_timeout": timeout, "owner_pid": os.getpid()}, environ)
        except TopoError as exc:  # as `topo up -d` says it, the way it always was raised
            raise (UsageError if exc.exit_code == 2 else NotReady)(str(exc)) from None
    return Run(run_id, environ, curve=curve)


class Run:
    """A running topology: its endpoints, sockets to reach them, its logs and its replicas."""

    def __init__(self, run_id: str, environ: Mapping[str, str], *,
                 curve: tuple[str, str] | None = None) -> None:
        """``curve``: this process's (public, secret) CURVE key pair, allowed by the run."""
        self.run_id = run_id
        self.curve = curve
        self.environ = dict(environ)
        self.folder = paths.run_dir(run_id, self.environ)
        state = read_state(self.folder)
        if state is None:
            raise RunError(f"run {run_id} has no state file in {self.folder}")
        self.file = str(state.get("file"))
        self._endpoints: dict[str, dict[str, dict[str, Any]]] = state.get("endpoints") or {}
        self._ipc: dict[str, dict[str, Any]] = {
            r["name"]: r for r in state.get("ipc") or () if isinstance(r, dict) and "name" in r}
        self._context: Any = None
        self._sockets: list[Any] = []
        self.closed = False

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()

    def __repr__(self) -> str:
        return f"<orchestrator.Run {self.run_id} ({self.file})>"

    # -- endpoints and sockets --------------------------------------------------------------------
    def endpoints(self, ref: str) -> list[str]:
        """Every resolved endpoint of ``node.socket`` (or ``node.N.socket``): binds, else connects.

        ``@tcp`` / ``@ipc`` after the name keeps only that transport.
        """
        sock = self._socket(ref)
        ref, _, transport = ref.partition("@")
        found = sock["bind"] or sock["connect"]
        if transport:
            found = [e for e in found if e.startswith(f"{transport}://")]
        if not found:
            raise UsageError(f"{ref} has no {transport or ''} endpoint".replace("  ", " "))
        return list(found)

    def endpoint(self, ref: str) -> str:
        """The resolved endpoint of ``node.socket`` (its first bind, else its first connect)."""
        return self.endpoints(ref)[0]

    def ipc(self, name: str) -> dict[str, Any]:
        """The IPC resource ``name`` as the run made it: ``type``, ``key`` and ``id`` (SysV),
        ``path`` (fifo), ``mode``... Open a queue with ``sysv_ipc.MessageQueue(run.ipc(n)["key"])``.
        """
        try:
            return dict(self._ipc[name])
        except KeyError:
            raise UsageError(f"run {self.run_id} has no IPC resource {name} "
                             f"(its resources: {', '.join(self._ipc) or 'none'})") from None

    def socket_type(self, ref: str) -> str:
        return str(self._socket(ref)["type"])

    def connect(self, ref: str, type: str | None = None, *,  # noqa: A002 - pyzmq's word
                subscribe: str | bytes = b"", timeout: float | None = 5.0) -> Any:
        """A pyzmq socket of a type that fits ``ref``, connected to it; closed when the run ends.

        The type defaults to the natural peer (REQ for REP or ROUTER, SUB for PUB,
        PULL for PUSH, ...); a SUB subscribes to ``subscribe``. ``timeout`` sets
        ``rcvtimeo`` / ``sndtimeo`` so a test waits at most that long.
        """
        # deferred: a caller that never connects a socket does not pay for libzmq
        import zmq

        target = self.socket_type(ref)
        kind = (type or PEER_OF.get(target, "")).upper()
        if kind not in PEERS.get(target, frozenset()):
            raise UsageError(f"a {kind or 'socket'} cannot talk to the {target} socket {ref}; "
                             f"its peers are {', '.join(sorted(PEERS.get(target, ()))) or 'none'}")
        if self._context is None:
            self._context = zmq.Context()
        sock = self._context.socket(getattr(zmq, kind))
        sock.linger = 0
        if self.curve is not None:
            sock.curve_publickey, sock.curve_secretkey = (k.encode() for k in self.curve)
        if timeout is not None:
            sock.rcvtimeo = sock.sndtimeo = int(timeout * 1000)
        if kind == "SUB":
            sock.subscribe(subscribe)
        serverkey = self._serverkey(ref)
        for ep in self.endpoints(ref):
            if serverkey is not None and ep.partition("://")[0] in ("tcp", "ipc"):
                sock.curve_serverkey = serverkey
            sock.connect(ep)
        self._sockets.append(sock)
        return sock

    def _serverkey(self, ref: str) -> bytes | None:
        """With CURVE, set this process's keys and return the server key of ``ref``'s node."""
        if self.curve is None or not self._socket(ref).get("bind"):
            return None
        # deferred: as in connect(), libzmq only for a caller that connects
        from orchestrator.views.keys import public_keys

        node = ref.partition("@")[0].rpartition(".")[0]  # broker, or worker.2
        name, _, replica = node.rpartition(".")
        if not (name and replica.isdigit()):
            name = node
        return public_keys(self._found())[name].encode()

    # -- replicas ---------------------------------------------------------------------------------
    def ps(self) -> list[dict[str, Any]]:
        """Every replica: name, node, pid, state, restarts, exit_code, uptime, CPU and RSS."""
        # deferred: psutil, which only ps() needs
        from orchestrator.views.ps import _view

        return list(_view(self._found())["replicas"])

    def stats(self) -> dict[str, Any]:
        """The run as ``topo top --json`` shows it, at this instant: per replica its state,
        restarts, pid and, per socket, peers, messages and bytes in and out, last event.
        Rates need two looks: ``topo top`` computes them; here, compare two calls."""
        # deferred: psutil and the view, which only stats() needs
        from orchestrator.views.top import look

        return look(self._found())

    def tap(self, target: str, *, count: int | None = None,
            timeout: float = 5.0) -> Iterator[Any]:
        """Each message crossing ``node.socket`` (``node.N.socket``: one replica), both ways,
        as ``TapMessage`` (ts, replica, socket, direction "in"/"out", frames); ends after
        ``count`` messages, when none came for ``timeout`` seconds, or with the run.

        The tap is attached to every replica by the time this returns: messages sent
        after it are seen. Closing the iterator (or its end) detaches it.
        """
        # deferred: pyzmq, which only a tap needs in the caller
        from orchestrator.views.tap import Dropped, Tap

        t = Tap(self.folder, target)

        def messages() -> Iterator[Any]:
            seen = 0
            try:
                for item in t.messages(timeout=timeout):
                    if isinstance(item, Dropped):
                        continue
                    yield item
                    seen += 1
                    if count is not None and seen >= count:
                        return
            finally:
                t.close()

        return messages()

    def exit_codes(self) -> dict[str, int | None]:
        """Each replica's last exit code (None while it has not exited)."""
        return {r["name"]: r["exit_code"] for r in self.ps()}

    def pid(self, replica: str) -> int:
        for r in self.ps():
            if r["name"] == _replica_name(replica) and r["pid"]:
                return int(r["pid"])
        raise RunError(f"{replica} is not running in run {self.run_id}")

    def wait_ready(self, replica: str, timeout: float = 10.0, *, restarts: int = 0) -> int:
        """Wait until ``replica`` is ready after at least ``restarts`` restarts; return its pid."""
        name = _replica_name(replica)
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            row = next((r for r in self.ps() if r["name"] == name), None)
            if row is None:
                raise UsageError(f"run {self.run_id} has no replica {name}")
            if row["state"] == "ready" and row["restarts"] >= restarts and row["pid"]:
                return int(row["pid"])
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready (with {restarts} restarts) within "
                                   f"{timeout:g}s: it is {row['state']}, "
                                   f"{row['restarts']} restarts")
            time.sleep(delay)  # polls the supervisor against the deadline above
            delay = min(delay * 2, 0.05)

    def kill(self, replica: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) to a replica: a crash, as its restart policy sees it."""
        os.kill(self.pid(replica), sig)

    def restart(self, *names: str) -> None:
        """Restart nodes or replicas; returns once each is ready again."""

        restart_run(self._found(), list(names))

    # -- logs -------------------------------------------------------------------------------------
    def logs(self, replica: str | None = None) -> list[str]:
        """Lines written so far by a replica (``node.N``), a node's replicas, or everyone."""

        try:
            data = (self.folder / OUTPUT_LOG).read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in data.decode(errors="replace").splitlines():
            name, sep, text = line.partition(" | ")
            if sep and name != "topo" and (replica is None or replica in
                                           (name, name.rsplit(".", 1)[0])):
                out.append(text if replica is not None else line)
        return out

    def wait_for_log(self, replica: str, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until a line of ``replica`` (``node.N`` or ``node``) matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            for line in self.logs(replica):
                match = regex.search(line)
                if match:
                    return match
            if time.monotonic() > deadline:
                last = "\n  ".join(self.logs(replica)[-5:]) or "(nothing)"
                raise TimeoutError(f"no line of {replica} matched {pattern!r} within "
                                   f"{timeout:g}s; its last lines:\n  {last}")
            time.sleep(delay)  # polls the log file against the deadline above
            delay = min(delay * 2, 0.05)

    # -- the end ----------------------------------------------------------------------------------
    def down(self) -> None:
        """Stop the run and remove everything it made (also called on leaving ``with``)."""
        if self.closed:
            return
        self.closed = True
        for sock in self._sockets:
            sock.close(linger=0)
        if self._context is not None:
            self._context.term()

        down_run(self._found())

    def _found(self) -> Any:

        return Found(self.run_id, self.folder, read_state(self.folder))

    def _socket(self, ref: str) -> dict[str, Any]:
        name = ref.partition("@")[0]
        node, _, sock = name.rpartition(".")
        replica = _replica_name(node)
        try:
            return self._endpoints[replica][sock]
        except KeyError:
            known = sorted(f"{r.removesuffix('.0')}.{s}" for r, socks in self._endpoints.items()
                           for s in socks)
            raise UsageError(f"run {self.run_id} has no socket {name} "
                             f"(its sockets: {', '.join(known) or 'none'})") from None


def _replica_name(name: str) -> str:
    """``worker`` means replica ``worker.0``; ``worker.2`` is itself."""
    return name if name.rpartition(".")[2].isdigit() else f"{name}.0"


__all__ = ["Run", "up"]
