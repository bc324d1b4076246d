"""`topo top [RUN]`: a live view of a run, redrawn about once a second, like htop.

Per replica: state, restarts, uptime, CPU and memory; per socket of a run or
role node: type, peers, messages in and out as totals and per second, and its
last event. The numbers come from the supervisor (``{"cmd": "stats"}`` on the
control socket; the nodes' own counters, and libzmq's for a ``proxy`` role);
CPU and memory are read from /proc with psutil, as `topo ps` does. ``--once``
prints one frame (two looks half a second apart, for the rates), ``--json`` one
JSON document; ``q`` or Ctrl-C ends the live view, and so does the run's end.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

import psutil

from orchestrator.errors import ControlError
from orchestrator.runs.client import Run, human_duration, live_run
from orchestrator.runs.control import request

WIDTH = 80
ONCE_GAP = 0.5  # seconds between the two looks of --once


def look(run: Run, usage: dict[int, psutil.Process] | None = None) -> dict[str, Any]:
    """One look at the run: the supervisor's stats, with CPU seconds and memory per pid."""
    doc = request(run.folder, {"cmd": "stats"})
    doc.pop("ok", None)
    procs = usage if usage is not None else {}
    for rec in doc.get("replicas", {}).values():
        pid = rec.get("pid")
        rec["cpu_seconds"] = rec["rss_bytes"] = None
        if not pid:
            continue
        try:
            proc = procs.get(pid) or psutil.Process(pid)
            procs[pid] = proc
            with proc.oneshot():
                cpu = proc.cpu_times()
                rec["cpu_seconds"] = round(cpu.user + cpu.system, 3)
                rec["rss_bytes"] = proc.memory_info().rss
        except psutil.Error:
            procs.pop(pid, None)
    return doc


def with_rates(now: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    """``now`` with per-second rates (messages in and out, CPU %) since ``before``."""
    gap = (now["ts"] - before["ts"]) if before else 0.0
    old = before.get("replicas", {}) if before else {}
    for name, rec in now.get("replicas", {}).items():
        prev = old.get(name, {})
        same = prev.get("pid") == rec.get("pid") and gap > 0
        rec["cpu_percent"] = (
            round(100 * (rec["cpu_seconds"] - prev["cpu_seconds"]) / gap, 1)
            if same and rec.get("cpu_seconds") is not None
            and prev.get("cpu_seconds") is not None else None)
        for sname, sock in rec.get("sockets", {}).items():
            psock = prev.get("sockets", {}).get(sname, {})
            for key in ("messages_in", "messages_out"):
                a, b = sock.get(key), psock.get(key)
                sock[key + "_per_s"] = (round(max(0, a - b) / gap, 1)
                                        if same and a is not None and b is not None else None)
    return now


def frame(doc: Mapping[str, Any], *, color: bool = False, width: int = WIDTH) -> list[str]:
    """The view as lines of at most ``width`` characters."""
    reps = doc.get("replicas", {})
    ready = sum(1 for r in reps.values() if r.get("status") == "ready")
    clock = time.strftime("%H:%M:%S", time.localtime(doc.get("ts", time.time())))
    bold = (lambda t: f"\x1b[1m{t}\x1b[0m") if color else (lambda t: t)
    inverse = (lambda t: f"\x1b[7m{t}\x1b[0m") if color else (lambda t: t)
    head = f"topo top: run {doc.get('run_id')}, {len(reps)} replicas, {ready} ready"
    if doc.get("stopping"):
        head += ", stopping"
    lines = [bold(_fit(f"{head}  {clock}  (q quits)", width)), ""]
    lines.append(inverse(_fit(f"{'REPLICA':<22}{'STATE':<11}{'RESTARTS':>8}{'UPTIME':>9}"
                              f"{'CPU%':>7}{'MEM':>10}", width, pad=True)))
    now = time.time()
    for name, r in reps.items():
        started = r.get("started")
        up = human_duration(now - started) if r.get("pid") and started else "-"
        cpu = "-" if r.get("cpu_percent") is None else f"{r['cpu_percent']:.1f}"
        mem = "-" if r.get("rss_bytes") is None else f"{r['rss_bytes'] / 2**20:.1f}MiB"
        lines.append(_fit(f"{_fit(name, 21):<22}{str(r.get('status')):<11}{r.get('restarts', 0):>8}"
                          f"{up:>9}{cpu:>7}{mem:>10}", width))
    lines.append("")
    # Columns of 21+7+5+7+6+7+6 and a gap: the last event gets 19 of 80 characters.
    lines.append(inverse(_fit(f"{'SOCKET':<21}{'TYPE':<7}{'PEERS':>5}{'IN':>7}{'/s':>6}"
                              f"{'OUT':>7}{'/s':>6}  LAST EVENT", width, pad=True)))
    for name, r in reps.items():
        for sname, s in r.get("sockets", {}).items():
            label = _fit(f"{name}.{sname}", 20)
            if not s.get("watched"):
                lines.append(_fit(f"{label:<21}{s['type']:<7}{'-':>5}{'-':>7}{'-':>6}{'-':>7}"
                                  f"{'-':>6}  (command node)", width))
                continue
            lines.append(_fit(
                f"{label:<21}{s['type']:<7}{_n(s.get('peers')):>5}"
                f"{_n(s.get('messages_in')):>7}{_n(s.get('messages_in_per_s')):>6}"
                f"{_n(s.get('messages_out')):>7}{_n(s.get('messages_out_per_s')):>6}  "
                f"{_last(s, doc.get('ts', now))}", width))
    if any(s.get("frames") for r in reps.values() for s in r.get("sockets", {}).values()):
        lines.append("")
        lines.append(_fit("a proxy's counts are libzmq's own: frames, not messages", width))
    return lines


def _last(sock: Mapping[str, Any], now: float) -> str:
    """The socket's last event in a few words: what and how long ago (its text: --json),
    e.g. ``handshake failed 3s`` (19 characters)."""
    if sock.get("tap_dropped"):
        return f"tap dropped {sock['tap_dropped']}"
    last = sock.get("last_event")
    if not last:
        return ""
    ago = human_duration(max(0.0, now - float(last.get("ts", now))))
    return f"{last.get('event')} {ago}"


def _n(value: Any) -> str:
    """A count in at most 6 characters: 99999 is 100k, then 1.2M, 345G, 1.2T."""
    if value is None:
        return "-"
    v = float(value)
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if v >= scale:
            x = v / scale
            return f"{x:.1f}{unit}" if x < 99.95 else f"{x:.0f}{unit}"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    return f"{v:.0f}" if v == int(v) or v >= 100 else f"{v:.1f}"


def _fit(text: str, width: int, *, pad: bool = False) -> str:
    if len(text) > width:
        return text[:width - 1] + "~"
    return text.ljust(width) if pad else text


def top(target: str | None, *, once: bool, as_json: bool) -> int:
    """The CLI (see the module's text)."""
    run = live_run(target)
    usage: dict[int, psutil.Process] = {}
    if once or as_json:
        first = look(run, usage)
        time.sleep(ONCE_GAP)  # two looks: rates need a time between them
        doc = with_rates(look(run, usage), first)
        if as_json:
            print(json.dumps(doc, indent=2))
        else:
            print("\n".join(frame(doc)))
        return 0
    return _live(run, usage)


def _live(run: Run, usage: dict[int, psutil.Process]) -> int:
    out = sys.stdout
    tty = out.isatty()
    color = tty and not os.environ.get("NO_COLOR")
    before: dict[str, Any] | None = None
    failed = 0
    with _keys(tty) as keys:
        while True:
            try:
                doc = with_rates(look(run, usage), before)
            except ControlError as exc:
                if not run.alive or not run.folder.is_dir():
                    break  # said below, once the terminal has its own screen back
                # A supervisor that is busy (or slow to answer) is not a run that ended;
                # one that is on its way out is gone at the next look.
                failed += 1
                if failed > 1:
                    _write(out, f"topo: {exc}; asking again\n", tty, clear=False)
            else:
                failed = 0
                before = doc
                width = _width(out) if tty else WIDTH
                _write(out, "\n".join(frame(doc, color=color, width=width)) + "\n", tty)
            if _wait_for_q(keys, 1.0):
                return 0
    print(f"run {run.run_id} ended")
    return 0


def _width(out: TextIO) -> int:
    try:
        return max(40, os.get_terminal_size(out.fileno()).columns)
    except OSError:
        return WIDTH


def _write(out: TextIO, text: str, tty: bool, *, clear: bool = True) -> None:
    if tty and clear:
        text = "\x1b[H\x1b[2J" + text
    elif not tty:
        text += "\n"
    out.write(text)
    out.flush()


@contextlib.contextmanager
def _keys(tty: bool) -> Iterator[int | None]:
    """stdin in cbreak mode (keys come at once, unechoed) when it is a terminal; restored."""
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    if not tty or fd < 0 or not os.isatty(fd):
        yield None
        return
    # deferred: terminal modes only for a live view on a terminal
    import termios
    import tty as ttymod

    old = termios.tcgetattr(fd)
    sys.stdout.write("\x1b[?1049h\x1b[?25l")  # the alternate screen, no cursor
    try:
        ttymod.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
        sys.stdout.write("\x1b[?25h\x1b[?1049l")
        sys.stdout.flush()


def _wait_for_q(fd: int | None, seconds: float) -> bool:
    """Wait ``seconds``; True when ``q`` was pressed meanwhile (Ctrl-C raises through)."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if fd is None:
            time.sleep(left)
            return False
        r, _, _ = select.select([fd], [], [], left)
        if r:
            key = os.read(fd, 32)
            if not key or b"q" in key or b"Q" in key:
                return True
