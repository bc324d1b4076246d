"""The teaching topologies, run for real with `topo up`: they end as their comments say.

Each run is a `topo up` subprocess with a deadline; ``no_leftovers`` proves that
no process, ipc file, run folder or SysV object outlived it.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import Leftovers

from .topo_samples import ROOT

CASES = {
    # file stem: (extra arguments, lines the output must hold)
    "hello_reqrep": ([], ["client: hello 5 -> world 5 (from server.0)",
                          "server: the client said bye after 5 requests",
                          "client: done, 5 replies"]),
    "rrbroker": (["--exit-code-from", "client"], ["client: reply to request 10 from worker.",
                                                  "client: done, 10 replies (worker.0 "]),
    "pubsub": (["--exit-code-from", "subscriber"], ["subscriber: 1/5: weather | weather report",
                                                    "subscriber: done, 5 messages"]),
    "pipeline": ([], ["ventilator: sent 20 tasks", "sink: 20 results in "]),
}


@pytest.mark.parametrize("stem", sorted(CASES))
def test_teaching_topology_runs_and_ends(stem: str, no_leftovers: Leftovers) -> None:
    args, expected = CASES[stem]
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "up", str(ROOT / "topologies" / f"{stem}.yaml"),
         "--timeout", "30", "--no-color", *args],
        cwd=ROOT, env=no_leftovers.env(), capture_output=True, text=True, timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for line in expected:
        assert line in output, f"{line!r} missing from:\n{output}"
    assert "Traceback" not in output
    if stem == "pubsub":
        mine = [ln for ln in output.splitlines() if ln.startswith("subscriber.0")]
        assert mine and not any("sports" in ln for ln in mine)
    if stem == "rrbroker":
        assert len(set(re.findall(r"from (worker\.\d)", output))) == 3
