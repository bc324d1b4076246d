"""CURVE runs for real: nodes talk over tcp and ipc through a proxy, outsiders are refused.

Every test here starts processes and checks with ``no_leftovers`` that none of
them, no run folder (keys included) and no SysV object is left.
"""

from __future__ import annotations

import os
import re
import signal
import stat
from pathlib import Path

import pytest
import zmq

import orchestrator
from orchestrator.certs import keypair, read_public, write_public
from tests.conftest import Leftovers, wait_until
from tests.integration.test_detached import recorded, topo
from tests.integration.test_up import FUNCS, REPO, TopoProcess, topology

BROKER = """
    security: {curve: true}
    nodes:
      broker:
        role: proxy
        sockets:
          frontend: {type: ROUTER, bind: ["tcp://127.0.0.1:*", "ipc://frontend"],
                     options: {router_mandatory: 1}}
          backend: {type: DEALER, bind: "ipc://backend"}
      worker:
        role: echo
        replicas: 2
        sockets:
          jobs: {type: REP, connect: broker.backend}
"""


def ask(sock: zmq.Socket[bytes], text: bytes = b"hello") -> bytes | None:
    """One request; None when no reply comes within the socket's rcvtimeo."""
    sock.send(text)
    try:
        return sock.recv()
    except zmq.Again:
        return None


def outsider(endpoint: str, serverkey: str | None = None,
             keys: tuple[str, str] | None = None) -> tuple[zmq.Context[zmq.Socket[bytes]],
                                                          zmq.Socket[bytes]]:
    """A REQ socket of this process, plain or CURVE, connected to ``endpoint``."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.rcvtimeo = 1500
    if serverkey is not None:
        public, secret = keys or keypair()
        sock.curve_publickey, sock.curve_secretkey = public.encode(), secret.encode()
        sock.curve_serverkey = serverkey.encode()
    sock.connect(endpoint)
    return ctx, sock


def test_nodes_talk_over_tcp_and_ipc_through_a_proxy(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    path = topology(tmp_path, BROKER + """
      tcp-client:
        run: examples.hello:client
        restart: never
        with: {requests: 3}
        depends_on: [broker, worker]
        sockets:
          server: {type: REQ, connect: "broker.frontend@tcp"}
      ipc-client:
        run: examples.hello:client
        restart: never
        with: {requests: 3}
        depends_on: [broker, worker]
        sockets:
          server: {type: REQ, connect: "broker.frontend@ipc"}
    """)
    proc = TopoProcess([str(path), "--no-color", "--timeout", "30"], no_leftovers.env())
    proc.wait_for(r"tcp-client\.0 +\| client: done, 3 replies", timeout=20)
    proc.wait_for(r"ipc-client\.0 +\| client: done, 3 replies", timeout=20)
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.finish() == 128 + signal.SIGTERM, proc.err  # stopped by us, cleanly
    assert b"handshake" not in proc.out  # no node reported a failed handshake


def test_outsiders_are_refused_and_named_and_run_connect_gets_replies(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    path = topology(tmp_path, BROKER)
    with orchestrator.up(path, timeout=15, env=no_leftovers.env()) as run:
        assert ask(run.connect("broker.frontend", timeout=5)) == b"hello"  # allowed: ours
        front = run.endpoint("broker.frontend@tcp")
        server = read_public(run.folder / "keys" / "broker.key")
        for serverkey in (None, server):  # plain, then CURVE with a key nobody allowed
            ctx, sock = outsider(front, serverkey)
            try:
                assert ask(sock) is None
            finally:
                ctx.destroy(linger=0)
        # A plain client is turned away by the handshake itself; whether the server hears of
        # it depends on how far the client's greeting got, so only the ZAP refusal is asserted.
        line = run.wait_for_log("broker.0", r"frontend: refused a client from 127\.0\.0\.1 "
                                r"\(public key (\S{40})\)")
        assert line.group(1) != server
        # The workers' keys get in on the backend only: the frontend does not know them.
        worker = run.folder / "keys" / "worker.key_secret"
        text = worker.read_text()
        worker_keys = (read_public(worker), text.split('secret-key = "')[1].split('"')[0])
        ctx, sock = outsider(front, server, worker_keys)
        try:
            assert ask(sock) is None
        finally:
            ctx.destroy(linger=0)
        run.wait_for_log("broker.0", rf"frontend: refused a client from 127\.0\.0\.1 "
                         rf"\(public key {re.escape(worker_keys[0])}\)")


def test_a_client_given_with_allow_gets_replies(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, BROKER)
    public, secret = keypair()
    write_public(tmp_path / "ci.key", public)
    env = no_leftovers.env()
    up = topo(env, "up", "-d", str(path), "-p", "allowed", "--allow", str(tmp_path / "ci.key"))
    assert up.returncode == 0, up.stderr
    try:
        folder = no_leftovers.root / "allowed"
        state = recorded(no_leftovers.root, "allowed")
        assert state
        server = read_public(folder / "keys" / "broker.key")
        front = f"ipc://{folder}/frontend"
        ctx, sock = outsider(front, server, (public, secret))
        try:
            assert ask(sock, b"from ci") == b"from ci"
        finally:
            ctx.destroy(linger=0)
    finally:
        assert topo(env, "down", "allowed").returncode == 0


def test_allow_keys_from_the_file_and_bad_ones(tmp_path: Path, no_leftovers: Leftovers) -> None:
    public, secret = keypair()
    write_public(tmp_path / "ci.key", public)
    path = topology(tmp_path, BROKER.replace("security: {curve: true}",
                                             "security: {curve: true, allow: [ci.key]}"))
    with orchestrator.up(path, timeout=15, env=no_leftovers.env()) as run:
        ctx, sock = outsider(run.endpoint("broker.frontend@tcp"),
                             read_public(run.folder / "keys" / "broker.key"), (public, secret))
        try:
            assert ask(sock) == b"hello"
        finally:
            ctx.destroy(linger=0)
    # --allow with a file that is not a key: one sentence, exit 1, nothing started.
    (tmp_path / "junk.key").write_text("not a certificate\n")
    result = topo(no_leftovers.env(), "up", "-d", str(path), "--allow",
                  str(tmp_path / "junk.key"))
    assert result.returncode == 1
    assert "junk.key is not a ZeroMQ certificate" in result.stderr
    assert not (no_leftovers.root / "t").exists()


def test_key_files_are_private_while_up_and_gone_after_down_and_after_sigkill(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    path = topology(tmp_path, BROKER)
    env = no_leftovers.env()
    for how in ("down", "sigkill"):
        assert topo(env, "up", "-d", str(path), "-p", how).returncode == 0
        keys = no_leftovers.root / how / "keys"
        assert stat.S_IMODE(keys.stat().st_mode) == 0o700
        names = sorted(p.name for p in keys.iterdir())
        assert names == ["broker.key", "broker.key_secret", "worker.key", "worker.key_secret"]
        for name in names:
            mode = stat.S_IMODE((keys / name).stat().st_mode)
            assert mode == (0o600 if name.endswith("_secret") else 0o644), (name, oct(mode))
        if how == "sigkill":
            everyone = recorded(no_leftovers.root, how)
            os.kill(everyone[0][0], signal.SIGKILL)
            pids = [pid for pid, _ in everyone]
            wait_until(lambda: not any(_alive(p) for p in pids), timeout=5,  # noqa: B023
                       message="the nodes to die with their supervisor")
        assert topo(env, "down", how).returncode == 0
        assert not keys.exists() and not keys.parent.exists()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_no_secret_travels_in_an_environment(tmp_path: Path, no_leftovers: Leftovers) -> None:
    # A command node too: its TOPO_SPEC file is the one spec file a run writes.
    path = topology(tmp_path, BROKER + """
      idle:
        command: [sleep, "60"]
        sockets:
          server: {type: REQ, connect: broker.frontend@tcp}
    """)
    with orchestrator.up(path, timeout=15, env=no_leftovers.env()) as run:
        secret_file = run.folder / "keys" / "worker.key_secret"
        text = secret_file.read_text()
        secret = text.split('secret-key = "')[1].split('"')[0]
        environ = Path(f"/proc/{run.pid('worker.0')}/environ").read_bytes()
        assert len(secret) == 40 and secret.encode() not in environ
        assert not (run.folder / "spec" / "worker.0.json").exists()  # forked: plan in memory
        specs = sorted((run.folder / "spec").glob("*.json"))
        assert [p.name for p in specs] == ["idle.0.json"]
        for written in [*specs, run.folder / "state.json"]:
            assert secret not in written.read_text()


def test_a_node_whose_key_is_gone_fails_clearly_and_follows_its_policy(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    path = topology(tmp_path, BROKER.replace("replicas: 2", "replicas: 1\n        max_restarts: 1"))
    with orchestrator.up(path, timeout=15, env=no_leftovers.env()) as run:
        (run.folder / "keys" / "worker.key_secret").unlink()
        run.kill("worker.0")
        run.wait_for_log("worker.0", r"worker\.0: cannot read this node's CURVE key: "
                         r".*worker\.key_secret: no such key file")
        wait_until(lambda: {r["name"]: r["state"] for r in run.ps()}["worker.0"] == "failed",
                   timeout=10, message="worker.0 to give up after its restarts")


def test_a_python_command_node_gets_configured_sockets(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    """``from_env()`` builds a command node's CURVE sockets, ZAP handler included."""
    path = topology(tmp_path, BROKER + f"""
      tool:
        command: [python3, -c, "from {FUNCS} import command_client; command_client()"]
        cwd: {REPO}
        restart: never
        depends_on: [broker, worker]
        sockets:
          server: {{type: REQ, connect: broker.frontend@tcp}}
    """)
    proc = TopoProcess([str(path), "--no-color", "--exit-code-from", "tool", "--timeout", "30"],
                       no_leftovers.env())
    proc.wait_for(r"tool\.0 +\| 3 replies", timeout=20)
    assert proc.finish(timeout=20) == 0, proc.err


def test_curve_off_by_default_and_allow_without_curve_is_refused(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    path = topology(tmp_path, BROKER.replace("    security: {curve: true}\n", ""))
    write_public(tmp_path / "ci.key", keypair()[0])
    result = topo(no_leftovers.env(), "up", "-d", str(path), "--allow", str(tmp_path / "ci.key"))
    assert result.returncode == 2 and "does not use CURVE" in result.stderr
    with orchestrator.up(path, timeout=15, env=no_leftovers.env()) as run:
        assert not (run.folder / "keys").exists()
        assert ask(run.connect("broker.frontend", timeout=5)) == b"hello"


def test_keys_made_once_and_shared_by_runs_with_keys(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    """`topo keys --make DIR FILE`, then `topo up --keys DIR`: the run makes no keys of its own,
    uses DIR's, and leaves DIR alone (the run did not make it)."""
    path = topology(tmp_path, BROKER)
    env = no_leftovers.env()
    folder = tmp_path / "shared"
    made = topo(env, "keys", "--make", str(folder), str(path))
    assert made.returncode == 0 and "made 2 key pairs" in made.stdout, made.stderr
    again = topo(env, "keys", "--make", str(folder), str(path))
    assert again.returncode == 1 and "exists already" in again.stderr
    assert topo(env, "up", "-d", str(path), "-p", "shared", "--keys", str(folder)).returncode == 0
    try:
        assert not (no_leftovers.root / "shared" / "keys").exists()
        shown = topo(env, "keys", "shared", "broker").stdout.strip()
        assert shown == read_public(folder / "broker.key")
        ctx, sock = outsider(f"ipc://{no_leftovers.root}/shared/frontend", shown)
        try:
            assert ask(sock) is None  # this process is no node of the run: refused
        finally:
            ctx.destroy(linger=0)
    finally:
        assert topo(env, "down", "shared").returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "broker.key", "broker.key_secret", "worker.key", "worker.key_secret"]
    plain = topology(tmp_path, BROKER.replace("    security: {curve: true}\n", ""), name="p")
    result = topo(env, "up", "-d", str(plain), "--keys", str(folder))
    assert result.returncode == 2 and "does not use CURVE" in result.stderr
    result = topo(env, "keys", "--make", str(tmp_path / "other"), str(plain))
    assert result.returncode == 2 and "does not use CURVE" in result.stderr
    assert not (tmp_path / "other").exists()
    # A secret that others can read, or one that is missing: refused before anything starts.
    (folder / "worker.key_secret").chmod(0o644)
    result = topo(env, "up", "-d", str(path), "--keys", str(folder))
    assert result.returncode == 1 and "can be read by every user (mode 0644)" in result.stderr
    (folder / "worker.key_secret").unlink()
    result = topo(env, "up", "-d", str(path), "--keys", str(folder))
    assert result.returncode == 1 and "node worker has no secret key file" in result.stderr
    assert not (no_leftovers.root / "t").exists()
    grouped = topo(env, "up", "-d", str(path), "--group", "broker")
    assert grouped.returncode == 2 and "needs --keys DIR" in grouped.stderr


def test_a_key_folder_that_cannot_be_made_is_one_sentence_and_leaves_nothing(
    tmp_path: Path, no_leftovers: Leftovers, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.errors import RunError
    from orchestrator.start import prepare as prepare_module

    def refuse(folder: object, names: object) -> dict[str, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(prepare_module, "make_keys", refuse)
    path = topology(tmp_path, BROKER)
    with pytest.raises(RunError, match=r"cannot make the run's CURVE keys in .*/keys: "
                                       r"Permission denied"):
        prepare_module.prepare(path, run_id="nokeys", environ=no_leftovers.env())
    assert not (no_leftovers.root / "nokeys").exists()
