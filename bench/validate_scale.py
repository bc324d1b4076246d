"""How long `topo validate` takes on big topologies: 1,000 and 10,000 nodes.

    python bench/validate_scale.py [NODES...]

Builds each topology as YAML text in a temporary folder (a realistic mix:
ROUTER/DEALER brokers with workers and clients, pub-sub fan-out, pipelines,
some replicas, defaults and a few IPC resources), then times
``validate.validate_file`` (YAML parse + model + checks), best of 3. The target
is 10,000 nodes in under 2 s, growing roughly linearly.

Measured on this 2-core machine (Python 3.11, PyYAML with libyaml), 2026-12,
alternating with the previous code (the machine is shared, so figures move by a
third from one minute to the next): 1,000 nodes 0.11 s best, 0.15 s median
(0.15 / 0.19 s before), 10,000 nodes 1.46 s best, 1.6 s median (1.74 / 2.25 s
before). Of one 10,000-node validation, 43% is the event stream turned into
values with positions (``spec/yamltext.py``; libyaml making the event objects
alone is a fifth of the total), 26% the checks, 11% pydantic, 10% the one
garbage collection owed once the paused collector is back on (about 565,000
objects that loading keeps), 5% ``defaults:``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.spec.validate import validate_file

GROUP = 10  # nodes per pattern group


def _broker(g: int) -> list[str]:
    b = f"broker{g}"
    out = [f"  {b}:", "    role: proxy", "    sockets:",
           "      frontend: {type: ROUTER, bind: \"tcp://127.0.0.1:*\", "
           "options: {router_mandatory: 1}}",
           f"      backend: {{type: DEALER, bind: \"ipc://{b}\"}}"]
    for w in range(5):
        out += [f"  worker{g}_{w}:", "    run: examples.rr:worker",
                f"    replicas: {2 if w == 0 else 1}", "    sockets:",
                f"      jobs: {{type: REP, connect: {b}.backend}}", f"    depends_on: [{b}]"]
    for c in range(4):
        out += [f"  client{g}_{c}:", "    command: [\"python\", \"-m\", \"client\"]",
                "    env: {GREETING: hello}", "    sockets:",
                f"      server: {{type: REQ, connect: {b}.frontend}}", "    restart: never"]
    return out


def _pubsub(g: int) -> list[str]:
    p = f"pub{g}"
    out = [f"  {p}:", "    role: ticker", "    with: {interval: 100ms, topic: t}",
           "    sockets:", f"      out: {{type: PUB, bind: \"ipc://{p}\"}}"]
    for s in range(GROUP - 1):
        out += [f"  sub{g}_{s}:", "    role: printer", "    sockets:",
                f"      news: {{type: SUB, connect: {p}.out, subscribe: [\"t\"]}}",
                f"    depends_on: [{p}]"]
    return out


def _pipeline(g: int) -> list[str]:
    v, k = f"vent{g}", f"sink{g}"
    out = [f"  {v}:", "    run: examples.pipe:ventilator", "    sockets:",
           f"      out: {{type: PUSH, bind: \"ipc://{v}\"}}",
           f"  {k}:", "    run: examples.pipe:sink", "    sockets:",
           f"      results: {{type: PULL, bind: \"tcp://127.0.0.1:{20000 + g}\"}}"]
    for w in range(GROUP - 2):
        out += [f"  pw{g}_{w}:", "    run: examples.pipe:worker",
                f"    replicas: {3 if w % 4 == 0 else 1}", "    sockets:",
                f"      jobs: {{type: PULL, connect: {v}.out}}",
                f"      results: {{type: PUSH, connect: \"tcp://127.0.0.1:{20000 + g}\"}}"]
    return out


def topology_text(nodes: int) -> str:
    lines = ["name: scale", "description: generated for the validation benchmark",
             "defaults:", "  restart: on-failure", "  stop_timeout: 5s", "  env: {LOG: info}",
             "ipc:", "  frame: {type: shm, size: 1MiB}", "  room: {type: semaphore, value: 1}",
             "  jobs: {type: msgqueue, max_bytes: 16384}", "nodes:"]
    makers = (_broker, _pubsub, _pipeline)
    for g in range(max(1, nodes // GROUP)):
        lines += makers[g % 3](g)
    return "\n".join(lines) + "\n"


def best_of(path: Path, runs: int = 3) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(runs):
        start = time.perf_counter()
        loaded = validate_file(path, environ={"TOPO_STATE_DIR": "/tmp/topo-bench"})
        best = min(best, time.perf_counter() - start)
        count = len(loaded.diagnostics)
        errors = [d for d in loaded.diagnostics if d.is_error]
        if errors:
            raise SystemExit(f"the generated topology has errors: {errors[0].format()}")
    return best, count


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="topo validate of big generated topologies")
    parser.add_argument("nodes", nargs="*", type=int, help="sizes (default: 1000 10000)")
    sizes = parser.parse_args(argv).nodes or [1_000, 10_000]
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"scale{n}.yaml"
            text = topology_text(n)
            path.write_text(text)
            seconds, warnings = best_of(path)
            times.append(seconds)
            print(f"{n:>7,} nodes  {len(text) / 1e6:6.2f} MB  validate {seconds:7.3f} s  "
                  f"({warnings} warnings)")
    if len(times) >= 2:
        growth = times[-1] / times[0]
        print(f"ratio {sizes[-1] / sizes[0]:g}x nodes -> {growth:.2f}x time")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
