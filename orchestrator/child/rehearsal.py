"""A rehearsal of a forked node's start, in the supervisor, before it forks any node.

A forked node's first steps (a context, its counted and monitored sockets, the watch
thread, its stop handler, its last counts, the close) are the first time this
interpreter runs that code. Running it the first time writes to memory the node shares
with the supervisor: the type attribute cache, the specialised bytecode, the allocator's
free lists and the objects Python and pyzmq make lazily. Each page written is a copy on
write, in every node. ``rehearse`` runs that start in the supervisor, up to 8 times, on
``inproc`` endpoints, so the nodes find it done in the pages they share.

What it leaves is only memory: its context is ended (libzmq's threads joined), its
watch thread joined, its socket pair closed, the stop signal's handler and the process's
signal mask put back; the signals it blocks meanwhile are delivered after it, to the
supervisor's handlers. It prints nothing, and a rehearsal that fails costs only the
speed-up. ``bench/startup.py`` shows the start it shortens.
"""

from __future__ import annotations

import _signal
import contextlib
import io
import os
import socket
import threading
from typing import Any

from orchestrator.plan import Plan, ReplicaPlan, SocketPlan
from orchestrator.structs import replace

# Python specialises a function's bytecode once it has run 8 times: 8 rounds leave the
# nodes' start specialised. The first round takes about 4.5 ms here, each further one about
# 1 ms; a node saves about 0.7 ms of CPU (200 run nodes: about 10% less CPU, 8% less wall).
ROUNDS = 8
NODES_PER_ROUND = 4  # a run of fewer forked nodes than 4 per round would lose by it
# Blocked while the rehearsal runs (with the node's stop signal): the supervisor's signals,
# delivered to its own handlers once the rehearsal has put the node's handler back.
_BLOCKED = frozenset(int(s) for s in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP,
                                      _signal.SIGCHLD, _signal.SIGQUIT, _signal.SIGUSR1,
                                      _signal.SIGUSR2))


def rounds_for(plan: Plan) -> int:
    """How many rounds pay for themselves: one per 4 forked nodes, at most ``ROUNDS``."""
    forked = sum(1 for r in plan.replicas if r.kind != "command")
    return min(ROUNDS, forked // NODES_PER_ROUND)


def rehearse(plan: Plan, rounds: int | None = None) -> bool:
    """Run the start of the plan's most replicated forked node ``rounds`` times, here
    (``rounds_for(plan)`` by default).

    Returns False when there is nothing to rehearse (no round pays, or no forked node
    with sockets) or the rehearsal failed; the run goes on the same either way.
    """
    rounds = rounds_for(plan) if rounds is None else rounds
    replica = _model(plan) if rounds > 0 else None
    if replica is None or threading.current_thread() is not threading.main_thread():
        return False  # (signal handlers are the main thread's to set, and to put back)
    handler = _signal.getsignal(replica.stop_signal)
    if handler is None:
        return False  # a handler set outside Python, which Python could not put back
    # deferred: run_child needs pyzmq, which a plan of command nodes never loads
    from orchestrator.child.node import run_child

    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _BLOCKED | {replica.stop_signal})
    played = 0
    try:
        with contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):
            while played < rounds:
                ours, theirs = socket.socketpair()
                try:
                    # The node's end of its channel, a plain fd as a forked node has it;
                    # its watch keeps it open, the way a node does until it exits.
                    if run_child(plan, replica, _played, ours.fileno()) != 0:
                        break
                finally:
                    ours.close()
                    theirs.close()
                played += 1
    except Exception:  # noqa: BLE001 - a failed rehearsal only costs the speed-up
        played = -1
    finally:
        _signal.signal(replica.stop_signal, handler)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    return played == rounds


def _played(node: Any) -> int:
    """The rehearsal's node function."""
    return 0


def _model(plan: Plan) -> ReplicaPlan | None:
    """The forked node with the most replicas, with sockets, on endpoints of its own."""
    counts: dict[str, int] = {}
    first: dict[str, ReplicaPlan] = {}
    for r in plan.replicas:
        if r.kind != "command" and r.sockets:
            counts[r.node] = counts.get(r.node, 0) + 1
            first.setdefault(r.node, r)
    if not counts:
        return None
    model = first[max(counts, key=lambda n: counts[n])]
    # inproc endpoints of the rehearsal's own (gone with its context), and no CURVE, whose
    # keys are the node's; no environment: the supervisor's stays as it is.
    sockets = tuple(_inproc(i, s) for i, s in enumerate(model.sockets))
    return replace(model, sockets=sockets, env={})


def _inproc(i: int, plan: SocketPlan) -> SocketPlan:
    at = f"inproc://topo-rehearsal.{os.getpid()}.{i}"
    # A linger: the close then ends the context (a forked node leaves it to its exit), also
    # after a failure, so that no libzmq or watch thread outlives the rehearsal.
    return replace(plan, bind=tuple(f"{at}.b{k}" for k in range(len(plan.bind))),
                   connect=tuple(f"{at}.c{k}" for k in range(len(plan.connect))),
                   options={**plan.options, "linger": 1},
                   curve_server=False, allow=(), serverkeys=())
