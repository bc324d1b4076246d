"""PHP programs as `command` nodes: a PHP REQ client and PHP REP workers around a proxy broker,
and the PHP CURVE client (examples/php/curve_client.php) against CURVE servers.

Needs php-cli and php-zmq; skipped locally with a reason when missing, required in CI
(TOPO_REQUIRE_TOOLS=1 after .ci/run installs them).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orchestrator
from orchestrator.certs import keypair, read_public, write_public, write_secret
from tests.conftest import Leftovers
from tests.integration.test_up import topology
from tests.tools import need_php_extension
from tests.topo_samples import ROOT


def test_php_client_and_workers_around_a_proxy_broker(no_leftovers: Leftovers) -> None:
    need_php_extension("zmq")
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "up", str(ROOT / "topologies" / "php_reqrep.yaml"),
         "-p", f"php-{no_leftovers.token[:8]}", "--exit-code-from", "client",
         "--timeout", "30", "--no-color"],
        cwd=ROOT, env=no_leftovers.env(REQUESTS="6"), capture_output=True, text=True,
        timeout=60, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    replies = re.findall(r"client\.0 +\| reply (\d): HELLO \d FROM CLIENT\.0 \(by (worker\.\d)\)",
                         output)
    assert [n for n, _ in replies] == ["1", "2", "3", "4", "5", "6"], output
    # The DEALER backend deals requests round-robin: both PHP workers answered.
    assert {w for _, w in replies} == {"worker.0", "worker.1"}, output
    assert "client done: 6 replies" in output
    assert "Traceback" not in output



# Two CURVE servers, each with its own key pair; the PHP client below is not a node of
# the file, security.allow lets it in.
TWO_SERVERS = """
    security: {curve: true, allow: [allowed.key]}
    nodes:
      a:
        role: echo
        sockets:
          jobs: {type: REP, bind: "tcp://127.0.0.1:*"}
      b:
        role: echo
        sockets:
          jobs: {type: REP, bind: "ipc://b"}
"""


def curve_client(env: dict[str, str], secret_file: Path, public: str,
                 **extra: str) -> subprocess.CompletedProcess[str]:
    """examples/php/curve_client.php, given the environment topo gives a command node."""
    return subprocess.run(
        ["php", str(ROOT / "examples" / "php" / "curve_client.php")],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
        env={**env, "TOPO_NODE": "client", "TOPO_REPLICA": "0",
             "TOPO_CURVE_SECRET_FILE": str(secret_file), "TOPO_CURVE_PUBLIC_KEY": public,
             **extra},
    )


def test_php_curve_client_sets_each_endpoints_server_key_and_fails_clearly_when_refused(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    """What ironhouse.yaml does not show: topo_curve_connect (examples/php/topo.php) with
    two servers, a server key each, in the order of the endpoints; a key that no
    server allows (no reply, exit 1, the server names the key); a key list that does
    not fit the endpoints (exit 2 at once)."""
    need_php_extension("zmq")
    allowed, stranger = keypair(), keypair()
    write_public(tmp_path / "allowed.key", allowed[0])
    write_secret(tmp_path / "allowed.key_secret", *allowed)
    write_secret(tmp_path / "stranger.key_secret", *stranger)
    path = topology(tmp_path, TWO_SERVERS, "phpcurve")
    with orchestrator.up(path, env=no_leftovers.env(), timeout=20) as run:
        endpoints = [run.endpoint("a.jobs"), run.endpoint("b.jobs")]
        keys = [read_public(run.folder / "keys" / f"{n}.key") for n in ("a", "b")]
        assert keys[0] != keys[1]
        env = no_leftovers.env(REQUESTS="4", TOPO_SOCKET_SERVER=",".join(endpoints),
                               TOPO_SOCKET_SERVER_SERVERKEY=",".join(keys))

        result = curve_client(env, tmp_path / "allowed.key_secret", allowed[0])
        # REQ deals its requests over both connections in turn: both handshakes worked.
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines() == [
            "client: request 1", "client: request 2", "client: request 3", "client: request 4",
            "client: done, 4 replies, every one encrypted"]

        result = curve_client({**env, "REQUESTS": "1"}, tmp_path / "stranger.key_secret",
                              stranger[0])
        assert result.returncode == 1, result.stdout + result.stderr
        assert "no reply to request 1 within 5 s" in result.stderr
        run.wait_for_log("a", r"WARNING jobs: refused a client from \S+ "
                         rf"\(public key {re.escape(stranger[0])}\)")

        result = curve_client({**env, "TOPO_SOCKET_SERVER_SERVERKEY": keys[0]},
                              tmp_path / "allowed.key_secret", allowed[0])
        assert result.returncode == 2
        assert "TOPO_SOCKET_SERVER_SERVERKEY has no server key for every endpoint" in result.stderr
