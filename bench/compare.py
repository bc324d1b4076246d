"""Stopping 200 idle ZeroMQ nodes: topo beside supervisord, circus and honcho, in one run.

Run: ``python bench/compare.py [--nodes 200] [--idle 10] [--rounds 3]``

These machines are shared and their speed drifts by a third within an hour, so
a figure means something only beside the others measured in the same minutes.
Each round starts N copies of one small program under each manager (those
installed: ``pip install supervisor circus honcho``; topo always), lets them
idle for ``--idle`` seconds, then times the manager's own stop command until
every copy is gone:

- the program: ``python node.py MARK`` makes a ZeroMQ context and a PUSH socket
  connected over ipc, prints ``up`` and sleeps; it has no SIGTERM handler, so
  the stop signal ends it at once (as it would most programs);
- ``topo (command)``: ``topo up -d`` of N command nodes, then ``topo down``;
  ``topo (run)``: N forked ``run`` nodes (``bench/bench_nodes.py``'s idle node,
  which stops cleanly through its SIGTERM handler, plus their sink);
- ``supervisord``: ``numprocs=N``, ``supervisorctl stop all``;
- ``circus``: ``numprocesses=N``, ``circusctl stop --waiting``;
- ``honcho``: ``honcho start -c w=N`` in the foreground, SIGTERM to honcho.

Also the manager's CPU while the nodes idle (its own processes: user + system
over the window, as a share of one core). Prints the median of the rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TOPO = [sys.executable, "-m", "orchestrator"]
NODE = """\
import sys, time
import zmq
ctx = zmq.Context()
sock = ctx.socket(zmq.PUSH)
sock.connect("ipc://" + sys.argv[2])
print("up", flush=True)
time.sleep(3600)
"""


@dataclass
class Tool:
    name: str
    start: Callable[[Path, str, int], list[int]]  # -> the manager's own pids
    stop: Callable[[Path], None]  # returns when the manager says the nodes are stopped
    cleanup: Callable[[Path], None] = lambda folder: None
    stops: list[float] = field(default_factory=list)
    idle_cpu: list[float] = field(default_factory=list)


def marked(mark: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if mark in (p.info["cmdline"] or []):
            found.append(p)
    return found


def wait_for(what: Callable[[], bool], timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {why}")
        time.sleep(0.01)  # polls the process table against the deadline above


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run(cmd: list[str], folder: Path) -> None:
    result = subprocess.run(cmd, cwd=folder, capture_output=True, check=False, timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {(result.stderr or result.stdout).decode()}")


# -- topo ------------------------------------------------------------------------------------------


def topo_start(kind: str) -> Callable[[Path, str, int], list[int]]:
    def start(folder: Path, mark: str, n: int) -> list[int]:
        os.environ["TOPO_STATE_DIR"] = str(folder / "state")
        if kind == "run":
            import supervise

            path = supervise.topology(folder, "run", n)
        else:
            path = folder / "cmd.yaml"
            path.write_text(
                f"name: cmp\nnodes:\n  w:\n    command: [{sys.executable}, node.py, {mark}, "
                f"{folder}/sink]\n    replicas: {n}\n    ready: {{log: '^up$', timeout: 60s}}\n")
        run([*TOPO, "up", "-d", str(path), "-p", "cmp"], folder)
        import json

        state = json.loads((folder / "state" / "cmp" / "state.json").read_text())
        return [state["supervisor"]["pid"], state["guardian"]]

    return start


def topo_stop(folder: Path) -> None:
    run([*TOPO, "down", "cmp"], folder)


# -- supervisord -----------------------------------------------------------------------------------


def supervisord_start(folder: Path, mark: str, n: int) -> list[int]:
    conf = folder / "supervisord.conf"
    conf.write_text(f"""\
[unix_http_server]
file={folder}/supervisor.sock
[supervisord]
logfile={folder}/supervisord.log
pidfile={folder}/supervisord.pid
minfds=4096
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{folder}/supervisor.sock
[program:w]
command={sys.executable} {folder}/node.py {mark} {folder}/sink
process_name=%(program_name)s_%(process_num)03d
numprocs={n}
startsecs=0
stdout_logfile=NONE
stderr_logfile=NONE
""")
    run([shutil.which("supervisord") or "supervisord", "-c", str(conf)], folder)
    wait_for(lambda: (folder / "supervisord.pid").exists(), 30, "supervisord's pid file")
    return [int((folder / "supervisord.pid").read_text())]


def supervisord_stop(folder: Path) -> None:
    run([shutil.which("supervisorctl") or "supervisorctl", "-c", str(folder / "supervisord.conf"),
         "stop", "all"], folder)


def supervisord_cleanup(folder: Path) -> None:
    subprocess.run([shutil.which("supervisorctl") or "supervisorctl", "-c",
                    str(folder / "supervisord.conf"), "shutdown"], capture_output=True, check=False)


# -- circus ----------------------------------------------------------------------------------------


def circus_start(folder: Path, mark: str, n: int) -> list[int]:
    ini = folder / "circus.ini"
    ini.write_text(f"""\
[circus]
endpoint = ipc://{folder}/circus.sock
pubsub_endpoint = ipc://{folder}/circus-pub.sock
pidfile = {folder}/circusd.pid
[watcher:w]
cmd = {sys.executable} {folder}/node.py {mark} {folder}/sink
numprocesses = {n}
""")
    run([shutil.which("circusd") or "circusd", "--daemon", str(ini)], folder)
    wait_for(lambda: (folder / "circusd.pid").exists(), 30, "circusd's pid file")
    return [int((folder / "circusd.pid").read_text())]


def circusctl(folder: Path, *args: str) -> list[str]:
    return [shutil.which("circusctl") or "circusctl", "--endpoint",
            f"ipc://{folder}/circus.sock", *args]


def circus_stop(folder: Path) -> None:
    run(circusctl(folder, "stop", "--waiting"), folder)


def circus_cleanup(folder: Path) -> None:
    subprocess.run(circusctl(folder, "quit"), capture_output=True, check=False)


# -- honcho ----------------------------------------------------------------------------------------

_honcho: dict[Path, subprocess.Popen[bytes]] = {}


def honcho_start(folder: Path, mark: str, n: int) -> list[int]:
    (folder / "Procfile").write_text(f"w: {sys.executable} node.py {mark} {folder}/sink\n")
    proc = subprocess.Popen([shutil.which("honcho") or "honcho", "start", "-c", f"w={n}"],
                            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _honcho[folder] = proc
    return [proc.pid]


def honcho_stop(folder: Path) -> None:
    proc = _honcho.pop(folder)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


# -- the rounds ------------------------------------------------------------------------------------


def measure(tool: Tool, n: int, idle: float) -> None:
    with tempfile.TemporaryDirectory(prefix="topo-cmp-") as tmp:
        folder = Path(tmp)
        (folder / "node.py").write_text(NODE)
        mark = f"topo-cmp-{os.getpid()}-{tool.name.replace(' ', '')}"
        try:
            managers = tool.start(folder, mark, n)
            if not tool.name.endswith("(run)"):
                wait_for(lambda: len(marked(mark)) >= n, 120, f"{n} nodes under {tool.name}")
            before = cpu(managers)
            t0 = time.perf_counter()
            time.sleep(idle)  # the idle window itself: nothing is being waited for
            tool.idle_cpu.append((cpu(managers) - before) / (time.perf_counter() - t0))
            nodes = marked(mark) if not tool.name.endswith("(run)") else []
            t0 = time.perf_counter()
            tool.stop(folder)
            psutil.wait_procs(nodes, timeout=30)
            tool.stops.append(time.perf_counter() - t0)
        finally:
            tool.cleanup(folder)
            for p in marked(mark):
                p.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tools = [Tool("topo (run)", topo_start("run"), topo_stop),
             Tool("topo (command)", topo_start("command"), topo_stop)]
    missing = []
    for name, tool in (("supervisord", Tool("supervisord", supervisord_start, supervisord_stop,
                                             supervisord_cleanup)),
                       ("circusd", Tool("circus", circus_start, circus_stop, circus_cleanup)),
                       ("honcho", Tool("honcho", honcho_start, honcho_stop))):
        (tools.append(tool) if shutil.which(name) else missing.append(name))
    for _ in range(args.rounds):
        for tool in tools:
            measure(tool, args.nodes, args.idle)
    print(f"stopping {args.nodes} idle nodes after {args.idle:g}s, median of {args.rounds} "
          f"rounds (all runs in seconds):")
    for tool in tools:
        print(f"  {tool.name:<15} stop {statistics.median(tool.stops):.3f}s "
              f"[{' '.join(f'{s:.3f}' for s in tool.stops)}]   idle manager CPU "
              f"{statistics.median(tool.idle_cpu) * 100:.3f}% of one core")
    if missing:
        print(f"  not installed, not measured: {', '.join(missing)}")


if __name__ == "__main__":
    main()
