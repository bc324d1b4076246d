"""`topo up FILE` in the foreground, and the same run inside the calling process.

``up_from_cli(args)`` validates and plans here, then execs the lean supervisor;
``run_file(file, ...)`` runs the whole topology in this process (tests, the bench).
Both return the run's exit code (docs/reference.md#exit-codes). Validation errors
raise ``InvalidTopology`` (exit 1) before anything starts; an unknown
``--exit-code-from`` node is a ``UsageError`` (exit 2); a live run id is
``RunAlive`` (exit 1).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from orchestrator import paths
from orchestrator.plan import Plan
from orchestrator.runs.folder import create_run_dir
from orchestrator.supervisor.lean import exec_launch, run_in_place

if TYPE_CHECKING:
    import argparse

    from orchestrator.spec.cache import PlanCache
    from orchestrator.supervisor.supervisor import Replica, Supervisor


def up_from_cli(args: argparse.Namespace) -> int:
    """`topo up FILE`: validate and plan here, then run the plan in a lean process.

    The supervisor forks every run node, and a fork copies the page tables of the
    whole process: one that never imported the validator (pydantic and the
    model) forks, and its children exit, markedly faster. So after planning this
    process execs ``orchestrator.supervisor.lean``, keeping its pid (the state file
    already names it), its terminal and its environment. A plan kept from an
    earlier run loads neither, so that process is lean already: it runs the plan
    itself, and a new interpreter's start (0.12 s of a one-node `topo up`) is saved.
    """
    plan, kept = _plan(args)
    settings = {
        "timeout": args.timeout, "exit_code_from": args.exit_code_from,
        "abort_on_failure": args.abort_on_failure, "no_color": args.no_color,
        "json_events": args.json, "reap_orphans": True,  # every child of `topo` is a node's
        "ready_file": args.ready_file,
    }
    if kept:
        return run_in_place(plan, settings)
    return exec_launch(plan, settings)


def _plan(args: argparse.Namespace) -> tuple[Plan, bool]:
    """The run's plan, and whether it is the one made before: that one is used when
    nothing it depends on has changed (``spec/cache.py``: then neither the checks nor
    pydantic are loaded), else it is made now."""
    # deferred: the cache only for `topo up FILE`
    from orchestrator.spec.cache import PlanCache, Tee

    cache = None
    if (args.group is None and args.replica is None and not args.resolve and not args.allow
            and args.keys is None):
        cache = PlanCache.for_up(args.file, run_id=args.run_id,
                                 exit_code_from=args.exit_code_from)
    if cache is not None:
        plan = kept_plan(cache)
        if plan is not None:
            return plan, True
    # deferred: the model and pydantic, only when the file is checked and planned
    from orchestrator.spec.run_endpoints import free_tcp_port
    from orchestrator.start.prepare import group_choice, prepare

    if cache is None:
        return prepare(args.file, run_id=args.run_id, exit_code_from=args.exit_code_from,
                       allow=args.allow, group=group_choice(args), keys=args.keys), False
    ports: list[int] = []

    def allocate(host: str) -> int:  # a plan that picked a port is not the same next time
        ports.append(free_tcp_port(host))
        return ports[-1]

    err = Tee(sys.stderr.buffer, binary=True)
    plan = prepare(args.file, run_id=args.run_id, exit_code_from=args.exit_code_from,
                   environ=cache.recording(), err=cast("BinaryIO", err), allocate_port=allocate)
    if not ports and not plan.curve:
        cache.keep(plan.to_dict(), err.copy.getvalue())
    return plan, False


def kept_plan(cache: PlanCache) -> Plan | None:
    """The kept plan, its warnings shown and its run folder claimed, as ``prepare`` does."""
    hit = cache.plan()
    if hit is None:
        return None
    doc, warnings = hit
    try:
        plan = Plan.from_dict(doc)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # not a plan this version makes: made anew
    if plan.run_dir != os.path.abspath(paths.run_dir(plan.run_id)) or plan.curve:
        return None
    sys.stderr.buffer.write(warnings)
    sys.stderr.buffer.flush()
    create_run_dir(Path(plan.run_dir))
    return plan


def run_file(
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
    on_up: Callable[[str], None] | None = None,
    wait_timeout: float | None = None,
    owner_pid: int | None = None,
    json_events: bool = False,
) -> int:
    """Run a topology in this process until it ends; return its exit code.

    ``on_up(run_id)`` is called once every node is ready (see ``supervisor/runready.py``);
    when given, a run that cannot get there is stopped and ``NotReady`` raised
    with the reason. ``owner_pid``: the run stops when that process exits (the
    Python API's runs end with the test process that started them, however it
    ends). ``json_events``: stdout carries one JSON event per line
    (``output.JsonPrinter``).
    """
    # deferred: the model and pydantic; the supervisor (`topo up` execs a lean one)
    from orchestrator.start.prepare import prepare
    from orchestrator.supervisor.run import Hooks, run_plan

    plan = prepare(file, run_id=run_id, exit_code_from=exit_code_from, environ=environ, err=err)
    return run_plan(
        plan, timeout=timeout, exit_code_from=exit_code_from, abort_on_failure=abort_on_failure,
        no_color=no_color, environ=environ, out=out, err=err, reap_orphans=reap_orphans,
        hooks=Hooks(ready_hook, on_start, on_up, wait_timeout, owner_pid, json_events))
