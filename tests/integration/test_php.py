"""PHP programs as `command` nodes: a PHP REQ client and PHP REP workers around a proxy broker.

Needs php-cli and php-zmq; skipped locally with a reason when missing, required in CI
(TOPO_REQUIRE_TOOLS=1 after .ci/run installs them).
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import Leftovers
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
