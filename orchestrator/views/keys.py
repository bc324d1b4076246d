"""`topo keys RUN [NODE]`: the CURVE public keys of a run's nodes, in Z85.

A run with ``security: {curve: true}`` has one key pair per node: made in ``keys/``
of its folder (``NODE.key``, by ``start/prepare.py``), or taken from ``topo up --keys
DIR``. Its state file records each node's public key (``curve_keys``, in the order of
the file); until the supervisor has written it (a run still starting), the certificates
in ``keys/`` are read instead. This prints them as ``NODE  KEY`` lines, or only the key
of NODE. An outside client needs the key of the node it connects to (its server key),
and the run's servers let it in only when its own key was allowed (``security.allow``,
``topo up --allow``).

``topo keys --make DIR FILE`` makes the key pairs of FILE's nodes once, in a new folder
DIR, for runs that share them: the groups of one exported run (``topo up --group G
--keys DIR``).

Exit status: 0 done; 1 the run is unknown, does not use CURVE, has no node NODE, or a
key file cannot be read; 2 bad arguments. Each failure is one sentence on stderr.
"""

from __future__ import annotations

from typing import Any

from orchestrator.certs import PUBLIC_SUFFIX, KeyFileError, is_z85_key, make_keys, read_public
from orchestrator.errors import ControlError, RunError, UsageError
from orchestrator.paths import KEYS_DIR
from orchestrator.runs.client import Run, find_run, print_table


def keys(target: str, node: str | None = None) -> int:
    run = find_run(target)
    found = public_keys(run)
    if node is None:
        print_table([[name, key] for name, key in found.items()])
        return 0
    name = node if node in found else _node_of_replica(node)
    if name not in found:
        raise ControlError(f"run {run.run_id} has no node named {node} "
                           f"(its nodes: {', '.join(found)})")
    print(found[name])
    return 0


def public_keys(run: Run) -> dict[str, str]:
    """Each node's public key (Z85), in the order of the topology file.

    Raises ``ControlError`` when the run has no keys (it does not use CURVE, or its
    key folder is gone), ``RunError`` when a key file cannot be read.
    """
    recorded = (run.state or {}).get("curve_keys")
    if isinstance(recorded, dict) and recorded and all(
            isinstance(k, str) and isinstance(v, str) and is_z85_key(v)
            for k, v in recorded.items()):
        return dict(recorded)
    folder = run.folder / KEYS_DIR
    try:
        names = [p.name.removesuffix(PUBLIC_SUFFIX) for p in folder.iterdir()
                 if p.name.endswith(PUBLIC_SUFFIX)]
    except OSError:
        names = []
    if not names:
        if (run.state or {}).get("curve"):
            raise ControlError(f"run {run.run_id} uses CURVE, but its keys are gone "
                               f"(nothing in {folder})")
        raise ControlError(f"run {run.run_id} does not use CURVE (its topology has no "
                           "`security: {curve: true}`), so it has no keys")
    keys: dict[str, str] = {}
    for name in _file_order(names, run.state or {}):
        try:
            keys[name] = read_public(folder / f"{name}{PUBLIC_SUFFIX}")
        except KeyFileError as exc:
            raise RunError(f"cannot read the key of node {name} of run {run.run_id}: "
                           f"{exc}") from None
    return keys


def _file_order(names: list[str], state: dict[str, Any]) -> list[str]:
    """``names`` as the file lists its nodes (the state file's replicas are in plan order);
    what the state does not name (a run still starting) follows, sorted."""
    replicas = state.get("replicas") or state.get("endpoints")
    order: dict[str, None] = {}
    for replica, record in replicas.items() if isinstance(replicas, dict) else ():
        node = record.get("node") if isinstance(record, dict) else None
        order[node if isinstance(node, str) else _node_of_replica(replica)] = None
    known = set(names)
    first = [n for n in order if n in known]
    return first + sorted(known.difference(first))


def _node_of_replica(name: str) -> str:
    """``worker.1`` -> ``worker`` (all replicas of a node share its key); else ``name``."""
    node, dot, index = name.rpartition(".")
    return node if dot and index.isdigit() else name


def make(folder: str, file: str) -> int:
    """`topo keys --make DIR FILE`: a key pair per node of FILE in the new folder DIR."""
    # deferred: the file model, which printing keys never needs
    from orchestrator.spec.validate import load_or_raise

    topology = load_or_raise(file).topology
    assert topology is not None  # load_or_raise raises when the file has errors
    if not topology.security.curve:
        raise UsageError(f"{file} does not use CURVE (security: {{curve: true}}), so its runs "
                         "would not take these keys")
    try:
        made = make_keys(folder, topology.nodes)
    except FileExistsError:
        raise RunError(f"{folder} exists already: --make makes a new folder, so that no key "
                       "is ever reused or overwritten") from None
    except OSError as exc:
        raise RunError(f"cannot make the key folder {folder}: {exc.strerror}") from None
    print(f"made {len(made)} key pairs in {folder} (secrets 0600, the folder 0700): "
          f"`topo up {file} --keys {folder}`")
    return 0
