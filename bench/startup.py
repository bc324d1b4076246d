"""Start-up as a user sees it: topo beside what the machine can do, end to end, in one run.

Run: ``env -u PYTHONDONTWRITEBYTECODE python bench/startup.py [--sizes 50,200,1000]
[--rounds 5]`` after one warm run (users have ``.pyc`` files; these machines export
``PYTHONDONTWRITEBYTECODE=1``).

Every figure is a whole command timed from the outside, the way a user starts it, median
of ``--rounds`` (min-max), the variants taken in turn within each round so that the
machine's noise hits them alike:

- run nodes: ``topo up FILE`` of N run nodes that each send one ZeroMQ message once up
  (a PUSH, to one PULL sink node that ends after N), until the run has ended; beside
  the floor: a bare ``python`` that imports zmq and forks N children, each making a
  context and a PUSH socket and sending one message to the PULL the parent binds once
  it has forked them all, until all N are in and every child is reaped;
- command nodes: ``topo up`` of N command nodes running ``python -c "print('up')"``
  beside a shell loop that starts the same N programs and waits for them;
- the CLI: ``topo validate`` of a one-node file (answered from the cache, and checked
  afresh with ``--no-cache``), and ``topo up`` of one run node that returns at once,
  beside ``python -c "import zmq"`` (from the plan kept by the run before, and with the
  file changed before each run, so that it is validated and planned);
- ``orchestrator.up()`` of ``examples/ci`` until ready, timed inside one Python process
  after a first call (which loads the validator there, once per test session);
- ``topo down`` of N idle run nodes started with ``topo up -d`` beside a bare loop that
  SIGTERMs N zmq children and reaps them; before each ``topo down``, the idle run's
  supervisor RSS and its nodes' mean PSS (``bench/supervise.py`` times restarts).

Targets (issue 16) are printed beside each ratio; a benchmark, not a test: it asserts
nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
PROGRAM = "print('up')"  # what each command node runs, in topo and in the shell loop

BARE_ZMQ = """
import os, sys, zmq
n = int(sys.argv[1])
ep = "ipc://" + sys.argv[2]
pids = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        c = zmq.Context()
        s = c.socket(zmq.PUSH)
        s.connect(ep)
        s.send(b"up")
        s.close(linger=-1)
        c.term()
        os._exit(0)
    pids.append(pid)
# The parent's own context only now: forking a process whose libzmq threads run can hang.
ctx = zmq.Context()
pull = ctx.socket(zmq.PULL)
pull.bind(ep)
for _ in range(n):
    pull.recv()
for pid in pids:
    os.waitpid(pid, 0)
"""

BARE_STOP = """
import os, signal, sys, time, zmq
n = int(sys.argv[1])
pids = []
r, w = os.pipe()
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os.close(r)
        c = zmq.Context()
        s = c.socket(zmq.PULL)
        os.write(w, b"R")
        while True:
            time.sleep(3600)
    pids.append(pid)
os.close(w)
got = 0
while got < n:
    got += len(os.read(r, 4096))
t = time.perf_counter()
for pid in pids:
    os.kill(pid, signal.SIGTERM)
for pid in pids:
    os.waitpid(pid, 0)
print(time.perf_counter() - t)
"""


def files(folder: Path, n: int) -> dict[str, Path]:
    head = f"pythonpath: [{HERE}]\n"
    out = {
        "run": f"""name: s-run-{n}
{head}nodes:
  sink:
    run: bench_nodes:sink
    with: {{n: {n}}}
    sockets:
      in: {{type: PULL, bind: "ipc://sink"}}
  w:
    run: bench_nodes:send_one
    replicas: {n}
    sockets:
      out: {{type: PUSH, connect: sink.in}}
""",
        "command": f"""name: s-cmd-{n}
nodes:
  w:
    command: [{PY}, -c, "{PROGRAM}"]
    replicas: {n}
    restart: never
""",
        "idle": f"""name: s-idle-{n}
{head}nodes:
  hub:
    run: bench_nodes:idle
    sockets:
      out: {{type: PUSH, bind: "ipc://hub"}}
  w:
    run: bench_nodes:idle
    replicas: {n}
    sockets:
      in: {{type: PULL, connect: hub.out}}
""",
        "one": f"""name: s-one
{head}nodes:
  n:
    run: bench_nodes:returns
""",
    }
    paths = {}
    for kind, text in out.items():
        path = folder / f"{kind}-{n}.yaml"
        path.write_text(text)
        paths[kind] = path
    return paths


_edits = iter(range(1, 1 << 30))


def changed(path: Path) -> Path:
    """``path`` with one more comment line: new bytes, so neither cache has an answer."""
    with path.open("a") as f:
        f.write(f"# edit {next(_edits)}\n")
    return path


def timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def topo(*args: str) -> list[str]:
    return [PY, "-m", "orchestrator", *args]


MEMORY: dict[int, list[tuple[float, float]]] = {}  # n -> (supervisor RSS, mean node PSS), MiB


def down_time(path: Path, env: dict[str, str], run: str, n: int) -> float:
    subprocess.run(topo("up", "-d", str(path), "-p", run), env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    MEMORY.setdefault(n, []).append(memory(Path(env["TOPO_STATE_DIR"]) / run / "state.json"))
    return timed(topo("down", run), env)


def memory(state_file: Path) -> tuple[float, float]:
    """The idle run's supervisor RSS and its nodes' mean PSS, in MiB (psutil, /proc smaps)."""
    import json

    import psutil

    state = json.loads(state_file.read_text())
    rss = psutil.Process(state["supervisor"]["pid"]).memory_info().rss
    pss = [psutil.Process(r["pid"]).memory_full_info().pss
           for r in state["replicas"].values() if r.get("pid")]
    return rss / 2**20, statistics.mean(pss) / 2**20


API_UP = """
import json, sys, time
import orchestrator
orchestrator.up(sys.argv[1]).down()  # the first call loads pydantic and the model here
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    run = orchestrator.up(sys.argv[1])
    times.append(time.perf_counter() - t)
    run.down()
print(json.dumps(times))
"""


def api_up(rounds: int, env: dict[str, str]) -> list[float]:
    """Seconds ``orchestrator.up()`` of examples/ci takes until ready, in one Python process
    (as a test session calls it), after one call that loads the validator."""
    import json

    out = subprocess.run([PY, "-c", API_UP, str(ROOT / "examples" / "ci" / "topology.yaml"),
                          str(rounds)], env=env, cwd=ROOT / "examples" / "ci",
                         capture_output=True, text=True, check=True).stdout
    return [float(t) for t in json.loads(out)]


def bare_stop(n: int, env: dict[str, str]) -> float:
    out = subprocess.run([PY, "-c", BARE_STOP, str(n)], env=env, capture_output=True,
                         text=True, check=True).stdout
    return float(out.strip())


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.3f} s ({min(values):.3f}-{max(values):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50,200,1000")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("note: PYTHONDONTWRITEBYTECODE is set; users have .pyc files: run as "
              "`env -u PYTHONDONTWRITEBYTECODE python bench/startup.py` after a warm run")
    print(f"start-up, end to end from the command line; {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; median of {args.rounds} (min-max)\n")
    with tempfile.TemporaryDirectory(prefix="topo-startup-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "TOPO_STATE_DIR": str(folder / "state"), "NO_COLOR": "1"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        table: dict[str, dict[str, list[float]]] = {}

        def add(row: str, col: str, value: float) -> None:
            table.setdefault(row, {}).setdefault(col, []).append(value)

        paths = {n: files(folder, n) for n in sizes}
        one = paths[sizes[0]]["one"]
        edited = folder / "one-edited.yaml"  # changed before each run (the others stay)
        edited.write_text(one.read_text())
        jobs: list[tuple[str, str, Callable[[], float]]] = []
        for n in sizes:
            p = paths[n]
            jobs += [
                (f"{n} run nodes", "floor", lambda n=n: timed(
                    [PY, "-c", BARE_ZMQ, str(n), str(folder / f"bare-{n}.sock")], env)),
                (f"{n} run nodes", "topo", lambda p=p: timed(topo("up", str(p["run"])), env)),
                (f"{n} command nodes", "floor", lambda n=n: timed(
                    ["sh", "-c", f"for i in $(seq {n}); do {PY} -c \"{PROGRAM}\" & done; wait"],
                    env)),
                (f"{n} command nodes", "topo", lambda p=p: timed(
                    topo("up", str(p["command"])), env)),
                (f"topo down of {n} run nodes", "floor", lambda n=n: bare_stop(n, env)),
                (f"topo down of {n} run nodes", "topo", lambda p=p, n=n: down_time(
                    p["idle"], env, f"s-idle-{n}", n)),
            ]
        jobs += [
            # the cache answers a file validated before; --no-cache checks it afresh
            ("validate one node", "floor", lambda: timed([PY, "-c", "import zmq"], env)),
            ("validate one node", "topo", lambda: timed(topo("validate", str(one)), env)),
            ("validate --no-cache", "floor", lambda: timed([PY, "-c", "import zmq"], env)),
            ("validate --no-cache", "topo", lambda: timed(
                topo("validate", "--no-cache", str(one)), env)),
            # the plan kept from the run before; a changed file is validated and planned
            ("up one node", "floor", lambda: timed([PY, "-c", "import zmq"], env)),
            ("up one node", "topo", lambda: timed(topo("up", str(one)), env)),
            ("up one node, file changed", "floor", lambda: timed([PY, "-c", "import zmq"], env)),
            ("up one node, file changed", "topo", lambda: timed(topo("up", str(changed(edited))),
                                                                env)),
        ]
        for _, _, job in jobs:  # one warm run: .pyc files, page cache
            job()
        for r in range(args.rounds):
            for row, col, job in jobs:
                add(row, col, job())
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        api = api_up(args.rounds, env)
    targets = {"topo down": (2.0, "≤2×"), "run nodes": (1.5, "≤1.5× (1000: < 2.0 s)"),
               "command nodes": (1.2, "≤1.2×"), "validate": (2.0, "≤2× import zmq"),
               "up one": (3.0, "≤3× import zmq")}
    print(f"{'what':<28}{'floor':>26}{'topo':>26}  ratio  target")
    for row, cols in table.items():
        floor, mine = statistics.median(cols["floor"]), statistics.median(cols["topo"])
        ratio = mine / floor
        bound, text = next(v for k, v in targets.items() if k in row)
        verdict = "PASS" if ratio <= bound else "MISS"
        if row.startswith("1000 run"):
            verdict = "PASS" if mine < 2.0 and ratio <= bound else "MISS"
        per = ""
        n = row.split()[0]
        if n.isdigit() and "down" not in row:
            per = f"  ({1000 * mine / int(n):.2f} ms/node vs {1000 * floor / int(n):.2f})"
        print(f"{row:<28}{summary(cols['floor']):>26}{summary(cols['topo']):>26}  "
              f"{ratio:4.2f}×  {text} {verdict}{per}")
    print(f"orchestrator.up() of examples/ci, until ready: {summary(api)}, target < 0.3 s "
          f"{'PASS' if statistics.median(api) < 0.3 else 'MISS'}")
    for n, seen in MEMORY.items():
        rss, pss = [x for x, _ in seen], [y for _, y in seen]
        print(f"memory, {n} idle run nodes: supervisor RSS {statistics.median(rss):.1f} MiB "
              f"({min(rss):.1f}-{max(rss):.1f}); PSS per node {statistics.median(pss):.2f} MiB "
              f"({min(pss):.2f}-{max(pss):.2f}), target ≤3 MiB "
              f"{'PASS' if statistics.median(pss) <= 3 else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
