"""Detached runs: idle supervisor CPU, `topo down` time, nodes dying with a SIGKILLed supervisor.

Run: ``python bench/detached.py [--nodes 200] [--idle 10]`` (also part of
``bench/supervise.py``). Each step drives the real ``topo`` command, as a user
would, on a run of N idle ``run`` nodes:

- ``topo up -d``: wall time until it returns (every node ready);
- supervisor CPU while the nodes idle for ``--idle`` seconds (user + system of
  the supervisor and its guardian, from psutil), as a share of one core;
- ``topo down``: wall time of the command, until the run folder is gone; next
  to it, the start-up time of ``python -c pass`` and of ``topo --version``; then
  the same for N ``command`` nodes (the program of ``bench/compare.py``: a ZeroMQ
  PUSH socket, no SIGTERM handler), the kind of node supervisord, circus and
  honcho run;
- SIGKILL of the supervisor of a second run: time until every recorded node
  process is gone, then whether ``topo down`` exits 0 and leaves no folder.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from orchestrator.runs.procinfo import is_alive  # noqa: E402

TOPO = [sys.executable, "-m", "orchestrator"]


def topology(folder: Path, n: int, kind: str = "run") -> Path:
    """N idle run nodes (and their sink) as ``bench/supervise.py``'s, or N command nodes."""
    if kind == "run":
        import supervise

        return supervise.topology(folder, "run", n)
    from compare import NODE

    (folder / "node.py").write_text(NODE)
    path = folder / f"command{n}.yaml"
    path.write_text(f"nodes:\n  w:\n    command: [{sys.executable}, {folder}/node.py, w, "
                    f"{folder}/sink]\n    replicas: {n}\n    ready: {{log: '^up$'}}\n")
    return path


def timed(*args: str) -> float:
    t0 = time.perf_counter()
    result = subprocess.run([*TOPO, *args], capture_output=True, check=False)
    elapsed = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"topo {' '.join(args)} failed: {result.stderr.decode()}")
    return elapsed


def state(run: str) -> dict[str, object]:
    root = Path(os.environ["TOPO_STATE_DIR"])
    data: dict[str, object] = json.loads((root / run / "state.json").read_text())
    return data


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def startup(argv: list[str]) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def run(nodes: int, idle: float) -> list[str]:
    out = []
    with tempfile.TemporaryDirectory(prefix="topo-bench-") as tmp:
        folder = Path(tmp)
        os.environ["TOPO_STATE_DIR"] = str(folder / "state")
        path = topology(folder, nodes)
        t_up = timed("up", "-d", str(path), "-p", "a")
        st = state("a")
        sup = st["supervisor"]["pid"]  # type: ignore[index]
        watched = [sup, st["guardian"]]
        before = cpu(watched)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        time.sleep(idle)  # the measurement window itself: nothing is being waited for
        share = (cpu(watched) - before) / (time.perf_counter() - t0)  # type: ignore[arg-type]
        t_down = timed("down", "a")
        assert not (folder / "state" / "a").exists()
        out.append(f"topo up -d, {nodes + 1} run nodes: {t_up:.3f}s")
        out.append(f"idle supervisor (+ guardian) over {idle:g}s with {nodes + 1} nodes: "
                   f"{share * 100:.3f}% of one core")
        out.append(f"topo down, {nodes + 1} run nodes: {t_down:.3f}s "
                   f"(python -c pass: {startup([sys.executable, '-c', 'pass']):.3f}s, "
                   f"topo --version: {startup([*TOPO, '--version']):.3f}s)")
        timed("up", "-d", str(topology(folder, nodes, "command")), "-p", "c")
        time.sleep(idle)  # the same idle window before the stop
        out.append(f"topo down, {nodes} command nodes: {timed('down', 'c'):.3f}s")

        timed("up", "-d", str(path), "-p", "b")
        st = state("b")
        everyone = [(r["pid"], r["start"]) for r in st["replicas"].values()]  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        os.kill(st["supervisor"]["pid"], signal.SIGKILL)  # type: ignore[index]
        while any(is_alive(p, s) for p, s in everyone) and time.perf_counter() - t0 < 10:
            time.sleep(0.001)  # polls the process table against the 10 s bound
        gone = time.perf_counter() - t0
        left = sum(is_alive(p, s) for p, s in everyone)
        down = subprocess.run([*TOPO, "down", "b"], capture_output=True, check=False)
        out.append(f"SIGKILL of the supervisor: {len(everyone)} nodes gone in {gone:.3f}s "
                   f"({left} left); topo down afterwards: exit {down.returncode}, run folder "
                   f"{'left' if (folder / 'state' / 'b').exists() else 'gone'}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    print("\n".join(run(args.nodes, args.idle)))


if __name__ == "__main__":
    main()
