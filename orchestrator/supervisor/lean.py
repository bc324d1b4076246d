"""The lean supervisor: runs a prepared plan in a process that never imported the validator.

`topo up` (foreground or ``-d``) validates and plans in the ``topo`` process,
writes the plan and the run's settings to ``launch.json`` in the run folder,
and execs this module in place of itself: same pid (the state file already
names it as the supervisor), same terminal, same environment. Forks from a
process without pydantic and the model copy half the page tables, so run
nodes start, and stop, faster (``bench/detached.py`` shows ``topo down``).
A `topo up` whose plan was kept from an earlier run never loaded them: in the
foreground it calls ``run_in_place``, and with ``-d`` its detached child calls
``serve``, with no new interpreter.

Settings: ``timeout``, ``exit_code_from``, ``abort_on_failure``, ``no_color``,
``json_events``, ``reap_orphans``, ``wait_timeout``, ``owner_pid`` and, for
``topo up -d``, ``notify_fd``: the pipe on which the waiting ``topo`` hears one
JSON line, ``{"ok": true, "run_id": ...}`` once every node is ready, or
``{"ok": false, "error": ..., "code": N}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from orchestrator.errors import TopoError
from orchestrator.plan import Plan
from orchestrator.runs.folder import me, read_state, write_state

LAUNCH_FILE = "launch.json"
# The folder that holds the orchestrator package this module belongs to (this file is
# orchestrator/supervisor/lean.py): the exec'd process imports the very same copy.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def write_launch(plan: Plan, settings: dict[str, Any]) -> Path:
    """``launch.json`` in the run folder: what ``main`` (or ``detach``) runs."""
    path = Path(plan.run_dir) / LAUNCH_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps({"plan": plan.to_dict(), "settings": settings}))
    return path


def launch_argv(function: str, path: Path) -> list[str]:
    """``python -c`` running ``function(path)`` of this module, from this very package."""
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
            f"from orchestrator.supervisor.lean import {function}; {function}(sys.argv[1])")
    return [sys.executable, "-c", code, str(PACKAGE_PARENT), str(path)]


def exec_launch(plan: Plan, settings: dict[str, Any]) -> int:
    """Replace this process with the lean supervisor of ``plan``; never returns unless exec fails.

    If the exec itself fails, the plan runs here instead (slower forks, same run).
    """
    argv = launch_argv("main", write_launch(plan, settings))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(OSError):  # no exec: the plan runs here, below
        os.execv(argv[0], argv)
    return _run(plan, settings, _Notify(settings.pop("notify_fd", None)))


def run_in_place(plan: Plan, settings: dict[str, Any]) -> int:
    """Run ``plan`` in this process, when it never loaded the validator (`topo up` of a
    kept plan); returns the run's code. Errors are the caller's, as for any command."""
    return _run(plan, settings, _Notify(None))


def detach(path: str) -> NoReturn:
    """The process ``orchestrator.up()`` starts for a plan it made: detach, then ``main``.

    A new session, and a second fork so that the supervisor is no session leader
    (its stdout and stderr are the run folder's ``supervisor.log`` already). The
    state file the caller's ``prepare`` wrote names the caller until the supervisor
    claims it here, first of all.
    """
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    run_dir = Path(path).parent
    write_state(run_dir, {**(read_state(run_dir) or {}), "supervisor": me()})
    main(path)


def main(path: str) -> NoReturn:
    """The exec'd process: run the plan in ``path``; exit with the run's code."""

    def load() -> tuple[Plan, dict[str, Any]]:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        os.unlink(path)
        return Plan.from_dict(doc["plan"]), doc["settings"]

    _serve(load)


def serve(plan: Plan, settings: dict[str, Any]) -> NoReturn:
    """Run ``plan`` in this process as ``main`` runs a launch file's, and exit with its
    code: the detached supervisor of `topo up -d` when the plan was kept (the process
    that forked it never loaded the validator, so there is nothing to exec away)."""
    _serve(lambda: (plan, settings))


def _serve(load: Callable[[], tuple[Plan, dict[str, Any]]]) -> NoReturn:
    code = 1
    notify = _Notify(None)
    try:
        plan, settings = load()
        notify = _Notify(settings.pop("notify_fd", None))
        code = _run(plan, settings, notify)
    except TopoError as exc:
        code = exc.exit_code
        print(f"topo: {exc}", file=sys.stderr)
        notify.tell({"ok": False, "error": str(exc), "code": exc.exit_code})
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - told to the waiting `topo`, logged for a bug report
        # deferred: traceback (linecache, tokenize) only on a bug, never in a supervisor that works
        import traceback

        traceback.print_exc()
        notify.tell({"ok": False, "error": "internal error in the supervisor: "
                     + traceback.format_exc(limit=1).strip().splitlines()[-1], "code": 1})
    finally:
        notify.tell({"ok": False, "code": 1,
                     "error": f"the run ended (code {code}) before every node was ready"})
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code & 0xFF)


def _run(plan: Plan, settings: dict[str, Any], notify: _Notify) -> int:
    # deferred: run.py and the rest load in the exec'd process, not in the `topo` it replaces
    from orchestrator.supervisor.run import Hooks, run_plan

    detached = notify.fd is not None
    hooks = Hooks(on_up=(lambda run_id: notify.tell({"ok": True, "run_id": run_id}))
                  if detached else None,
                  wait_timeout=settings.get("wait_timeout"), owner_pid=settings.get("owner_pid"),
                  json_events=bool(settings.get("json_events")),
                  ready_file=settings.get("ready_file"),
                  on_progress=notify.progress if detached and settings.get("progress") else None)
    # Detached: node output goes to the run's log files only.
    out = open(os.devnull, "wb") if detached else None  # noqa: SIM115 - closed below
    try:
        return run_plan(
            plan, timeout=settings.get("timeout"), exit_code_from=settings.get("exit_code_from"),
            abort_on_failure=bool(settings.get("abort_on_failure")),
            no_color=bool(settings.get("no_color")), out=out,
            reap_orphans=bool(settings.get("reap_orphans")), hooks=hooks)
    finally:
        if out is not None:
            out.close()


class _Notify:
    """The write end of `topo up -d`'s pipe: progress lines, then the answer, which closes it."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        if fd is not None:
            # Inheritable only to cross the exec into this process: no command node gets it.
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)

    def progress(self, doc: dict[str, object]) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.fd, json.dumps({"progress": doc}).encode() + b"\n")

    def tell(self, message: dict[str, Any]) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        with contextlib.suppress(OSError):
            os.write(fd, json.dumps(message).encode() + b"\n")
            os.close(fd)
