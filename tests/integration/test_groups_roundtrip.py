"""Every teaching topology, split into its groups, does what its header says.

Each group runs as its own ``topo up FILE --group G --resolve X=127.0.0.1 ...`` (one
``--resolve`` per group), in its own process on this machine, as the containers of
``topo export kubernetes`` would, one per host:

- the group that holds the ``--exit-code-from`` node of ``check-args`` runs in the
  foreground with those arguments (without one, the group started last);
- the others run detached (``-d``), started in dependency order: a group whose nodes
  depend on nodes of other groups starts after those groups (a cycle between groups
  is broken in file order). A group started after the foreground one waits for the
  foreground's ``--ready-file``;
- then every detached run is stopped with ``topo down``.

The merged output (the foreground's plus each detached run's ``output.log``) must
match every ``check-line`` and no ``check-no-line``, and the foreground's exit status
must be ``check-exit``. A detached run's ``output.log`` is opened while ``topo up -d``
is still starting it, and read once the run is gone: some groups end on their own
before the foreground does (a ventilator, a server that was told bye), and their run
folder goes with them, so ``topo logs RUN`` could miss them; a log read only after
``topo down`` also holds the last lines a node wrote while the foreground stopped.

Every group of a file takes the same fixed ports (``groups.fixed_ports``, from 5550
up), so two round trips on one machine would collide: a lock file serializes them
across pytest workers and sessions.

A file with one group is the plain run (tests/integration/test_topologies.py), so
only its plan is compared here. A CURVE file (ironhouse) is refused without a shared
key folder; with one (``topo keys --make DIR FILE``, then ``--keys DIR`` for every
group, as the exported pods mount one Secret) it runs split like the others.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from orchestrator.spec.group_run import GroupRun
from orchestrator.spec.groups import Grouping, fixed_ports, group_nodes
from orchestrator.spec.model import Topology
from orchestrator.spec.planner import plan_run
from orchestrator.spec.validate import validate_file
from tests.conftest import Leftovers, wait_until
from tests.integration.test_topologies import CRASHES, expected_of, php_extensions
from tests.tools import need, need_php_extension
from tests.topo_samples import ROOT, TEACHING

TOPO = [sys.executable, "-m", "orchestrator"]
LOCK = Path(tempfile.gettempdir()) / "topo-test-fixed-ports.lock"
RUN_LIMIT = 60.0  # seconds a group run may last (`topo up --timeout`)


def kind_of(path: Path) -> str:
    """How the round trip treats a file: ``split``, ``one-group`` or ``curve``."""
    loaded = validate_file(path)
    assert loaded.topology is not None, [d.format() for d in loaded.diagnostics]
    if loaded.topology.security.curve:
        return "curve"
    return "split" if len(group_nodes(loaded.topology).groups) > 1 else "one-group"


IDS = {"split": "{}", "one-group": "{}-one-group-same-as-the-plain-run",
       "curve": "{}-curve-with-shared-keys-only"}
CASES = [pytest.param(p, kind, id=IDS[kind].format(p.stem),
                      marks=[pytest.mark.php] if php_extensions(p) else [])
         for p in TEACHING for kind in [kind_of(p)]]


def test_the_round_trip_splits_most_teaching_topologies() -> None:
    kinds = [kind for p in TEACHING for kind in [kind_of(p)]]
    assert kinds.count("split") >= 10, kinds


# -- the order groups start in (pure) ------------------------------------------------------------


def group_depends(topology: Topology, grouping: Grouping) -> dict[str, set[str]]:
    """Group -> the other groups its nodes' depends_on name."""
    out: dict[str, set[str]] = {g.name: set() for g in grouping.groups}
    for name, node in topology.nodes.items():
        out[grouping.of[name]] |= {grouping.of[d] for d in node.depends_on if d in grouping.of}
    for g, deps in out.items():
        deps.discard(g)
    return out


def start_order(depends: dict[str, set[str]], foreground: str) -> list[str]:
    """Dependencies first; among the groups that may start, detached ones before the
    foreground (which blocks), then file order; a cycle is broken in file order."""
    order: list[str] = []
    left = list(depends)
    while left:
        free = [g for g in left if depends[g] <= set(order)] or left
        pick = next((g for g in free if g != foreground), free[0])
        order.append(pick)
        left.remove(pick)
    return order


def test_start_order() -> None:
    # forwarder: the publishers (in the forwarder's group) wait for the subscribers, which
    # wait for the forwarder: a cycle, broken in file order; the foreground goes last.
    cycle = {"forwarder": {"subscriber", "printer"}, "subscriber": {"forwarder"},
             "printer": {"forwarder"}}
    assert start_order(cycle, "subscriber") == ["forwarder", "printer", "subscriber"]
    # pubsub: the tickers depend on the foreground's group, so they start after it.
    assert start_order({"printer": set(), "weather": {"printer"}}, "printer") == [
        "printer", "weather"]
    assert start_order({"broker": set(), "client": {"broker"}}, "client") == ["broker", "client"]
    assert start_order({"a": set(), "b": set(), "c": {"a"}}, "a") == ["b", "a", "c"]


# -- running the groups ---------------------------------------------------------------------------


@contextlib.contextmanager
def fixed_ports_lock(ports: set[int]) -> Iterator[None]:
    """One round trip at a time on this machine, and its ports free before it starts."""
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            for port in sorted(ports):
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libzmq does
                    try:
                        s.bind(("", port))
                    except OSError as exc:
                        if exc.errno != errno.EADDRINUSE:
                            raise
                        pytest.fail(f"port {port} is in use on this machine (a `topo up "
                                    "--group` run left running?); the round trip needs it")
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class Detached:
    run_id: str
    log: IO[bytes] | None = None  # the run's output.log, opened while it started


@dataclass
class Trip:
    """The processes of one round trip, and what they printed."""

    path: Path
    env: dict[str, str]
    state: Path
    resolve: list[str]  # what every group gets: --resolve G=127.0.0.1 each, --keys DIR
    detached: list[Detached] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)

    def topo(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*TOPO, *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def up_detached(self, group: str, run_id: str) -> None:
        argv = [*TOPO, "up", "-d", str(self.path), "--group", group, *self.resolve,
                "--timeout", str(RUN_LIMIT)]
        self.transcript.append(shlex.join(argv[2:]))
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        run = Detached(run_id)
        self.detached.append(run)
        output_log = self.state / run_id / "output.log"
        deadline = time.monotonic() + 30
        with proc:
            # Poll against the deadline: opened now, the log stays readable once the run
            # (and its folder) is gone.
            while run.log is None and proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(FileNotFoundError):
                    run.log = open(output_log, "rb")  # noqa: SIM115 - closed in down_all
                if run.log is None:
                    time.sleep(0.002)
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert proc.returncode == 0, f"{shlex.join(argv[2:])}: exit {proc.returncode}\n{out}{err}"
        assert run.log is not None, f"{run_id}: no output.log appeared in {output_log.parent}"

    def down_all(self) -> list[str]:
        """Stop every detached run; the lines of their logs."""
        lines: list[str] = []
        for run in reversed(self.detached):
            result = self.topo("down", run.run_id)
            ended = f"no run named {run.run_id}" in result.stderr  # it had ended on its own
            assert result.returncode == 0 or ended, result.stdout + result.stderr
            wait_until(gone(self.state / run.run_id), timeout=15,
                       message=f"run {run.run_id} to be gone")
            if run.log is not None:
                with run.log:
                    lines += run.log.read().decode(errors="replace").splitlines()
        return lines


def gone(folder: Path) -> Callable[[], bool]:
    return lambda: not folder.exists()


def ready_or_ended(proc: subprocess.Popen[bytes], ready_file: Path) -> Callable[[], bool]:
    return lambda: ready_file.exists() or proc.poll() is not None


def check_one_group(path: Path, topology: Topology, run_dir: Path) -> None:
    (group,) = group_nodes(topology).groups
    plain = plan_run(topology, path, "x", run_dir, environ={}, allocate_port=lambda host: 20000)
    split = plan_run(topology, path, "x", run_dir, environ={}, allocate_port=lambda host: 20000,
                     group=GroupRun(topology, group.name))
    assert [(r.node, r.replica) for r in split.replicas] == \
        [(r.node, r.replica) for r in plain.replicas]
    assert split.ipc == plain.ipc and split.tiers == plain.tiers and split.nodes == plain.nodes


@pytest.mark.parametrize(("path", "kind"), CASES)
def test_split_into_groups_it_runs_as_its_header_says(
        path: Path, kind: str, no_leftovers: Leftovers, tmp_path: Path) -> None:
    expected = expected_of(path.read_text(encoding="utf-8"))
    topology = validate_file(path).topology
    assert topology is not None
    grouping = group_nodes(topology)
    if kind == "one-group":
        check_one_group(path, topology, tmp_path)
        return
    env = no_leftovers.env()
    shared: list[str] = []
    if kind == "curve":
        first = grouping.groups[0].name
        result = subprocess.run([*TOPO, "up", str(path), "--group", first], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "security.curve" in result.stderr and "Traceback" not in result.stderr
        keys = tmp_path / "keys"
        result = subprocess.run([*TOPO, "keys", "--make", str(keys), str(path)], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        shared = ["--keys", str(keys)]
    needed = php_extensions(path)
    if needed:
        need("php", "apt-get install php-cli")
        for extension in sorted(needed - {"php"}):
            need_php_extension(extension)

    args = list(expected.args)
    exit_node = args[args.index("--exit-code-from") + 1] if "--exit-code-from" in args else None
    depends = group_depends(topology, grouping)
    last = start_order(depends, "")[-1]
    foreground = grouping.of[exit_node] if exit_node is not None else last
    order = start_order(depends, foreground)
    trip = Trip(path, env, no_leftovers.root,
                [a for g in grouping.groups for a in ("--resolve", f"{g.name}=127.0.0.1")]
                + shared)
    ready_file = tmp_path / "foreground.ready"
    fg_argv = [*TOPO, "up", str(path), "--group", foreground, *trip.resolve, "--no-color",
               "--timeout", str(RUN_LIMIT), "--ready-file", str(ready_file), *args]
    fg_out = tmp_path / "foreground.out"
    fg: subprocess.Popen[bytes] | None = None
    detached_lines: list[str] = []
    with fixed_ports_lock(set(fixed_ports(topology).values())), open(fg_out, "wb") as out:
        try:
            for group in order:
                if group != foreground:
                    trip.up_detached(group, f"{topology.name}-{group}")
                    continue
                trip.transcript.append(shlex.join(fg_argv[2:]))
                fg = subprocess.Popen(fg_argv, cwd=ROOT, env=env, stdout=out,
                                      stderr=subprocess.STDOUT)
                if group != order[-1]:  # others wait for it
                    wait_until(ready_or_ended(fg, ready_file), timeout=30,
                               message=f"group {foreground} to be ready")
            assert fg is not None
            code = fg.wait(timeout=RUN_LIMIT + 30)
        finally:
            if fg is not None and fg.poll() is None:
                fg.kill()
                fg.wait()
            detached_lines = trip.down_all()

    lines = fg_out.read_text(errors="replace").splitlines() + detached_lines
    shown = "\n".join(["$ topo " + t for t in trip.transcript] + lines)
    assert code == expected.exit, f"{path.name}: exit {code}, expected {expected.exit}\n{shown}"
    missing = [rx for rx in expected.lines if not any(re.search(rx, ln) for ln in lines)]
    assert not missing, f"{path.name}: no output line matches {missing}\n{shown}"
    unwanted = [ln for rx in expected.no_lines for ln in lines if re.search(rx, ln)]
    assert not unwanted, f"{path.name}: lines that must not be there: {unwanted}\n{shown}"
    crashes = [ln for ln in lines if CRASHES.search(ln)]
    assert not crashes, f"{path.name}: a node crashed\n{shown}"
    assert not ready_file.exists(), "the foreground run left its --ready-file behind"

