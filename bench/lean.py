"""Run nodes started the way `topo up` starts them: by the lean supervisor, timed from its events.

Run: ``python bench/lean.py [--nodes 200]`` (also part of ``bench/supervise.py``).

``bench/supervise.py`` drives ``start.foreground.run_file`` inside its own process, which has the
validator loaded: that measures the supervisor's logic beside bare loops of
the same fat interpreter. `topo up` instead execs a lean supervisor
(``orchestrator.supervisor.lean``), so here the same N idle run nodes are started with
``topo up --json`` and timed from its ``run_started`` event to ``run_ready``;
the lower bounds are measured in a lean interpreter too (a subprocess that
imports what the lean supervisor imports, the node module, and ``gc.freeze()``):
the bare ``os.fork()`` loop, and the loop whose children make a zmq context and
socket.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

LEAN_BOUNDS = """
import gc, sys
sys.path[:0] = [{here!r}, {root!r}]
import zmq, orchestrator.supervisor.lean, orchestrator.supervisor.run
import orchestrator.child.node, orchestrator.child.roles
import supervise
assert "pydantic" not in sys.modules, "the lean interpreter imported pydantic"
gc.freeze()
n = {n}
print(min(supervise.bare_fork(n) for _ in range(3)), supervise.bare_fork_zmq(n))
"""


def lean_bounds(n: int) -> tuple[float, float]:
    code = LEAN_BOUNDS.format(here=str(HERE), root=str(ROOT), n=n)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), float(out[1])


def cli_ready(path: Path) -> float:
    """Seconds from `run_started` to `run_ready` of `topo up --json path`; the run is stopped."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "up", "--json", str(path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    started = None
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "run_started":
                started = event["ts"]
            elif event["event"] == "run_ready":
                assert started is not None
                return float(event["ts"] - started)
        raise SystemExit(f"topo up {path} ended before it was ready")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def run(n: int) -> list[str]:
    import supervise

    with tempfile.TemporaryDirectory(prefix="topo-bench-") as tmp:
        folder = Path(tmp)
        os.environ["TOPO_STATE_DIR"] = str(folder / "state")
        path = supervise.topology(folder, "run", n)
        bare, with_zmq = lean_bounds(n)
        ready = min(cli_ready(path) for _ in range(3))
    return [
        f"topo up (lean supervisor), run x{n + 1}: {ready:.3f}s to ready (best of 3); "
        f"bare fork x{n} of a lean interpreter: {bare:.3f}s -> ratio {ready / bare:.2f}; "
        f"with a zmq context+socket per child: {with_zmq:.3f}s -> ratio {ready / with_zmq:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    print("\n".join(run(args.nodes)))


if __name__ == "__main__":
    main()
