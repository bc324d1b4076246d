"""Validate a topology file, claim its run folder and resolve its plan; nothing starts yet.

Every way of starting a run begins here: `topo up` (foreground and ``-d``) and the
in-process runs of tests and the bench. What it returns, a ``Plan``, is all the
supervisor ever sees of the file.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from orchestrator import paths
from orchestrator.certs import (
    PUBLIC_SUFFIX,
    SECRET_SUFFIX,
    KeyFileError,
    make_keys,
    read_public,
)
from orchestrator.errors import RunError, UsageError
from orchestrator.plan import Plan
from orchestrator.runs.folder import create_run_dir, remove_run_dir
from orchestrator.spec.group_run import GroupChoice
from orchestrator.spec.loader import Loaded
from orchestrator.spec.model import Topology
from orchestrator.spec.planner import plan_run
from orchestrator.spec.validate import load_or_raise

if TYPE_CHECKING:
    import argparse

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def prepare(
    file: str | os.PathLike[str],
    *,
    run_id: str | None = None,
    exit_code_from: str | None = None,
    environ: Mapping[str, str] | None = None,
    err: BinaryIO | None = None,
    on_run_dir: Callable[[Path], None] | None = None,
    allow: Sequence[str | os.PathLike[str]] = (),
    group: GroupChoice | None = None,
    keys: str | os.PathLike[str] | None = None,
    loaded: Loaded | None = None,
    allocate_port: Callable[[str], int] | None = None,
) -> Plan:
    """Validate ``file``, claim its run folder and resolve its plan; nothing is started yet.

    Raises ``InvalidTopology``, ``UsageError`` (a bad run id or ``--exit-code-from``
    node), ``RunError`` (an ``--allow`` key file that cannot be read, a key folder that
    cannot be made) or ``RunAlive``. The folder is removed again if planning fails.
    ``on_run_dir(path)`` is called once the folder exists. ``allow``: public key files of
    clients from outside (``topo up --allow``), for a topology with ``security.curve``.
    ``group``: run only that group (``topo up --group``); its run id defaults to
    ``TOPOLOGY-GROUP`` (``TOPOLOGY-GROUP-N`` with ``--replica N``). ``keys``: a folder
    holding every node's key files, made before (``topo keys --make``); the run then makes
    none (``topo up --keys``, what the groups of an exported run share). ``loaded``: the
    file validated already (by the `topo` that forked this process), so it is not read and
    checked twice; its diagnostics were shown. ``allocate_port(host)``: picks the free
    port of a ``tcp://host:*`` bind (``run_endpoints.free_tcp_port`` by default).
    """

    env = os.environ if environ is None else environ
    if loaded is None:
        loaded = load_or_raise(file, env)
        err_stream = err if err is not None else sys.stderr.buffer
        for d in loaded.diagnostics:
            if not d.is_note:  # notes are for `topo validate` and `explain`: nothing to act on
                err_stream.write(f"{d.format()}\n".encode())
        err_stream.flush()
    topology = loaded.topology
    assert topology is not None
    part = group.of(topology) if group is not None else None
    if keys is not None and not topology.security.curve:
        raise UsageError("--keys gives the nodes CURVE keys, but this topology does not use "
                         "CURVE (set security: {curve: true})")
    if part is not None and topology.security.curve and keys is None:
        raise UsageError("--group of a topology with security.curve needs --keys DIR: every "
                         "group must know the others' public keys (`topo keys --make DIR FILE` "
                         "makes them once)")
    given = None
    if keys is not None:
        given = _read_keys(Path(keys), topology.nodes)
        _check_secrets(Path(keys), topology.nodes if part is None else part.group.nodes)
    run_id = run_id or (topology.name if part is None else part.run_id(topology.name))
    if not _RUN_ID.match(run_id):
        raise UsageError(
            f"run id {run_id!r} may hold only letters, digits, '.', '_' and '-' "
            "(at most 64, starting with a letter or digit)")
    nodes = list(topology.nodes) if part is None else list(part.group.nodes)
    if exit_code_from is not None and exit_code_from not in nodes:
        where = "topology" if part is None else f"group {part.name}"
        raise UsageError(
            f"--exit-code-from {exit_code_from}: the {where} has no node by that name "
            f"(its nodes: {', '.join(nodes)})")
    outside = _allowed_keys(topology, Path(file).resolve().parent, allow)
    run_dir = paths.run_dir(run_id, env)
    create_run_dir(run_dir)
    try:
        if on_run_dir is not None:
            on_run_dir(run_dir)
        made = given
        if made is None and topology.security.curve:
            made = _make_keys(run_dir, topology.nodes)
        return plan_run(topology, Path(file).resolve(), run_id, run_dir, environ=env,
                        curve_keys=made, allow=outside, group=part,
                        keys_dir=os.path.abspath(keys) if keys is not None else None,
                        **({} if allocate_port is None else {"allocate_port": allocate_port}))
    except BaseException:
        remove_run_dir(run_dir)
        raise


def _allowed_keys(topology: Topology, base: Path,
                  files: Sequence[str | os.PathLike[str]]) -> tuple[str, ...]:
    """The public keys of ``security.allow`` (relative to the file) and ``--allow``."""
    if files and not topology.security.curve:
        raise UsageError("--allow gives a client key to CURVE servers, but this topology does "
                         "not use CURVE (set security: {curve: true})")
    paths_ = [base / p for p in topology.security.allow] + [Path(p) for p in files]
    try:
        return tuple(dict.fromkeys(read_public(p) for p in paths_))
    except KeyFileError as exc:
        raise RunError(f"cannot use the allowed client key: {exc}") from None


def _read_keys(folder: Path, nodes: Iterable[str]) -> dict[str, str]:
    """Every node's public key from ``folder`` (``NODE.key``); the secrets stay in their files."""
    try:
        return {n: read_public(folder / f"{n}{PUBLIC_SUFFIX}") for n in nodes}
    except KeyFileError as exc:
        raise RunError(f"--keys {folder}: {exc}") from None


def _check_secrets(folder: Path, nodes: Iterable[str]) -> None:
    """Each node this run starts has its secret file in ``folder``, unreadable to others."""
    for n in nodes:
        path = folder / f"{n}{SECRET_SUFFIX}"
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError as exc:
            raise RunError(f"--keys {folder}: node {n} has no secret key file {path} "
                           f"({exc.strerror})") from None
        if mode & 0o007:
            raise RunError(f"--keys {folder}: {path} can be read by every user (mode "
                           f"{mode:04o}); make it private first: chmod 600 {path}")


def _make_keys(run_dir: Path, nodes: Iterable[str]) -> dict[str, str]:
    try:
        return make_keys(run_dir / paths.KEYS_DIR, nodes)
    except OSError as exc:
        raise RunError(f"cannot make the run's CURVE keys in {run_dir / paths.KEYS_DIR}: "
                       f"{exc.strerror}") from None


def group_choice(args: argparse.Namespace) -> GroupChoice | None:
    """`--group`, `--replica` and `--resolve` of `topo up`, checked together."""
    if args.group is None:
        if args.replica is not None or args.resolve:
            raise UsageError("--replica and --resolve go with --group")
        return None
    return GroupChoice(args.group, args.replica, tuple(args.resolve))
