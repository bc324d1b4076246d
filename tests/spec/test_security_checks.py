"""The validator and CURVE (orchestrator/spec/checks/security.py), and notes, the third severity."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest
import zmq

from orchestrator import certs
from orchestrator.cli import main
from orchestrator.spec import checks, zmqrules
from orchestrator.spec.diagnostics import Diagnostic, Position, fails, summary
from orchestrator.spec.loader import load_text
from orchestrator.start.prepare import prepare
from orchestrator.views.explain import explain

ENV = {"TOPO_STATE_DIR": "/tmp/topo-t"}
CURVE = "security: {curve: true}\n"


def curve(body: str) -> str:
    """``body`` with CURVE on."""
    return CURVE + textwrap.dedent(body)


def run(text: str, file: str = "t.yaml") -> list[Diagnostic]:
    loaded = load_text(textwrap.dedent(text), file, environ=ENV)
    assert loaded.topology is not None, [d.format() for d in loaded.diagnostics]
    return checks.check(loaded.topology, loaded.source, ENV)


def found(text: str, code: str, file: str = "t.yaml") -> list[Diagnostic]:
    return [d for d in run(text, file) if d.code == code]


def one(text: str, code: str, file: str = "t.yaml") -> Diagnostic:
    diags = found(text, code, file)
    assert len(diags) == 1, [d.format() for d in run(text, file)]
    return diags[0]


def where(d: Diagnostic) -> tuple[str, int, int]:
    return d.code, d.line, d.col


def public_key_file(path: Path) -> Path:
    certs.write_public(path, certs.keypair()[0])
    return path


# -- E111 --------------------------------------------------------------------------------------


def test_curve_needs_a_libzmq_with_curve(monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
        security:
          curve: true
        nodes: {a: {run: "m:f"}}
        """
    assert not found(text, "E111")
    real = zmq.has
    monkeypatch.setattr(zmq, "has", lambda name: False if name == "curve" else real(name))
    d = one(text, "E111")
    assert where(d) == ("E111", 2, 10) and d.severity == "error"
    assert d.message == "security.curve is on, but this libzmq was built without CURVE"
    assert "curve: false" in d.hint
    # Without curve, a libzmq without CURVE is fine.
    assert not found(text.replace("true", "false"), "E111")


# -- E129 --------------------------------------------------------------------------------------


def test_a_stream_socket_under_curve() -> None:
    text = curve("""\
        nodes:
          web:
            run: "m:f"
            sockets:
              http: {type: STREAM, bind: "tcp://127.0.0.1:8080"}
        """)
    d = one(text, "E129")
    assert where(d) == ("E129", 6, 20)
    assert d.message == ("socket web.http is a STREAM socket, which speaks raw TCP with no "
                         "ZeroMQ handshake, so security.curve cannot encrypt it")
    assert "drop curve: true" in d.hint
    assert not found(text.replace(CURVE, ""), "E129")


@pytest.fixture
def every_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """A libzmq with every transport, so the endpoints below parse wherever the test runs."""
    monkeypatch.setattr(zmqrules, "transport_available", lambda transport: True)


@pytest.mark.usefixtures("every_transport")
@pytest.mark.parametrize(("endpoint", "why"), [
    ("pgm://eth0;239.192.1.1:5555", "pgm has no ZeroMQ handshake, so CURVE cannot protect it"),
    ("epgm://eth0;239.192.1.1:5555", "epgm has no ZeroMQ handshake"),
    ("norm://1,239.192.1.1:5555", "topo sets CURVE up on tcp and ipc only"),
    ("tipc://{5560,0,0}", "topo sets CURVE up on tcp and ipc only"),
    ("ws://127.0.0.1:5555", "topo sets CURVE up on tcp and ipc only"),
])
def test_transports_curve_does_not_cover(endpoint: str, why: str) -> None:
    text = curve(f"""\
        nodes:
          a:
            run: "m:f"
            sockets:
              out: {{type: PUB, bind: "{endpoint}"}}
          b:
            run: "m:f"
            sockets:
              in: {{type: SUB, subscribe: "", connect: "{endpoint}"}}
        """)
    bind, connect = sorted(found(text, "E129"), key=lambda d: d.line)
    assert where(bind) == ("E129", 6, 30) and where(connect) == ("E129", 10, 47)
    assert bind.message.startswith(f"socket a.out binds {endpoint}, but {why}")
    assert connect.message.startswith(f"socket b.in connects to {endpoint}, but {why}")
    assert "use tcp or ipc" in bind.hint
    assert not found(text.replace(CURVE, ""), "E129")


@pytest.mark.usefixtures("every_transport")
def test_udp_under_curve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zmqrules, "is_available", lambda socket_type: True)
    text = curve("""\
        nodes:
          a: {run: "m:f", sockets: {out: {type: RADIO, bind: "udp://127.0.0.1:5555"}}}
        """)
    d = one(text, "E129")
    assert where(d) == ("E129", 3, 54) and "udp has no ZeroMQ handshake" in d.message


def test_a_bad_endpoint_is_reported_once() -> None:
    # This libzmq may lack pgm (E125) or have it (E129), but never both for one endpoint.
    text = curve("""\
        nodes:
          a: {run: "m:f", sockets: {out: {type: PUB, bind: "pgm://eth0;239.1.1.1:5555"}}}
        """)
    assert sorted(d.code for d in run(text) if d.is_error) in (["E125"], ["E129"])


# -- E133 / W211 -------------------------------------------------------------------------------


def test_allow_files_are_read_next_to_the_topology(tmp_path: Path) -> None:
    public_key_file(tmp_path / "client.key")
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    (tmp_path / "folder.key").mkdir()
    text = """\
        security:
          curve: true
          allow:
            - client.key
            - missing.key
            - notes.txt
            - folder.key
        nodes: {a: {run: "m:f"}}
        """
    diags = found(text, "E133", str(tmp_path / "t.yaml"))
    assert [where(d) for d in diags] == [("E133", 5, 7), ("E133", 6, 7), ("E133", 7, 7)]
    missing, text_file, folder = (d.message for d in diags)
    assert missing == (f"security.allow cannot use missing.key: {tmp_path}/missing.key: no such "
                       "key file")
    assert text_file.startswith(f"security.allow cannot use notes.txt: {tmp_path}/notes.txt "
                                "is not a ZeroMQ certificate")
    assert folder.startswith(f"security.allow cannot use folder.key: cannot read the key file "
                             f"{tmp_path}/folder.key")
    assert "relative to the topology file's folder" in diags[0].hint


def test_one_allow_file_without_a_list(tmp_path: Path) -> None:
    text = """\
        security: {curve: true, allow: nope.key}
        nodes: {a: {run: "m:f"}}
        """
    assert where(one(text, "E133", str(tmp_path / "t.yaml"))) == ("E133", 1, 32)
    public_key_file(tmp_path / "nope.key")
    assert not found(text, "E133", str(tmp_path / "t.yaml"))


def test_an_absolute_allow_path(tmp_path: Path) -> None:
    key = public_key_file(tmp_path / "c.key")
    text = f"""\
        security: {{curve: true, allow: ["{key}"]}}
        nodes: {{a: {{run: "m:f"}}}}
        """
    assert not found(text, "E133", "elsewhere/t.yaml")


def test_allow_without_curve(tmp_path: Path) -> None:
    public_key_file(tmp_path / "client.key")
    text = """\
        security: {allow: [client.key]}
        nodes: {a: {run: "m:f"}}
        """
    d = one(text, "W211", str(tmp_path / "t.yaml"))
    assert where(d) == ("W211", 1, 12) and d.severity == "warning"
    assert d.message.startswith("security.allow has no effect without curve: true")
    assert not found(text.replace("allow:", "curve: true, allow:"), "W211",
                     str(tmp_path / "t.yaml"))
    # `topo up` reads the files even without curve: a bad one is still an error.
    assert where(one(text.replace("client", "other"), "E133", str(tmp_path / "t.yaml"))) == \
        ("E133", 1, 20)


# -- W209 --------------------------------------------------------------------------------------


def test_a_command_node_that_binds_under_curve() -> None:
    text = curve("""\
        nodes:
          api:
            command: [php, server.php]
            sockets:
              rep: {type: REP, bind: ["inproc://x", "tcp://127.0.0.1:5555", "ipc://api"]}
              push: {type: PUSH, connect: worker.pull}
          worker:
            run: "m:f"
            sockets:
              pull: {type: PULL, bind: "ipc://pull"}
              req: {type: REQ, connect: api.rep}
        """)
    d = one(text, "W209")  # once per socket, at its first tcp or ipc bind
    assert where(d) == ("W209", 6, 45)
    assert d.message == ("node api runs a command, and topo cannot put a ZAP handler in its "
                         "program: socket api.rep binds tcp://127.0.0.1:5555 with encryption "
                         "only, so any client that has the server's public key gets in")
    assert "orchestrator.node.from_env()" in d.hint
    assert not found(text.replace(CURVE, ""), "W209")
    assert not found(text.replace("command: [php, server.php]", 'run: "m:f"'), "W209")


# -- W210 --------------------------------------------------------------------------------------


def test_connects_to_peers_outside_the_file_stay_plain() -> None:
    text = curve("""\
        nodes:
          a:
            run: "m:f"
            sockets:
              out: {type: DEALER, connect: [{endpoint: "tcp://10.0.0.1:5555", external: true}]}
              lost: {type: DEALER, connect: "ipc:///tmp/nobody"}
              near: {type: DEALER, connect: b.in}
              also: {type: DEALER, connect: "tcp://127.0.0.1:6000"}
              local: {type: PAIR, connect: "inproc://nowhere"}
          b:
            run: "m:f"
            sockets:
              in: {type: ROUTER, bind: "tcp://127.0.0.1:6000", options: {router_mandatory: 1}}
        """)
    diags = sorted(found(text, "W210"), key=Diagnostic.sort_key)
    assert [where(d) for d in diags] == [("W210", 6, 48), ("W210", 7, 37)]
    assert diags[0].message == ("socket a.out connects to tcp://10.0.0.1:5555, which no node of "
                                "this topology binds, so the link stays plain under "
                                "security.curve: topo does not know that server's public key")
    assert "bring the peer into this file" in diags[0].hint
    assert not found(text.replace(CURVE, ""), "W210")


# -- N301 and notes ----------------------------------------------------------------------------


INPROC = curve("""\
    nodes:
      a:
        run: "m:f"
        sockets:
          in: {type: PULL, bind: ["inproc://jobs", "inproc://more"]}
          out: {type: PUSH, connect: "inproc://jobs"}
    """)


def test_inproc_is_never_encrypted() -> None:
    diags = found(INPROC, "N301")
    assert [where(d) for d in diags] == [("N301", 6, 31), ("N301", 6, 48)]
    d = diags[0]
    assert d.severity == "note" and d.is_note and not d.is_error and not d.is_warning
    assert d.message == ("socket a.in binds inproc://jobs: inproc links are never encrypted, "
                         "and stay inside node a's process")
    assert d.hint.startswith("nothing to change")
    assert not found(INPROC.replace(CURVE, ""), "N301")


def test_severity_comes_from_the_code() -> None:
    pos = Position("f.yaml", 1, 1)
    assert [Diagnostic.at(pos, code, "m").severity for code in ("E101", "W201", "N301")] == \
        ["error", "warning", "note"]
    note = Diagnostic.at(pos, "N301", "inproc stays plain", "nothing to change")
    warning = Diagnostic.at(pos, "W205", "no peer")
    assert note.format() == "f.yaml:1:1: note[N301] inproc stays plain\n  hint: nothing to change"
    assert not fails([note], strict=True) and fails([note, warning], strict=True)
    assert not fails([note, warning])
    assert summary([note, warning], 1) == "0 error(s), 1 warning(s), 1 note(s) in 1 file(s)"
    assert summary([warning], 2) == "0 error(s), 1 warning(s) in 2 file(s)"


def test_notes_never_fail_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent(INPROC))
    assert main(["validate", "--strict", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"{path}:6:31: note[N301] socket a.in binds inproc://jobs" in out
    assert err == "0 error(s), 0 warning(s), 2 note(s) in 1 file(s)\n"
    assert main(["validate", "--strict", "--format", "json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {(d["code"], d["severity"]) for d in data} == {("N301", "note")}
    # A warning next to the notes still fails --strict.
    path.write_text(textwrap.dedent(INPROC) + '  b: {run: "m:f", sockets: {s: {type: PUB}}}\n')
    assert main(["validate", str(path)]) == 0
    assert main(["validate", "--strict", str(path)]) == 1
    assert "0 error(s), 1 warning(s), 2 note(s) in 1 file(s)" in capsys.readouterr().err


def test_explain_tells_notes() -> None:
    loaded = load_text(textwrap.dedent(INPROC), "t.yaml", environ=ENV)
    assert loaded.topology is not None
    text = explain(loaded.topology, run(INPROC))
    assert "Warnings and notes\n------------------" in text
    assert "Note N301, line 6: socket a.in binds inproc://jobs" in text
    error = Diagnostic("t.yaml", 1, 1, "error", "E129", "a STREAM socket", "drop curve")
    assert "Errors, warnings and notes\n" in explain(loaded.topology, [error, *run(INPROC)])


def test_up_does_not_print_notes(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent(INPROC) + '  b: {run: "m:f", sockets: {s: {type: PUB}}}\n')
    err = io.BytesIO()
    plan = prepare(path, err=err)
    assert Path(plan.run_dir, "keys").is_dir()
    printed = err.getvalue().decode()
    assert "warning[W205]" in printed and "N301" not in printed


# -- W206 --------------------------------------------------------------------------------------


def test_every_interface_hint_points_at_curve() -> None:
    text = """\
        nodes:
          a: {run: "m:f", sockets: {s: {type: PULL, bind: {endpoint: "tcp://*:5555",
                                                          external: true}}}}
          b: {command: [prog], sockets: {s: {type: PULL, bind: {endpoint: "tcp://*:5556",
                                                               external: true}}}}
        """
    plain, command = sorted(found(text, "W206"), key=Diagnostic.sort_key)
    assert plain.hint == ("bind on 127.0.0.1 unless other hosts should connect; if they should, "
                          "set `security: {curve: true}` so the link is encrypted and only known "
                          "keys get in")
    secured, command = sorted(found(curve(text), "W206"), key=Diagnostic.sort_key)
    assert secured.hint == ("bind on 127.0.0.1 unless other hosts should connect: with "
                            "security.curve the link is encrypted and only the file's nodes and "
                            "the `allow:` keys get in, but any machine can still reach the port")
    assert "W209" in command.hint
