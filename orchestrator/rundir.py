"""A run's private folder: create it (cleaning what a dead run left), the state file, node specs.

Layout (SPEC §3)::

    <run_dir>/            0700
        state.json        the supervisor's state, replaced atomically
        logs/<node>.<replica>.log
        spec/<node>.<replica>.json   TOPO_SPEC of each replica
        <relative ipc endpoints>

The state file is the supervisor's to fill. This module reads only a few keys
of it: ``run_id``; ``supervisor_pid`` and ``supervisor_start`` (psutil
``create_time``), or ``supervisor: {pid, create_time}``; and, to clean up after
a dead run, the pids it recorded: ``pids`` (a list of pids or ``[pid,
create_time]`` pairs) and ``replicas`` (a mapping or list of records with
``pid`` and optionally ``start``), plus ``plan`` (``Plan.to_dict()``) or
``endpoints`` (replica -> socket -> ``{bind: [...]}``) for ipc files bound
outside the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil

from .errors import RunAlive, RunError
from .plan import Plan

STATE_FILE = "state.json"
_START_TOLERANCE = 0.05  # seconds; create_time is derived from clock ticks and boot time


def create_run_dir(run_dir: Path) -> None:
    """Make ``run_dir`` (0700) with ``logs/`` and ``spec/``, after cleaning a dead run's leftovers.

    Raises ``RunAlive`` when a live supervisor holds the folder. A provisional
    state naming this process as supervisor is written at once, so a second
    ``topo up`` of the same id sees the run as alive from the first moment.
    """
    run_dir = Path(run_dir)
    run_id = run_dir.name
    if run_dir.is_symlink() or run_dir.exists():
        state = read_state(run_dir)
        if state is not None and supervisor_alive(state):
            pid, _ = supervisor_of(state)
            raise RunAlive(
                f"run {run_id} is alive: its supervisor (pid {pid}) is still running; "
                f"stop it with `topo down {run_id}` or pick another id with -p"
            )
        clean_leftovers(run_dir, state)
    _make_parents(run_dir.parent)
    try:
        os.mkdir(run_dir, 0o700)
    except FileExistsError:
        raise RunAlive(f"run {run_id} is being started by another `topo up` right now") from None
    except OSError as exc:
        raise RunError(f"cannot create the run folder {run_dir}: {exc.strerror}") from None
    os.chmod(run_dir, 0o700)  # exactly 0700, whatever the umask took away or not
    for sub in ("logs", "spec"):
        os.mkdir(run_dir / sub, 0o700)
    me = psutil.Process()
    write_state(run_dir, {"run_id": run_id, "supervisor_pid": me.pid,
                          "supervisor_start": me.create_time(), "status": "starting"})


def clean_leftovers(run_dir: Path, state: dict[str, Any] | None) -> None:
    """Kill what a dead run left running and remove its folder and ipc files."""
    run_id = str(state.get("run_id", run_dir.name)) if state else run_dir.name
    if state:
        for pid, start in recorded_pids(state):
            kill_leftover(pid, start, run_id)
    remove_run_dir(run_dir, ipc_paths=_plan_ipc_paths(state))


def kill_leftover(pid: int, start: float | None, run_id: str) -> bool:
    """SIGKILL the process group of ``pid`` if that process is still one of run ``run_id``'s.

    "Still ours" means the process carries ``TOPO_RUN=<run_id>`` in its
    environment, or was created at the recorded ``start`` time: a pid that was
    reused by an unrelated process is left alone.
    """
    if pid in (os.getpid(), os.getppid()) or pid <= 1:
        return False
    try:
        proc = psutil.Process(pid)
        ours = _same_start(proc, start)
        if not ours:
            with contextlib.suppress(psutil.AccessDenied):
                ours = proc.environ().get("TOPO_RUN") == run_id
        if not ours:
            return False
        pgid = os.getpgid(pid)
    except (psutil.NoSuchProcess, ProcessLookupError):
        return False
    with contextlib.suppress(ProcessLookupError):
        if pgid == pid and pgid != os.getpgrp():
            os.killpg(pgid, signal.SIGKILL)  # grandchildren share the node's group
        else:
            os.kill(pid, signal.SIGKILL)
    return True


def recorded_pids(state: dict[str, Any]) -> Iterator[tuple[int, float | None]]:
    """(pid, create_time or None) of every node process a state file records."""
    for item in state.get("pids", ()) or ():
        if isinstance(item, int):
            yield item, None
        elif isinstance(item, list | tuple) and item and isinstance(item[0], int):
            yield item[0], _float(item[1]) if len(item) > 1 else None
    records = state.get("replicas") or ()
    if isinstance(records, dict):
        records = records.values()
    for rec in records:
        if isinstance(rec, dict) and isinstance(rec.get("pid"), int) and rec["pid"] > 0:
            yield rec["pid"], _float(rec.get("start", rec.get("create_time")))


def write_specs(plan: Plan) -> None:
    """Write each replica's TOPO_SPEC file: the run's facts and the replica's resolved plan."""
    for replica in plan.replicas:
        doc = {
            "run_id": plan.run_id,
            "run_dir": plan.run_dir,
            "file": plan.file,
            "pythonpath": list(plan.pythonpath),
            "replica": replica.to_dict(),
        }
        fd = os.open(replica.spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Replace ``state.json`` atomically: a reader sees the old state or the new, never half."""
    path = Path(run_dir) / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(state, f, separators=(",", ":"))
    os.replace(tmp, path)


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """The state file's content, or None when there is none or it cannot be read."""
    try:
        with open(Path(run_dir) / STATE_FILE, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def supervisor_alive(state: dict[str, Any]) -> bool:
    """Whether the supervisor a state names still runs (same pid AND same start time)."""
    pid, start = supervisor_of(state)
    if pid is None or start is None:
        return False
    try:
        proc = psutil.Process(pid)
        return _same_start(proc, start) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def supervisor_of(state: dict[str, Any]) -> tuple[int | None, float | None]:
    """(pid, create_time) of the supervisor a state names, in either of its two shapes."""
    pid, start = state.get("supervisor_pid"), state.get("supervisor_start")
    nested = state.get("supervisor")
    if pid is None and isinstance(nested, dict):  # {"supervisor": {"pid": .., "create_time": ..}}
        pid, start = nested.get("pid"), nested.get("create_time")
    valid = isinstance(pid, int) and not isinstance(pid, bool) and pid > 0
    return (pid if valid else None), _float(start)


def remove_run_dir(run_dir: Path, *, ipc_paths: Iterable[str] = ()) -> None:
    """Remove the run folder and the ipc socket files of ``ipc_paths`` that lie outside it.

    Symlinks are removed, never followed: a link inside the folder (or the folder
    itself being a link) cannot make this delete anything elsewhere.
    """
    run_dir = Path(run_dir)
    for path in ipc_paths:
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):  # only sockets: never a user's file
                os.unlink(path)
    try:
        st = os.lstat(run_dir)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(run_dir)
        return
    shutil.rmtree(run_dir, ignore_errors=True)  # rmtree does not follow symlinks inside
    if run_dir.exists():
        raise RunError(f"cannot remove the run folder {run_dir}; remove it by hand")


def _plan_ipc_paths(state: dict[str, Any] | None) -> list[str]:
    """Absolute ipc paths a dead run bound: from ``plan`` or ``endpoints`` (replica -> socket)."""
    state = state or {}
    binds: list[Any] = []
    plan = state.get("plan")
    if isinstance(plan, dict):
        for replica in plan.get("replicas") or ():
            for sock in (replica or {}).get("sockets") or ():
                binds.extend((sock or {}).get("bind") or ())
    endpoints = state.get("endpoints")
    if isinstance(endpoints, dict):
        for sockets in endpoints.values():
            for sock in (sockets or {}).values() if isinstance(sockets, dict) else ():
                binds.extend((sock or {}).get("bind") or ())
    return [ep[len("ipc://"):] for ep in binds if isinstance(ep, str) and ep.startswith("ipc:///")]


def _make_parents(folder: Path) -> None:
    # The state root holds every run of this user: private as well.
    if not folder.is_dir():
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create the state folder {folder}: {exc.strerror}") from None


def _same_start(proc: psutil.Process, start: float | None) -> bool:
    return start is not None and abs(proc.create_time() - start) < _START_TOLERANCE


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
