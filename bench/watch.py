"""What counting costs a run node: 100-byte PUSH -> PULL between two run nodes, counted or not.

Run: ``python bench/watch.py [--rounds 5] [--reps 3] [--messages 400000]
[--transports ipc,tcp]``; once warm, as ``env -u PYTHONDONTWRITEBYTECODE python
bench/watch.py`` (bytecode caching on, as a user's machine has it).

The requirement (docs/reference.md#watching-a-run): counting may cost a run node
at most 10% of its message rate. Every socket topo makes for a run node is an
``orchestrator.child.watch.WatchedSocket``, whose ``send``/``recv`` add to a
counter. Two run nodes, ``source`` (PUSH, binds ipc or tcp://127.0.0.1) and
``sink`` (PULL, connects), started with ``orchestrator.up`` (``topo up -d``),
move ``--messages`` 100-byte messages as fast as they can, in these variants:

- counted: both nodes call their sockets' own methods (``sock.send`` /
  ``sock.recv``: ``WatchedSocket``'s), as any node function does;
- uncounted: the same nodes, sockets and connection calling pyzmq's plain
  methods on them instead: ``zmq.Socket.send`` (pyzmq's sugar ``send``, what a
  plain socket runs) and ``zmq.Socket.recv`` (the backend's: the sugar layer
  does not override it). Both sockets' counters stay still (checked, as is that the
  counted variant counts every message): the only difference is topo's counting;
- tapped: counted, while ``orchestrator.views.tap.Tap(run folder, "sink.in")``
  (what ``topo tap`` uses) is attached to the sink's socket, read and discarded
  in a thread of this process; printed: how many messages the tap saw and how
  many the node dropped for it (its own count, from ``Run.stats()``);
- bare pyzmq, the floor without topo: the same loops in two plain processes
  (a subprocess of this bench that forks the source).

Each loop calls a method bound before it (``send = sock.send``, or
``zmq.Socket.send.__get__(sock)``; ``send(msg)``), so the variants differ in
that method only. The sink times its messages, first to last, wall clock
(msg/s) and its thread's CPU (``time.thread_time``, ns per message; the source
times its sends the same way), and says so in its log, which the bench waits
for (``Run.wait_for_log``). Each round is one run: one unrecorded warm-up, then
``--reps`` pairs counted/uncounted back to back, every other pair the other way
round (ABBA, so drift and warm-up hit both alike), with the tapped and the bare
measurement between two pairs, at places that move each round; then the run is
brought down. Printed per variant: median with min-max over all measurements;
the ratio of the medians counted/uncounted (PASS at >= 0.90) and of each pair.
With fewer CPUs than busy threads (each node has its own and libzmq's I/O
thread) msg/s follows the machine's load; the CPU per message much less so.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SIZE = 100
FLOOR = 0.90  # counted / uncounted must be at least this
VARIANTS = ("counted", "uncounted", "tapped", "bare")
# The class the sink's socket must have before a variant starts (a tap attaches and
# detaches in the node's watching thread, a moment after the request).
WANT = {"counted": "WatchedSocket", "uncounted": "WatchedSocket", "tapped": "TappedSocket"}


# -- the node functions (imported by the supervisor from this module) -----------------------------
def _counted(sock: Any) -> int:
    """Messages the socket counted so far, both ways (0 for a socket that does not count)."""
    out, inn = getattr(sock, "_c", (0, 0))
    return int((out >> 64) + (inn >> 64))


def source(node: Any) -> int:
    """PUSH ``n`` messages of ``SIZE`` bytes on ``out`` for each ``SEQ MODE N`` on ``go``."""
    import zmq

    out, go = node.sockets["out"], node.sockets["go"]
    msg = b"x" * SIZE
    while True:
        seq, mode, count = go.recv().decode().split()
        n = int(count)
        send = zmq.Socket.send.__get__(out) if mode == "uncounted" else out.send
        before = _counted(out)
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(n):
            send(msg)
        elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
        print(f"sent {seq} {mode} {n / elapsed:.0f} cpu={cpu / n * 1e9:.0f} "
              f"counted={_counted(out) - before}", flush=True)


def sink(node: Any) -> int:
    """For each ``SEQ MODE N`` on ``ctl``: wait for the socket class MODE needs, ask the
    source for N messages, receive them on ``in`` and say the rate, first to last."""
    import zmq

    data, go, ctl = node.sockets["in"], node.sockets["go"], node.sockets["ctl"]
    while True:
        seq, mode, count = ctl.recv().decode().split()
        n = int(count)
        deadline = time.monotonic() + 10
        while type(data).__name__ != WANT[mode] and time.monotonic() < deadline:
            time.sleep(0.001)  # the watching thread attaches or detaches the tap
        cls = type(data).__name__
        recv = zmq.Socket.recv.__get__(data) if mode == "uncounted" else data.recv
        before = _counted(data)
        go.send(f"{seq} {'uncounted' if mode == 'uncounted' else 'counted'} {n}".encode())
        recv()
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(n - 1):
            recv()
        elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
        print(f"rate {seq} {mode} {(n - 1) / elapsed:.0f} cpu={cpu / (n - 1) * 1e9:.0f} "
              f"counted={_counted(data) - before} class={cls}", flush=True)


# -- the bare floor: the same loops in two plain processes -----------------------------------------
def floor(transport: str, n: int) -> float:
    """Messages per second of ``n`` plain PUSH -> PULL sends from a forked source to this
    process (a fresh subprocess of the bench: the fork comes before any context)."""
    import zmq

    folder = tempfile.mkdtemp(prefix="topo-bench-floor-")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            with os.fdopen(r) as f:
                endpoint = f.readline().strip()
            cctx = zmq.Context()
            push = cctx.socket(zmq.PUSH)
            push.connect(endpoint)
            send, msg = push.send, b"x" * SIZE
            for _ in range(n):
                send(msg)
            push.close()  # linger: everything is delivered before the exit
            cctx.term()
        finally:
            os._exit(0)
    os.close(r)
    to_child = os.fdopen(w, "w")
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.linger = 0
    try:
        pull.bind("tcp://127.0.0.1:*" if transport == "tcp" else f"ipc://{folder}/data")
        to_child.write(pull.getsockopt_string(zmq.LAST_ENDPOINT) + "\n")
        to_child.close()
        recv = pull.recv
        recv()
        t0 = time.perf_counter()
        for _ in range(n - 1):
            recv()
        rate = (n - 1) / (time.perf_counter() - t0)
    finally:
        to_child.close()  # a failed bind: the child reads nothing and ends
        os.waitpid(pid, 0)
        pull.close()
        ctx.term()
        for p in Path(folder).iterdir():
            p.unlink()
        os.rmdir(folder)
    return rate


def bare(transport: str, n: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--floor", transport, "--messages", str(n)],
                         capture_output=True, text=True, check=True, timeout=120)
    return float(out.stdout.split()[-1])


# -- the topology and the variants ----------------------------------------------------------------
def topology(folder: Path, transport: str) -> Path:
    data = "tcp://127.0.0.1:*" if transport == "tcp" else "ipc://data"
    path = folder / f"watch-{transport}.yaml"
    path.write_text(f"""name: b-watch-{transport}
pythonpath: [{HERE}]
nodes:
  source:
    run: watch:source
    restart: never
    sockets:
      out: {{type: PUSH, bind: "{data}"}}
      go: {{type: PULL, bind: "ipc://go"}}
  sink:
    run: watch:sink
    restart: never
    depends_on: [source]
    sockets:
      in: {{type: PULL, connect: source.out}}
      go: {{type: PUSH, connect: source.go}}
      ctl: {{type: PULL, bind: "ipc://ctl"}}
""")
    return path


class TapReader:
    """A tap on ``sink.in``, read and discarded in a thread until ``stop()``: counts what it saw
    and the drops said to it."""

    def __init__(self, run: Any) -> None:
        from orchestrator.views.tap import Tap

        self.tap = Tap(run.folder, "sink.in")  # returns once the sink has it
        self.seen = self.dropped = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        from orchestrator.views.tap import Dropped

        while True:
            stopping = self._stop.is_set()
            got = 0
            for item in self.tap.messages(timeout=0.1):  # ends after 0.1 s without a message
                got += 1
                if isinstance(item, Dropped):
                    self.dropped += item.count
                else:
                    self.seen += 1
            if stopping and not got:
                return  # asked to stop, then 0.1 s without a message: all is read

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(60)
        self.tap.close()


def _sink_socket(run: Any) -> dict[str, Any]:
    sock: dict[str, Any] = run.stats()["replicas"]["sink.0"]["sockets"]["in"]
    return sock


def measure(run: Any, ctl: Any, seq: int, mode: str, n: int,
            taps: list[tuple[int, int, int]]) -> tuple[float, float]:
    """One measurement of ``mode`` in ``run``: the sink's msg/s and its CPU ns per message."""
    reader = None
    if mode == "tapped":
        before = _sink_socket(run)["tap_dropped"]
        reader = TapReader(run)
    ctl.send(f"{seq} {mode} {n}".encode())
    match = run.wait_for_log(
        "sink", rf"^rate {seq} {mode} (\d+) cpu=(\d+) counted=(\d+) class=(\w+)", timeout=120)
    rate, cpu, counted, cls = float(match[1]), float(match[2]), int(match[3]), match[4]
    if cls != WANT[mode] or counted != (0 if mode == "uncounted" else n):
        raise SystemExit(f"{mode}: the sink's socket was a {cls} and counted {counted} of {n}")
    if reader is not None:
        dropped = _sink_socket(run)["tap_dropped"] - before  # the node is done: all are in
        reader.stop()
        taps.append((reader.seen, dropped, reader.dropped))
    return rate, cpu


def sent(run: Any) -> dict[int, tuple[str, float, int]]:
    """The source's lines: seq -> (mode, its CPU ns per message, messages its socket counted)."""
    import re

    out = {}
    for line in run.logs("source"):
        m = re.match(r"^sent (\d+) (\w+) \d+ cpu=(\d+) counted=(\d+)", line)
        if m:
            out[int(m[1])] = (m[2], float(m[3]), int(m[4]))
    return out


Results = dict[str, list[float]]  # "counted", "cpu sink counted", "cpu source counted", ...


def one_round(path: Path, transport: str, r: int, args: argparse.Namespace,
              results: Results, taps: list[tuple[int, int, int]]) -> None:
    """One run: a warm-up, then ``--reps`` pairs counted/uncounted in ABBA order (every
    other pair turned round), and the tapped and the bare measurement between two pairs,
    at places that move each round."""
    import orchestrator

    n = args.messages
    steps: list[tuple[str, ...]] = [
        ("counted", "uncounted") if (r + i) % 2 == 0 else ("uncounted", "counted")
        for i in range(args.reps)]
    steps.insert(r % (len(steps) + 1), ("tapped",))
    steps.insert((r + 2) % (len(steps) + 1), ("bare",))
    with orchestrator.up(path, timeout=30) as run:
        ctl = run.connect("sink.ctl", timeout=10)
        measure(run, ctl, 0, "counted", max(1000, n // 4), [])  # warm-up, not recorded
        modes: dict[int, str] = {}
        for step in steps:
            rates = {}
            for mode in step:
                if mode == "bare":
                    results.setdefault("bare", []).append(bare(transport, n))
                    continue
                seq = len(modes) + 1
                modes[seq] = mode
                rates[mode], cpu = measure(run, ctl, seq, mode, n, taps)
                results.setdefault(mode, []).append(rates[mode])
                results.setdefault(f"cpu sink {mode}", []).append(cpu)
            if len(rates) == 2:
                results.setdefault("pair", []).append(rates["counted"] / rates["uncounted"])
        deadline = time.monotonic() + 10
        while len(sent(run)) < len(modes) + 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the source's last line follows the sink's
        for seq, (mode, cpu, counted) in sent(run).items():
            if not seq:
                continue
            if counted != (0 if mode == "uncounted" else n):
                raise SystemExit(f"{mode}: the source's socket counted {counted} of {n}")
            results.setdefault(f"cpu source {modes[seq]}", []).append(cpu)


def _spread(values: Sequence[float], spec: str) -> str:
    return (f"{statistics.median(values):{spec}} "
            f"({min(values):{spec}}-{max(values):{spec}})")


def _ipcs() -> int:
    """SysV objects (queues, segments, semaphores) on the machine."""
    try:
        out = subprocess.run(["ipcs"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return -1
    return sum(1 for line in out.splitlines() if line[:2] == "0x")


def _left_processes(marker: str) -> list[str]:
    """Processes other than this one that mention ``marker`` in their command line or env."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        if proc.pid == os.getpid():
            continue
        info = proc.info
        text = " ".join(info.get("cmdline") or []) + " ".join(
            f"{k}={v}" for k, v in (info.get("environ") or {}).items())
        if marker in text:
            found.append(f"{proc.pid} {' '.join(info.get('cmdline') or [])[:60]}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs per transport (default 5)")
    parser.add_argument("--messages", type=int, default=400_000,
                        help="100-byte messages per measurement (default 400000)")
    parser.add_argument("--reps", type=int, default=3,
                        help="pairs counted/uncounted in each run (default 3)")
    parser.add_argument("--transports", default="ipc,tcp", help="default ipc,tcp")
    parser.add_argument("--floor", metavar="TRANSPORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        print(f"{floor(args.floor, args.messages):.0f}")
        return
    import zmq

    n, transports = args.messages, args.transports.split(",")
    load, t_all, ipcs_before = os.getloadavg(), time.perf_counter(), _ipcs()
    caching = ("enabled" if not sys.dont_write_bytecode else
               "DISABLED (PYTHONDONTWRITEBYTECODE is set): run it as "
               "`env -u PYTHONDONTWRITEBYTECODE python bench/watch.py` after one warm run")
    print("what counting costs a run node: 100-byte PUSH -> PULL between two run nodes "
          f"(source binds, sink connects), {n} messages per measurement, msg/s as the sink "
          "times it, first message to last")
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} at the start; Python {platform.python_version()}, pyzmq "
          f"{zmq.__version__}, libzmq {zmq.zmq_version()}; bytecode caching {caching}")
    results: dict[str, Results] = {}
    taps: dict[str, list[tuple[int, int, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="topo-bench-") as tmp:
        folder = Path(tmp)
        state = folder / "state"
        os.environ["TOPO_STATE_DIR"] = str(state)
        for transport in transports:
            path = topology(folder, transport)
            results[transport], taps[transport] = {}, []
            for r in range(args.rounds):
                one_round(path, transport, r, args, results[transport], taps[transport])
        left = sorted(p.name for p in state.iterdir()) if state.exists() else []
        time.sleep(0.2)  # a process on its way out
        strays = _left_processes(tmp)
    total = time.perf_counter() - t_all

    for transport in transports:
        res = results[transport]
        med = {key: statistics.median(values) for key, values in res.items()}
        print(f"\n{transport}: median (min-max) of {args.rounds} runs x {args.reps} pairs, or "
              f"x 1 {'msg/s':>19} {'sink CPU ns/msg':>20} {'source CPU ns/msg':>20}")
        for mode in VARIANTS:
            cpu = [_spread(res[f"cpu {who} {mode}"], ".0f") if f"cpu {who} {mode}" in res
                   else "-" for who in ("sink", "source")]
            label = {"bare": "bare pyzmq (no topo)", "tapped": "tapped (counted + a tap)"}
            print(f"  {label.get(mode, mode):24} {len(res[mode]):>3} "
                  f"{_spread(res[mode], '.0f'):>31} {cpu[0]:>20} {cpu[1]:>20}")
        ratio = med["counted"] / med["uncounted"]
        verdict = f"PASS (>= {FLOOR:.2f})" if ratio >= FLOOR else f"MISS (< {FLOOR:.2f})"
        print(f"  counted/uncounted {ratio:.3f}  {verdict}; each pair, back to back in one run: "
              f"{_spread(res['pair'], '.3f')}")
        cpu_cost = med["cpu sink counted"] - med["cpu sink uncounted"]
        print(f"  counting's CPU per message: sink {cpu_cost:+.0f} ns "
              f"({cpu_cost / med['cpu sink uncounted']:+.0%}), source "
              f"{med['cpu source counted'] - med['cpu source uncounted']:+.0f} ns; "
              f"uncounted/bare pyzmq {med['uncounted'] / med['bare']:.2f}")
        seen = ", ".join(f"{s}/{d}" + ("" if said == d else f" ({said} said)")
                         for s, d, said in taps[transport])
        print(f"  tapped/counted {med['tapped'] / med['counted']:.2f}; the tap (orchestrator"
              f".views.tap.Tap in a thread of the bench) saw / the node dropped, per run: "
              f"{seen} of {n}")
    ipcs_after = _ipcs()
    print(f"\nleft behind: run folders {', '.join(left) or 'none'}; processes "
          f"{', '.join(strays) or 'none'}; SysV IPC objects {ipcs_before} before, "
          f"{ipcs_after} after. The bench took {total:.0f} s; load average "
          f"{os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
