"""A run's private folder: create it (cleaning what a dead run left), the state file, node specs.

Layout (docs/reference.md#runs)::

    <run_dir>/            0700
        state.json        the supervisor's state, replaced atomically
        logs/<node>.<replica>.log
        spec/<node>.<replica>.json   TOPO_SPEC of each command replica
        <relative ipc endpoints>

The state file is the supervisor's to fill. This module reads only a few keys
of it: ``run_id``; ``supervisor: {pid, start}`` (start time in clock ticks, see
``procinfo``); and, to clean up after a dead run, ``replicas`` (name -> record
with ``pid`` and ``start``) plus ``endpoints`` (replica -> socket -> ``{bind:
[...]}``) for ipc files bound outside the folder.
"""

from __future__ import annotations

import _signal  # the C module under `signal`: plain ints, none of its enums built
import contextlib
import json
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import RunAlive, RunError
from orchestrator.runs.procinfo import is_alive, proc_start

if TYPE_CHECKING:  # imported lazily: `topo down` and `topo ps` start faster without them
    from orchestrator.plan import Plan

STATE_FILE = "state.json"


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
    write_state(run_dir, {"run_id": run_id, "supervisor": me(), "status": "starting"})


def me() -> dict[str, int | None]:
    """This process as a state file records a supervisor."""
    return {"pid": os.getpid(), "start": proc_start(os.getpid())}


def clean_leftovers(run_dir: Path, state: dict[str, Any] | None) -> list[str]:
    """Kill what a dead run left running, remove its SysV resources, folder and ipc files.

    Returns what was said about its recorded IPC resources (``ipc.records.remove_records``).
    """
    run_id = str(state.get("run_id", run_dir.name)) if state else run_dir.name
    said: list[str] = []
    if state:
        for pid, start in recorded_pids(state):
            kill_leftover(pid, start, run_id)
        # deferred: the SysV tables (and dataclasses, ~7 ms) only for a dead run's leftovers;
        # `topo down` and `topo ps` of a live run never need them
        from orchestrator.ipc.records import remove_records

        said = remove_records(state.get("ipc") if isinstance(state.get("ipc"), list) else [])
    remove_run_dir(run_dir, ipc_paths=_plan_ipc_paths(state))
    return said


def kill_leftover(pid: int, start: int | None, run_id: str) -> bool:
    """SIGKILL the process group of ``pid`` if that process is still one of run ``run_id``'s.

    "Still ours" means the process was started at the recorded ``start`` time, or
    carries ``TOPO_RUN=<run_id>`` in its environment: a pid that was reused by an
    unrelated process is left alone.
    """
    if pid in (os.getpid(), os.getppid()) or pid <= 1:
        return False
    ours = is_alive(pid, start)
    if not ours:
        ours = _environ_of(pid).get(b"TOPO_RUN") == run_id.encode()
    if not ours:
        return False
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ProcessLookupError):
        if pgid == pid and pgid != os.getpgrp():
            os.killpg(pgid, _signal.SIGKILL)  # grandchildren share the node's group
        else:
            os.kill(pid, _signal.SIGKILL)
    return True


def recorded_pids(state: dict[str, Any]) -> Iterator[tuple[int, int | None]]:
    """(pid, start) of every node process a state file records."""
    records = state.get("replicas") or {}
    for rec in records.values() if isinstance(records, dict) else ():
        if isinstance(rec, dict) and _int(rec.get("pid")):
            yield rec["pid"], _int(rec.get("start"))


def write_specs(plan: Plan) -> None:
    """Write each command replica's TOPO_SPEC file: the run's facts and its resolved plan."""
    for replica in plan.replicas:
        if not replica.spec_path:
            continue  # a forked node: its plan is in memory
        doc = {
            "run_id": plan.run_id,
            "run_dir": plan.run_dir,
            "file": plan.file,
            "pythonpath": list(plan.pythonpath),
            "replica": replica.to_dict(),
        }
        fd = os.open(replica.spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(doc, separators=(",", ":")))


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Replace ``state.json`` atomically: a reader sees the old state or the new, never half."""
    path = Path(run_dir) / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        # dumps, not dump: json.dump encodes in Python, chunk by chunk; dumps in C, 4x faster
        f.write(json.dumps(state, separators=(",", ":")))
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
    return is_alive(*supervisor_of(state))


def supervisor_of(state: dict[str, Any]) -> tuple[int | None, int | None]:
    """(pid, start) of the supervisor a state file names."""
    rec = state.get("supervisor")
    if not isinstance(rec, dict):
        return None, None
    return _int(rec.get("pid")), _int(rec.get("start"))


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
    """Absolute ipc paths a dead run bound, from ``endpoints`` (replica -> socket -> binds)."""
    endpoints = (state or {}).get("endpoints")
    binds: list[Any] = []
    for sockets in endpoints.values() if isinstance(endpoints, dict) else ():
        for sock in sockets.values() if isinstance(sockets, dict) else ():
            binds.extend((sock or {}).get("bind") or () if isinstance(sock, dict) else ())
    return [ep[len("ipc://"):] for ep in binds if isinstance(ep, str) and ep.startswith("ipc:///")]


def _make_parents(folder: Path) -> None:
    # The state root holds every run of this user: private as well.
    if not folder.is_dir():
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create the state folder {folder}: {exc.strerror}") from None


def _environ_of(pid: int) -> dict[bytes, bytes]:
    """The environment ``pid`` started with ({} when it is gone or not ours to read)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            entries = f.read().split(b"\0")
    except OSError:
        return {}
    return dict(e.split(b"=", 1) for e in entries if b"=" in e)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
