"""The peer table agrees with libzmq: for all 121 ordered pairs of standard socket types,
`topo validate` reports E121 exactly when the ZMTP handshake between them fails.

All pairs are wired at once over ipc in a temporary folder and both sides'
monitor sockets are watched until every pair has a verdict, against a deadline.
"""

from __future__ import annotations

import itertools
import resource
import time
from pathlib import Path

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from orchestrator.spec import checks, zmqrules
from orchestrator.spec.loader import load_text

FAILED = (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
          | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
WATCHED = zmq.EVENT_HANDSHAKE_SUCCEEDED | FAILED
PAIRS: list[tuple[str, str]] = list(itertools.product(zmqrules.STANDARD_TYPES,
                                                      zmqrules.STANDARD_TYPES))
DEADLINE = 10.0


def _libzmq_verdicts(folder: Path) -> dict[tuple[str, str], bool]:
    """(binder, connector) -> whether both ends completed the handshake."""
    # 242 sockets, their 242 monitors and libzmq's ends of those: past the defaults of 1,023
    # sockets per context and, with their connections, near 1,024 open files.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, 4096)
    sockets: list[zmq.Socket[bytes]] = []
    monitors: dict[zmq.Socket[bytes], tuple[tuple[str, str], str]] = {}
    seen: dict[tuple[str, str], dict[str, bool]] = {pair: {} for pair in PAIRS}
    try:
        for i, (a, b) in enumerate(PAIRS):
            binder = ctx.socket(zmqrules.socket_type_number(a))
            connector = ctx.socket(zmqrules.socket_type_number(b))
            sockets += [binder, connector]
            for side, sock in (("bind", binder), ("connect", connector)):
                sock.setsockopt(zmq.LINGER, 0)
                monitor = sock.get_monitor_socket(WATCHED)
                sockets.append(monitor)
                monitors[monitor] = ((a, b), side)
            endpoint = f"ipc://{folder}/{i}.sock"
            binder.bind(endpoint)
            connector.connect(endpoint)
        poller = zmq.Poller()
        for monitor in monitors:
            poller.register(monitor, zmq.POLLIN)
        deadline = time.monotonic() + DEADLINE
        while any(len(v) < 2 for v in seen.values()) and time.monotonic() < deadline:
            for monitor, _ in poller.poll(timeout=100):
                event = recv_monitor_message(monitor)
                pair, side = monitors[monitor]
                seen[pair].setdefault(side, event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED)
                if event["event"] & FAILED:
                    # One failed side decides it; the other may never hear of a handshake.
                    seen[pair].setdefault("bind" if side == "connect" else "connect", False)
    finally:
        for sock in sockets:
            sock.close(linger=0)
        ctx.term()
    undecided = [pair for pair, v in seen.items() if len(v) < 2]
    assert not undecided, f"no handshake verdict within {DEADLINE}s for {undecided}"
    return {pair: all(v.values()) for pair, v in seen.items()}


def _validator_refuses(binder: str, connector: str) -> bool:
    text = f"""
nodes:
  a:
    command: [prog]
    sockets:
      s: {{type: {binder}, bind: "ipc://s", subscribe: [""]}}
  b:
    command: [prog]
    sockets:
      s: {{type: {connector}, connect: a.s, subscribe: [""]}}
"""
    loaded = load_text(text, "pair.yaml", environ={"TOPO_STATE_DIR": "/tmp/t"})
    assert loaded.topology is not None, loaded.diagnostics
    diags = checks.check(loaded.topology, loaded.source, {"TOPO_STATE_DIR": "/tmp/t"})
    return any(d.code == "E121" for d in diags)


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], bool]:
    return _libzmq_verdicts(tmp_path_factory.mktemp("ipc"))


def test_all_121_pairs_are_decided(verdicts: dict[tuple[str, str], bool]) -> None:
    assert len(verdicts) == 121
    assert len(PAIRS) == 121


@pytest.mark.parametrize(("binder", "connector"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_validator_agrees_with_libzmq(verdicts: dict[tuple[str, str], bool], binder: str,
                                      connector: str) -> None:
    handshake_ok = verdicts[(binder, connector)]
    assert _validator_refuses(binder, connector) == (not handshake_ok)
    assert zmqrules.can_peer(binder, connector) == handshake_ok
