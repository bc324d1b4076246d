"""`topo logs`: a run's output, merged and prefixed as the foreground shows it.

The supervisor appends every line a replica writes, and its own events, to the
run's ``output.log`` as ``name | line``, in the order they arrived. This reads
that file, keeps the lines of the nodes asked for (``node`` or ``node.N``; topo's
own events only when no node is named), and with ``-f`` follows it until the
run's supervisor exits (or Ctrl-C).
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import sys
from collections.abc import Iterable
from typing import Any, BinaryIO

from orchestrator.errors import ControlError
from orchestrator.paths import OUTPUT_LOG
from orchestrator.runs.client import find_run
from orchestrator.runs.folder import supervisor_of
from orchestrator.supervisor.output import Printer, use_color

_FOLLOW_TICK = 0.1  # seconds between looks at the file while the supervisor lives


def logs(target: str | None, nodes: list[str], *, follow: bool, tail: int | None,
         no_color: bool = False) -> int:
    run = find_run(target)
    path = run.folder / OUTPUT_LOG
    try:
        f = open(path, "rb")  # noqa: SIM115 - kept open while following, even after removal
    except FileNotFoundError:
        raise ControlError(f"run {run.run_id} has no output log yet ({path})") from None
    replicas = list((run.state or {}).get("replicas") or ())
    out = sys.stdout.buffer
    printer = Printer(replicas, out=out, err=out, color=use_color(out, no_color, os.environ))
    wanted = set(nodes)
    with f:
        *complete, rest = f.read().split(b"\n")
        lines: Iterable[bytes] = (line + b"\n" for line in complete if _wanted(line, wanted))
        if tail is not None:
            lines = collections.deque(lines, maxlen=tail) if tail > 0 else []
        _show(printer, lines, wanted)
        if follow and run.alive:
            _follow(f, printer, wanted, rest, run.state or {})
    printer.close()
    return 0


def _follow(f: BinaryIO, printer: Printer, wanted: set[str], rest: bytes,
            state: dict[str, Any]) -> None:
    pid, _ = supervisor_of(state)
    try:
        pidfd = os.pidfd_open(pid or 0)
    except (ProcessLookupError, OSError):
        return
    try:
        ended = False
        while True:
            data = f.read()
            if data:
                *lines, rest = (rest + data).split(b"\n")
                _show(printer, (line + b"\n" for line in lines), wanted)
            elif ended:
                return
            else:
                # The supervisor's exit is noticed at once; new lines within a tick.
                ended = bool(select.select([pidfd], [], [], _FOLLOW_TICK)[0])
    finally:
        with contextlib.suppress(OSError):
            os.close(pidfd)


def _wanted(line: bytes, wanted: set[str]) -> bool:
    name, sep, _ = line.partition(b" | ")
    if not sep:
        return False
    who = name.decode(errors="replace")
    if who == "topo":
        return not wanted
    return not wanted or who in wanted or who.rsplit(".", 1)[0] in wanted


def _show(printer: Printer, lines: Iterable[bytes], wanted: set[str]) -> None:
    for line in lines:
        if not _wanted(line, wanted):
            continue
        name, _, text = line.partition(b" | ")
        if name == b"topo":
            printer.event(text.rstrip(b"\n").decode(errors="replace"))
        else:
            printer.feed(name.decode(errors="replace"), text)
