"""examples/ci run as a project's CI would run them, twice at once, and interrupted.

Each pytest session is a subprocess with a deadline; ``no_leftovers`` then proves
that no process, ipc file, run folder or SysV object of any of them is left.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Leftovers
from tests.integration.test_up import REPO

EXAMPLE = REPO / "examples" / "ci"
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:benchmark",
          "-W", "error"]


def test_two_xdist_sessions_started_at_once_both_pass(no_leftovers: Leftovers) -> None:
    sessions = [subprocess.Popen([*PYTEST, "-n", "2", str(EXAMPLE)], cwd=REPO,
                                 env=no_leftovers.env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
                for _ in range(2)]
    outputs = [s.communicate(timeout=120)[0] for s in sessions]
    for session, output in zip(sessions, outputs, strict=True):
        assert session.returncode == 0, output
        assert "4 passed" in output


def session_file(tmp_path: Path, body: str) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    path = tmp_path / "test_session.py"
    # SIGUSR1 makes a session that does not end print where each of its threads is. Ctrl-C
    # is Python's KeyboardInterrupt, as in a terminal, also when this suite was started from
    # a shell that ignores SIGINT (a background job), which every child would inherit.
    path.write_text("import faulthandler, signal, time\nfaulthandler.register(signal.SIGUSR1)\n"
                    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
                    f"EXAMPLE = {str(EXAMPLE / 'topology.yaml')!r}\n\n{body}")
    return path


def test_a_failing_test_leaves_nothing(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = session_file(tmp_path, """
def test_fails(topology):
    run = topology(EXAMPLE)
    run.wait_for_log("worker.0", "ready")
    assert run.endpoint("broker.frontend") == "no such thing"
""")
    result = subprocess.run([*PYTEST, str(path)], cwd=tmp_path, env=no_leftovers.env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and "1 failed" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_an_interrupted_session_leaves_nothing(
    sig: int, tmp_path: Path, no_leftovers: Leftovers
) -> None:
    path = session_file(tmp_path, """
def test_hangs(topology):
    run = topology(EXAMPLE)
    print("RUNNING", run.run_id, flush=True)
    time.sleep(60)
""")
    session = subprocess.Popen([*PYTEST, "-s", str(path)], cwd=tmp_path, env=no_leftovers.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert session.stdout is not None
    deadline = time.monotonic() + 60
    seen = ""
    while "RUNNING" not in seen and time.monotonic() < deadline:
        line = session.stdout.readline()
        if not line:
            break
        seen += line
    assert "RUNNING" in seen, seen
    run_id = seen.split("RUNNING", 1)[1].split()[0]
    assert (no_leftovers.root / run_id).is_dir()
    session.send_signal(sig)
    try:
        rest = session.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        session.send_signal(signal.SIGUSR1)
        with contextlib.suppress(subprocess.TimeoutExpired):  # time to write the stacks
            session.communicate(timeout=2)
        session.kill()
        pytest.fail("the session did not end 60 s after the signal:\n"
                    + seen + session.communicate()[0])
    assert session.returncode in ((2,) if sig == signal.SIGINT else (-signal.SIGKILL,)), rest
    no_leftovers.check(timeout=10)  # the supervisor saw its owner go and stopped the run
