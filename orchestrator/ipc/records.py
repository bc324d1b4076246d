"""What a run recorded of its IPC resources: remove them, describe them.

The state file of a run lists each SysV object as ``{name, type, key, id, mode,
...}`` (``resources.Resource.record``). Everything here looks an object up by its
id and acts only when that id still carries the recorded key: an id the
kernel gave to somebody else's object since is never touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.ipc.keys import KINDS, PROC, Live, live_table, what


def _ours(record: Mapping[str, Any], root: Path) -> tuple[str, Live | None, Live | None]:
    """(kind, the live object the record names or None, a stranger now holding its id or None)."""
    proc_kind = KINDS[record["type"]][0]
    row = live_table(proc_kind, root).get(record["id"])
    if row is not None and row.key != record["key"]:
        return proc_kind, None, row
    return proc_kind, row, None


def _sysv_record(record: object) -> bool:
    return (isinstance(record, Mapping) and record.get("type") in KINDS
            and isinstance(record.get("id"), int) and isinstance(record.get("key"), int)
            and not isinstance(record.get("id"), bool))


def remove_records(records: Iterable[Any] | None, root: Path = PROC) -> list[str]:
    """Remove each recorded SysV object whose id still carries its key; say what happened.

    Anything else is left alone: an id now held by another key (the kernel reused
    it), a record that is not one topo wrote. Fifos and socket pairs need nothing
    here: a fifo goes with the run folder, a socket pair with its processes.
    """
    # deferred: sysv_ipc, a C extension, loads only in runs that declare SysV resources
    import sysv_ipc

    removers = {"msg": sysv_ipc.remove_message_queue, "shm": sysv_ipc.remove_shared_memory,
                "sem": sysv_ipc.remove_semaphore}
    said: list[str] = []
    for record in records or ():
        if not _sysv_record(record):
            continue
        label = f"{what(record['type'])} {record.get('name', '?')} (key {record['key']:#x}, " \
                f"id {record['id']})"
        kind, row, stranger = _ours(record, root)
        if stranger is not None:
            said.append(f"{label} is already gone; left alone id {stranger.id}, which now holds "
                        f"key {stranger.key:#x}")
            continue
        if row is None:
            said.append(f"{label} is already gone")
            continue
        try:
            removers[kind](record["id"])
        except sysv_ipc.ExistentialError:
            said.append(f"{label} is already gone")
        except sysv_ipc.Error as exc:
            said.append(f"could not remove {label}: {exc}")
        else:
            said.append(f"removed {label}")
    return said


def describe(records: Iterable[Any] | None, root: Path = PROC) -> list[dict[str, Any]]:
    """Each recorded resource with its live state, for ``topo ps``.

    Every entry has name, type, and ``live`` (False once the object is gone);
    SysV ones add key, id, mode (octal digits, like ``"0600"``) and:
    ``messages`` and ``bytes`` queued and ``max_bytes`` (msgqueue), ``size``
    and ``attached`` processes (shm), ``value`` (semaphore). A socket pair
    adds ``between``; a fifo, ``path``.
    """
    out: list[dict[str, Any]] = []
    for record in records or ():
        if not isinstance(record, Mapping):
            continue
        entry: dict[str, Any] = {k: record[k] for k in ("name", "type", "key", "id", "mode",
                                                         "path", "between") if k in record}
        if _sysv_record(record):
            _, row, _ = _ours(record, root)
            entry["live"] = row is not None
            if row is not None:
                entry["mode"] = row.mode
                entry.update(_live_state(record, row))
        elif record.get("type") == "fifo":
            entry["live"] = isinstance(record.get("path"), str) and Path(record["path"]).exists()
        else:
            entry["live"] = True  # a socket pair lives exactly as long as the supervisor
        if isinstance(entry.get("mode"), int):
            entry["mode"] = f"{entry['mode']:04o}"
        out.append(entry)
    return out


def _live_state(record: Mapping[str, Any], row: Live) -> dict[str, Any]:
    # deferred: sysv_ipc, a C extension, loads only in runs that declare SysV resources
    import sysv_ipc

    cols = row.columns
    if row.kind == "msg":
        state: dict[str, Any] = {"messages": cols.get("qnum"), "bytes": cols.get("cbytes")}
        with contextlib.suppress(sysv_ipc.Error, OSError):
            state["max_bytes"] = sysv_ipc.MessageQueue(record["key"]).max_size
        return state
    if row.kind == "shm":
        return {"size": cols.get("size"), "attached": cols.get("nattch")}
    with contextlib.suppress(sysv_ipc.Error, OSError):
        return {"value": sysv_ipc.Semaphore(record["key"]).value}
    return {}


def summary(entry: Mapping[str, Any]) -> str:
    """One line of ``describe`` for people: ``jobs  msgqueue  key 0x1f2e  id 3  mode 0600  ...``."""
    parts = [str(entry.get("name", "?")), str(entry.get("type", "?"))]
    if "key" in entry:
        parts += [f"key {entry['key']:#x}", f"id {entry.get('id')}"]
    if "mode" in entry:
        mode = entry["mode"]
        parts.append(f"mode {mode:04o}" if isinstance(mode, int) else f"mode {mode}")
    if not entry.get("live", True):
        parts.append("gone")
    elif entry.get("type") == "msgqueue" and "messages" in entry:
        limit = f" of {entry['max_bytes']}" if entry.get("max_bytes") else ""
        parts.append(f"{entry['messages']} messages, {entry['bytes']}{limit} bytes queued")
    elif entry.get("type") == "shm" and "attached" in entry:
        parts.append(f"{entry['size']} bytes, {entry['attached']} attached")
    elif entry.get("type") == "semaphore" and "value" in entry:
        parts.append(f"value {entry['value']}")
    elif entry.get("type") == "socketpair":
        parts.append("between " + " and ".join(entry.get("between", ())))
    elif entry.get("type") == "fifo":
        parts.append(str(entry.get("path", "")))
    return "  ".join(parts)
