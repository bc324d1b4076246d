"""What the supervisor's state machine needs from the world, as small interfaces.

The real ones: ``spawn.Spawner`` (processes), ``output.Printer`` (what is shown
and logged), ``eventloop.EventLoop`` (watching a process's pidfd and pipes) and
``time.monotonic``. The tests' fakes (``tests/fakes.py``) implement the same
protocols and are checked against them by mypy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from orchestrator.supervisor.spawn import Proc

Clock = Callable[[], float]
Command = tuple[Sequence[str], Mapping[str, str], str]  # argv, env, cwd


class SpawnerLike(Protocol):
    def fork_functions(self, starts: list[Callable[[int], int]]) -> list[Proc | OSError]:
        """Fork one child per ``start(ready_fd)``; each exits with what it returns."""

    def exec_commands(
        self, commands: Sequence[Command], *, capture: bool = True,
        pass_fds: Sequence[Sequence[int]] | None = None,
    ) -> list[Proc | OSError]:
        """Fork and exec each command; ``pass_fds[i]`` are the fds the i-th inherits."""

    def exec_command(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, *, capture: bool = True,
    ) -> Proc:
        """One command (a readiness probe), or ``OSError``."""

    def signal_group(self, pgid: int, sig: int) -> None:
        """Send ``sig`` to a process group; one that is gone already is no error."""

    def group_gone(self, pgid: int) -> None:
        """The group's leader was reaped and its group SIGKILLed: forget it."""


class Watcher(Protocol):
    def watch(self, proc: Proc, name: str) -> None:
        """Report the exit, output and ready byte of ``proc`` to the supervisor from now on."""


class Output(Protocol):
    def feed(self, name: str, data: bytes) -> list[bytes]:
        """Show what replica ``name`` wrote; return its complete lines."""

    def flush(self, name: str) -> list[bytes]:
        """The replica's pipe closed: show the rest of its last line."""

    def event(self, message: str) -> None:
        """A sentence of the supervisor's own (an exit, a restart, a failure)."""

    def record(self, event: str, replica: str | None = None, **fields: object) -> None:
        """A structured event (started, ready, restarting, exited, failed, run_...)."""

    def socket_event(self, replica: str, sock: str, kind: str, text: str,
                     **fields: object) -> None:
        """A socket event of a run node (connected, retrying, handshake failed, ...)."""


class NoWatcher:
    """Until an event loop takes over: nothing is watched (a test may leave it so)."""

    def watch(self, proc: Proc, name: str) -> None:
        pass
