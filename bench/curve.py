"""What CURVE (``security: {curve: true}``) costs: messages through a broker, keys, a run's start.

Run: ``python bench/curve.py [--quick] [--messages N] [--rounds R] [--nodes 200]``

Everything is measured in this one process, which runs each topology in-process
through ``start.foreground.run_file``, plain and with CURVE in turn, so a noisy
neighbour hits both alike:

- throughput: a ``role: proxy`` broker (ROUTER frontend, DEALER backend, both
  bound on tcp://127.0.0.1:* or both on ipc), one ``role: echo`` worker (REP,
  connected to the backend) and a client run node (``client`` below: a DEALER
  keeping ``--window`` requests in flight) that times ``--messages`` round trips
  of 100-byte payloads and a quarter as many of 10-KiB ones, ``--reps`` times
  each after a warm-up, in each of ``--rounds`` runs per mode. msg/s is round
  trips per second; MB/s counts the request payloads only (each comes back as
  well). With CURVE every message crosses four encrypted links: client -> broker
  -> worker and back. Median over all measurements, with min-max. Beside it, the
  floor of the same chain without topo: a bare pyzmq broker and worker forked from
  this process and the client in it, plain and with CURVE keys set by hand (no
  ZAP handler), in the same rounds.
- keys: the start of a run of ``--nodes`` distinct run nodes (one key pair
  each), each with a PUSH socket connected on ipc to one sink node's PULL, plain
  and with CURVE: seconds from the ``run_file`` call (file loading and, with
  CURVE, the keys included) until every node has sent its ready byte, median of
  ``--starts``; before each pair of starts, so under the same load,
  ``--key-runs`` times ``certs.make_keys`` for ``--nodes`` names into a new
  folder, and once the ``--nodes`` key pairs alone (``certs.keypair``), without
  their files. The key time may add at most 10% to the plain start.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SIZES = (100, 10 * 1024)
BIG_SHARE = 4  # 10-KiB measurements make a quarter as many round trips
KEY_SHARE_LIMIT = 0.10  # key generation may add at most this much to a run's start


def measure(sock: Any, messages: int, window: int, reps: int) -> dict[str, list[float]]:
    """Round trips per second through ``sock`` (a DEALER to the broker), ``reps`` per size."""
    sock.rcvtimeo = 30_000  # a broken run fails the bench instead of hanging it
    sock.send_multipart([b"", b"hello"])  # the first reply: every link is up
    sock.recv_multipart()
    rates: dict[str, list[float]] = {str(size): [] for size in SIZES}
    for rep in range(-1, reps):  # rep -1: the warm-up, not recorded
        for size in SIZES:
            frames = [b"", b"x" * size]
            n = messages if size < 1024 else max(1, messages // BIG_SHARE)
            if rep < 0:
                n = max(500, n // 10)
            t0 = time.perf_counter()
            sent = 0
            while sent < min(window, n):
                sock.send_multipart(frames, copy=False)
                sent += 1
            for _ in range(n):
                sock.recv_multipart(copy=False)
                if sent < n:
                    sock.send_multipart(frames, copy=False)
                    sent += 1
            if rep >= 0:
                rates[str(size)].append(n / (time.perf_counter() - t0))
    return rates


# -- the node functions (imported by the supervisor from this module) -----------------------------
def client(node: Any) -> int:
    """The client node: ``measure`` through its DEALER, the rates written to ``out``."""
    p = node.params
    rates = measure(node.sockets["req"], int(p["messages"]), int(p["window"]), int(p["reps"]))
    Path(p["out"]).write_text(json.dumps(rates))
    return 0


def idle(node: Any) -> int:
    """A run node that waits until it is asked to stop."""
    node.stopping.wait()
    return 0


# -- topologies ------------------------------------------------------------------------------------
def broker_topology(folder: Path, transport: str, curve: bool, args: argparse.Namespace,
                    out: Path) -> Path:
    front, back = (("tcp://127.0.0.1:*", "tcp://127.0.0.1:*") if transport == "tcp"
                   else ("ipc://front", "ipc://back"))
    params = json.dumps({"window": args.window, "messages": args.messages, "reps": args.reps,
                         "out": str(out)})
    body = f"""
nodes:
  broker:
    role: proxy
    sockets:
      frontend: {{type: ROUTER, bind: "{front}"}}
      backend: {{type: DEALER, bind: "{back}"}}
  worker:
    role: echo
    sockets:
      rep: {{type: REP, connect: broker.backend}}
  client:
    run: curve:client
    restart: never
    depends_on: [broker, worker]
    with: {params}
    sockets:
      req: {{type: DEALER, connect: broker.frontend}}
"""
    return _write(folder, f"broker-{transport}-{'curve' if curve else 'plain'}", curve, body)


def start_topology(folder: Path, n: int, curve: bool) -> Path:
    lines = ["nodes:", "  sink:", "    run: curve:idle",
             '    sockets: {pull: {type: PULL, bind: "ipc://sink"}}']
    for i in range(n):
        lines += [f"  w{i:03d}:", "    run: curve:idle",
                  "    sockets: {push: {type: PUSH, connect: sink.pull}}"]
    return _write(folder, f"start{n}-{'curve' if curve else 'plain'}", curve,
                  "\n".join(lines) + "\n")


def _write(folder: Path, name: str, curve: bool, body: str) -> Path:
    path = folder / f"{name}.yaml"
    security = "security: {curve: true}\n" if curve else ""
    path.write_text(f"name: b-{name}\npythonpath: [{HERE}]\n{security}{body}")
    return path


# -- measurements ----------------------------------------------------------------------------------
def throughput(folder: Path, transport: str, curve: bool,
               args: argparse.Namespace) -> dict[str, list[float]]:
    """The client's rates from one run of the broker topology."""
    from orchestrator.start.foreground import run_file

    out = folder / f"result-{transport}-{int(curve)}.json"
    out.unlink(missing_ok=True)
    path = broker_topology(folder, transport, curve, args, out)
    log = folder / "run.log"
    with open(os.devnull, "wb") as sink, open(log, "wb") as err:
        code = run_file(path, exit_code_from="client", out=sink, err=err, timeout=120)
    if code != 0 or not out.exists():
        raise SystemExit(f"the {transport} broker run ({'CURVE' if curve else 'plain'}) "
                         f"failed with {code}:\n{log.read_text()}")
    rates: dict[str, list[float]] = json.loads(out.read_text())
    return rates


def _bare_child(body: Any) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


def bare(folder: Path, transport: str, curve: bool,
         args: argparse.Namespace) -> dict[str, list[float]]:
    """The same chain in bare pyzmq: broker and worker forked from here, the client here."""
    import zmq

    broker_keys, worker_keys, client_keys = (zmq.curve_keypair() for _ in range(3))

    def keys(sock: Any, pair: tuple[bytes, bytes], server: bytes | None) -> None:
        if curve:
            sock.curve_publickey, sock.curve_secretkey = pair
            if server is None:
                sock.curve_server = True
            else:
                sock.curve_serverkey = server

    binds = (["tcp://127.0.0.1:*"] * 2 if transport == "tcp"
             else [f"ipc://{folder}/bare-front", f"ipc://{folder}/bare-back"])
    r, w = os.pipe()

    def broker() -> None:
        ctx = zmq.Context()
        front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        for sock, ep in zip((front, back), binds, strict=True):
            keys(sock, broker_keys, None)
            sock.bind(ep)
        ends = [sock.getsockopt_string(zmq.LAST_ENDPOINT) for sock in (front, back)]
        os.write(w, f"{ends[0]} {ends[1]}\n".encode())
        zmq.proxy(front, back)

    def worker(backend: str) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.REP)
        keys(sock, worker_keys, broker_keys[0])
        sock.connect(backend)
        while True:
            sock.send_multipart(sock.recv_multipart(copy=False), copy=False)

    pids = [_bare_child(broker)]
    os.close(w)  # now the broker holds the only write end: its exit ends the read below
    ctx = None
    try:
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(r, 4096)
            if not chunk:
                raise SystemExit(f"the bare {transport} broker failed to bind")
            line += chunk
        frontend, backend = line.decode().split()
        pids.append(_bare_child(lambda: worker(backend)))
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        keys(sock, client_keys, broker_keys[0])
        sock.connect(frontend)
        return measure(sock, args.messages, args.window, args.reps)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(r)
        if ctx is not None:
            ctx.destroy(linger=0)


def keypair_time(n: int) -> float:
    from orchestrator.certs import keypair

    t0 = time.perf_counter()
    for _ in range(n):
        keypair()
    return time.perf_counter() - t0


def key_time(folder: Path, n: int) -> float:
    from orchestrator.certs import make_keys

    names = [f"w{i:03d}" for i in range(n)]
    keys = folder / "keys"
    t0 = time.perf_counter()
    make_keys(keys, names)
    elapsed = time.perf_counter() - t0
    for f in keys.iterdir():
        f.unlink()
    keys.rmdir()
    return elapsed


def start_time(path: Path) -> float:
    """Seconds from the ``run_file`` call until every node is ready; the run is then stopped."""
    import supervise

    run = supervise.Run(path)
    run.go()
    return run.t_ready - run.t_call


def _median_spread(values: Sequence[float], spec: str) -> str:
    """``median (min-max)``, each formatted with ``spec``."""
    return (f"{statistics.median(values):{spec}} "
            f"({min(values):{spec}}-{max(values):{spec}})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    parser.add_argument("--messages", type=int, default=None,
                        help="100-byte round trips per measurement, a quarter as many of "
                             "10 KiB (default 20000, --quick 2000)")
    parser.add_argument("--window", type=int, default=100, help="requests in flight")
    parser.add_argument("--reps", type=int, default=None,
                        help="measurements per size in each broker run (default 1)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="broker runs per transport and mode, in turn (default 4, --quick 1)")
    parser.add_argument("--transports", default="tcp,ipc")
    parser.add_argument("--nodes", type=int, default=None, help="default 200, --quick 50")
    parser.add_argument("--key-runs", type=int, default=None,
                        help="make_keys runs before each pair of starts (default 3)")
    parser.add_argument("--starts", type=int, default=None,
                        help="starts of the N-node run in each mode (default 5, --quick 1)")
    args = parser.parse_args()
    quick = args.quick
    args.messages = args.messages or (2000 if quick else 20000)
    args.reps = args.reps or 1
    args.rounds = args.rounds or (1 if quick else 4)
    args.nodes = args.nodes or (50 if quick else 200)
    args.key_runs = args.key_runs or 3
    args.starts = args.starts or (1 if quick else 5)
    transports = args.transports.split(",")

    with tempfile.TemporaryDirectory(prefix="topo-bench-") as tmp:
        folder = Path(tmp)
        state = folder / "state"
        os.environ["TOPO_STATE_DIR"] = str(state)
        import curve  # noqa: F401  - preload the node functions like the supervisor does

        t_all, load = time.perf_counter(), os.getloadavg()[0]
        rates: dict[tuple[str, str, bool, str], list[float]] = {}
        for transport in transports:
            for _ in range(args.rounds):
                for how, measured in (("topo", throughput), ("bare", bare)):
                    for secure in (False, True):
                        for label, found in measured(folder, transport, secure, args).items():
                            rates.setdefault((how, transport, secure, label), []).extend(found)

        paths = {secure: start_topology(folder, args.nodes, secure) for secure in (False, True)}
        starts: dict[bool, list[float]] = {False: [], True: []}
        keys: list[float] = []
        pairs: list[float] = []
        for _ in range(args.starts):
            keys += [key_time(folder, args.nodes) for _ in range(args.key_runs)]
            pairs.append(keypair_time(args.nodes))
            for secure in (False, True):
                starts[secure].append(start_time(paths[secure]))
        left = sorted(p.name for p in state.iterdir()) if state.exists() else []
        total = time.perf_counter() - t_all

    n = args.messages
    print(f"round trips through a proxy broker, {args.window} in flight, 1 echo worker: "
          f"{n} of 100 B, {n // BIG_SHARE} of 10 KiB per measurement; "
          f"median of {args.rounds * args.reps} (min-max)")
    print(f"{'':10} {'plain msg/s':>21} {'CURVE msg/s':>21} {'CURVE/plain':>11} "
          f"{'MB/s plain':>10} {'CURVE':>6} | {'bare pyzmq: plain':>17} {'CURVE':>6} "
          f"{'ratio':>5}")
    for transport in transports:
        for size in SIZES:
            key = str(size)
            topo = {s: rates[("topo", transport, s, key)] for s in (False, True)}
            floor = {s: statistics.median(rates[("bare", transport, s, key)])
                     for s in (False, True)}
            med = {s: statistics.median(r) for s, r in topo.items()}
            label = f"{transport} {'100 B' if size < 1024 else '10 KiB'}"
            print(f"{label:10} {_median_spread(topo[False], '.0f'):>21} "
                  f"{_median_spread(topo[True], '.0f'):>21} {med[True] / med[False]:>11.2f} "
                  f"{med[False] * size / 1e6:>10.1f} {med[True] * size / 1e6:>6.1f} | "
                  f"{floor[False]:>17.0f} {floor[True]:>6.0f} {floor[True] / floor[False]:>5.2f}")

    key_s = statistics.median(keys)
    plain, curved = statistics.median(starts[False]), statistics.median(starts[True])
    print(f"\nstart of {args.nodes + 1} run nodes (PUSH -> one PULL, ipc), run_file call -> "
          f"every node ready, median of {args.starts} (min-max)")
    print(f"{'plain':>14} {_median_spread(starts[False], '.3f')} s")
    print(f"{'CURVE':>14} {_median_spread(starts[True], '.3f')} s   "
          f"{curved - plain:+.3f} s ({(curved - plain) / plain:+.0%}) over plain")
    share = key_s / plain
    print(f"{'keys':>14} {_median_spread([k * 1000 for k in keys], '.1f')} ms: "
          f"certs.make_keys for {args.nodes} nodes, median of {len(keys)}")
    print(f"{'':>14} of which the key pairs alone: {statistics.median(pairs) * 1000:.1f} ms; "
          f"the rest is writing their {2 * args.nodes} files")
    print(f"{'keys / plain':>14} {share:.1%} of the plain start, floor <= {KEY_SHARE_LIMIT:.0%}: "
          f"{'PASS' if share <= KEY_SHARE_LIMIT else 'OVER'}"
          f"{'' if args.nodes == 200 else ' (the requirement is for 200 nodes)'}")
    print(f"\nrun folders left behind: {', '.join(left) or 'none'}; the bench took {total:.0f} s; "
          f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
