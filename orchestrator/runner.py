"""`topo up` in the foreground: validate, plan, start, supervise, and leave nothing behind.

``up(...)`` is the Python entry point; ``up_from_cli(args)`` maps the parsed
arguments onto it. Both return the run's exit code (SPEC §3): 0 all nodes
succeeded, 1 a failure, the ``--exit-code-from`` node's code, 124 timeout,
130 SIGINT, 143 SIGTERM. Validation errors raise ``InvalidTopology`` (exit 1)
before anything starts; an unknown ``--exit-code-from`` node is a
``UsageError`` (exit 2); a live run id is ``RunAlive`` (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import re
import resource
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from . import paths
from .errors import UsageError
from .eventloop import EventLoop
from .output import Printer, use_color
from .spawn import Spawner, set_subreaper
from .supervisor import Options, Replica, Supervisor

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def up_from_cli(args: argparse.Namespace) -> int:
    return up(
        args.file,
        run_id=args.run_id,
        timeout=args.timeout,
        exit_code_from=args.exit_code_from,
        abort_on_failure=args.abort_on_failure,
        no_color=args.no_color,
        reap_orphans=True,  # the `topo` process is ours alone: every child is a node's
    )


def up(
    file: str | os.PathLike[str],
    *,
    run_id: str | None = None,
    timeout: float | None = None,
    exit_code_from: str | None = None,
    abort_on_failure: bool = False,
    no_color: bool = False,
    environ: Mapping[str, str] | None = None,
    out: BinaryIO | None = None,
    err: BinaryIO | None = None,
    reap_orphans: bool = False,
    ready_hook: Callable[[Replica], None] | None = None,
    on_start: Callable[[Supervisor], None] | None = None,
) -> int:
    """Run a topology in the foreground until it ends; return its exit code."""
    from .validate import load_or_raise

    env = os.environ if environ is None else environ
    loaded = load_or_raise(file, env)
    topology = loaded.topology
    assert topology is not None
    err_stream = err if err is not None else sys.stderr.buffer
    for d in loaded.diagnostics:
        err_stream.write(f"{d.format()}\n".encode())
    run_id = run_id or topology.name
    if not _RUN_ID.match(run_id):
        raise UsageError(
            f"run id {run_id!r} may hold only letters, digits, '.', '_' and '-' "
            "(at most 64, starting with a letter or digit)")
    if exit_code_from is not None and exit_code_from not in topology.nodes:
        raise UsageError(
            f"--exit-code-from {exit_code_from}: the topology has no node by that name "
            f"(its nodes: {', '.join(topology.nodes)})")
    from .planner import plan_run
    from .rundir import create_run_dir, remove_run_dir, write_specs

    run_dir = paths.run_dir(run_id, env)
    create_run_dir(run_dir)
    plan = None
    try:
        plan = plan_run(topology, Path(file).resolve(), run_id, run_dir, environ=env)
        write_specs(plan)
        return _supervise(
            plan, topology, env,
            Options(timeout, exit_code_from, abort_on_failure),
            color=use_color(out if out is not None else sys.stdout, no_color, env),
            out=out, err=err, reap_orphans=reap_orphans,
            ready_hook=ready_hook, on_start=on_start,
        )
    finally:
        # Absolute ipc endpoints live outside the run folder; relative ones go with it.
        binds = [ep[len("ipc://"):] for r in (plan.replicas if plan else ())
                 for sock in r.sockets for ep in sock.bind if ep.startswith("ipc://")]
        remove_run_dir(run_dir, ipc_paths=binds)


def _supervise(
    plan: Any,
    topology: Any,
    environ: Mapping[str, str],
    options: Options,
    *,
    color: bool,
    out: BinaryIO | None,
    err: BinaryIO | None,
    reap_orphans: bool,
    ready_hook: Callable[[Replica], None] | None,
    on_start: Callable[[Supervisor], None] | None,
) -> int:
    targets: dict[str, Callable[..., Any]] = {}
    if any(r.kind != "command" for r in plan.replicas):
        from .node import preload

        targets = preload(plan)  # imports once, here, so every fork shares the pages
    nofile = _raise_nofile()
    # Everything alive now is frozen out of the collector: a child's GC never writes
    # to these pages, so they stay shared with the supervisor.
    gc.freeze()
    run_dir_env = next((r.env["TOPO_RUN_DIR"] for r in plan.replicas if "TOPO_RUN_DIR" in r.env),
                       plan.run_dir)
    spawner = Spawner(nofile=nofile, marker=f"TOPO_RUN_DIR={run_dir_env}")
    with contextlib.suppress(OSError):
        set_subreaper()
    printer = Printer(
        [r.name for r in plan.replicas], out=out, err=err, color=color,
        log_paths={r.name: r.log_path for r in plan.replicas},
    )
    state = _StateFile(plan, spawner)
    sup = Supervisor(
        plan, topology, spawner=spawner, printer=printer, options=options,
        targets=targets, environ=environ, on_change=state.mark,
    )
    sup.ready_hook = ready_hook
    loop = EventLoop(sup, spawner, reap_orphans=reap_orphans, before_wait=state.flush)
    if on_start is not None:
        on_start(sup)
    try:
        state.sup = sup
        state.flush(force=True)
        return loop.run()
    finally:
        # Stragglers: what a stop_timeout could not end, and any orphan we adopted.
        spawner.kill_everything(all_children=reap_orphans)
        loop.close()
        spawner.close()
        printer.close()
        gc.unfreeze()
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)


def _raise_nofile() -> tuple[int, int] | None:
    """Lift the soft fd limit (3 fds per replica); return the old one to restore."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else min(hard, 1 << 16)
    if soft >= want:
        return None
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return (soft, hard)


class _StateFile:
    """state.json, rewritten (atomically) at most once per loop turn, when pids changed."""

    def __init__(self, plan: Any, spawner: Spawner) -> None:
        self.plan = plan
        self.spawner = spawner
        self.sup: Supervisor | None = None
        self.dirty = True
        me = psutil.Process()
        self.base = {
            "run_id": plan.run_id,
            "file": plan.file,
            "run_dir": plan.run_dir,
            "supervisor": {"pid": me.pid, "create_time": me.create_time()},
            "guardian": spawner.guardian_pid,
            "started": time.time(),
            "endpoints": {
                r.name: {s.name: {"bind": list(s.bind), "connect": list(s.connect)}
                         for s in r.sockets}
                for r in plan.replicas
            },
        }

    def mark(self, _: Supervisor) -> None:
        self.dirty = True

    def flush(self, force: bool = False) -> None:
        if not (self.dirty or force) or self.sup is None:
            return
        from .rundir import write_state

        write_state(Path(self.plan.run_dir), {**self.base, **self.sup.state()})
        self.dirty = False
