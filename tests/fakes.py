"""Fakes of what the supervisor needs from the world (``orchestrator/supervisor/ports.py``).

Each fake subclasses the protocol it stands for, so mypy checks every method
against the real signature: a fake that drifts from the protocol fails the type
check, and production code never bends for a test. No process, fd or clock is
touched; everything the supervisor asked for is recorded for the test to read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.supervisor.ports import Command, Output, SpawnerLike, Watcher
from orchestrator.supervisor.spawn import Proc


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass(frozen=True)
class Started:
    kind: str  # fork | exec | probe
    pid: int
    argv: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    pass_fds: tuple[int, ...] = ()


class FakeSpawner(SpawnerLike):
    """Hands out pids 101, 102, ... and records every start and signal."""

    def __init__(self) -> None:
        self.next_pid = 100
        self.started: list[Started] = []
        self.signals: list[tuple[int, int]] = []  # (pgid, signal)
        self.gone: list[int] = []
        self.fail_exec = False  # exec_commands / exec_command fail as fork() would with EAGAIN
        self.fail_fork = False  # fork_functions too

    @property
    def kinds(self) -> list[tuple[str, int]]:
        return [(s.kind, s.pid) for s in self.started]

    def _proc(self, kind: str, argv: Sequence[str] = (), env: Mapping[str, str] | None = None,
              pass_fds: tuple[int, ...] = ()) -> Proc:
        self.next_pid += 1
        self.started.append(Started(kind, self.next_pid, tuple(argv), env, pass_fds))
        return Proc(self.next_pid, -1)

    def fork_functions(self, starts: list[Callable[[int], int]]) -> list[Proc | OSError]:
        if self.fail_fork:
            return [OSError(11, "Resource temporarily unavailable") for _ in starts]
        return [self._proc("fork") for _ in starts]

    def exec_commands(
        self, commands: Sequence[Command], *, capture: bool = True,
        pass_fds: Sequence[Sequence[int]] | None = None,
    ) -> list[Proc | OSError]:
        if self.fail_exec:
            return [OSError(11, "Resource temporarily unavailable") for _ in commands]
        fds = [tuple(f) for f in pass_fds] if pass_fds is not None else [()] * len(commands)
        return [self._proc("exec", argv, dict(env), passed)
                for (argv, env, _), passed in zip(commands, fds, strict=True)]

    def exec_command(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, *, capture: bool = True,
    ) -> Proc:
        if self.fail_exec:
            raise OSError(11, "Resource temporarily unavailable")
        return self._proc("exec" if capture else "probe", argv, dict(env))

    def signal_group(self, pgid: int, sig: int) -> None:
        self.signals.append((pgid, sig))

    def group_gone(self, pgid: int) -> None:
        self.gone.append(pgid)


class FakePrinter(Output):
    """Keeps the supervisor's sentences, its structured events and every replica's lines."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.records: list[tuple[str, str | None, dict[str, object]]] = []
        self.lines: dict[str, list[bytes]] = {}
        self._partial: dict[str, bytes] = {}

    @property
    def text(self) -> str:
        return "\n".join(self.events)

    def feed(self, name: str, data: bytes) -> list[bytes]:
        *lines, self._partial[name] = (self._partial.get(name, b"") + data).split(b"\n")
        self.lines.setdefault(name, []).extend(lines)
        return lines

    def flush(self, name: str) -> list[bytes]:
        rest = self._partial.pop(name, b"")
        if rest:
            self.lines.setdefault(name, []).append(rest)
        return [rest] if rest else []

    def event(self, message: str) -> None:
        self.events.append(message)

    def record(self, event: str, replica: str | None = None, **fields: object) -> None:
        self.records.append((event, replica, fields))

    def socket_event(self, replica: str, sock: str, kind: str, text: str,
                     **fields: object) -> None:
        self.records.append(("socket", replica, {"socket": sock, "kind": kind, "text": text,
                                                 **fields}))

    def of(self, replica: str) -> list[str]:
        """The structured events of one replica, in order."""
        return [event for event, name, _ in self.records if name == replica]


class FakeWatcher(Watcher):
    def __init__(self) -> None:
        self.watched: list[tuple[int, str]] = []

    def watch(self, proc: Proc, name: str) -> None:
        self.watched.append((proc.pid, name))
