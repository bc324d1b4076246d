"""`topo ps`: every replica of a run with its pid, state, restarts, uptime, exit code, CPU, memory.

A live run answers through its control channel, so the states are the
supervisor's own, this instant; a dead run's last state file is shown with the
run marked dead. CPU (user + system seconds) and memory (resident set) come from
psutil. The run's IPC resources follow, with their live state. Whether the run
uses CURVE (``security: {curve: true}``) is a line under the run's own.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psutil

from orchestrator.errors import ControlError
from orchestrator.ipc.records import describe
from orchestrator.paths import KEYS_DIR
from orchestrator.runs.client import Run, all_runs, find_run, human_duration, print_table
from orchestrator.runs.control import request
from orchestrator.runs.folder import supervisor_alive


def ps(target: str | None, *, as_json: bool) -> int:
    if target is None:
        runs = all_runs()
        if not runs:
            print("[]" if as_json else "no runs")
            return 0
    else:
        runs = [find_run(target)]
    views = [_view(run) for run in runs]
    if as_json:
        print(json.dumps(views[0] if target is not None else views, indent=2))
        return 0
    for i, view in enumerate(views):
        if i:
            print()
        _print_view(view)
    return 0


def _view(run: Run) -> dict[str, Any]:
    state: dict[str, Any] = run.state or {}
    alive = run.alive
    if alive:
        try:
            state = request(run.folder, {"cmd": "ps"})
        except ControlError:
            # Starting (no control socket yet) or it died between the two looks.
            alive = supervisor_alive(state)
    replicas = []
    records = state.get("replicas") if isinstance(state.get("replicas"), dict) else {}
    for name, rec in (records or {}).items():
        pid = rec.get("pid") if alive else None
        row = {"name": name, "node": rec.get("node", name.rsplit(".", 1)[0]), "pid": pid,
               "state": rec.get("status") if alive else "dead",
               "restarts": rec.get("restarts", 0), "exit_code": rec.get("exit_code"),
               "uptime": None, "cpu_seconds": None, "rss_bytes": None}
        if pid:
            row.update(_usage(pid))
            started = rec.get("started")
            if isinstance(started, int | float):
                row["uptime"] = round(time.time() - started, 3)
        replicas.append(row)
    view = {"run_id": run.run_id, "alive": alive, "folder": str(run.folder),
            "file": state.get("file"), "curve": _curve(run, state), "replicas": replicas,
            "ipc": _ipc(state)}
    return view


def _curve(run: Run, state: dict[str, Any]) -> bool:
    """Whether the run uses CURVE: its state says so; before the supervisor wrote that
    (a run still starting, or a state file of an older topo), its key folder does."""
    curve = state.get("curve")
    return curve if isinstance(curve, bool) else (run.folder / KEYS_DIR).is_dir()


def _usage(pid: int) -> dict[str, Any]:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            cpu = proc.cpu_times()
            return {"cpu_seconds": round(cpu.user + cpu.system, 3),
                    "rss_bytes": proc.memory_info().rss}
    except psutil.Error:
        return {}


def _ipc(state: dict[str, Any]) -> list[dict[str, Any]]:
    records = state.get("ipc")
    if not isinstance(records, list) or not records:
        return []
    return describe(records)


def _print_view(view: dict[str, Any]) -> None:
    status = "alive" if view["alive"] else "DEAD (its supervisor is gone; `topo down` cleans up)"
    print(f"run {view['run_id']}: {status}; folder {view['folder']}")
    print(f"security: CURVE on tcp and ipc links (public keys: `topo keys {view['run_id']}`)"
          if view["curve"] else "security: none (no CURVE; links are plain)")
    table = [["REPLICA", "PID", "STATE", "RESTARTS", "UPTIME", "EXIT", "CPU", "MEM"]]
    for r in view["replicas"]:
        table.append([
            r["name"], str(r["pid"] or "-"), str(r["state"]), str(r["restarts"]),
            human_duration(r["uptime"]) if r["uptime"] is not None else "-",
            "-" if r["exit_code"] is None else str(r["exit_code"]),
            f"{r['cpu_seconds']:.2f}s" if r["cpu_seconds"] is not None else "-",
            f"{r['rss_bytes'] / 2**20:.1f}MiB" if r["rss_bytes"] is not None else "-",
        ])
    print_table(table)
    if view["ipc"]:
        print()
        present = {k for res in view["ipc"] for k in res}
        keys = [k for k in _IPC_COLUMNS if k in present]
        rows = [["IPC", "TYPE", *(k.upper() for k in keys)]]
        for res in view["ipc"]:
            rows.append([str(res.get("name")), str(res.get("type")),
                         *(_cell(k, res.get(k)) for k in keys)])
        print_table(rows)


# Who it is first (as `ipcs` shows it), then its live state.
_IPC_COLUMNS = ("key", "id", "mode", "messages", "bytes", "max_bytes", "size", "attached",
                "value", "live")


def _cell(key: str, value: object) -> str:
    if value is None:
        return "-"
    if key == "key" and isinstance(value, int) and not isinstance(value, bool):
        return f"0x{value:08x}"  # as `ipcs` shows keys
    return str(value)
