"""`topo gc`: clean every run whose supervisor is dead (docs/reference.md#runs).

A run's supervisor may die without cleaning up (SIGKILL, a crash, a reboot of
the session). Its state file still names its processes and IPC resources: they
are killed and removed (``folder.clean_leftovers``), but only what still
matches what was recorded, and then its folder goes.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.runs.folder import clean_leftovers, read_state, supervisor_alive


def gc(state_root: Path) -> list[str]:
    """Clean every run under ``state_root`` whose supervisor is dead: its processes, its
    recorded resources (only those whose key and id still match) and its folder.

    Live runs and folders without a readable state file are left alone. Returns
    one sentence per run looked at.
    """
    said: list[str] = []
    try:
        # a dot folder is not a run (.cache holds `topo validate`'s answers)
        folders = sorted(p for p in Path(state_root).iterdir()
                         if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return said
    for folder in folders:
        state = read_state(folder)
        if state is None:
            said.append(f"{folder.name}: left alone, it has no state file topo can read")
            continue
        if supervisor_alive(state):
            continue
        ipc = clean_leftovers(folder, state)
        said.append(f"{folder.name}: removed the dead run" + "".join(f"; {s}" for s in ipc))
    return said
