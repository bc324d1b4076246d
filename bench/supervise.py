"""How fast does `topo up` start, restart and hold nodes, next to the bare lower bounds?

Run: ``python bench/supervise.py [--sizes 50,200] [--kills 20] [--idle 10]``

Everything is measured in this one process, so the supervisor (driven
in-process through ``start.foreground.run_file``) and the bare loops fork from an interpreter of
the same size:

- run nodes: seconds from the supervisor's start until every replica has sent
  its ready byte (sockets bound and connected), for each size; bound: a bare
  ``os.fork()`` loop whose children write one byte to a pipe and ``_exit``.
- command nodes: the same for a small ``python -c`` program that prints ``up``
  (``ready: {log: ^up$}``); bound: a bare fork+exec loop of the same program,
  until every copy has printed ``up``.
- restart latency: SIGKILL one replica at a time, ``--kills`` of them, while
  ``--running`` are up (each had been up > 1 s, so the policy restarts it at
  once) and time the kill to the new replica's ready byte; p50 and p95 (the
  issue-16 targets: p50 <= 10 ms, p95 <= 25 ms with 200 running).
- PSS of idle run nodes (``psutil ... memory_full_info().pss``), mean.
- then, for the largest size, ``bench/lean.py`` (run nodes started by `topo up`'s
  lean supervisor, beside bare loops of a lean interpreter) and
  ``bench/detached.py``: ``topo up -d``, idle supervisor CPU, ``topo down``, and
  nodes gone after a SIGKILL of the supervisor.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from orchestrator.supervisor.supervisor import Replica, Supervisor  # noqa: E402

PROGRAM = "import time; print('up', flush=True); time.sleep(3600)"


def topology(folder: Path, kind: str, n: int) -> Path:
    if kind == "run":
        body = f"""
nodes:
  sink:
    run: bench_nodes:idle
    sockets:
      pull: {{type: PULL, bind: "ipc://sink"}}
  w:
    run: bench_nodes:idle
    replicas: {n}
    sockets:
      push: {{type: PUSH, connect: sink.pull}}
"""
    else:
        body = f"""
nodes:
  w:
    command: ["{sys.executable}", "-c", "{PROGRAM}"]
    replicas: {n}
    ready: {{log: "^up$", timeout: 60s}}
"""
    path = folder / f"{kind}{n}.yaml"
    path.write_text(f"name: b-{kind}-{n}\npythonpath: [{HERE}]\n{body}")
    return path


class Run:
    """One in-process `up()`, stopped from a hook once every replica is ready."""

    def __init__(self, path: Path, then: Any = None) -> None:
        self.path = path
        self.then = then  # called (in the loop) when all are ready; may stop the run itself
        self.sup: Supervisor | None = None
        self.t_start = 0.0
        self.t_ready = 0.0
        self.t_call = 0.0
        self.ready_events: dict[str, threading.Event] = {}
        self.ready_at: dict[str, float] = {}

    def _on_start(self, sup: Supervisor) -> None:
        self.sup = sup
        self.t_start = time.perf_counter()

    def _on_ready(self, r: Replica) -> None:
        now = time.perf_counter()
        self.ready_at[f"{r.name}/{r.restarts}"] = now
        ev = self.ready_events.get(f"{r.name}/{r.restarts}")
        if ev is not None:
            ev.set()
        assert self.sup is not None
        if not self.t_ready and all(x.ever_ready for x in self.sup.replicas.values()):
            self.t_ready = now
            if self.then is not None:
                self.then(self)
            else:
                self.sup.handle_term()

    def go(self) -> int:
        # Here, not at the top: bench/lean.py imports this module into a lean interpreter
        # that must never load pydantic, which starting from a file does.
        from orchestrator.start.foreground import run_file as up

        self.t_call = time.perf_counter()
        with open(os.devnull, "wb") as sink:
            return up(self.path, out=sink, err=sink, on_start=self._on_start,
                      ready_hook=self._on_ready)


def _finish(t0: float, pids: list[int], r: int, w: int, *, kill: bool) -> float:
    """The elapsed time of a bare loop, taken before its children are killed and reaped."""
    elapsed = time.perf_counter() - t0
    for pid in pids:
        if kill:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    return elapsed


def _bare_forks(n: int, child: Any, *, kill: bool) -> float:
    """Fork ``n`` children running ``child(w)`` (which writes b"R" to ``w``) until all wrote."""
    r, w = os.pipe()
    t0 = time.perf_counter()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            child(w)
            os._exit(0)
        pids.append(pid)
    while n > 0:
        n -= len(os.read(r, 4096))
    return _finish(t0, pids, r, w, kill=kill)


def bare_fork(n: int) -> float:
    return _bare_forks(n, lambda w: os.write(w, b"R"), kill=False)


def bare_fork_zmq(n: int) -> float:
    """A second reference: children stay alive and each makes a context and a socket."""
    import zmq

    def child(w: int) -> None:
        ctx = zmq.Context()
        ctx.socket(zmq.PUSH).connect("ipc:///nonexistent/topo-bench")
        os.write(w, b"R")
        signal.pause()

    return _bare_forks(n, child, kill=True)


def bare_exec(n: int) -> float:
    r, w = os.pipe()
    argv = [sys.executable, "-c", PROGRAM]
    t0 = time.perf_counter()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os.dup2(w, 1)
            os.execv(sys.executable, argv)
        pids.append(pid)
    seen = b""
    while seen.count(b"up") < n:  # unbuffered children may write "up" and "\\n" apart
        seen += os.read(r, 65536)
    return _finish(t0, pids, r, w, kill=True)


def measure_pss(run: Run) -> None:
    import psutil

    assert run.sup is not None
    pss = []
    for r in run.sup.replicas.values():
        if r.proc is not None:
            pss.append(psutil.Process(r.proc.pid).memory_full_info().pss)
    run.pss = statistics.mean(pss) / 2**20  # type: ignore[attr-defined]
    run.sup.handle_term()


def restart_latency(folder: Path, kills: int, running: int) -> list[float]:
    """Kill ``kills`` replicas one at a time while ``running`` are up."""
    run = Run(topology(folder, "run", max(kills, running)), then=lambda run: None)
    latencies: list[float] = []

    def killer() -> None:
        while run.sup is None or not run.t_ready:
            time.sleep(0.01)
        time.sleep(1.1)  # every replica has been up for a healthy run: restarts are immediate
        sup = run.sup
        for i in range(kills):
            name = f"w.{i}"
            ev = run.ready_events.setdefault(f"{name}/1", threading.Event())
            proc = sup.replicas[name].proc
            assert proc is not None
            t0 = time.perf_counter()
            os.kill(proc.pid, signal.SIGKILL)
            if not ev.wait(5):
                break
            latencies.append(run.ready_at[f"{name}/1"] - t0)
        os.kill(os.getpid(), signal.SIGTERM)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    run.go()
    t.join(5)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--running", type=int, default=200,
                        help="replicas up while the restarts are timed")
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds the detached run idles while its supervisor's CPU is read")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="topo-bench-") as tmp:
        folder = Path(tmp)
        os.environ["TOPO_STATE_DIR"] = str(folder / "state")
        import supervise  # noqa: F401  - preload the node functions like the supervisor does

        rows = []
        refs: list[tuple[int, float, float]] = []
        for n in sizes:
            fork_bound = min(bare_fork(n) for _ in range(3))
            zmq_ref = bare_fork_zmq(n)
            run = Run(topology(folder, "run", n), then=measure_pss if n == sizes[-1] else None)
            run.go()
            rows.append(("run", n, run.t_ready - run.t_start, run.t_ready - run.t_call,
                         fork_bound, getattr(run, "pss", None)))
            refs.append((n, zmq_ref, run.t_ready - run.t_start))
        for n in sizes:
            exec_bound = bare_exec(n)
            run = Run(topology(folder, "command", n))
            run.go()
            rows.append(("command", n, run.t_ready - run.t_start, run.t_ready - run.t_call,
                         exec_bound, None))
        latencies = restart_latency(folder, args.kills, args.running)

    print(f"{'nodes':>14} {'all ready':>10} {'incl. load':>10} {'bare bound':>10} {'ratio':>6}")
    for kind, n, ready, total, bound, _ in rows:
        print(f"{kind:>8} x{n:<4} {ready:>9.3f}s {total:>9.3f}s {bound:>9.3f}s "
              f"{ready / bound:>6.2f}")
    for n, ref, ready in refs:
        print(f"reference: bare fork x{n} whose children stay up with a zmq socket: "
              f"{ref:.3f}s (run nodes / that: {ready / ref:.2f})")
    pss = next(p for *_, p in rows if p is not None)
    print(f"PSS of an idle run node (mean of {sizes[-1] + 1}): {pss:.2f} MiB")
    if latencies:
        lat = sorted(latencies)
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        print(f"restart after SIGKILL, kill -> ready ({len(lat)} kills, "
              f"{max(args.kills, args.running)} nodes running): "
              f"p50 {statistics.median(lat) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")
    import detached  # the detached-run figures (bench/detached.py), on the largest size
    import lean  # run nodes as `topo up` starts them (bench/lean.py)

    print("\n".join(lean.run(sizes[-1])))
    print("\n".join(detached.run(sizes[-1], args.idle)))


if __name__ == "__main__":
    main()
