"""Validate a topology file, claim its run folder and resolve its plan; nothing starts yet.

Every way of starting a run begins here: `topo up` (foreground and ``-d``) and the
in-process runs of tests and the bench. What it returns, a ``Plan``, is all the
supervisor ever sees of the file.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from orchestrator import paths
from orchestrator.errors import UsageError
from orchestrator.plan import Plan
from orchestrator.runs.folder import create_run_dir, remove_run_dir
from orchestrator.spec.planner import plan_run
from orchestrator.spec.validate import load_or_raise

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def prepare(
    file: str | os.PathLike[str],
    *,
    run_id: str | None = None,
    exit_code_from: str | None = None,
    environ: Mapping[str, str] | None = None,
    err: BinaryIO | None = None,
    on_run_dir: Callable[[Path], None] | None = None,
) -> Plan:
    """Validate ``file``, claim its run folder and resolve its plan; nothing is started yet.

    Raises ``InvalidTopology``, ``UsageError`` (a bad run id or ``--exit-code-from``
    node) or ``RunAlive``. The folder is removed again if planning fails.
    ``on_run_dir(path)`` is called once the folder exists.
    """

    env = os.environ if environ is None else environ
    loaded = load_or_raise(file, env)
    topology = loaded.topology
    assert topology is not None
    err_stream = err if err is not None else sys.stderr.buffer
    for d in loaded.diagnostics:
        err_stream.write(f"{d.format()}\n".encode())
    err_stream.flush()
    run_id = run_id or topology.name
    if not _RUN_ID.match(run_id):
        raise UsageError(
            f"run id {run_id!r} may hold only letters, digits, '.', '_' and '-' "
            "(at most 64, starting with a letter or digit)")
    if exit_code_from is not None and exit_code_from not in topology.nodes:
        raise UsageError(
            f"--exit-code-from {exit_code_from}: the topology has no node by that name "
            f"(its nodes: {', '.join(topology.nodes)})")
    run_dir = paths.run_dir(run_id, env)
    create_run_dir(run_dir)
    try:
        if on_run_dir is not None:
            on_run_dir(run_dir)
        return plan_run(topology, Path(file).resolve(), run_id, run_dir, environ=env)
    except BaseException:
        remove_run_dir(run_dir)
        raise
