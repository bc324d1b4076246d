"""Waiting for a run to be up: what `topo up -d` (and the Python API) return on.

A run is up when every replica has been ready at least once, or has finished
with code 0 (a one-shot job). It will not come up when a replica missed its
``ready:`` timeout, failed for good before it was ever ready (restart policy
exhausted, or a node it depends on failed), or when ``wait_timeout`` passes
first. In those cases the run is stopped and the reason names the replica.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from orchestrator.supervisor.supervisor import Replica, Status, Supervisor

_TAIL_BYTES = 2048  # of the failing replica's log, shown with the reason


class StartupWatch:
    def __init__(
        self,
        sup: Supervisor,
        *,
        wait_timeout: float | None,
        on_ready: Callable[[], None],
        stop_on_failure: bool = True,
    ) -> None:
        self.sup = sup
        self.on_ready = on_ready
        self.stop_on_failure = stop_on_failure  # False: only watch (the foreground's run_ready)
        self.decided = False
        self.failure: str | None = None
        if wait_timeout is not None:
            sup.call_at(sup.clock() + wait_timeout, lambda: self._fail(self._slowest(wait_timeout)))

    def check(self) -> None:
        """Called once per turn of the event loop, until the run is up or has failed."""
        if self.decided:
            return
        pending = False
        for r in self.sup.replicas.values():
            if r.not_ready:
                self._fail(f"{r.name} did not become ready within {r.probe.timeout:g}s "
                           f"(its ready check: {r.probe.kind})", r)
                return
            if r.status is Status.FAILED and not r.ever_ready:
                if r.exit_code is None:
                    self._fail(f"{r.name} was not started: a node it depends on failed")
                else:
                    self._fail(f"{r.name} exited with code {r.exit_code} before it was ready, "
                               "and its restart policy gave up", r)
                return
            if not (r.ever_ready or (r.status is Status.EXITED and r.exit_code == 0)):
                pending = True
        if not pending:  # even if the run is ending already: every node got there
            self.decided = True
            self.on_ready()
        elif self.sup.stopping:
            self._fail("the run was stopped before every node was ready")

    def _slowest(self, wait_timeout: float) -> str:
        waiting = [r.name for r in self.sup.replicas.values()
                   if not (r.ever_ready or r.status is Status.EXITED)]
        return (f"not ready within {wait_timeout:g}s (--wait-timeout): still waiting for "
                f"{', '.join(waiting[:5])}{' ...' if len(waiting) > 5 else ''}")

    def _fail(self, why: str, r: Replica | None = None) -> None:
        if self.decided:
            return
        self.decided = True
        tail = _log_tail(r.plan.log_path) if r is not None and self.stop_on_failure else ""
        self.failure = why + (f"\nlast output of {r.name}:\n{tail}" if tail and r else "")
        if self.stop_on_failure:
            self.sup.stop(f"{why}; stopping the run", code=1)


def _log_tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - _TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode(errors="replace").splitlines()[-5:]
    return "\n".join(f"  {line}" for line in lines)


def progress(sup: Supervisor) -> dict[str, object]:
    """How far the start is: replicas started and ready, and the one waited on longest."""
    started = ready = 0
    slowest: Replica | None = None
    for r in sup.replicas.values():
        if r.status is not Status.WAITING:
            started += 1
        if r.ever_ready or (r.status is Status.EXITED and r.exit_code == 0):
            ready += 1
        elif r.status is Status.STARTING and (slowest is None
                                              or r.started_at < slowest.started_at):
            slowest = r
    doc: dict[str, object] = {"total": len(sup.replicas), "started": started, "ready": ready}
    if slowest is not None:
        doc["waiting"] = slowest.name
        doc["for"] = round(sup.clock() - slowest.started_at, 1)
    return doc


def progress_line(doc: dict[str, object]) -> str:
    """``starting 734/1000, ready 690; waiting on worker.17 (3.2 s)``"""
    line = f"starting {doc.get('started')}/{doc.get('total')}, ready {doc.get('ready')}"
    if doc.get("waiting"):
        line += f"; waiting on {doc['waiting']} ({doc.get('for')} s)"
    return line
