"""SysV keys, and what the kernel holds right now: ``/proc/sysvipc`` read as tables.

- ``auto`` keys are a hash of the run id and the resource name; the next
  candidate is taken while a key is in use on the machine (any of the three
  kinds), so two runs side by side never share one.
- ``ftok:<path>:<char>`` keys come from ``ftok(3)``; the path must exist.
- ``open_from_env`` is the other side of a key: a Python program topo exec'd
  opens the objects it was handed in ``TOPO_IPC_<NAME>_*``.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
from collections.abc import Container, Iterator, Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import IpcError
from orchestrator.structs import struct

PROC = Path("/proc/sysvipc")
# topo's resource types -> /proc/sysvipc file, the word a user reads, and the ipcrm flag.
KINDS: dict[str, tuple[str, str, str]] = {
    "msgqueue": ("msg", "message queue", "-q"),
    "shm": ("shm", "shared-memory segment", "-m"),
    "semaphore": ("sem", "semaphore", "-s"),
}
KEY_LIMIT = 2**31  # keys are a C int; topo keeps to the positive ones (0 is IPC_PRIVATE)
_AUTO_TRIES = 1000


@struct(frozen=True)
class Live:
    """One row of ``/proc/sysvipc/<kind>``: key, id, permission bits and the other columns."""

    kind: str  # msg | shm | sem
    key: int
    id: int
    mode: int
    columns: Mapping[str, int]


def live_table(kind: str, root: Path = PROC) -> dict[int, Live]:
    """The ``kind`` (msg, shm, sem) objects on this machine by id; empty when unreadable."""
    try:
        lines = (root / kind).read_text().splitlines()
    except OSError:
        return {}
    if not lines:
        return {}
    header = lines[0].split()
    table: dict[int, Live] = {}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 3:
            continue
        with contextlib.suppress(ValueError):
            # perms is octal; on shm it may carry SHM_DEST / SHM_LOCKED above the 0o777 bits.
            row = {name: int(v, 8) if name == "perms" else int(v)
                   for name, v in zip(header, fields, strict=False)}
            ident = int(fields[1])
            table[ident] = Live(kind, int(fields[0]), ident, row.get("perms", 0) & 0o777, row)
    return table


def keys_in_use(root: Path = PROC) -> set[int]:
    """Every key a message queue, segment or semaphore set holds now (IPC_PRIVATE left out)."""
    return {row.key for kind in ("msg", "shm", "sem")
            for row in live_table(kind, root).values() if row.key}


def auto_key_candidates(run_id: str, name: str) -> Iterator[int]:
    """Keys for resource ``name`` of run ``run_id``, best first: the same inputs, the same keys."""
    # deferred: hashlib (OpenSSL) loads only in runs with auto keys: every node forks from here
    import hashlib

    for attempt in itertools.count():
        digest = hashlib.blake2b(f"topo\0{run_id}\0{name}\0{attempt}".encode(),
                                 digest_size=4).digest()
        key = int.from_bytes(digest, "big") % KEY_LIMIT
        if key:
            yield key


def auto_key(run_id: str, name: str, taken: Container[int]) -> int:
    """The first candidate key not in ``taken``."""
    for key in itertools.islice(auto_key_candidates(run_id, name), _AUTO_TRIES):
        if key not in taken:
            return key
    raise IpcError(f"could not find a free SysV key for IPC resource {name} "
                   f"after {_AUTO_TRIES} tries; give it an explicit `key:`")


def ftok_key(spec: str, name: str) -> int:
    """The key of ``ftok:<path>:<char>`` (path absolute by now), or ``IpcError`` with a sentence."""
    # deferred: sysv_ipc, a C extension, loads only in runs that declare SysV resources
    import sysv_ipc

    _, rest = spec.split(":", 1)
    path, _, char = rest.rpartition(":")
    if len(char) != 1 or not path:
        raise IpcError(f"IPC resource {name} has key {spec!r}; write it as ftok:<path>:<char>")
    try:
        key = int(sysv_ipc.ftok(path, ord(char), silence_warning=True))
    except (OSError, sysv_ipc.Error, ValueError) as exc:
        raise IpcError(f"cannot make the key of IPC resource {name} from {spec}: "
                       f"ftok could not read {path} ({exc})") from None
    return key % 2**32 if key < 0 else key


def env_prefix(name: str) -> str:
    """``frame`` -> ``TOPO_IPC_FRAME`` (dashes become underscores, as for sockets)."""
    return "TOPO_IPC_" + name.upper().replace("-", "_")


def what(kind: str) -> str:
    return KINDS[kind][1] if kind in KINDS else kind


def msgmax() -> int:
    """The largest message this kernel takes: the receive buffer a queue object needs."""
    try:
        return int(Path("/proc/sys/kernel/msgmax").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 8192


# -- the other side: a Python program started as a command node -------------------------------


def open_from_env(names: tuple[str, ...], environ: Mapping[str, str]) -> dict[str, Any]:
    """``node.ipc`` for an exec'd program, from the ``TOPO_IPC_<NAME>_*`` variables."""
    # deferred: sysv_ipc, a C extension, loads only in runs that declare SysV resources
    import sysv_ipc

    objects: dict[str, Any] = {}
    for name in names:
        prefix = env_prefix(name)
        kind = environ.get(prefix + "_TYPE")
        try:
            if kind == "socketpair" and prefix + "_FD" in environ:
                objects[name] = socket.socket(fileno=int(environ[prefix + "_FD"]))
            elif kind == "fifo":
                objects[name] = environ[prefix + "_PATH"]
            elif kind in KINDS:
                key, ident = int(environ[prefix + "_KEY"]), int(environ[prefix + "_ID"])
                obj = (sysv_ipc.MessageQueue(key, 0, 0o600, msgmax()) if kind == "msgqueue"
                       else sysv_ipc.SharedMemory(key) if kind == "shm"
                       else sysv_ipc.Semaphore(key))
                if obj.id != ident:
                    raise IpcError(f"IPC resource {name} (key {key:#x}) is no longer the one "
                                   f"topo made (id {obj.id}, not {ident})")
                objects[name] = obj
        except (KeyError, ValueError, OSError, sysv_ipc.Error) as exc:
            raise IpcError(f"cannot open IPC resource {name} from {prefix}_*: {exc}") from None
    return objects


def close_objects(objects: Mapping[str, Any]) -> None:
    """What a node holds of its resources, let go: sockets closed, segments detached."""
    for obj in objects.values():
        with contextlib.suppress(Exception):
            if isinstance(obj, socket.socket):
                obj.close()
            elif getattr(obj, "attached", False):
                obj.detach()
