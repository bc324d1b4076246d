"""The node side: sockets from a plan, run_child in a real forked child, from_env, preload.

The fork helpers here are shared with test_roles.py. Every child is reaped with a
deadline, and each test checks it left no process, file descriptor or ipc file.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq

from orchestrator.child.node import (
    Node,
    build_sockets,
    exit_status,
    from_env,
    run_child,
)
from orchestrator.child.stopsignal import Redeliver, set_from_handler
from orchestrator.child.targets import preload
from orchestrator.errors import RunError
from orchestrator.plan import Plan, ReplicaPlan, SocketPlan
from orchestrator.runs.folder import write_specs

DEADLINE = 5.0  # seconds any single wait may take before the test fails


# -- helpers (also used by test_roles.py) ---------------------------------------------------------


@dataclass
class Child:
    pid: int
    ready_fd: int
    out: Path
    err: Path
    status: int | None = None

    def ready(self, timeout: float = DEADLINE) -> bytes:
        """The readiness byte, or b"" if the child closed the pipe without it."""
        r, _, _ = select.select([self.ready_fd], [], [], timeout)
        assert r, "the child neither signalled ready nor closed the pipe in time"
        return os.read(self.ready_fd, 1)

    def wait(self, timeout: float = DEADLINE) -> int:
        """The exit status (negative: killed by that signal), reaping the child."""
        if self.status is None:
            pidfd = os.pidfd_open(self.pid)
            try:
                assert select.select([pidfd], [], [], timeout)[0], "the child did not exit in time"
            finally:
                os.close(pidfd)
            _, raw = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(raw)
            os.close(self.ready_fd)
        return self.status

    def kill(self, sig: int = signal.SIGTERM) -> None:
        os.kill(self.pid, sig)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()


def fork_node(plan: Plan, replica: ReplicaPlan, target: Callable[[Node], Any], logs: Path) -> Child:
    """Fork like the spawner does (own group, default signals, stdio to files) and run_child."""
    out, err = logs / f"{replica.name}.out", logs / f"{replica.name}.err"
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.close(ready_r)
            os.setpgid(0, 0)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGALRM):
                signal.signal(sig, signal.SIG_DFL)
            for fd, path in ((1, out), (2, err)):
                f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(f, fd)
                os.close(f)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - lives as long as the child
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            code = run_child(plan, replica, target, ready_w)
        finally:
            os._exit(code)
    os.close(ready_w)
    return Child(pid, ready_r, out, err)


def make_plan(run_dir: Path, *sockets: SocketPlan, node: str = "n", replica: int = 0,
              kind: str = "run", **fields: Any) -> tuple[Plan, ReplicaPlan]:
    rp = ReplicaPlan(node=node, replica=replica, kind=kind, run="tests:fn", sockets=sockets,
                     spec_path=str(run_dir / "spec" / f"{node}.{replica}.json"), **fields)
    return Plan(run_id="testrun", run_dir=str(run_dir), file="/t.yaml", replicas=(rp,)), rp


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def run_dir() -> Iterator[Path]:
    # Short: an ipc path must fit in 107 bytes, and pytest's tmp_path can be long.
    path = Path(tempfile.mkdtemp(prefix="topo-t-"))
    (path / "spec").mkdir()
    yield path
    sockets = [p for p in path.rglob("*") if p.is_socket()]
    for p in path.rglob("*"):
        if not p.is_dir():
            p.unlink()
    for p in sorted(path.rglob("*"), reverse=True):
        p.rmdir()
    path.rmdir()
    assert not sockets, f"ipc socket files left behind: {sockets}"


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.destroy(linger=0)


class Peers:
    """The test's own sockets facing a node; closed, and their ipc files removed, at the end."""

    def __init__(self, ctx: zmq.Context[Any], run_dir: Path):
        self.ctx, self.run_dir = ctx, run_dir
        self.bound: list[Path] = []
        self.made: list[zmq.Socket[Any]] = []

    def bind(self, kind: int, name: str) -> zmq.Socket[Any]:
        sock = self.socket(kind)
        sock.bind(f"ipc://{self.run_dir}/{name}")
        self.bound.append(self.run_dir / name)
        return sock

    def connect(self, kind: int, name: str) -> zmq.Socket[Any]:
        sock = self.socket(kind)
        sock.connect(f"ipc://{self.run_dir}/{name}")
        return sock

    def socket(self, kind: int) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = self.ctx.socket(kind)
        sock.linger = 0
        self.made.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.made:
            sock.close(linger=0)
        for path in self.bound:
            path.unlink(missing_ok=True)  # libzmq 4.3 leaves the file of a closed ipc bind


@pytest.fixture
def peers(ctx: zmq.Context[Any], run_dir: Path) -> Iterator[Peers]:
    p = Peers(ctx, run_dir)
    yield p
    p.close()


@pytest.fixture(autouse=True)
def nothing_left(tmp_path: Path) -> Iterator[None]:
    """No child process and no file descriptor outlives a test."""
    fds = set(os.listdir("/proc/self/fd"))
    yield
    children = psutil.Process().children(recursive=True)
    for c in children:
        c.kill()
        c.wait(timeout=DEADLINE)
    assert not children, f"processes left behind: {children}"
    wait_for(lambda: set(os.listdir("/proc/self/fd")) <= fds)  # zmq threads close theirs async


def recv(sock: zmq.Socket[Any], timeout: float = DEADLINE) -> list[bytes]:
    assert sock.poll(int(timeout * 1000)), "no message in time"
    return sock.recv_multipart()


# -- node functions the children run --------------------------------------------------------------


def returns_3(node: Node) -> int:
    return 3


def exits_4(node: Node) -> None:
    raise SystemExit(4)


def raises(node: Node) -> None:
    raise ValueError("boom in the node")


def returns_text(node: Node) -> str:
    return "a reason, not a number"


def reports(node: Node) -> None:
    """Sends what it knows about itself, then waits for the stop signal in recv."""
    facts = {"name": node.name, "replica": node.replica, "full_name": node.full_name,
             "run_id": node.run_id, "run_dir": node.run_dir, "params": dict(node.params),
             "sockets": sorted(node.sockets), "ipc": node.ipc,
             "context": isinstance(node.context, zmq.Context), "repr": repr(node)}
    node.log.info("hello from %s", node.full_name)
    try:
        node.sockets["out"].send_json(facts)
        node.sockets["out"].recv()  # blocks until the stop signal interrupts it
    finally:
        print(f"stopping={node.stopping.is_set()}", flush=True)


def prints_env(node: Node) -> None:
    print(os.environ.get("GREETING"), os.environ.get("TOPO_NODE"), flush=True)


def graceful(node: Node) -> int:
    node.interrupt_on_stop = False
    node.sockets["out"].send(b"up")
    node.stopping.wait()
    print("finishing my own way", flush=True)
    return 5


def stopped_while_frames_are_freed(node: Node) -> None:
    """The stop signal lands while pyzmq frees frames: ``Frame.__dealloc__`` checks for
    signals, so the handler's SystemExit is raised inside it, where Python cannot unwind."""
    frames = [zmq.Frame(b"x") for _ in range(200_000)]
    main, go = threading.get_ident(), threading.Event()

    def stop() -> None:
        go.wait()
        signal.pthread_kill(main, signal.SIGTERM)

    threading.Thread(target=stop, daemon=True).start()
    go.set()
    del frames  # about 50 ms of deallocs, each releasing the GIL: the thread sends meanwhile
    print("the signal landed after the frames were freed", flush=True)
    node.stopping.wait()


# -- run_child ------------------------------------------------------------------------------------


def pair_plan(run_dir: Path, **fields: Any) -> tuple[Plan, ReplicaPlan]:
    return make_plan(run_dir, SocketPlan("out", "PAIR", connect=(f"ipc://{run_dir}/peer",)),
                     **fields)


@pytest.mark.parametrize(("target", "code"), [(returns_3, 3), (exits_4, 4), (raises, 1),
                                              (returns_text, 1)])
def test_exit_status_of_a_node(run_dir: Path, tmp_path: Path, target: Any, code: int) -> None:
    child = fork_node(*pair_plan(run_dir), target, tmp_path)
    assert child.ready() == b"R"
    assert child.wait() == code
    if target is raises:
        assert "Traceback" in child.stderr() and "ValueError: boom in the node" in child.stderr()
    if target is returns_text:
        assert "a reason, not a number" in child.stderr()


def test_a_node_gets_its_facts_logs_and_stops_on_sigterm(
    run_dir: Path, tmp_path: Path, peers: Peers
) -> None:
    peer = peers.bind(zmq.PAIR, "peer")
    plan, rp = pair_plan(run_dir, node="worker", replica=2, params={"k": [1, "x"]})
    child = fork_node(plan, rp, reports, tmp_path)
    assert child.ready() == b"R"
    facts = json.loads(recv(peer)[0])
    assert facts == {"name": "worker", "replica": 2, "full_name": "worker.2", "run_id": "testrun",
                     "run_dir": str(run_dir), "params": {"k": [1, "x"]}, "sockets": ["out"],
                     "ipc": {}, "context": True, "repr": "<Node worker.2 of run testrun>"}
    started = time.monotonic()
    child.kill(signal.SIGTERM)  # the node sits in a blocking recv
    assert child.wait() == 0
    assert time.monotonic() - started < 1.0
    assert child.stdout() == "stopping=True\n"
    assert child.stderr() == "INFO hello from worker.2\n"


def test_a_stop_inside_a_pyzmq_dealloc_still_cleans_up(run_dir: Path, tmp_path: Path) -> None:
    # Before: the interpreter exited on the spot (status 0) without running a finally: the
    # ipc file stayed and the supervisor never got the node's last counts.
    for i in range(3):
        sock = run_dir / f"s{i}"
        plan, rp = make_plan(run_dir, SocketPlan("s", "PULL", bind=(f"ipc://{sock}",)))
        child = fork_node(plan, rp, stopped_while_frames_are_freed, tmp_path)
        assert child.ready() == b"R"
        channel = read_to_eof(child.ready_fd)  # the node's records, until it exits
        assert child.wait() == 0, child.stderr()
        assert "landed after" not in child.stdout()  # it did land inside: the case under test
        assert not sock.exists(), "the node's ipc file was left behind"
        assert b'S{"id":""' in channel, channel  # its last counts, sent by the clean-up


def read_to_eof(fd: int, timeout: float = DEADLINE) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"no end of the channel in time; read {data!r}")


def test_a_run_node_gets_its_env_like_a_command_node(run_dir: Path, tmp_path: Path) -> None:
    child = fork_node(*pair_plan(run_dir, env={"GREETING": "hi", "TOPO_NODE": "worker"}),
                      prints_env, tmp_path)
    assert child.wait() == 0
    assert child.stdout() == "hi worker\n"
    assert "GREETING" not in os.environ  # the parent's environment is untouched


def test_a_node_may_finish_its_own_way_on_its_own_stop_signal(
    run_dir: Path, tmp_path: Path, peers: Peers
) -> None:
    peer = peers.bind(zmq.PAIR, "peer")
    child = fork_node(*pair_plan(run_dir, stop_signal=int(signal.SIGUSR1)), graceful, tmp_path)
    assert recv(peer) == [b"up"]
    child.kill(signal.SIGUSR1)
    assert child.wait() == 5
    assert child.stdout() == "finishing my own way\n"


def test_a_bind_failure_is_one_sentence_and_never_ready(
    run_dir: Path, tmp_path: Path, peers: Peers
) -> None:
    port = peers.socket(zmq.PULL).bind_to_random_port("tcp://127.0.0.1")
    plan, rp = make_plan(run_dir, SocketPlan("a", "PUSH", bind=(f"ipc://{run_dir}/a",)),
                         SocketPlan("jobs", "PUSH", bind=(f"tcp://127.0.0.1:{port}",)))
    child = fork_node(plan, rp, returns_3, tmp_path)
    assert child.ready() == b""
    assert child.wait() == 1
    assert child.stderr() == (f"n.0: cannot bind socket jobs (PUSH) to tcp://127.0.0.1:{port}: "
                              "Address already in use\n")
    assert not (run_dir / "a").exists()  # the socket bound before the failure left no file


def test_a_bad_option_is_one_sentence(run_dir: Path, tmp_path: Path) -> None:
    plan, rp = make_plan(run_dir, SocketPlan("a", "PUSH", options={"sndhwmm": 1}))
    child = fork_node(plan, rp, returns_3, tmp_path)
    assert child.ready() == b""
    assert child.wait() == 1
    assert child.stderr() == "n.0: socket a (PUSH): unknown socket option 'sndhwmm'\n"


# -- build_sockets --------------------------------------------------------------------------------


def test_build_sockets_sets_options_and_subscriptions(ctx: zmq.Context[Any], run_dir: Path) -> None:
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    pub = ctx.socket(zmq.XPUB)
    pub.linger = 0
    pub_port = pub.bind_to_random_port("tcp://127.0.0.1")
    socks = build_sockets(ctx, [
        SocketPlan("d", "DEALER", connect=(f"tcp://127.0.0.1:{port}",),
                   options={"identity": "w-1", "sndhwm": "7", "immediate": True}),
        SocketPlan("s", "SUB", connect=(f"tcp://127.0.0.1:{pub_port}",), subscribe=("a", "b")),
        SocketPlan("x", "XSUB", connect=(f"tcp://127.0.0.1:{pub_port}",), subscribe=("c",)),
        SocketPlan("kept", "PUSH", options={"linger": 250}),
    ])
    try:
        assert socks["d"].getsockopt(zmq.IDENTITY) == b"w-1"
        assert socks["d"].getsockopt(zmq.SNDHWM) == 7 and socks["d"].getsockopt(zmq.IMMEDIATE) == 1
        assert socks["d"].getsockopt(zmq.LINGER) == 0  # topo's default
        assert socks["kept"].getsockopt(zmq.LINGER) == 250  # the user's choice wins
        socks["d"].send(b"hi")
        assert recv(router) == [b"w-1", b"hi"]
        assert sorted(recv(pub)[0] for _ in range(3)) == [b"\x01a", b"\x01b", b"\x01c"]
    finally:
        for s in (*socks.values(), router, pub):
            s.close(linger=0)


@pytest.mark.parametrize(("plan", "message"), [
    (SocketPlan("s", "NOPE"), "cannot create socket s (NOPE)"),
    (SocketPlan("s", "PUSH", options={"sndhwm": "many"}), "cannot set option sndhwm to 'many'"),
    (SocketPlan("s", "PUSH", connect=("bogus://x",)), "cannot connect socket s (PUSH) to bogus://x"),
])
def test_build_sockets_errors_close_what_was_made(
    ctx: zmq.Context[Any], plan: SocketPlan, message: str
) -> None:
    with pytest.raises(RunError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_sockets(ctx, [SocketPlan("first", "PUSH"), plan])
    assert not [s for s in ctx._sockets if not s.closed]


def test_the_stop_handler_sets_stopping_even_while_its_lock_is_held() -> None:
    # A signal may land while the main thread is inside stopping.wait() holding the lock.
    event = threading.Event()
    with event._cond:  # type: ignore[attr-defined]
        set_from_handler(event)  # must not deadlock
    assert event.wait(DEADLINE)
    event = threading.Event()
    set_from_handler(event)
    assert event.is_set()


def reports_threads(node: Node) -> None:
    """The process's threads that are not libzmq's, from the kernel: topo starts its own
    with ``_thread``, which ``threading.enumerate()`` does not list.

    libzmq's two (its reaper and I/O thread, started with the first socket) name
    themselves once they run: until then, on a busy machine, they carry the node's name.
    """
    zmq_threads = 2 if node.sockets else 0
    deadline = time.monotonic() + 10.0
    while True:
        names = []
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        named = sum(n.startswith("ZMQbg/") for n in names)
        if named >= zmq_threads or time.monotonic() > deadline:
            break
        select.select([], [], [], 0.005)  # a few ms for them to run, up to the deadline
    print(len(names) - named, flush=True)


@pytest.mark.parametrize("sockets", [True, False])
def test_a_run_node_has_one_thread_of_its_own(
        run_dir: Path, tmp_path: Path, sockets: bool) -> None:
    # Each thread costs a forked node about a millisecond of its start. With sockets it is
    # the watch, which also resends the stop signal; without, a thread only for the signal.
    plan, rp = pair_plan(run_dir) if sockets else make_plan(run_dir)
    child = fork_node(plan, rp, reports_threads, tmp_path)
    assert child.ready() == b"R"
    assert child.wait() == 0
    assert child.stdout() == "2\n"  # the main thread and that one


def wakes_itself(node: Node) -> None:
    """The stop signal's wake-up byte without the signal: as when the signal landed while
    libzmq was on its way into poll(). Only a resent signal gets this recv to return."""
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    os.write(fd, bytes([signal.SIGTERM]))
    node.sockets["out"].recv()


def test_the_watch_thread_resends_a_stop_signal_that_found_no_handler(
        run_dir: Path, tmp_path: Path) -> None:
    child = fork_node(*pair_plan(run_dir), wakes_itself, tmp_path)
    assert child.ready() == b"R"
    assert child.wait() == 0  # SystemExit(0) from the resent signal's handler


def test_the_stop_signal_is_resent_to_the_main_thread_until_its_handler_has_run() -> None:
    got: list[int] = []
    old = signal.signal(signal.SIGUSR2, lambda signum, frame: got.append(signum))
    r, w = os.pipe()
    stopping = threading.Event()
    rd = Redeliver(stopping, signal.SIGUSR2, r)
    try:
        assert rd.next_due() is None and rd.tick()  # nothing to resend yet
        os.write(w, bytes([signal.SIGUSR1]))  # another signal's wake-up byte: not ours
        assert rd.readable() and rd.next_due() is None
        os.write(w, bytes([signal.SIGUSR2]))
        assert rd.readable()
        first = rd.next_due()
        assert first is not None
        deadline = time.monotonic() + DEADLINE
        while not got and time.monotonic() < deadline:
            time.sleep(0.001)  # Python runs the handler between these
            assert rd.tick()
        assert got == [signal.SIGUSR2]
        again = rd.next_due()
        assert again is not None and again - first >= 0.004  # backs off: 2 ms, then 4
        stopping.set()  # the handler ran: nothing more is sent
        sent = len(got)
        while rd.next_due() is not None and time.monotonic() < deadline:
            time.sleep(0.001)
            assert rd.tick()
        assert rd.next_due() is None and len(got) == sent
        os.close(w)
        w = -1
        assert not rd.readable()  # EOF: unwatched
    finally:
        signal.signal(signal.SIGUSR2, old)
        os.close(r)
        if w >= 0:
            os.close(w)


def test_exit_status() -> None:
    assert [exit_status(v) for v in (None, 0, 7, True)] == [0, 0, 7, 1]


# -- from_env -------------------------------------------------------------------------------------

SNIPPET = textwrap.dedent("""
    from orchestrator.node import from_env
    with from_env() as node:
        node.sockets["out"].send_string(f"{node.full_name} {node.run_id} {sorted(node.params)}")
        print("sent", flush=True)
        node.sockets["out"].recv()  # until SIGTERM
""")


def test_from_env_gives_a_command_node_the_same_node(run_dir: Path, peers: Peers) -> None:
    plan, rp = make_plan(run_dir, SocketPlan("out", "PAIR", connect=(f"ipc://{run_dir}/peer",)),
                         node="cmd", replica=1, kind="command", params={"p": 1})
    write_specs(plan)
    peer = peers.bind(zmq.PAIR, "peer")
    env = {**os.environ, "TOPO_SPEC": rp.spec_path,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", SNIPPET], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert recv(peer) == [b"cmd.1 testrun ['p']"]
        assert proc.stdout is not None and proc.stdout.readline() == b"sent\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=DEADLINE)


def test_a_command_node_stopped_inside_a_pyzmq_dealloc_is_closed_at_exit(run_dir: Path) -> None:
    # The program never gets to close(): the interpreter exits from inside the dealloc.
    sock = run_dir / "in"
    plan, rp = make_plan(run_dir, SocketPlan("s", "PULL", bind=(f"ipc://{sock}",)),
                         node="cmd", kind="command")
    write_specs(plan)
    env = {**os.environ, "TOPO_SPEC": rp.spec_path,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), *sys.path])}
    program = ("from orchestrator.node import from_env\n"
               "from tests.child.test_node import stopped_while_frames_are_freed\n"
               "stopped_while_frames_are_freed(from_env())\n")
    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                            text=True, timeout=DEADLINE * 4, check=False)
    assert result.returncode == 0, result.stderr
    assert "landed after" not in result.stdout  # it did land inside: the case under test
    assert not sock.exists(), "the program's ipc file was left behind"


def test_from_env_without_a_spec_is_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="TOPO_SPEC is not set"):
        from_env({})
    with pytest.raises(RunError, match="cannot read the node spec"):
        from_env({"TOPO_SPEC": str(tmp_path / "missing.json")})
    (tmp_path / "bad.json").write_text('{"run_id": 1}')
    with pytest.raises(RunError, match="is not one topo wrote"):
        from_env({"TOPO_SPEC": str(tmp_path / "bad.json")})


# -- preload --------------------------------------------------------------------------------------


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder of importable modules; sys.path and sys.modules are restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "goodmod.py").write_text("def worker(node):\n    return 0\n"
                                       "class K:\n    @staticmethod\n    def run(node):\n"
                                       "        return 1\nNOT_FN = 3\n")
    (folder / "brokenmod.py").write_text("raise RuntimeError('half-written module')\n")
    yield folder
    for name in ("goodmod", "brokenmod"):
        sys.modules.pop(name, None)


def run_plan(folder: Path, *targets: str, role: str | None = None) -> Plan:
    replicas = tuple(ReplicaPlan(node=f"n{i}", replica=0, kind="run", run=t)
                     for i, t in enumerate(targets))
    if role:
        replicas += (ReplicaPlan(node="r", replica=0, kind="role", role=role),)
    replicas += (ReplicaPlan(node="c", replica=0, kind="command", argv=("true",)),)
    return Plan(run_id="r", run_dir="/nowhere", file="/t.yaml", replicas=replicas,
                pythonpath=(str(folder), "/also"))


def test_preload_imports_targets_and_roles(modules: Path) -> None:
    from orchestrator.child.roles import ROLES

    targets = preload(run_plan(modules, "goodmod:worker", "goodmod:K.run", "goodmod:worker",
                               role="proxy"))
    assert sys.path[:2] == [str(modules), "/also"]
    assert set(targets) == {"goodmod:worker", "goodmod:K.run", "role:proxy"}
    assert targets["role:proxy"] is ROLES["proxy"]
    assert targets["goodmod:K.run"](None) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(("target", "message"), [
    ("nosuchmod:main", "cannot import module 'nosuchmod' for node n0: No module named 'nosuchmod'"),
    ("brokenmod:main", "cannot import module 'brokenmod' for node n0: "
                       "RuntimeError: half-written module"),
    ("goodmod:wrker", "module 'goodmod' has no function 'wrker' (node n0); did you mean 'worker'?"),
    ("goodmod:K.nope", "has no function 'nope' (node n0)"),
    ("goodmod:NOT_FN", "goodmod:NOT_FN is not a function (node n0): it is a int"),
])
def test_preload_failures_are_sentences(modules: Path, target: str, message: str) -> None:
    with pytest.raises(RunError) as info:
        preload(run_plan(modules, target))
    assert message in str(info.value)


def test_preload_unknown_role(modules: Path) -> None:
    with pytest.raises(RunError, match="node r uses unknown role 'pxy'; the roles are echo, "):
        preload(run_plan(modules, role="pxy"))

