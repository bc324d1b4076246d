"""Run a prepared plan to its end, then remove everything it made: the composition root.

``run_plan(plan, ...)`` is what every way of starting a run ends in: the lean
supervisor that `topo up` execs (``lean.py``), and in-process callers (tests, the
bench) through ``orchestrator/start/``. It returns the run's exit code (see
docs/reference.md#exit-codes): 0 all nodes succeeded, 1 a failure, the
``--exit-code-from`` node's code, 124 timeout, 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from orchestrator.errors import NotReady
from orchestrator.ipc.resources import Resources
from orchestrator.paths import OUTPUT_LOG
from orchestrator.plan import Plan
from orchestrator.runs.folder import remove_run_dir, write_specs
from orchestrator.structs import struct
from orchestrator.supervisor.eventloop import EventLoop
from orchestrator.supervisor.output import JsonPrinter, Printer, use_color
from orchestrator.supervisor.runready import StartupWatch, progress
from orchestrator.supervisor.spawn import Spawner, set_subreaper
from orchestrator.supervisor.statefile import StateFile, create_ipc, serve_control, watch_owner
from orchestrator.supervisor.supervisor import Options, Replica, Supervisor


def run_plan(
    plan: Plan,
    *,
    timeout: float | None = None,
    exit_code_from: str | None = None,
    abort_on_failure: bool = False,
    no_color: bool = False,
    environ: Mapping[str, str] | None = None,
    out: BinaryIO | None = None,
    err: BinaryIO | None = None,
    reap_orphans: bool = False,
    hooks: Hooks | None = None,
) -> int:
    """Run a prepared plan until it ends, then remove everything it made; return the code."""
    env = os.environ if environ is None else environ
    with contextlib.ExitStack() as made:
        made.callback(_remove_run_folder, plan)  # the last thing to go, whatever happened
        write_specs(plan)
        ipc = create_ipc(plan)  # before any node starts; IpcError removes what it made
        made.callback(ipc.remove)  # every node is gone by then: _supervise killed the stragglers
        return _supervise(
            plan, env, Options(timeout, exit_code_from, abort_on_failure),
            color=use_color(out if out is not None else sys.stdout, no_color, env),
            out=out, err=err, reap_orphans=reap_orphans, hooks=hooks or Hooks(), ipc=ipc,
        )


def _remove_run_folder(plan: Plan) -> None:
    # Absolute ipc endpoints live outside the run folder; relative ones go with it.
    binds = [ep[len("ipc://"):] for r in plan.replicas
             for sock in r.sockets for ep in sock.bind if ep.startswith("ipc://")]
    remove_run_dir(Path(plan.run_dir), ipc_paths=binds)


def _supervise(
    plan: Plan,
    environ: Mapping[str, str],
    options: Options,
    *,
    color: bool,
    out: BinaryIO | None,
    err: BinaryIO | None,
    reap_orphans: bool,
    hooks: Hooks,
    ipc: Resources | None = None,
) -> int:
    """The run in this process. Everything taken from the process is given back on the way
    out, also when a step half-way fails: each is on the ``ExitStack`` as soon as it is taken.
    """
    targets: dict[str, Callable[..., Any]] = {}
    if any(r.kind != "command" for r in plan.replicas):
        # deferred: the node side (pyzmq) is loaded only for a plan that forks run nodes
        from orchestrator.child.rehearsal import rehearse
        from orchestrator.child.targets import preload

        targets = preload(plan)  # imports once, here, so every fork shares the pages
        rehearse(plan)  # a node's start, played here first: the forked nodes find it done
    with contextlib.ExitStack() as taken:
        nofile = _raise_nofile()
        if nofile is not None:
            taken.callback(resource.setrlimit, resource.RLIMIT_NOFILE, nofile)
        # Everything alive now is frozen out of the collector: a child's GC never writes
        # to these pages, so they stay shared with the supervisor.
        gc.freeze()
        taken.callback(gc.unfreeze)
        _become_subreaper(taken)
        run_dir_env = next((r.env["TOPO_RUN_DIR"] for r in plan.replicas
                            if "TOPO_RUN_DIR" in r.env), plan.run_dir)
        spawner = Spawner(nofile=nofile, marker=f"TOPO_RUN_DIR={run_dir_env}")
        taken.callback(spawner.close)  # the guardian, and every fd the spawner holds
        printer = (JsonPrinter if hooks.json_events else Printer)(
            [r.name for r in plan.replicas], out=out, err=err,
            color=color and not hooks.json_events,
            log_paths={r.name: r.log_path for r in plan.replicas},
            merged_path=os.path.join(plan.run_dir, OUTPUT_LOG),
        )
        taken.callback(printer.close)
        state = StateFile(plan, spawner, ipc)
        sup = Supervisor(
            plan, spawner=spawner, printer=printer, options=options, targets=targets,
            environ=environ, on_change=state.mark, ipc=ipc, ready_hook=hooks.ready_hook,
        )
        # How long stopping may take at most: `topo down` waits that long before it kills.
        state.base["stop_budget"] = sup.shutdown.budget()

        def run_ready() -> None:
            state.flush(force=True)  # what `topo up -d` returns on, every pid in it
            printer.record("run_ready", run_id=plan.run_id)
            if hooks.ready_file is not None:
                _touch(hooks.ready_file)
            if hooks.on_up is not None:
                hooks.on_up(plan.run_id)

        if hooks.ready_file is not None:
            taken.callback(_remove, hooks.ready_file)

        detached = hooks.on_up is not None
        watch = StartupWatch(sup, wait_timeout=hooks.wait_timeout if detached else None,
                             on_ready=run_ready, stop_on_failure=detached)

        def before_wait() -> None:
            changed = state.dirty  # a replica started, got ready or exited in this turn
            state.flush()
            if changed:
                watch.check()

        if hooks.on_progress is not None:
            say_progress = hooks.on_progress

            def tick() -> None:  # every PROGRESS_EVERY while the start is undecided
                if not watch.decided:
                    say_progress(progress(sup))
                    sup.call_at(sup.clock() + PROGRESS_EVERY, tick)

            sup.call_at(sup.clock() + PROGRESS_EVERY, tick)

        loop = EventLoop(sup, spawner, reap_orphans=reap_orphans, before_wait=before_wait)
        taken.callback(loop.close)
        # Stragglers (what a stop_timeout could not end, any orphan we adopted) die first,
        # before their output pipes and logs close under them. No node exists before the loop.
        taken.callback(spawner.kill_everything, all_children=reap_orphans)
        taken.callback(serve_control(plan.run_dir, sup, state, loop).close)
        owner = watch_owner(hooks.owner_pid, sup, loop)
        if owner is not None:
            taken.callback(os.close, owner)
            taken.callback(loop.remove_reader, owner)
        if hooks.on_start is not None:
            hooks.on_start(sup)
        code = 1
        taken.callback(lambda: printer.record("run_ended", run_id=plan.run_id, code=code))
        state.sup = sup
        state.flush(force=True)
        printer.record("run_started", run_id=plan.run_id, replicas=len(plan.replicas))
        code = loop.run()
        watch.check()  # the last turn of the loop may have ended the run without a look
        if detached and watch.failure is not None:
            raise NotReady(watch.failure)
        return code


@struct
class Hooks:
    """What callers other than the CLI's foreground run add to a run.

    See ``start.foreground.run_file``.
    """

    ready_hook: Callable[[Replica], None] | None = None
    on_start: Callable[[Supervisor], None] | None = None
    on_up: Callable[[str], None] | None = None
    wait_timeout: float | None = None
    owner_pid: int | None = None
    json_events: bool = False
    # Created once every node is ready, removed when the run ends: a container's readiness
    # probe (`topo up --ready-file`, used by `topo export kubernetes`).
    ready_file: str | None = None
    # `topo up -d` on a terminal: how far the start is, every PROGRESS_EVERY until it is up.
    on_progress: Callable[[dict[str, object]], None] | None = None


PROGRESS_EVERY = 0.2  # seconds


def _touch(path: str) -> None:
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _become_subreaper(taken: contextlib.ExitStack) -> None:
    """Orphans of our nodes re-parent to us; an in-process caller gets its setting back."""
    try:
        was = set_subreaper()
    except OSError:
        return  # unknown: leave it as it is
    if not was:
        taken.callback(_stop_being_subreaper)


def _stop_being_subreaper() -> None:
    with contextlib.suppress(OSError):
        set_subreaper(False)


def _raise_nofile() -> tuple[int, int] | None:
    """Lift the soft fd limit (3 fds per replica); return the old one to restore."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else min(hard, 1 << 16)
    if soft >= want:
        return None
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return (soft, hard)
