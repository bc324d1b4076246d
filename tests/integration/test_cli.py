"""The CLI of validate, graph, explain and schema: exit codes, where output goes, no tracebacks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.spec import validate
from orchestrator.spec.diagnostics import Diagnostic, Position
from tests.topo_samples import ROOT, TEACHING

GOOD = """\
description: one REQ, one REP
nodes:
  server:
    run: m:f
    sockets: {s: {type: REP, bind: "ipc://s"}}
  client:
    run: m:f
    sockets: {c: {type: REQ, connect: server.s}}
"""

# REQ cannot talk to PUB (E121).
BAD = GOOD.replace("type: REP", "type: PUB")


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD, encoding="utf-8")
    return path


@pytest.fixture()
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    return path


@pytest.fixture()
def with_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the validator report one warning for any file, whatever its own checks find."""

    def check(topology: object, source: object, environ: object = None) -> list[Diagnostic]:
        file = source.file  # type: ignore[attr-defined]
        return [Diagnostic.at(Position(file, 3, 5), "W205", "socket server.s has no peer",
                              "connect it to something")]

    monkeypatch.setattr(validate, "check", check)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- validate ------------------------------------------------------------------------------------


def test_validate_clean_file(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    assert run(capsys, "validate", str(good)) == (0, "", "")


@pytest.mark.parametrize("path", TEACHING, ids=lambda p: p.stem)
def test_teaching_topologies_validate(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 0, out
    assert "error[" not in out


def test_validate_errors_exit_1(capsys: pytest.CaptureFixture[str], bad: Path) -> None:
    code, out, err = run(capsys, "validate", str(bad))
    assert code == 1
    assert re.search(rf"^{re.escape(str(bad))}:\d+:\d+: error\[E121\] ", out, re.M)
    assert "\n  hint: " in out
    assert "1 error(s)" in err


def test_validate_json(capsys: pytest.CaptureFixture[str], bad: Path, good: Path) -> None:
    code, out, _ = run(capsys, "validate", "--format", "json", str(good), str(bad))
    assert code == 1
    diags = json.loads(out)
    assert {d["code"] for d in diags} >= {"E121"}
    assert all(set(d) == {"file", "line", "col", "severity", "code", "message", "hint"}
               for d in diags)


def test_validate_strict_fails_on_warnings(capsys: pytest.CaptureFixture[str], good: Path,
                                           with_warning: None) -> None:
    code, out, _ = run(capsys, "validate", str(good))
    assert code == 0 and "warning[W205]" in out
    code, out, _ = run(capsys, "validate", "--strict", str(good))
    assert code == 1 and "warning[W205]" in out


def test_validate_missing_file_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "validate", str(tmp_path / "nope.yaml"))
    assert code == 2 and out == ""
    assert "no such file" in err


def test_validate_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate")
    assert code == 2 and "--help" in err


# -- graph ---------------------------------------------------------------------------------------


def test_graph_mermaid_by_default(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, err = run(capsys, "graph", str(good))
    assert (code, err) == (0, "")
    assert out.startswith("flowchart LR\n")
    assert '  n_client -->|"REQ → REP (ipc)"| n_server\n' in out


def test_graph_dot(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, _ = run(capsys, "graph", "--format", "dot", str(good))
    assert code == 0 and out.startswith('digraph "good" {') and out.endswith("}\n")


def test_graph_bad_format_exit_2(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, err = run(capsys, "graph", "--format", "svg", str(good))
    assert code == 2 and out == "" and "invalid choice" in err


def test_graph_of_a_bad_file_exit_1(capsys: pytest.CaptureFixture[str], bad: Path) -> None:
    code, out, err = run(capsys, "graph", str(bad))
    assert code == 1 and out == ""
    assert "error[E121]" in err


def test_graph_missing_file_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "graph", str(tmp_path / "nope.yaml"))
    assert code == 2 and out == "" and "no such file" in err


# -- explain -------------------------------------------------------------------------------------


def test_explain(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, err = run(capsys, "explain", str(good))
    assert (code, err) == (0, "")
    assert out.startswith("Topology good\n=============\n\none REQ, one REP\n")
    assert "server: 1 process." in out and "client: 1 process." in out
    assert "None: `topo validate` finds nothing to warn about." in out


def test_explain_tells_the_warnings(capsys: pytest.CaptureFixture[str], good: Path,
                                    with_warning: None) -> None:
    code, out, _ = run(capsys, "explain", str(good))
    assert code == 0
    assert "Warning W205, line 3: socket server.s has no peer." in out
    assert "What to do: connect it to something." in out


def test_explain_of_a_bad_file_exit_1(capsys: pytest.CaptureFixture[str], bad: Path) -> None:
    code, out, err = run(capsys, "explain", str(bad))
    assert code == 1 and out == "" and "error[E121]" in err


def test_explain_of_a_folder_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "explain", str(tmp_path))
    assert code == 2 and out == "" and "folder" in err


# -- schema --------------------------------------------------------------------------------------


def test_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "schema")
    assert (code, err) == (0, "")
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "with" in schema["$defs"]["NodeSpec"]["properties"]


def test_schema_takes_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "schema", "extra")
    assert code == 2 and out == "" and "unrecognized arguments" in err


# -- as a program ----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["graph", "nope.yaml"], ["explain", "BAD"], ["schema", "-x"]])
def test_no_traceback_from_the_real_program(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "BAD").write_text(BAD, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "orchestrator", *argv], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr and result.stderr.startswith(("topo: ", "usage"))


def test_graph_of_every_teaching_topology_as_a_program() -> None:
    for path in TEACHING:
        result = subprocess.run([sys.executable, "-m", "orchestrator", "graph", str(path)],
                                cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("flowchart LR\n")


def test_the_program_keeps_its_output_and_exit_status(tmp_path: Path) -> None:
    """`topo` leaves through os._exit: what it printed still arrives, the status is main's."""
    from importlib.metadata import version

    def topo(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator", *argv], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, check=False)

    shown = topo("--version")
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, f"topo {version('topo')}\n", "")
    assert topo("--help").stdout.startswith("usage: topo")
    schema = topo("schema")
    assert schema.returncode == 0 and json.loads(schema.stdout)["title"]  # 28 kB, all of it
    (tmp_path / "bad.yaml").write_text(BAD, encoding="utf-8")
    invalid = topo("validate", "bad.yaml")
    assert invalid.returncode == 1 and "E121" in invalid.stdout
    assert topo("nosuch").returncode == 2


@pytest.mark.parametrize("argv", [["--version"], ["ls"], ["schema"]])
def test_a_closed_pipe_ends_the_program_quietly(tmp_path: Path, argv: list[str]) -> None:
    """`topo ls | true`: the reader is gone before the output is flushed; no error report."""
    r, w = os.pipe()
    os.close(r)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered
    env["TOPO_STATE_DIR"] = str(tmp_path)
    try:
        result = subprocess.run([sys.executable, "-m", "orchestrator", *argv], stdout=w,
                                stderr=subprocess.PIPE, env=env, timeout=60, check=False)
    finally:
        os.close(w)
    assert (result.returncode, result.stderr) == (0, b"")


@pytest.mark.parametrize(("argv", "first_line"), [
    (["bogus"], "topo: argument COMMAND: invalid choice: 'bogus'"),
    (["up"], "topo: up: the following arguments are required: FILE"),
    (["graph", "--format", "svg", "x.yaml"], "topo: graph: argument --format: invalid choice"),
])
def test_an_argument_error_names_the_program_once(
        capsys: pytest.CaptureFixture[str], argv: list[str], first_line: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(first_line), err
    assert "topo: topo" not in err


# Each command's arguments, as the tests and the docs use them: the parser that knows only
# that command must read them as the whole parser does.
ARGVS = [
    ["validate", "a.yaml", "--strict", "--format", "json"], ["schema"],
    ["graph", "a.yaml", "--format", "dot"], ["explain", "a.yaml"],
    ["up", "a.yaml", "-d", "-p", "r", "--timeout", "2s", "--allow", "k", "--group", "g"],
    ["down", "r"], ["ps", "--json"], ["top", "r", "--once"], ["tap", "r", "n.s", "--count", "3"],
    ["ls"], ["logs", "r", "--tail", "5", "w"], ["keys", "r", "n"],
    ["export", "kubernetes", "a.yaml", "--image", "i", "-o", "out"], ["gc"],
    ["restart", "r", "w", "c.0"],
]


def test_the_commands_named_are_the_parsers_commands() -> None:
    from orchestrator.cli import COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices or {}) == sorted(COMMANDS) == sorted(a[0] for a in ARGVS)


@pytest.mark.parametrize("argv", ARGVS, ids=lambda a: a[0])
def test_a_parser_of_one_command_reads_it_as_the_whole_parser(argv: list[str]) -> None:
    from orchestrator.cli import _parse, build_parser

    assert _parse(build_parser(argv[0]), argv) == _parse(build_parser(), argv)


def test_a_mistyped_command_still_names_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "stat", "r")
    assert code == 2 and "invalid choice: 'stat'" in err and "'ps'" in err
    with pytest.raises(SystemExit) as exited:  # (run() of the program makes it the status)
        main(["down", "--help"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("usage: topo down")
