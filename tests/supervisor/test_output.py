"""The foreground printer: prefixes, alignment, partial lines, colour, log files."""

from __future__ import annotations

import io
from pathlib import Path

from orchestrator.supervisor.output import Printer, use_color


class Tty(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_lines_are_prefixed_aligned_and_logged(tmp_path: Path) -> None:
    out, err = io.BytesIO(), io.BytesIO()
    log = tmp_path / "w.0.log"
    p = Printer(["w.0", "broker.0"], out=out, err=err, log_paths={"w.0": str(log)})
    assert p.feed("w.0", b"one\ntw") == [b"one"]
    p.feed("broker.0", b"hi\n")
    p.feed("w.0", b"o\n")
    p.event("w.0 exited with code 0")
    assert out.getvalue() == b"w.0      | one\nbroker.0 | hi\nw.0      | two\n"
    assert err.getvalue() == b"topo     | w.0 exited with code 0\n"
    p.close()
    assert log.read_bytes() == b"one\ntwo\n"


def test_a_partial_line_is_printed_when_the_pipe_closes() -> None:
    out = io.BytesIO()
    p = Printer(["a.0"], out=out, err=io.BytesIO())
    p.feed("a.0", b"no newline")
    assert out.getvalue() == b""
    assert p.flush("a.0") == [b"no newline"]
    assert out.getvalue() == b"a.0  | no newline\n"


def test_colour_only_on_a_terminal_without_no_color() -> None:
    assert use_color(Tty(), False, {})
    assert not use_color(Tty(), True, {})
    assert not use_color(Tty(), False, {"NO_COLOR": "1"})
    assert not use_color(io.BytesIO(), False, {})
    out = Tty()
    Printer(["a.0"], out=out, err=io.BytesIO(), color=True).feed("a.0", b"x\n")
    assert out.getvalue().startswith(b"\x1b[") and b"a.0  | \x1b[0mx\n" in out.getvalue()


def test_a_closed_stdout_does_not_stop_the_log(tmp_path: Path) -> None:
    out = io.BytesIO()
    out.close()
    log = tmp_path / "a.log"
    p = Printer(["a.0"], out=out, err=io.BytesIO(), log_paths={"a.0": str(log)})
    p.feed("a.0", b"still logged\n")
    p.close()
    assert log.read_bytes() == b"still logged\n"
