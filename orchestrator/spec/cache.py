"""The caches of `topo validate` and `topo up`: a file seen before, unchanged, at once.

Checking a file costs the import of the model and pydantic (~170 ms); telling the
same answer again, or handing the supervisor the same plan, costs reading one small
file. ``ValidateCache`` keeps `topo validate`'s answers, ``PlanCache`` the plans of
`topo up`. An entry is keyed by everything the answer depends on, and an entry that
does not match is ignored, never trusted:

- the command: each file as given (and its real path) and a hash of its bytes, the
  options (``--strict``, ``--format``; the run id and ``--exit-code-from``), the
  current folder;
- the code that answers: every ``.py`` file of this package (path, size, mtime),
  the installed pyzmq, pydantic, pydantic-core, PyYAML and topo (their
  ``*.dist-info`` names and RECORD files), the Python executable and its version;
- the machine: the SysV limits the checks compare with (``/proc/sys/kernel``), the user id;
- the environment: the value (or absence) of every variable the check looked up,
  recorded while it ran and compared again before an entry is used. A check that
  lists the whole environment is not cached.

Entries live in ``.cache/`` of the state folder (docs/reference.md#where-runs-live),
a folder of mode 0700, one file per answer, 0600, written whole and renamed into
place; a file that is not ours, not private, not JSON or not of this key is
ignored and written anew. At most ``KEEP`` entries are kept, the oldest go first.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import stat
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from orchestrator import paths

try:  # the built-in SHA-256: hashlib would load OpenSSL's libcrypto first (~3 ms per `topo up`)
    from _sha256 import sha256
except ImportError:  # an interpreter without it (3.12 and later call it _sha2)
    from hashlib import sha256

CACHE_DIR = ".cache"  # in the state folder; `topo ls` and `topo gc` skip dot folders
KEEP = 256
_FORMAT = 1  # of an entry; a change of it makes every older entry a miss
_DEPENDENCIES = re.compile(r"^(pyzmq|pydantic|pydantic_core|PyYAML|pyyaml|topo)-.*\.dist-info$")
_KERNEL = ("shmmax", "msgmnb", "shmmni", "msgmni", "sem")


class RecordingEnviron(Mapping[str, str]):
    """The environment as the checks see it, noting each name they look up."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.read: dict[str, str | None] = {}
        self.listed = False

    def get(self, key: str, default: Any = None) -> Any:
        value = self._environ.get(key)
        self.read[key] = value
        return default if value is None else value

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return str(value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        self.listed = True
        return iter(self._environ)

    def __len__(self) -> int:
        self.listed = True
        return len(self._environ)


class Tee(io.TextIOBase):
    """Writes through to ``stream`` and keeps a copy (text, or bytes for a binary stream)."""

    def __init__(self, stream: TextIO | BinaryIO, *, binary: bool = False) -> None:
        self.stream = stream
        self.copy: Any = io.BytesIO() if binary else io.StringIO()

    def write(self, data: Any) -> int:
        self.copy.write(data)
        return self.stream.write(data)

    def flush(self) -> None:
        self.stream.flush()


class _Entry:
    """One cache file: read only when it is a private regular file of ours, of this
    version's shape and key, whose recorded variables still have their values."""

    prefix = ""

    def __init__(self, key: str, folder: Path, environ: Mapping[str, str]) -> None:
        self.key = key
        self.folder = folder
        self.path = folder / f"{self.prefix}{key[:32]}.json"
        self.environ = environ
        self.files: list[str] = []
        self.hashes: list[str] | None = []

    @classmethod
    def _keyed(cls, files: Sequence[str], options: Sequence[str],
               environ: Mapping[str, str] | None) -> Any:
        """The entry for ``files`` (their bytes hashed) and ``options``; None when a file
        cannot be read (the command itself says so)."""
        env = os.environ if environ is None else environ
        parts = [str(_FORMAT), cls.prefix, sys.executable, sys.version, str(os.getuid()),
                 os.getcwd(), *options]
        hashes = _hashes(files)
        if hashes is None:
            return None
        for f, h in zip(files, hashes, strict=True):
            parts += [f, os.path.realpath(f), h]
        parts += [_code(), _kernel()]
        key = sha256("\0".join(parts).encode()).hexdigest()
        entry = cls(key, paths.state_root(env) / CACHE_DIR, env)
        entry.files, entry.hashes = list(files), hashes
        return entry

    def _read(self) -> dict[str, Any] | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid()
                    or st.st_mode & 0o077 or st.st_size > 1 << 24):
                return None
            with os.fdopen(os.dup(fd), "rb") as f:
                entry = json.loads(f.read())
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        if not _sound(entry) or entry["key"] != self.key:
            return None
        for name, value in entry["env"].items():
            if self.environ.get(name) != value:
                return None  # a variable the command read has changed
        return dict(entry)

    def _keep(self, recording: RecordingEnviron, fields: dict[str, Any]) -> None:
        """Store an entry (never fails the command: a cache that cannot be written is
        only slower next time)."""
        if recording.listed or _hashes(self.files) != self.hashes:
            return  # it read more than the key knows, or a file changed while it was checked
        entry = {"format": _FORMAT, "key": self.key, "env": recording.read, **fields}
        with contextlib.suppress(OSError, TypeError, ValueError):
            self._write(json.dumps(entry))

    def _write(self, text: str) -> None:
        root = self.folder.parent  # the state folder, private as `topo up` makes it
        if not root.is_dir():
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder.mkdir(mode=0o700, exist_ok=True)
        st = self.folder.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            return  # not our private folder: nothing is written into it
        tmp = self.folder / f".{self.path.name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _trim(self.folder, self.prefix)


class ValidateCache(_Entry):
    """One `topo validate` command's entry: ``replay()`` it, or ``record()`` and ``keep()``."""

    prefix = "validate-"

    @classmethod
    def for_command(cls, files: Sequence[str], *, strict: bool, fmt: str,
                    environ: Mapping[str, str] | None = None) -> ValidateCache | None:
        """The entry of this command, or None when it cannot be cached."""
        entry: ValidateCache | None = cls._keyed(files, [str(strict), fmt], environ)
        return entry

    def replay(self) -> int | None:
        """Write the kept answer and return its exit status; None when there is none to trust."""
        entry = self._read()
        if entry is None or not isinstance(entry.get("out"), str) \
                or not isinstance(entry.get("err"), str) or type(entry.get("code")) is not int:
            return None
        sys.stdout.write(entry["out"])
        sys.stdout.flush()
        sys.stderr.write(entry["err"])
        return int(entry["code"])

    @contextlib.contextmanager
    def record(self) -> Iterator[RecordingEnviron]:
        """Around the real check: its environment, its output copied; ``keep(code)`` after."""
        recording = RecordingEnviron(self.environ)
        out, err = Tee(sys.stdout), Tee(sys.stderr)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            yield recording
        finally:
            sys.stdout, sys.stderr = saved
        self._recorded = recording, out.copy.getvalue(), err.copy.getvalue()

    def keep(self, code: int) -> None:
        recording, out, err = self._recorded
        self._keep(recording, {"out": out, "err": err, "code": code})


class PlanCache(_Entry):
    """The plan `topo up FILE` made before, when nothing it depends on has changed.

    Only plans that are the same each time are kept: none that picked a free port
    (``tcp://host:*``) or made CURVE keys, and no ``--group``, ``--keys`` or ``--allow``
    run. ``plan()`` gives the kept plan and the warnings the file had, or None.
    """

    prefix = "plan-"

    @classmethod
    def for_up(cls, file: str, *, run_id: str | None, exit_code_from: str | None,
               environ: Mapping[str, str] | None = None) -> PlanCache | None:
        entry: PlanCache | None = cls._keyed(
            [file], [json.dumps([run_id, exit_code_from])], environ)
        return entry

    def plan(self) -> tuple[dict[str, Any], bytes] | None:
        """(the plan as ``Plan.to_dict`` gave it, the warnings to show), or None."""
        entry = self._read()
        if entry is None or not isinstance(entry.get("plan"), dict) \
                or not isinstance(entry.get("err"), str):
            return None
        return entry["plan"], entry["err"].encode()

    def recording(self) -> RecordingEnviron:
        self._recording = RecordingEnviron(self.environ)
        return self._recording

    def keep(self, plan: dict[str, Any], err: bytes) -> None:
        self._keep(self._recording, {"plan": plan, "err": err.decode(errors="replace")})


def _hashes(files: Sequence[str]) -> list[str] | None:
    try:
        out = []
        for f in files:
            with open(f, "rb") as fh:
                out.append(sha256(fh.read()).hexdigest())
        return out
    except OSError:
        return None


def reads_files(environ: Mapping[str, str]) -> None:
    """The check or plan read files beyond the topology (``security.allow`` keys): an
    answer that depends on them is not kept."""
    if isinstance(environ, RecordingEnviron):
        environ.listed = True


def _sound(entry: object) -> bool:
    """An entry of the shape this version writes (anything else is ignored)."""
    if not isinstance(entry, dict) or entry.get("format") != _FORMAT:
        return False
    env = entry.get("env")
    return (isinstance(entry.get("key"), str) and isinstance(env, dict)
            and all(v is None or isinstance(v, str) for v in env.values()))


def _trim(folder: Path, prefix: str) -> None:
    """At most ``KEEP`` entries of a kind: the least recently written go."""
    with contextlib.suppress(OSError):
        entries = [e for e in os.scandir(folder) if e.name.startswith(prefix)]
        if len(entries) <= KEEP:
            return
        entries.sort(key=lambda e: e.stat(follow_symlinks=False).st_mtime_ns)
        for e in entries[:len(entries) - KEEP]:
            with contextlib.suppress(OSError):
                os.unlink(e.path)


def _code() -> str:
    """What identifies the code that checks: this package's files, the dependencies'
    installed versions, the interpreter."""
    root = Path(__file__).resolve().parents[1]
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                st = os.stat(os.path.join(folder, name))
                out.append(f"{folder[len(str(root)):]}/{name}:{st.st_size}:{st.st_mtime_ns}")
    for entry in sys.path:
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(entry or ".")):
                if _DEPENDENCIES.match(name):
                    record = os.path.join(entry, name, "RECORD")
                    with contextlib.suppress(OSError):
                        st = os.stat(record)
                        name += f":{st.st_size}:{st.st_mtime_ns}"
                    out.append(name)
    return "\n".join(out)


def _kernel() -> str:
    """The SysV limits ``checks/ipc.py`` reads."""
    out = []
    for name in _KERNEL:
        try:
            with open(f"/proc/sys/kernel/{name}") as f:
                out.append(f.read().strip())
        except OSError:
            out.append("-")
    return " ".join(out)
