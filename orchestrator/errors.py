"""One exception tree for everything topo reports to a user.

    TopoError                    exit 2 unless a subclass says otherwise
    ├── UsageError               bad arguments, missing file (exit 2)
    ├── InvalidTopology          the file has errors; carries the diagnostics (exit 1)
    ├── RunError                 a run could not start or ended badly (exit 1)
    │   ├── RunAlive             the run id is already in use by a live run
    │   ├── NotReady             a node did not become ready in time
    │   └── IpcError             a SysV / socketpair / fifo resource could not be made
    └── ControlError             a running supervisor could not be reached (exit 1)

The CLI catches ``TopoError`` only, prints ``str(exc)`` and exits with
``exc.exit_code``. Anything else escaping is a bug in topo, not the user's
mistake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Formatted(Protocol):
    """A diagnostic as this module needs it (``spec/diagnostics.py`` makes them): it formats
    itself as ``file:line:col: error[CODE] sentence``. A protocol, so the exception tree at
    the bottom of the layers never imports the spec layer."""

    def format(self) -> str: ...


class TopoError(Exception):
    exit_code = 2


class UsageError(TopoError):
    exit_code = 2


class InvalidTopology(TopoError):
    exit_code = 1

    def __init__(self, diagnostics: Sequence[Formatted]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))


class RunError(TopoError):
    exit_code = 1


class RunAlive(RunError):
    pass


class NotReady(RunError):
    pass


class IpcError(RunError):
    pass


class ControlError(TopoError):
    exit_code = 1
