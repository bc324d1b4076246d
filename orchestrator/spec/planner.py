"""Topology -> Plan: every endpoint, folder and variable resolved before anything starts.

Pure except for the injected port allocator: the same topology, run id, run
folder and allocator give the same plan. The topology is assumed valid (the
validator ran first); what cannot be planned still raises ``RunError`` with a
sentence rather than a ``KeyError``.

The endpoints are ``run_endpoints``'s business (ports, ipc paths in the run folder,
references); this module adds what else a replica needs (folder, environment, log
and spec paths), the supervisor's view of each node, the IPC resources and the
dependency tiers (``depgraph``).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.certs import SECRET_SUFFIX
from orchestrator.errors import RunError
from orchestrator.paths import KEYS_DIR
from orchestrator.plan import (
    BackoffPlan,
    IpcPlan,
    NodePlan,
    Plan,
    ReadyPlan,
    ReplicaPlan,
    SocketPlan,
)
from orchestrator.spec.depgraph import dependency_order
from orchestrator.spec.model import IpcSpec, NodeSpec, Topology
from orchestrator.spec.run_endpoints import (
    PortAllocator,
    RunEndpoints,
    check_ipc_lengths,
    free_tcp_port,
)
from orchestrator.spec.security import CurveLinks
from orchestrator.structs import replace

if TYPE_CHECKING:
    from orchestrator.spec.group_run import GroupRun


def plan_run(
    topology: Topology,
    file: Path,
    run_id: str,
    run_dir: Path,
    *,
    environ: Mapping[str, str] | None = None,
    allocate_port: PortAllocator = free_tcp_port,
    curve_keys: Mapping[str, str] | None = None,
    allow: Sequence[str] = (),
    group: GroupRun | None = None,
    keys_dir: str | None = None,
) -> Plan:
    """Resolve ``topology`` into a ``Plan`` for run ``run_id`` living in ``run_dir``.

    ``environ`` only serves ``~`` in ``cwd`` and ``pythonpath`` (HOME); node
    environments hold the node's ``env`` plus ``TOPO_*``, never the caller's
    environment (the spawner merges that underneath).

    ``curve_keys``: with ``security.curve``, each node's public key (Z85), whose secret
    file is ``keys/NODE.key_secret`` in the run folder; ``allow``: the public keys of
    clients from outside (``security.allow`` and ``--allow``, read already); ``keys_dir``:
    where the secret files are, when not in the run folder (``topo up --keys DIR``).

    ``group``: plan only that group of the topology, reaching the others over tcp
    (``topo up --group``, ``group_run.py``).
    """
    environ = os.environ if environ is None else environ
    file = Path(os.path.abspath(file))
    base = str(file.parent)
    rdir = os.path.abspath(run_dir)
    endpoints = RunEndpoints(topology, rdir, allocate_port, group)
    curve = None
    if topology.security.curve:
        if curve_keys is None:
            raise RunError("security.curve is on, but the run has no keys")
        curve = CurveLinks(topology, curve_keys, allow,
                           group.links if group is not None else None)
    replicas: list[ReplicaPlan] = []
    for name, node in topology.nodes.items():
        cwd = _folder(node.cwd or ".", base, environ)
        for i in range(node.replicas):
            if group is not None and not group.runs(name, i):
                continue
            sockets = endpoints.sockets(name, node, i, curve)
            replica = _replica(run_id, rdir, name, i, node, cwd, sockets)
            if curve is not None:
                replica = _with_keys(replica, keys_dir or posixpath.join(rdir, KEYS_DIR),
                                     curve.keys[name])
            replicas.append(replica)
    check_ipc_lengths(replicas, run_id)
    mine = set(topology.nodes) if group is None else set(group.nodes)
    used = {res for n in mine for res in topology.nodes[n].ipc}
    return Plan(
        run_id=run_id,
        run_dir=rdir,
        file=str(file),
        replicas=tuple(replicas),
        ipc={name: ipc_plan(name, spec, base, rdir, environ)
             for name, spec in topology.ipc.items() if group is None or name in used},
        tiers=_only(dependency_tiers(topology), mine),
        pythonpath=_pythonpath(topology, base, environ),
        curve=curve is not None,
        nodes={name: node_plan(node) for name, node in topology.nodes.items() if name in mine},
    )


def _only(tiers: tuple[tuple[str, ...], ...], nodes: set[str]) -> tuple[tuple[str, ...], ...]:
    kept = (tuple(n for n in tier if n in nodes) for tier in tiers)
    return tuple(t for t in kept if t)


def node_plan(node: NodeSpec) -> NodePlan:
    """The supervisor's view of a node: restart policy, stop timeout, depends_on, readiness."""
    ready = None
    if node.ready is not None:
        r = node.ready
        ready = ReadyPlan(kind=r.kind, timeout=float(r.timeout), tcp=r.tcp, ipc=r.ipc,
                          file=r.file, log=r.log,
                          command=tuple(r.command) if r.command is not None else None)
    b = node.backoff
    return NodePlan(
        restart=node.restart, backoff=BackoffPlan(float(b.initial), float(b.factor), float(b.max)),
        max_restarts=int(node.max_restarts), restart_window=float(node.restart_window),
        stop_timeout=float(node.stop_timeout), depends_on=tuple(node.depends_on), ready=ready)


def dependency_tiers(topology: Topology) -> tuple[tuple[str, ...], ...]:
    """Topological levels of ``depends_on``: tier 0 depends on nothing; file order within a tier."""
    order = dependency_order({name: node.depends_on for name, node in topology.nodes.items()})
    if order.unknown:
        raise RunError(f"depends_on names node {order.unknown[0].name}, which does not exist")
    if order.cycles:
        raise RunError(f"depends_on forms a cycle through node {order.cycles[0].nodes[0]}")
    return order.tiers


def ipc_plan(
    name: str, spec: IpcSpec, base: str, run_dir: str, environ: Mapping[str, str]
) -> IpcPlan:
    """One ``ipc:`` resource planned: explicit keys kept, ``auto`` and ``ftok:`` resolved at
    creation (they depend on the machine), an ftok path made absolute, a fifo in the run folder.
    """
    key, key_from = (spec.key, "") if isinstance(spec.key, int) else (None, spec.key)
    if key_from.startswith("ftok:"):
        path, _, char = key_from[len("ftok:"):].rpartition(":")
        key_from = f"ftok:{_folder(path, base, environ)}:{char}"
    sysv = spec.type in ("msgqueue", "shm", "semaphore")
    return IpcPlan(
        name=name,
        type=spec.type,
        key=key if sysv else None,
        key_from=key_from if sysv else "",
        mode=spec.mode,
        size=spec.size,
        max_bytes=spec.max_bytes,
        value=spec.value,
        path=posixpath.join(run_dir, "fifo", name) if spec.type == "fifo" else None,
        between=tuple(spec.between or ()),
    )


def socket_env_name(socket_name: str) -> str:
    """``in-jobs`` -> ``TOPO_SOCKET_IN_JOBS``."""
    return "TOPO_SOCKET_" + socket_name.upper().replace("-", "_")


# -- a replica beyond its sockets: folder, environment, files -------------------------------------


def _replica(
    run_id: str, run_dir: str, name: str, i: int, node: NodeSpec, cwd: str,
    sockets: tuple[SocketPlan, ...],
) -> ReplicaPlan:
    env = dict(node.env)
    env.update(TOPO_RUN=run_id, TOPO_NODE=name, TOPO_REPLICA=str(i), TOPO_RUN_DIR=run_dir)
    # Only an exec'd program reads its plan from a file: a forked node has it in memory,
    # and a file per replica written and removed showed in the profile of a large start.
    spec_path = ""
    if node.kind == "command":
        spec_path = env["TOPO_SPEC"] = posixpath.join(run_dir, "spec", f"{name}.{i}.json")
    for s in sockets:
        key = socket_env_name(s.name)
        env[key] = ",".join(s.bind + s.connect)
        env[key + "_TYPE"] = s.type
        env[key + "_MODE"] = s.mode
        if s.bind and s.connect:  # both: say which is which
            env[key + "_BIND"] = ",".join(s.bind)
            env[key + "_CONNECT"] = ",".join(s.connect)
    return ReplicaPlan(
        node=name,
        replica=i,
        kind=node.kind,
        role=node.role,
        run=node.run,
        argv=tuple(node.command) if node.command is not None else None,
        params=dict(node.with_),
        cwd=cwd,
        env=env,
        sockets=sockets,
        ipc=tuple(node.ipc),
        log_path=posixpath.join(run_dir, "logs", f"{name}.{i}.log"),
        spec_path=spec_path,
        stop_signal=node.stop_signal,
    )


def _with_keys(replica: ReplicaPlan, keys_dir: str, public: str) -> ReplicaPlan:
    """A replica of a CURVE run: its key files, and the TOPO_CURVE_* a command node reads."""
    secret_file = posixpath.join(keys_dir, f"{replica.node}{SECRET_SUFFIX}")
    env = dict(replica.env, TOPO_CURVE_SECRET_FILE=secret_file, TOPO_CURVE_PUBLIC_KEY=public)
    for s in replica.sockets:
        if s.serverkeys:
            env[socket_env_name(s.name) + "_SERVERKEY"] = ",".join(s.serverkeys)
    return replace(replica, env=env, curve_secret_file=secret_file, curve_public_key=public)


def _folder(path: str, base: str, environ: Mapping[str, str]) -> str:
    home = environ.get("HOME")
    if home and (path == "~" or path.startswith("~/")):
        path = home + path[1:]
    return os.path.normpath(os.path.join(base, path))


def _pythonpath(topology: Topology, base: str, environ: Mapping[str, str]) -> tuple[str, ...]:
    if topology.pythonpath is None:
        folders = [base, os.getcwd()]
    else:
        folders = [_folder(p, base, environ) for p in topology.pythonpath]
    return tuple(dict.fromkeys(folders))
