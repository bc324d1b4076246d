"""Watching runs for real: socket events, `topo top`, `topo tap`, ``Run.stats()`` and ``Run.tap()``.

Every test starts processes and checks with ``no_leftovers`` that none of them, no
run folder, ipc file or SysV object is left behind.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orchestrator
from orchestrator.views.tap import Dropped, Tap, TapMessage
from tests.conftest import Leftovers, wait_until
from tests.integration.test_detached import topo
from tests.integration.test_up import REPO, topology
from tests.tools import need


def socket_events(stdout: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [e for e in events if e["event"] == "socket"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PUBSUB = """
    nodes:
      weather:
        role: ticker
        with: {interval: 0.05, count: 30, topic: w}
        sockets:
          out: {type: PUB, bind: "tcp://127.0.0.1:*"}
      listener:
        role: printer
        replicas: 3
        sockets:
          in: {type: SUB, connect: weather.out, subscribe: [w]}
"""


def test_up_json_has_a_connected_event_for_each_subscriber(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, PUBSUB)
    result = topo(no_leftovers.env(), "up", str(path), "--json", "--timeout", "2.5")
    assert result.returncode == 124, result.stderr
    events = socket_events(result.stdout)
    connected = {e["replica"] for e in events if e["kind"] == "connected"}
    assert connected == {"listener.0", "listener.1", "listener.2"}
    first = next(e for e in events if e["kind"] == "connected")
    assert first["node"] == "listener" and first["socket"] == "in"
    assert first["text"] == f"connected to {first['endpoint']}"
    assert first["endpoint"].startswith("tcp://127.0.0.1:")
    accepted = [e for e in events if e["kind"] == "accepted"]
    assert accepted and all(e["replica"] == "weather.0" for e in accepted)


def test_retries_to_a_port_nobody_binds_are_summed_up(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    port = free_port()
    path = topology(tmp_path, f"""
        nodes:
          worker:
            role: printer
            sockets:
              jobs: {{type: PULL, connect: "tcp://127.0.0.1:{port}",
                      options: {{reconnect_ivl: 20, reconnect_ivl_max: 20}}}}
    """)
    result = topo(no_leftovers.env(), "up", str(path), "--json", "--timeout", "2")
    assert result.returncode == 124, result.stderr
    retries = [e for e in socket_events(result.stdout) if e["kind"] == "retrying"]
    # libzmq retried about every 20 ms for 2 s (~100 times); one line says so, not a hundred.
    assert len(retries) == 1, retries
    assert retries[0]["text"] == (f"cannot connect to tcp://127.0.0.1:{port} yet "
                                  "(nobody accepts there); retrying")
    # Without --json: one line in topo's voice, naming the replica and the socket.
    text = topo(no_leftovers.env(), "up", str(path), "--timeout", "1", "--no-color")
    lines = [line for line in text.stderr.splitlines() if "socket jobs:" in line]
    assert lines == [f"topo     | worker.0 socket jobs: cannot connect to tcp://127.0.0.1:{port} "
                     "yet (nobody accepts there); retrying"], text.stderr


def test_a_refused_curve_client_shows_the_handshake_failure_and_its_reason(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, """
        security: {curve: true}
        nodes:
          server:
            role: echo
            sockets:
              s: {type: REP, bind: "tcp://127.0.0.1:*"}
          client:
            role: ticker
            with: {interval: 0.2, count: 0}
            sockets:
              c: {type: REQ, connect: server.s}
    """)
    env = no_leftovers.env()
    keys, other = tmp_path / "keys", tmp_path / "other"
    for folder in (keys, other):
        made = topo(env, "keys", "--make", str(folder), str(path))
        assert made.returncode == 0, made.stderr
    # The client's secret is not the one whose public key the server allows.
    shutil.copy(other / "client.key_secret", keys / "client.key_secret")
    result = topo(env, "up", str(path), "--keys", str(keys), "--json", "--timeout", "2")
    assert result.returncode == 124, result.stderr
    failed = [e for e in socket_events(result.stdout) if e["kind"] == "handshake failed"]
    client = [e for e in failed if e["replica"] == "client.0"]
    server = [e for e in failed if e["replica"] == "server.0"]
    assert client and server, failed
    assert client[0]["reason"] == ("the server refused this node's key (ZAP status 400): it "
                                   "does not allow this client")
    assert server[0]["reason"] == ("this socket refused the client's key (ZAP status 400): it "
                                   "is not allowed")
    assert len(client) == 1  # libzmq retries all along: said once within SAY_EVERY


PIPELINE = """
    nodes:
      clients:
        role: ticker
        replicas: 2
        # 3.75 s of sending: both `top`s below must come while the clients are still
        # connected, also on a loaded machine (each takes most of a second there).
        with: {interval: 0.025, count: 150}
        restart: never
        sockets:
          out: {type: PUSH, connect: streamer.frontend}
      streamer:
        role: proxy
        sockets:
          frontend: {type: PULL, bind: "tcp://127.0.0.1:*"}
          backend: {type: PUSH, bind: "ipc://backend"}
      worker:
        role: printer
        sockets:
          in: {type: PULL, connect: streamer.backend}
"""


def top_json(env: dict[str, str], run: str) -> dict[str, Any]:
    result = topo(env, "top", run, "--once", "--json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_top_counts_grow_and_the_proxy_counts_what_the_clients_sent(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, PIPELINE)
    env = no_leftovers.env()
    up = topo(env, "up", "-d", str(path), "-p", "pipe")
    assert up.returncode == 0, up.stderr
    try:
        first = top_json(env, "pipe")
        second = top_json(env, "pipe")
        out = [d["replicas"]["clients.0"]["sockets"]["out"]["messages_out"]
               for d in (first, second)]
        assert 0 < out[0] < out[1], out
        front = second["replicas"]["streamer.0"]["sockets"]["frontend"]
        assert front["type"] == "PULL" and front["peers"] == 2 and front["frames"] is True
        assert second["replicas"]["clients.0"]["sockets"]["out"]["messages_out_per_s"] > 20
        assert second["replicas"]["clients.0"]["cpu_percent"] is not None

        def done() -> dict[str, Any] | None:
            doc = top_json(env, "pipe")
            reps = doc["replicas"]
            over = all(reps[f"clients.{i}"]["status"] == "exited" for i in (0, 1))
            worker = reps["worker.0"]["sockets"]["in"]["messages_in"]
            return doc if over and worker == 300 else None

        final: Any = wait_until(done, timeout=20, message="300 messages through the streamer")
        sock = final["replicas"]["streamer.0"]["sockets"]
        assert sock["frontend"]["messages_in"] == 300  # libzmq's proxy STATISTICS
        assert sock["backend"]["messages_out"] == 300
        assert sock["frontend"]["bytes_in"] == sum(len(f"tick {n}") for n in range(1, 151)) * 2
        text = topo(env, "top", "pipe", "--once")
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert all(len(line) <= 80 for line in lines), lines
        assert any(line.startswith("streamer.0.frontend ") and " 300 " in line
                   for line in lines), lines
    finally:
        assert topo(env, "down", "pipe").returncode == 0


TICKER = """
    nodes:
      clock:
        role: ticker
        with: {interval: 0.02, count: 0}
        sockets:
          out: {type: PUSH, bind: "ipc://ticks"}
      sink:
        role: printer
        sockets:
          in: {type: PULL, connect: clock.out}
"""


def test_tap_prints_the_ticks_in_order_and_stops_after_count(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, TICKER)
    env = no_leftovers.env()
    assert topo(env, "up", "-d", str(path), "-p", "tick").returncode == 0
    try:
        result = topo(env, "tap", "tick", "clock.out", "--count", "3")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 3, lines
        ticks = [int(line.rsplit(" ", 1)[1]) for line in lines]
        assert ticks == [ticks[0], ticks[0] + 1, ticks[0] + 2]
        assert all(" clock.0.out send tick " in line for line in lines)
        as_json = topo(env, "tap", "tick", "sink.in", "--count", "2", "--json")
        docs = [json.loads(line) for line in as_json.stdout.splitlines()]
        assert [d["direction"] for d in docs] == ["in", "in"]
        assert docs[0]["replica"] == "sink.0" and docs[0]["frames"][0].startswith("tick ")
        # Nothing is left attached: the node's socket is a plain counted one again.
        stats = top_json(env, "tick")
        assert stats["replicas"]["clock.0"]["sockets"]["out"]["tap_dropped"] == 0
    finally:
        assert topo(env, "down", "tick").returncode == 0


def test_a_killed_tap_leaves_no_socket_file_in_the_live_run(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, TICKER)
    env = no_leftovers.env()
    assert topo(env, "up", "-d", str(path), "-p", "killedtap").returncode == 0
    tap = subprocess.Popen([sys.executable, "-m", "orchestrator", "tap", "killedtap",
                            "clock.out"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        assert tap.stdout is not None and " clock.0.out send tick " in tap.stdout.readline()
        folder = no_leftovers.root / "killedtap"
        assert list(folder.glob("tap-*.sock"))
        tap.kill()  # no clean-up of its own: the supervisor sees its connection close
        tap.communicate(timeout=10)
        wait_until(lambda: not list(folder.glob("tap-*.sock")), timeout=5)
        assert top_json(env, "killedtap")["replicas"]["clock.0"]["sockets"]["out"]["watched"]
    finally:
        if tap.poll() is None:
            tap.kill()
            tap.communicate(timeout=10)
        assert topo(env, "down", "killedtap").returncode == 0


def test_tap_of_a_broker_shows_requests_and_replies_with_envelopes(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, """
        nodes:
          broker:
            role: proxy
            sockets:
              frontend: {type: ROUTER, bind: "ipc://frontend"}
              backend: {type: DEALER, bind: "ipc://backend"}
          worker:
            role: echo
            sockets:
              jobs: {type: REP, connect: broker.backend}
          client:
            role: ticker
            with: {interval: 0.05, count: 0, payload: "ask {n}"}
            sockets:
              req: {type: REQ, connect: broker.frontend}
    """)
    env = no_leftovers.env()
    with orchestrator.up(path, env=env) as run:
        messages = list(run.tap("broker.frontend", count=4))
        assert len(messages) == 4
        ins = [m for m in messages if m.direction == "in"]
        outs = [m for m in messages if m.direction == "out"]
        assert ins and outs
        for m in messages:
            identity, empty, body = m.frames  # the ROUTER's envelope: peer identity, delimiter
            assert len(identity) == 5 and empty == b"" and body.startswith(b"ask ")
        request = ins[0]
        reply = next(m for m in outs if m.ts >= request.ts)
        assert reply.frames[0] == request.frames[0]  # the reply goes back to that client
        # The proxy forwards in Python only while tapped: libzmq's proxy again afterwards,
        # with its counts carried on.
        before = run.stats()["replicas"]["broker.0"]["sockets"]["frontend"]["messages_in"]
        wait_until(lambda: run.stats()["replicas"]["broker.0"]["sockets"]["frontend"]
                   ["messages_in"] > before, message="the proxy counting on")


def test_api_stats_count_what_crossed_the_broker(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, PIPELINE.replace("count: 150", "count: 50"))
    with orchestrator.up(path, env=no_leftovers.env()) as run:
        def counted() -> bool:
            s = run.stats()["replicas"]
            return bool(s["worker.0"]["sockets"]["in"]["messages_in"] == 100)

        wait_until(counted, timeout=15, message="100 messages at the worker")
        stats = run.stats()["replicas"]
        assert stats["streamer.0"]["sockets"]["frontend"]["messages_in"] == 100
        assert sum(stats[f"clients.{i}"]["sockets"]["out"]["messages_out"] for i in (0, 1)) == 100


def test_a_tapped_node_that_crashes_is_tapped_again_and_a_slow_tap_drops(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, TICKER.replace("interval: 0.02", "interval: 0.001"))
    with orchestrator.up(path, env=no_leftovers.env()) as run, \
            Tap(run.folder, "clock.out") as tap:
        def tick(m: TapMessage | Dropped) -> int:
            return int(m.frames[0].split()[1]) if isinstance(m, TapMessage) else -1

        # Ticks every millisecond: once they are past 500, a tick below 100 is a new process's.
        first = next(m for m in tap.messages(timeout=10) if tick(m) >= 500)
        assert isinstance(first, TapMessage) and first.replica == "clock.0"
        old = run.pid("clock")
        run.kill("clock", signal.SIGKILL)
        run.wait_ready("clock", restarts=1)
        assert run.pid("clock") != old

        def restarted() -> bool:
            return any(0 < tick(m) < 100 for m in tap.messages(timeout=5))

        assert restarted()  # the new process's first ticks reach the same tap
        # Not reading for a while: the node drops what the tap cannot take, and says so.
        wait_until(lambda: run.stats()["replicas"]["clock.0"]["sockets"]["out"]
                   ["tap_dropped"] > 0, timeout=20, message="the tap to fall behind")
        dropped = next(m for m in tap.messages(timeout=5) if isinstance(m, Dropped))
        assert dropped.count > 0


def test_bad_targets_are_one_sentence_and_exit_2(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, TICKER + """
      shell:
        command: [sh, -c, "exec sleep 30"]
        sockets:
          pub: {type: PUB, bind: "tcp://127.0.0.1:*"}
          pull: {type: PULL, bind: "ipc://shellpull"}
    """)
    env = no_leftovers.env()
    assert topo(env, "up", "-d", str(path), "-p", "bad").returncode == 0
    try:
        cases = {
            ("tap", "bad", "nobody.out"): "run bad has no node 'nobody'; its nodes: clock, sink, "
                                          "shell",
            ("tap", "bad", "clock.nothing"): "node clock has no socket 'nothing'; its sockets: "
                                             "out",
            ("tap", "bad", "clock.7.out"): "node clock has no replica '7'; its replicas: clock.0",
            ("tap", "bad", "clock"): "'clock' is not NODE.SOCKET",
            ("tap", "bad", "shell.pull"): "shell.pull is a PULL socket of command node shell: "
                                          "topo cannot see inside a program it only starts",
            ("tap", "nosuchrun", "clock.out"): "no run named nosuchrun (known runs: bad)",
            ("top", "nosuchrun"): "no run named nosuchrun (known runs: bad)",
        }
        for args, sentence in cases.items():
            result = topo(env, *args)
            assert result.returncode == 2, (args, result.stderr)
            assert sentence in result.stderr, (args, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    finally:
        assert topo(env, "down", "bad").returncode == 0


def test_a_command_nodes_pub_is_tapped_by_subscribing(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, f"""
        nodes:
          shell:
            command: [{sys.executable}, -m, tests.nodes.publisher]
            cwd: {REPO}
            sockets:
              pub: {{type: PUB, bind: "tcp://127.0.0.1:*"}}
    """)
    env = no_leftovers.env()
    assert topo(env, "up", "-d", str(path), "-p", "cmdpub").returncode == 0
    try:
        result = topo(env, "tap", "cmdpub", "shell.pub", "--count", "2")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 2 and all(" shell.pub send news " in line for line in lines), lines
    finally:
        assert topo(env, "down", "cmdpub").returncode == 0


def test_tap_and_top_say_when_the_run_ends(tmp_path: Path, no_leftovers: Leftovers) -> None:
    path = topology(tmp_path, TICKER)
    env = no_leftovers.env()
    assert topo(env, "up", "-d", str(path), "-p", "ending").returncode == 0
    tap = subprocess.Popen([sys.executable, "-m", "orchestrator", "tap", "ending", "clock.out"],
                           env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    top = subprocess.Popen([sys.executable, "-m", "orchestrator", "top", "ending"], env=env,
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert tap.stdout is not None
        assert " clock.0.out send tick " in tap.stdout.readline()
        assert top.stdout is not None
        assert top.stdout.readline().startswith("topo top: run ending")
        assert topo(env, "down", "ending").returncode == 0
        tap_out, tap_err = tap.communicate(timeout=10)
        top_out, _ = top.communicate(timeout=10)
        assert tap.returncode == 0 and "run ending ended" in tap_err
        assert top.returncode == 0 and "run ending ended" in top_out
    finally:
        for p in (tap, top):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_top_in_a_terminal_draws_its_table_and_quits_on_q(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    tmux = need("tmux", "apt-get install tmux")
    path = topology(tmp_path, TICKER)
    env = no_leftovers.env()
    assert topo(env, "up", "-d", str(path), "-p", "term").returncode == 0
    session = f"topo-top-{os.getpid()}"
    socket_name = str(tmp_path / "tmux.sock")
    base = [tmux, "-S", socket_name]
    try:
        command = f"cd {REPO} && {sys.executable} -m orchestrator top term; echo EXITED $?; " \
                  "sleep 30"
        subprocess.run([*base, "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                        "env", f"TOPO_STATE_DIR={env['TOPO_STATE_DIR']}",
                        f"TOPO_TEST_TOKEN={env['TOPO_TEST_TOKEN']}", "sh", "-c", command],
                       check=True, env=env)

        def pane() -> str:
            return subprocess.run([*base, "capture-pane", "-p", "-t", session], check=True,
                                  capture_output=True, text=True, env=env).stdout

        wait_until(lambda: "clock.0.out" in pane() and "sink.0.in" in pane(), timeout=10,
                   message="top's table in the terminal")
        screen = pane()
        assert "topo top: run term" in screen and "REPLICA" in screen and "SOCKET" in screen
        assert all(len(line) <= 80 for line in screen.splitlines())
        subprocess.run([*base, "send-keys", "-t", session, "q"], check=True, env=env)
        wait_until(lambda: "EXITED 0" in pane(), timeout=10, message="top to quit on q")
    finally:
        subprocess.run([*base, "kill-server"], check=False, env=env, capture_output=True)
        assert topo(env, "down", "term").returncode == 0


def test_up_d_keeps_one_progress_line_on_a_terminal_and_none_elsewhere(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    flag = tmp_path / "ready.flag"
    path = topology(tmp_path, f"""
        nodes:
          slow:
            command: [sh, -c, "sleep 1; touch {flag}; exec sleep 30"]
            ready: {{file: {flag}}}
          fast:
            role: printer
            sockets:
              in: {{type: PULL, bind: "ipc://in"}}
    """)
    env = no_leftovers.env()
    quiet = topo(env, "up", "-d", str(path), "-p", "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "starting" not in quiet.stderr and "\x1b" not in quiet.stderr
    assert topo(env, "down", "quiet").returncode == 0
    flag.unlink()
    # On a terminal: one line, redrawn in place, gone once the run is up.
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "up", "-d", str(path),
                                 "-p", "loud"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=slave, text=True)
        os.close(slave)
        slave = -1
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and out.strip() == "loud"
        seen = b""
        while select.select([master], [], [], 0)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        text = seen.decode(errors="replace")
        assert "\r\x1b[Kstarting 2/2, ready 1; waiting on slow.0 (" in text, text
        assert text.rstrip().endswith("`topo down loud`"), text
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
        assert topo(env, "down", "loud").returncode == 0
