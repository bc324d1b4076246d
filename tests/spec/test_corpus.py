"""Every file in tests/corpus/ is wrong in one known way; its first lines say how.

    # expect: E121 10:36

Each expected code must be reported at that line and column, and `topo validate`
must exit 1 for a file with errors, 0 for warnings only (1 with --strict), and 0 for
notes only, even with --strict.

The files of what cannot cross hosts (E15x, W25x) are valid: ``topo validate`` takes
them, and ``check_hosts`` (what ``topo export`` runs) reports their codes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.spec.checks.hosts import check_hosts
from orchestrator.spec.validate import validate_file

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
FILES = sorted(CORPUS.glob("*.yaml"))
EXPECT = re.compile(r"^# expect: ([EWN]\d{3}) (\d+):(\d+)$")
SEVERITY = {"E": "error", "W": "warning", "N": "note"}
# E111 (a libzmq without CURVE) and E199 (a bug in topo) cannot be shown by a file.
ALL_CODES = {"E100", "E101", "E102", "E103", "E110", *(f"E12{i}" for i in range(10)),
             "E130", "E131", "E132", "E133", "E140", *(f"W20{i}" for i in range(1, 10)),
             "W210", "W211", "N301"}
# What cannot cross hosts: only `topo export` asks (spec/checks/hosts.py).
HOST_CODES = {*(f"E15{i}" for i in range(6)), "W250", "W251"}
HOST_FILES = [f for f in FILES if f.stem[:4].upper() in HOST_CODES]
VALIDATE_FILES = [f for f in FILES if f not in HOST_FILES]


def expectations(path: Path) -> list[tuple[str, int, int]]:
    found = []
    for line in path.read_text().splitlines():
        m = EXPECT.match(line)
        if not m:
            break
        found.append((m.group(1), int(m.group(2)), int(m.group(3))))
    return found


@pytest.fixture(autouse=True)
def _state_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    # E124 depends on where run folders live: pin it.
    monkeypatch.setenv("TOPO_STATE_DIR", "/tmp/topo-test")


def test_every_code_has_a_file() -> None:
    covered = {code for f in VALIDATE_FILES for code, _, _ in expectations(f)}
    assert covered >= ALL_CODES, f"no corpus file for {sorted(ALL_CODES - covered)}"
    hosts = {code for f in HOST_FILES for code, _, _ in expectations(f)}
    assert hosts == HOST_CODES, f"no corpus file for {sorted(HOST_CODES - hosts)}"


@pytest.mark.parametrize("path", VALIDATE_FILES, ids=[f.stem for f in VALIDATE_FILES])
def test_reported_where_expected(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no `# expect:` line"
    diags = validate_file(path).diagnostics
    got = {(d.code, d.line, d.col) for d in diags}
    for item in expected:
        assert item in got, f"{path.name}: expected {item}, got {sorted(got)}"
    for d in diags:
        assert d.message and d.hint, f"{path.name}: {d.code} needs a message and a hint"
    # Errors the file was not written to show would make it a poor example.
    unexpected = {d.code for d in diags if d.is_error} - {code for code, _, _ in expected}
    assert not unexpected, f"{path.name}: unexpected errors {unexpected}"

    has_errors = any(code.startswith("E") for code, _, _ in expected)
    assert main(["validate", str(path)]) == (1 if has_errors else 0)
    assert main(["validate", "--strict", str(path)]) == \
        (1 if any(not d.is_note for d in diags) else 0)
    out = capsys.readouterr().out
    for code, line, col in expected:
        assert f"{path}:{line}:{col}: {SEVERITY[code[0]]}[{code}] " in out


@pytest.mark.parametrize("path", HOST_FILES, ids=[f.stem for f in HOST_FILES])
def test_what_cannot_cross_hosts_is_reported_where_expected(
        path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no `# expect:` line"
    loaded = validate_file(path)
    assert loaded.topology is not None, [d.format() for d in loaded.diagnostics]
    assert not {d.code for d in loaded.diagnostics} & HOST_CODES  # not the validator's
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()
    diags = check_hosts(loaded.topology, loaded.source)
    assert {(d.code, d.line, d.col) for d in diags} == set(expected)
    for d in diags:
        assert d.file == str(path) and d.message and d.hint, d
        assert d.severity == SEVERITY[d.code[0]]
    # The folder the image holds may be wider than the file's: then nothing is outside it
    # but what is absolute or in the home folder.
    wider = check_hosts(loaded.topology, loaded.source, root=path.parent.parent.parent)
    assert {d.code for d in wider} <= {d.code for d in diags}


def test_req_to_pub_names_both_sockets_and_the_peers(capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / "e121_req_pub.yaml"
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert (f"{path}:10:36: error[E121] REQ socket client.server cannot talk to PUB socket "
            "news.out\n  hint: a REQ socket's peers are REP and ROUTER") in out
    assert "Traceback" not in out


def test_json_format(capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / "e121_req_pub.yaml"
    assert main(["validate", "--format", "json", str(path)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data == [{"file": str(path), "line": 10, "col": 36, "severity": "error",
                     "code": "E121",
                     "message": "REQ socket client.server cannot talk to PUB socket news.out",
                     "hint": "a REQ socket's peers are REP and ROUTER"}]


def test_json_format_warnings_only(capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / "w205_no_peer.yaml"
    assert main(["validate", "--format", "json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["code"] for d in data] == ["W205"]
    assert main(["validate", "--format", "json", "--strict", str(path)]) == 1


def test_several_files_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(CORPUS / "w205_no_peer.yaml"), str(CORPUS / "e102_none.yaml")]
    assert main(["validate", *files]) == 1
    out = capsys.readouterr().out
    assert "W205" in out and "E102" in out


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_clean_file_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("""
nodes:
  server:
    command: [prog]
    sockets:
      s: {type: REP, bind: "ipc://rr"}
  client:
    command: [prog]
    sockets:
      s: {type: REQ, connect: server.s}
""")
    assert main(["validate", "--strict", str(path)]) == 0
    assert capsys.readouterr().out == ""
