"""The commands that reach a run after `topo up`: ls, ps, restart, down.

A run is found by id in the state root (``paths.state_root``); with no id, the
only run there is meant. A live run is reached through its control channel
(``control.py``); a dead one (its supervisor gone) is read from its state
file, and `topo down` removes what it left.

Exit status: 0 done, 1 the run is unknown or did not do what was asked, 2 bad
arguments.
"""

from __future__ import annotations

import _signal  # the C module under `signal`: plain ints, none of its enums built
import json
import os
import re
import select
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator import paths
from orchestrator.errors import ControlError, RunError, UsageError
from orchestrator.paths import OUTPUT_LOG
from orchestrator.runs.control import request
from orchestrator.runs.folder import clean_leftovers, read_state, supervisor_alive, supervisor_of

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DOWN_GRACE = 10.0  # seconds beyond the run's own stop budget before the supervisor is killed


class Run:
    def __init__(self, run_id: str, folder: Path, state: dict[str, Any] | None) -> None:
        self.run_id = run_id
        self.folder = folder
        self.state = state

    @property
    def alive(self) -> bool:
        return self.state is not None and supervisor_alive(self.state)


def all_runs() -> list[Run]:
    root = paths.state_root()
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    return [Run(e.name, Path(e.path), read_state(Path(e.path)))
            for e in entries if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]


def find_run(target: str | None) -> Run:
    """The run ``target`` names: a run id, a topology file, or None for the only run.

    A file means the run started from it: the one whose state file records that
    path (as `topo up` resolved it). Its ``name:`` is not read again: the file may
    have changed since, and the id may have come from ``-p``.
    """
    if target is None:
        runs = all_runs()
        if len(runs) == 1:
            return runs[0]
        if not runs:
            raise ControlError(f"no run is known (none under {paths.state_root()})")
        raise UsageError(f"several runs are known; name one: {', '.join(r.run_id for r in runs)}")
    if _is_file(target):
        return _run_of_file(target)
    if not _RUN_ID.match(target):
        raise UsageError(f"{target!r} is neither a run id nor a topology file")
    folder = paths.run_dir(target)
    if not folder.is_dir():
        known = ", ".join(r.run_id for r in all_runs()) or "none"
        raise ControlError(f"no run named {target} (known runs: {known})")
    return Run(target, folder, read_state(folder))


def live_run(target: str | None) -> Run:
    """``find_run`` for a command that watches a live run (top, tap): a run that is not
    known, or not running, is the user's mistake (``UsageError``, exit 2)."""
    try:
        run = find_run(target)
    except ControlError as exc:
        raise UsageError(str(exc)) from None
    if not run.alive:
        raise UsageError(f"run {run.run_id} is not running (`topo ps {run.run_id}`)")
    return run


def _run_of_file(file: str) -> Run:
    path = str(Path(file).resolve())
    runs = all_runs()
    started = [r for r in runs if r.state is not None and r.state.get("file") == path]
    if len(started) == 1:
        return started[0]
    if started:
        raise UsageError(f"several runs were started from {file}; name one: "
                         f"{', '.join(r.run_id for r in started)}")
    known = ", ".join(r.run_id for r in runs) or "none"
    raise ControlError(f"no run was started from {file} (known runs: {known})")


# -- ls --------------------------------------------------------------------------------------------


def ls(*, as_json: bool) -> int:
    rows = []
    for run in all_runs():
        state = run.state or {}
        replicas = state.get("replicas") or {}
        rows.append({
            "run_id": run.run_id, "alive": run.alive, "folder": str(run.folder),
            "file": state.get("file"), "started": state.get("started"),
            "replicas": len(replicas) if isinstance(replicas, dict) else 0,
        })
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [["RUN", "STATUS", "REPLICAS", "UPTIME", "FILE", "FOLDER"]]
    for row in rows:
        table.append([str(row["run_id"]), "alive" if row["alive"] else "dead",
                      str(row["replicas"]), _uptime(row["started"]) if row["alive"] else "-",
                      str(row["file"] or "-"), str(row["folder"])])
    print_table(table)
    return 0


# -- restart ---------------------------------------------------------------------------------------


def restart(target: str, names: list[str], *, wait: float = 60.0) -> int:
    """Restart nodes or replicas of a live run; return once each is ready again."""
    restart_run(find_run(target), names, wait=wait)
    return 0


def restart_run(run: Run, names: list[str], *, wait: float = 60.0) -> None:
    if not run.alive:
        raise ControlError(f"run {run.run_id} is not running (its supervisor is gone); "
                           f"`topo down {run.run_id}` removes what it left")
    before = {n: r.get("pid") for n, r in _replicas(request(run.folder, {"cmd": "ps"})).items()}
    restarting = request(run.folder, {"cmd": "restart", "targets": names})["restarting"]
    deadline = time.monotonic() + wait
    delay = 0.002
    while True:
        now = _replicas(request(run.folder, {"cmd": "ps"}))
        pending = [n for n in restarting
                   if not (now[n]["status"] == "ready" and now[n]["pid"] != before.get(n))]
        failed = [n for n in pending if now[n]["status"] in ("failed", "exited")]
        if failed:
            raise RunError(f"{', '.join(failed)} did not come back: "
                           + ", ".join(f"{n} {now[n]['status']} (code {now[n]['exit_code']})"
                                       for n in failed))
        if not pending:
            print(f"restarted {', '.join(restarting)}", file=sys.stderr)
            return
        if time.monotonic() > deadline:
            raise RunError(f"{', '.join(pending)} not ready again within {wait:g}s")
        time.sleep(delay)  # polls the supervisor against the deadline above
        delay = min(delay * 2, 0.05)


# -- down ------------------------------------------------------------------------------------------


def down(target: str | None) -> int:
    """Stop a run and remove everything it made; also after its supervisor died."""
    run = find_run(target)
    down_run(run)
    print(f"run {run.run_id} is down", file=sys.stderr)
    return 0


def down_run(run: Run) -> None:
    if run.alive:
        _stop_supervisor(run)
    state = read_state(run.folder)
    if run.folder.exists() or state is not None:
        clean_leftovers(run.folder, state if state is not None else run.state)


def _stop_supervisor(run: Run) -> None:
    assert run.state is not None
    pid, _ = supervisor_of(run.state)
    assert pid is not None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    events = _open_at_end(run.folder / OUTPUT_LOG)  # still readable once the folder is gone
    try:
        budget = float(run.state.get("stop_budget") or 30.0) + _DOWN_GRACE
        try:
            request(run.folder, {"cmd": "down"})
        except ControlError:
            os.kill(pid, _signal.SIGTERM)  # no answer: the signal asks the same
        if not select.select([pidfd], [], [], budget)[0]:
            print(f"topo: the supervisor of {run.run_id} (pid {pid}) did not stop within "
                  f"{budget:g}s; killing it", file=sys.stderr)
            os.kill(pid, _signal.SIGKILL)
            select.select([pidfd], [], [], 5.0)
    finally:
        os.close(pidfd)
        if events is not None:
            _tell_forced_stops(events)


def _open_at_end(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    os.lseek(fd, 0, os.SEEK_END)
    return fd


def _tell_forced_stops(fd: int) -> None:
    """Say which nodes had to be killed while the run stopped: why `down` took its time."""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        head, sep, message = line.partition(" | ")
        if sep and head.strip() == "topo" and "SIGKILL" in message:
            print(f"topo: {message}", file=sys.stderr)


# -- helpers ---------------------------------------------------------------------------------------


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _replicas(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    replicas = state.get("replicas")
    return replicas if isinstance(replicas, dict) else {}


def _uptime(started: object) -> str:
    if not isinstance(started, int | float):
        return "-"
    return human_duration(time.time() - started)


def human_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _is_file(target: str) -> bool:
    return target.endswith((".yaml", ".yml")) or os.path.isfile(target)
