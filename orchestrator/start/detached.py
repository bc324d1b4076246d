"""`topo up -d`: start the supervisor detached, return once the run is up (or has failed).

The `topo` process validates the file (so diagnostics reach the terminal),
then forks; the child starts a new session and forks again, so the supervisor
is neither a session leader nor attached to any terminal, and its stdin,
stdout and stderr are ``/dev/null`` until the run folder exists, then the
folder's ``supervisor.log``. It plans the run and execs the lean supervisor
(``supervisor/lean.py``). A plan kept from an earlier `topo up` of the same
file (``spec/cache.py``) is neither checked nor planned again: `topo` shows its
warnings and claims its folder, and the detached child runs it in place, since
nothing it has loaded is the validator's. Node output goes to the run's log
files only.

The supervisor tells the waiting `topo` how the start went over a pipe, with
one JSON line: ``{"ok": true, "run_id": ...}`` once every node is ready, or
``{"ok": false, "error": ..., "code": N}`` after it has torn the run down again.
If the pipe closes without a word, the supervisor died. When stderr is a
terminal, ``{"progress": ...}`` lines come first, and one stderr line keeps up
with them (``starting 734/1000, ready 690; waiting on worker.17 (3.2 s)``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import NotReady, RunError, TopoError
from orchestrator.paths import SUPERVISOR_LOG
from orchestrator.plan import Plan
from orchestrator.runs.folder import me, read_state, remove_run_dir, write_state
from orchestrator.start.foreground import kept_plan
from orchestrator.supervisor.lean import exec_launch, launch_argv, serve, write_launch
from orchestrator.supervisor.runready import progress_line

if TYPE_CHECKING:
    from orchestrator.spec.group_run import GroupChoice


def up_detached(
    file: str,
    *,
    run_id: str | None = None,
    timeout: float | None = None,
    wait_timeout: float | None = None,
    abort_on_failure: bool = False,
    owner_pid: int | None = None,
    allow: Sequence[str] = (),
    group: GroupChoice | None = None,
    ready_file: str | None = None,
    keys: str | None = None,
    progress: bool = False,
    cache: bool = False,
) -> str:
    """Start ``file`` detached; return the run id once every node is ready.

    Raises ``InvalidTopology`` (nothing started), ``RunAlive``, or ``NotReady``
    naming the node that did not get ready (the run is gone again by then).
    ``progress``: keep a line on stderr up to date while the nodes start. ``cache``:
    start from the plan kept by an earlier `topo up` of the same file while nothing
    it depends on has changed, and keep this one (``spec/cache.py``), as the
    foreground does; never with ``group``, ``allow`` or ``keys``.
    """
    settings: dict[str, Any] = {
        "timeout": timeout, "owner_pid": owner_pid, "ready_file": ready_file,
        "wait_timeout": wait_timeout, "abort_on_failure": abort_on_failure,
        "progress": progress}
    entry = None
    if cache and group is None and not allow and keys is None:
        # deferred: the cache only for a run that may have a kept plan
        from orchestrator.spec.cache import PlanCache

        entry = PlanCache.for_up(file, run_id=run_id, exit_code_from=None)
    if entry is not None:
        plan = kept_plan(entry)  # its warnings shown and its run folder claimed, here
        if plan is not None:
            return _start(_kept_supervisor(plan), settings, in_place=True)
    # deferred: the model and pydantic, only when the file is checked and planned now
    from orchestrator.spec.run_endpoints import free_tcp_port
    from orchestrator.spec.validate import load_or_raise
    from orchestrator.start.prepare import prepare

    environ = os.environ if entry is None else entry.recording()
    loaded = load_or_raise(file, environ)
    warnings = "".join(f"{d.format()}\n" for d in loaded.diagnostics
                       if not d.is_note)  # notes are for `topo validate` and `explain`
    sys.stderr.write(warnings)
    ports: list[int] = []

    def allocate(host: str) -> int:  # a plan that picked a port is not the same next time
        ports.append(free_tcp_port(host))
        return ports[-1]

    def plan_now() -> Plan:  # in the detached child: the run folder and its log are its own
        plan = prepare(file, run_id=run_id, on_run_dir=_log_to, allow=allow, group=group,
                       keys=keys, loaded=loaded, environ=environ, allocate_port=allocate)
        if entry is not None and not ports and not plan.curve:
            entry.keep(plan.to_dict(), warnings.encode())
        return plan

    return _start(plan_now, settings, in_place=False)


def _kept_supervisor(plan: Plan) -> Callable[[], Plan]:
    """What the detached child does with a kept plan, whose folder this process claimed:
    log to the folder and name itself its supervisor (or give the folder up again)."""
    run_dir = Path(plan.run_dir)

    def claim() -> Plan:
        try:
            _log_to(run_dir)
            write_state(run_dir, {**(read_state(run_dir) or {}), "supervisor": me()})
        except BaseException:
            remove_run_dir(run_dir)
            raise
        return plan

    return claim


def _start(make_plan: Callable[[], Plan], settings: dict[str, Any], *, in_place: bool) -> str:
    """Fork the detached supervisor, which runs ``make_plan()``; wait for its answer."""
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which ends with os._exit
        os.close(r)
        _become_supervisor(w, make_plan, settings, in_place=in_place)
        os._exit(1)  # not reached: the child execs or exits
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        os.waitpid(pid, 0)  # the first child exits as soon as it has forked the supervisor
        return _run_id(_answer(pipe, show=bool(settings["progress"])))


def run_detached(plan: Plan, settings: dict[str, Any], environ: Mapping[str, str]) -> str:
    """Run a plan made in this process detached, as ``up_detached`` does; return the run id.

    For ``orchestrator.up()``, which has validated and planned already: a ``python``
    started afresh (so nothing forks from the caller, which may have threads) detaches
    and runs the plan, without loading the validator again. Raises ``NotReady``.
    """
    run_dir = Path(plan.run_dir)
    r, w = os.pipe()
    log = -1
    try:
        launch = write_launch(plan, {**settings, "reap_orphans": True, "notify_fd": w})
        log = os.open(run_dir / SUPERVISOR_LOG,
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        first = subprocess.Popen(launch_argv("detach", launch), env=dict(environ),
                                 pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    except BaseException:
        os.close(r)
        remove_run_dir(run_dir)  # nothing runs it: the folder prepare claimed goes
        raise
    finally:
        os.close(w)
        if log >= 0:
            os.close(log)
    with os.fdopen(r, "rb") as pipe:
        first.wait()  # it exits as soon as it has forked the supervisor
        line = _answer(pipe, show=False)
    if not line and launch.exists():  # never read: no supervisor ran the plan
        said = _last_line(run_dir / SUPERVISOR_LOG)
        remove_run_dir(run_dir)
        raise RunError("the supervisor could not start" + (f": {said}" if said else ""))
    return _run_id(line)


def _last_line(path: Path) -> str:
    """The last error a log says (a traceback's last line, Python's fatal error), else its
    last unindented line."""
    try:
        lines = [x for x in path.read_text(errors="replace").splitlines()
                 if x.strip() and not x[:1].isspace()]
    except OSError:
        return ""
    errors = [x for x in lines if "rror" in x]
    return (errors or lines or [""])[-1]


def _run_id(line: bytes) -> str:
    """The run id in the supervisor's answer; raises what its failure says."""
    try:
        answer: Any = json.loads(line)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise RunError("the supervisor died before the run was up; nothing of it should be left "
                       "(check with `topo ls`)")
    if answer.get("ok"):
        return str(answer["run_id"])
    error = NotReady(str(answer.get("error", "the run did not come up")))
    error.exit_code = int(answer.get("code", 1))
    raise error


def _answer(pipe: Any, *, show: bool) -> bytes:
    """The supervisor's answer line; the progress lines before it drawn on stderr."""
    drawn = False
    try:
        for line in pipe:
            try:
                doc = json.loads(line)
            except ValueError:
                return bytes(line)
            if isinstance(doc, dict) and isinstance(doc.get("progress"), dict):
                if show:
                    sys.stderr.write("\r\x1b[K" + progress_line(doc["progress"]))
                    sys.stderr.flush()
                    drawn = True
                continue
            return bytes(line)
        return b""
    finally:
        if drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _become_supervisor(w: int, make_plan: Callable[[], Plan], settings: dict[str, Any], *,
                       in_place: bool) -> None:  # pragma: no cover - the forked child
    code = 1
    try:
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        _to_devnull()
        plan = make_plan()
        settings = {**settings, "reap_orphans": True, "notify_fd": w}
        if in_place:  # this process never loaded the validator: it supervises the plan itself
            serve(plan, settings)
        os.set_inheritable(w, True)
        code = exec_launch(plan, settings)
    except TopoError as exc:
        code = exc.exit_code
        _tell(w, {"ok": False, "error": str(exc), "code": exc.exit_code})
    except BaseException:  # noqa: BLE001 - told to the waiting `topo`, logged for a bug report
        # deferred: traceback (linecache, tokenize) only on a bug
        import traceback

        traceback.print_exc()
        _tell(w, {"ok": False, "error": "internal error in the supervisor: "
                  + traceback.format_exc(limit=1).strip().splitlines()[-1], "code": 1})
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code & 0xFF)


def _tell(w: int, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(w, json.dumps(message).encode() + b"\n")


def _to_devnull() -> None:
    fd = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(fd, target)
    os.close(fd)


def _log_to(run_dir: Path) -> None:
    fd = os.open(run_dir / SUPERVISOR_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
