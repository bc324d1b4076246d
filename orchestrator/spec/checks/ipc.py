"""IPC resources (E130-E132): names, fields that fit the type, keys, and this kernel's limits.

What each resource type takes is in docs/reference.md#ipc-resources. The limits are
read at validation time through ``kernel_limits``, a small function tests replace
to pretend a smaller or larger kernel.
"""

from __future__ import annotations

import os
from collections import defaultdict

from orchestrator.spec.checks.context import Context
from orchestrator.spec.phrases import did_you_mean

# Fields that only mean something for some resource types.
FIELD_TYPES: dict[str, frozenset[str]] = {
    "size": frozenset({"shm"}),
    "max_bytes": frozenset({"msgqueue"}),
    "value": frozenset({"semaphore"}),
    "between": frozenset({"socketpair"}),
    "key": frozenset({"msgqueue", "shm", "semaphore"}),
    "mode": frozenset({"msgqueue", "shm", "semaphore", "fifo"}),
}
SEMVMX = 32767  # the largest semaphore value: fixed in Linux (SEMVMX in linux/sem.h)
# How many of each kind the kernel allows system-wide, by /proc/sys/kernel name.
COUNT_LIMITS = {"shm": "shmmni", "msgqueue": "msgmni", "semaphore": "semmni"}


def _read_int(name: str) -> int | None:
    try:
        with open(f"/proc/sys/kernel/{name}") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def kernel_limits() -> dict[str, int]:
    """This kernel's SysV limits; a limit that cannot be read is left out (not checked)."""
    limits = {"semvmx": SEMVMX}
    for name in ("shmmax", "msgmnb", "shmmni", "msgmni"):
        value = _read_int(name)
        if value is not None:
            limits[name] = value
    try:
        with open("/proc/sys/kernel/sem") as f:
            fields = [int(x) for x in f.read().split()]
        limits["semmni"] = fields[3]  # SEMMSL SEMMNS SEMOPM SEMMNI
    except (OSError, ValueError, IndexError):
        pass
    return limits


def check_ipc(ctx: Context) -> None:
    resources = ctx.topology.ipc
    users: dict[str, list[str]] = defaultdict(list)
    for node, spec in ctx.topology.nodes.items():
        for i, name in enumerate(spec.ipc):
            if name in resources:
                users[name].append(node)
            else:
                ctx.emit(ctx.item(("nodes", node, "ipc"), i), "E130",
                         f"node {node} uses the IPC resource '{name}', but the file declares no "
                         f"such resource{did_you_mean(name, resources)}",
                         "declare it under the top-level `ipc:`" + _declared(resources))
    for name, res in resources.items():
        for fld, types in FIELD_TYPES.items():
            if fld in res.model_fields_set and res.type not in types:
                ctx.emit(("ipc", name, fld), "E130",
                         f"IPC resource {name} is a {res.type}, which has no `{fld}`",
                         f"`{fld}` applies to {', '.join(sorted(types))} only; remove it", key=True)
        if res.type == "shm" and res.size is None:
            ctx.emit(("ipc", name), "E130", f"shared-memory segment {name} has no size",
                     "add `size:`, like `size: 1MiB`", key=True)
        if res.type == "socketpair":
            _socketpair(ctx, name, users.get(name, []))
    _keys(ctx)
    _limits(ctx)


def _declared(resources: object) -> str:
    names = list(resources) if isinstance(resources, dict) else []
    return f" (declared: {', '.join(names)})" if names else ""


def _socketpair(ctx: Context, name: str, users: list[str]) -> None:
    res = ctx.topology.ipc[name]
    nodes = ctx.topology.nodes
    between = res.between or []
    path = ("ipc", name, "between") if res.between is not None else ("ipc", name)
    problem = ""
    if len(between) != 2 or between[0] == between[1]:
        problem = f"socketpair {name} must be between exactly two different nodes"
    elif unknown := [n for n in between if n not in nodes]:
        problem = f"socketpair {name} is between {unknown[0]}, but there is no node of that name"
    elif many := [n for n in between if nodes[n].replicas != 1]:
        problem = (f"socketpair {name} joins node {many[0]}, which has {nodes[many[0]].replicas} "
                   "replicas, but a socket pair has exactly two ends")
    elif missing := [n for n in between if n not in users]:
        problem = f"node {missing[0]} is an end of socketpair {name} but does not list it in `ipc:`"
    if problem:
        ctx.emit(path, "E130", problem, "write `between: [a, b]` with two single-replica nodes, "
                 f"and list {name} under `ipc:` in both")
    for node in users:
        if node not in between and len(between) == 2:
            ctx.emit(("nodes", node, "ipc"), "E130",
                     f"node {node} lists socketpair {name}, whose ends are {between[0]} and "
                     f"{between[1]}", f"add {node} to `between:` in place of another node, or "
                     f"remove {name} from its `ipc:`")


def _keys(ctx: Context) -> None:
    seen: dict[object, str] = {}
    for name, res in ctx.topology.ipc.items():
        if res.type not in FIELD_TYPES["key"] or res.key == "auto":
            continue
        if isinstance(res.key, int):
            ident: object = res.key
        else:
            _, rest = res.key.split(":", 1)
            path, char = rest.rsplit(":", 1)
            ident = ("ftok", os.path.normpath(path), char)
        if ident in seen:
            ctx.emit(("ipc", name, "key"), "E131",
                     f"IPC resources {seen[ident]} and {name} have the same key {res.key}, so they "
                     "would be the same kernel object", "give each resource its own key, "
                     "or use `key: auto`")
        else:
            seen[ident] = name


def _limits(ctx: Context) -> None:
    limits = kernel_limits()
    counts: dict[str, int] = defaultdict(int)
    for name, res in ctx.topology.ipc.items():
        counts[res.type] += 1
        for fld, limit_name, what in (("size", "shmmax", "shared-memory segment size"),
                                      ("max_bytes", "msgmnb", "message queue size"),
                                      ("value", "semvmx", "semaphore value")):
            value, limit = getattr(res, fld), limits.get(limit_name)
            if (value is not None and limit is not None and res.type in FIELD_TYPES[fld]
                    and value > limit):
                ctx.emit(("ipc", name, fld), "E132",
                         f"IPC resource {name} asks for {fld} {value}, over this kernel's largest "
                         f"{what} ({limit_name} = {limit})",
                         f"use at most {limit}, or raise /proc/sys/kernel/{limit_name}"
                         if limit_name != "semvmx" else f"use at most {limit}")
    for kind, limit_name in COUNT_LIMITS.items():
        limit = limits.get(limit_name)
        if limit is not None and counts[kind] > limit:
            ctx.emit(("ipc",), "E132",
                     f"the file declares {counts[kind]} {kind} resources, more than this kernel "
                     f"allows in all ({limit_name} = {limit})",
                     f"use fewer, or raise {limit_name}", key=True)
