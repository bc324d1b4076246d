"""What ``run._supervise`` wires around the supervisor: its state file, its control socket,
and the watch on the process that owns the run (the Python API's caller).

The state file is what `topo ps`, `topo down` and the next `topo up` of the same
id read of a run (docs/reference.md#runs), also once its supervisor is dead: it
names every IPC resource from the moment it exists (``create_ipc``), and every
node process while the run lasts (``StateFile``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from orchestrator.child.sockets import unlink_ipc
from orchestrator.ipc.resources import Record, Resources, create_all
from orchestrator.plan import Plan
from orchestrator.runs.control import ControlServer
from orchestrator.runs.folder import me, read_state, write_state
from orchestrator.supervisor.eventloop import EventLoop
from orchestrator.supervisor.spawn import Spawner
from orchestrator.supervisor.supervisor import Supervisor
from orchestrator.supervisor.watching import TapRefused, stats, tap


def create_ipc(plan: Plan) -> Resources:
    """``create_all`` that keeps the run's state file naming what exists, from the first one on.

    Raises ``IpcError`` having removed whatever it had made.
    """
    run_dir = Path(plan.run_dir)

    def record(records: list[Record]) -> None:
        state = read_state(run_dir) or {"run_id": plan.run_id}
        write_state(run_dir, {**state, "file": plan.file, "ipc": records})

    return create_all(plan, on_change=record)


# The state file is rewritten whole; during a large start every loop turn changes it. It is
# written at most every STATE_EVERY seconds, or ten times as long as the last write took, so
# that writing it stays a tenth of the supervisor's time whatever the number of nodes.
STATE_EVERY = 0.05


class StateFile:
    """state.json, rewritten (atomically) when pids changed: at most every ``STATE_EVERY``."""

    def __init__(self, plan: Plan, spawner: Spawner, ipc: Resources | None) -> None:
        self.plan = plan
        self.sup: Supervisor | None = None
        self.dirty = True
        self.base: dict[str, Any] = {
            "run_id": plan.run_id,
            "file": plan.file,
            "run_dir": plan.run_dir,
            "supervisor": me(),
            "guardian": spawner.guardian_pid,
            "started": time.time(),
            "curve": plan.curve,  # security.curve: `topo ps` says so
            # Each node's public key, in file order, wherever its files are (keys/ of the
            # run folder, or `topo up --keys DIR`): what `topo keys` prints.
            "curve_keys": {r.node: r.curve_public_key for r in plan.replicas
                           if r.curve_public_key},
            "endpoints": {
                r.name: {s.name: {"type": s.type, "bind": list(s.bind),
                                  "connect": list(s.connect)}
                         for s in r.sockets}
                for r in plan.replicas
            },
            "ipc": ipc.records() if ipc is not None else [],  # what `topo down` removes
        }
        self._next = 0.0  # the supervisor's clock time before which a change waits
        self._timer = False  # a timer to write the waiting change is set

    def flush(self, force: bool = False) -> None:
        if not (self.dirty or force) or self.sup is None:
            return
        if self.sup.stopping and not force:
            return  # every node is on its way out: `topo down` waits for us, not for this file
        now = self.sup.clock()
        if not force and now < self._next:
            if not self._timer:
                self._timer = True
                self.sup.call_at(self._next, self._due)
            return
        write_state(Path(self.plan.run_dir), {**self.base, **self.sup.state()})
        self.dirty = False
        took = self.sup.clock() - now
        self._next = now + took + max(STATE_EVERY, 10 * took)

    def _due(self) -> None:
        # Only wakes the loop: its next turn writes the change (``run.before_wait``), and
        # looks at the start then, which a write from here would hide (``dirty`` cleared).
        self._timer = False

    def mark(self, _: Supervisor) -> None:
        self.dirty = True


def watch_owner(pid: int | None, sup: Supervisor, loop: EventLoop) -> int | None:
    """Stop the run as soon as process ``pid`` exits (its pidfd turns readable).

    Returns the pidfd (the caller closes it), or None when there is nothing to watch.
    """
    if pid is None:
        return None
    why = f"the process that started the run (pid {pid}) exited; stopping"
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        sup.call_at(sup.clock(), lambda: sup.stop(why))
        return None

    def gone(_: int) -> None:
        loop.remove_reader(fd)
        sup.stop(why)

    loop.add_reader(fd, gone)
    return fd


def _remove_tap_socket(run_dir: str, endpoint: str) -> None:
    """A tap's socket file in the run folder, left by a tap that was killed (one that
    ends removes its own): only a ``tap-*`` socket right in the run folder, nothing else."""
    path = endpoint.removeprefix("ipc://")
    if path == endpoint or os.path.realpath(os.path.dirname(path)) != os.path.realpath(run_dir):
        return
    if os.path.basename(path).startswith("tap-"):
        unlink_ipc([endpoint])  # only a socket file, as a node removes its own


def serve_control(run_dir: str, sup: Supervisor, state: StateFile,
                  loop: EventLoop) -> ControlServer:
    """The run's control socket, answered from inside the event loop (see ``control.py``)."""

    def handle(request: dict[str, Any], fd: int) -> dict[str, Any] | None:
        cmd = request.get("cmd")
        if cmd == "ps":
            return {"ok": True, **state.base, **sup.state()}
        if cmd == "stats":
            sup.watching.stats(server.responder(fd), lambda: {"ok": True, **stats(sup)})
            return None
        if cmd == "tap":
            try:
                answer = tap(sup, request)
            except TapRefused as exc:
                return {"ok": False, "usage": True, "error": str(exc)}
            if answer.get("subscribe"):
                return answer  # a command node's PUB: the tap subscribes itself
            # Answered once every live replica has the tap: what is sent from then on is seen.
            respond, tap_id = server.responder(fd), sup.watching.new_id()
            endpoint = str(request["endpoint"])

            def gone() -> None:  # the tap's connection closed: it ended, or it was killed
                sup.watching.untap(tap_id)
                _remove_tap_socket(run_dir, endpoint)

            sup.watching.tap(tap_id, endpoint, answer.pop("targets"),
                             lambda: respond(answer, gone))
            return None
        if cmd == "restart":
            targets = request.get("targets")
            if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                return {"ok": False, "error": "restart needs a list of node names"}
            try:
                return {"ok": True, "restarting": sup.restart(targets)}
            except KeyError as exc:
                return {"ok": False, "error": (
                    f"run {sup.plan.run_id} has no node or replica named {exc.args[0]} "
                    f"(its nodes: {', '.join(sup.nodes)})")}
        if cmd == "down":
            sup.stop("stopping (topo down)", code=0)
            return {"ok": True}
        return {"ok": False, "error": f"unknown request {cmd!r}"}

    server = ControlServer(run_dir, handle)
    server.on_client = lambda fd: loop.add_reader(fd, server.on_readable)
    server.on_gone = loop.remove_reader
    loop.add_reader(server.fileno(), server.on_readable)
    return server
