"""A run's ``ipc:`` resources: made before any node starts, handed to the nodes, removed at the end.

``create_all(plan)`` makes every resource of a plan (docs/reference.md#ipc-resources:
SysV message queues, shared-memory segments and semaphores with ``IPC_CREAT |
IPC_EXCL``; socket pairs; fifos in the run folder) and returns ``Resources``, or
raises ``IpcError`` with one sentence, having removed whatever it had made. The
supervisor then asks ``Resources`` for each replica's environment (``env_for``),
its inherited fds (``fds_for``) and, inside a forked child, its ``node.ipc``
objects (``enter_child``). ``records()`` go to the state file, so
``remove_records`` (in ``records.py``) can remove them after a dead supervisor.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import IpcError
from orchestrator.ipc.keys import (
    KINDS,
    auto_key,
    close_objects,
    env_prefix,
    ftok_key,
    keys_in_use,
    live_table,
    msgmax,
    open_from_env,
    what,
)
from orchestrator.ipc.records import describe, remove_records, summary
from orchestrator.plan import IpcPlan, Plan, ReplicaPlan
from orchestrator.structs import field, struct

# The whole IPC API in one place: records live in records.py, keys in keys.py.
__all__ = ["Resources", "close_objects", "create_all", "describe", "open_from_env",
           "remove_records", "summary"]

SEMVMX = 32767
DEFAULT_SEMAPHORE_VALUE = 1  # a declared semaphore is a free lock unless `value:` says otherwise
_AUTO_RETRIES = 16  # another run may take a free auto key between our look and our create
Record = dict[str, Any]


@struct
class Resource:
    plan: IpcPlan
    key: int | None = None
    id: int | None = None
    obj: Any = None  # the sysv_ipc object (made here, inherited by forked nodes)
    ends: dict[str, socket.socket] = field(default_factory=dict)  # socketpair: node -> its end

    def record(self) -> Record:
        p = self.plan
        rec: Record = {"name": p.name, "type": p.type}
        if p.type in KINDS:
            rec.update(key=self.key, id=self.id, mode=p.mode)
            extra = {"msgqueue": ("max_bytes", p.max_bytes), "shm": ("size", p.size),
                     "semaphore": ("value", _initial(p))}[p.type]
            if extra[1] is not None:
                rec[extra[0]] = extra[1]
        elif p.type == "socketpair":
            rec.update(between=list(p.between), fds=[self.ends[n].fileno() for n in p.between])
        else:
            rec.update(path=p.path, mode=p.mode)
        return rec


class Resources:
    """The live resources of one run, by name."""

    def __init__(self, items: Mapping[str, Resource]) -> None:
        self.items = dict(items)

    def records(self) -> list[Record]:
        return [r.record() for r in self.items.values()]

    def _mine(self, rp: ReplicaPlan) -> list[Resource]:
        return [self.items[n] for n in rp.ipc if n in self.items]

    def env_for(self, rp: ReplicaPlan) -> dict[str, str]:
        """``TOPO_IPC_<NAME>_TYPE`` and ``_KEY``/``_ID``, ``_FD`` or ``_PATH``.

        See docs/reference.md#ipc-resources.
        """
        env: dict[str, str] = {}
        for r in self._mine(rp):
            prefix = env_prefix(r.plan.name)
            env[prefix + "_TYPE"] = r.plan.type
            if r.plan.type in KINDS:
                env[prefix + "_KEY"] = str(r.key)
                env[prefix + "_ID"] = str(r.id)
            elif r.plan.type == "socketpair" and rp.node in r.ends:
                env[prefix + "_FD"] = str(r.ends[rp.node].fileno())
            elif r.plan.path is not None:
                env[prefix + "_PATH"] = r.plan.path
        return env

    def fds_for(self, rp: ReplicaPlan) -> tuple[int, ...]:
        """The socket-pair ends replica ``rp`` must inherit (its own end of each pair it lists)."""
        return tuple(r.ends[rp.node].fileno() for r in self._mine(rp) if rp.node in r.ends)

    def enter_child(self, rp: ReplicaPlan) -> dict[str, Any]:
        """Inside a forked child: keep only ``rp``'s own socket-pair ends; its ``node.ipc``.

        The other ends are closed here, so a peer's EOF is not held open by an
        unrelated node. A segment is attached in the child only (the supervisor
        holds none), so ``attached`` in ``topo ps`` counts the nodes that use it.
        """
        mine = {n for n in rp.ipc if n in self.items}
        for name, r in self.items.items():
            for node, end in r.ends.items():
                if name not in mine or node != rp.node:
                    end.close()
        objects: dict[str, Any] = {}
        for r in self._mine(rp):
            if r.plan.type == "socketpair":
                objects[r.plan.name] = r.ends[rp.node]
            elif r.plan.type == "fifo":
                objects[r.plan.name] = r.plan.path
            else:
                if r.plan.type == "shm":
                    r.obj.attach()
                objects[r.plan.name] = r.obj
        return objects

    def close(self) -> None:
        """Close the supervisor's socket-pair ends (idempotent)."""
        for r in self.items.values():
            for end in r.ends.values():
                end.close()

    def remove(self) -> list[str]:
        """Close, remove every SysV object and fifo this run made; say what was removed."""
        self.close()
        said = remove_records([r.record() for r in self.items.values() if r.id is not None])
        for r in self.items.values():
            if r.plan.type == "fifo" and r.plan.path:
                with contextlib.suppress(OSError):
                    if stat.S_ISFIFO(os.lstat(r.plan.path).st_mode):
                        os.unlink(r.plan.path)
        self.items.clear()
        return said


def create_all(
    plan: Plan,
    *,
    on_change: Callable[[list[Record]], None] | None = None,
    keys_taken: Callable[[], set[int]] = keys_in_use,
) -> Resources:
    """Make every resource of ``plan``; on any failure remove what was made and raise ``IpcError``.

    ``on_change`` gets the records after each resource is made, so a state file
    names them before the next one exists (a SIGKILL in between leaves nothing
    unrecorded).
    """
    done = Resources({})
    taken: set[int] | None = None
    try:
        for p in plan.ipc.values():
            if p.type in KINDS and p.key is None and taken is None:
                taken = keys_taken() | {q.key for q in plan.ipc.values() if q.key is not None}
            done.items[p.name] = _create(plan.run_id, p, taken)
            if on_change is not None:
                on_change(done.records())
    except BaseException:
        done.remove()
        if on_change is not None:
            on_change([])
        raise
    return done


def _create(run_id: str, p: IpcPlan, taken: set[int] | None) -> Resource:
    if p.type == "socketpair":
        return _socketpair(p)
    if p.type == "fifo":
        return _fifo(p)
    explicit = p.key is not None or p.key_from.startswith("ftok:")
    for _ in range(1 if explicit else _AUTO_RETRIES):
        if p.key is not None:
            key = p.key
        elif p.key_from.startswith("ftok:"):
            key = ftok_key(p.key_from, p.name)
        else:
            assert taken is not None
            key = auto_key(run_id, p.name, taken)
        taken = taken if taken is not None else set()
        taken.add(key)
        made = _sysv(p, key, explicit)
        if made is not None:
            return made
    raise IpcError(f"every SysV key tried for IPC resource {p.name} was taken meanwhile; "
                   "try again, or give it an explicit `key:`")


def _initial(p: IpcPlan) -> int:
    return DEFAULT_SEMAPHORE_VALUE if p.value is None else p.value


def _sysv(p: IpcPlan, key: int, explicit: bool) -> Resource | None:
    """Create one SysV object with ``key``; None when an auto key turned out taken."""
    # deferred: sysv_ipc, a C extension, loads only in runs that declare SysV resources
    import sysv_ipc

    label = f"{what(p.type)} {p.name}"
    if p.type == "semaphore" and not 0 <= _initial(p) <= SEMVMX:
        # Checked first: sysv_ipc makes the set, then fails to set the value, and leaks it.
        raise IpcError(f"the kernel refuses {label}: its value {_initial(p)} is over "
                       f"SEMVMX ({SEMVMX})")
    if p.type == "shm" and not p.size:
        raise IpcError(f"{label} needs a size of at least 1 byte")
    try:
        if p.type == "msgqueue":
            obj = sysv_ipc.MessageQueue(key, sysv_ipc.IPC_CREX, p.mode, msgmax())
        elif p.type == "shm":
            obj = sysv_ipc.SharedMemory(key, sysv_ipc.IPC_CREX, p.mode, p.size, b"\0")
        else:
            obj = sysv_ipc.Semaphore(key, sysv_ipc.IPC_CREX, p.mode, _initial(p))
    except sysv_ipc.ExistentialError:
        if not explicit:
            return None
        raise IpcError(_taken(p, key)) from None
    except sysv_ipc.PermissionsError as exc:
        raise IpcError(f"permission refused to create {label} with key {key:#x}: {exc}") from None
    except (MemoryError, ValueError, OSError, sysv_ipc.Error) as exc:
        size = f" of {p.size} bytes" if p.type == "shm" else ""
        raise IpcError(f"the kernel refused {label}{size}: {_reason(exc)}") from None
    made = Resource(p, key=key, id=int(obj.id), obj=obj)
    try:
        if p.type == "msgqueue" and p.max_bytes is not None:
            obj.max_size = p.max_bytes
        if p.type == "shm":
            obj.detach()  # forked nodes would inherit the supervisor's attachment
    except (sysv_ipc.Error, ValueError, OSError) as exc:
        Resources({p.name: made}).remove()
        if isinstance(exc, sysv_ipc.PermissionsError):
            raise IpcError(
                f"permission refused to set the byte limit of {label} to {p.max_bytes}: "
                f"over this kernel's msgmnb ({_read_kernel('msgmnb')}) a queue needs "
                "CAP_SYS_RESOURCE; use a smaller max_bytes") from None
        raise IpcError(f"the kernel refused {label}: {_reason(exc)}") from None
    return made


def _taken(p: IpcPlan, key: int) -> str:
    kind, word, flag = KINDS[p.type]
    holder = next((row for row in live_table(kind).values() if row.key == key), None)
    ident = f" (id {holder.id})" if holder is not None else ""
    remove = f", or remove it with `ipcrm {flag} {holder.id}`" if holder is not None else ""
    return (f"the key {key:#x} of IPC resource {p.name} is taken by an existing {word}{ident} "
            f"that this run did not create; choose another key or `key: auto`{remove}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "not enough memory for it (ENOMEM)"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"a system-wide limit is reached ({text})"
    return text


def _read_kernel(name: str) -> str:
    try:
        return Path(f"/proc/sys/kernel/{name}").read_text().strip()
    except OSError:
        return "?"


def _socketpair(p: IpcPlan) -> Resource:
    if len(p.between) != 2:
        raise IpcError(f"socketpair {p.name} must be between exactly two nodes")
    try:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        raise IpcError(f"cannot make socketpair {p.name}: {exc.strerror}") from None
    return Resource(p, ends={p.between[0]: a, p.between[1]: b})


def _fifo(p: IpcPlan) -> Resource:
    assert p.path is not None
    try:
        os.makedirs(os.path.dirname(p.path), mode=0o700, exist_ok=True)
        os.mkfifo(p.path, p.mode)
        os.chmod(p.path, p.mode)  # exactly the mode, whatever the umask took away
    except OSError as exc:
        raise IpcError(f"cannot make fifo {p.name} at {p.path}: {exc.strerror}") from None
    return Resource(p)
