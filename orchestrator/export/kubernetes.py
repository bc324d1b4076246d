"""`topo export kubernetes FILE --image IMAGE`: the same topology file as Kubernetes manifests.

One multi-document YAML for ``kubectl apply -f``: a comment header (the topology,
its groups and why each node joined its group, the fixed ports), then per group a
Service (when other groups connect to it) and a workload whose container runs
``topo up FILE --group GROUP`` (``workloads`` decides, ``manifests`` writes).

Refused, with diagnostics and exit 1, before anything is written: a file with
errors, and what cannot cross hosts (E15x, ``spec/checks/hosts.py``). A CURVE
topology's pods mount the keys of ``topo keys --make`` from objects the user makes (the
header says how): every public key from the ConfigMap ``TOPOLOGY-public-keys``, the
secret keys of the group's nodes from its Secret ``TOPOLOGY-GROUP-keys``. No key is in
the output, which stays the same bytes.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TextIO

import yaml

from orchestrator.errors import InvalidTopology, UsageError
from orchestrator.export.explain import explain_export
from orchestrator.export.manifests import KEYS_DIR, Target, documents, keys_commands
from orchestrator.export.workloads import Export, plan_export, variables_used
from orchestrator.export.yamlout import Verbatim, render
from orchestrator.spec.checks.hosts import check_hosts
from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.groups import PORT_BASE
from orchestrator.spec.model import Topology
from orchestrator.spec.source import SourceMap
from orchestrator.spec.validate import load_or_raise

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_VAR = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*))")


@dataclass
class Exported:
    text: str  # the manifests, or the --explain text
    notes: list[str]  # what has no faithful form, one line each (also in the text)
    export: Export
    warnings: list[str] = field(default_factory=list)  # W25x of the hosts check, formatted


def export_kubernetes(file: str | os.PathLike[str], *, image: str | None,
                      namespace: str | None = None, workdir: str = "/app",
                      explain: bool = False, environ: Mapping[str, str] | None = None,
                      cwd: str | os.PathLike[str] | None = None) -> Exported:
    """The manifests of ``file`` (or, with ``explain``, the decisions in words).

    ``cwd`` is the folder the image holds at ``workdir`` (default: the current one);
    ``file`` must be inside it. Raises ``InvalidTopology`` (exit 1) for a file with
    errors or one that cannot cross hosts, and ``UsageError`` (exit 2) for bad
    arguments.
    """
    env = os.environ if environ is None else environ
    if not explain and not image:
        raise UsageError("export kubernetes: --image IMAGE is required: the image that holds "
                         "the project, with topo installed, that every container runs")
    if namespace is not None and not _LABEL.fullmatch(namespace):
        raise UsageError(f"--namespace {namespace}: a namespace is a DNS label (at most 63 of "
                         "a-z, 0-9 and '-', a letter or digit at both ends)")
    if not PurePosixPath(workdir).is_absolute():
        raise UsageError(f"--workdir {workdir}: the image's folder must be an absolute path")
    root = Path(cwd) if cwd is not None else Path.cwd()
    in_image = _path_in_image(Path(file), root)
    loaded = load_or_raise(file, env)
    topology = loaded.topology
    assert topology is not None  # load_or_raise raises when the file has errors
    said = host_checks(topology, loaded.source, root)
    refused = [d for d in said if d.is_error]
    if refused:
        raise InvalidTopology(refused)
    warnings = [d.format() for d in said if not d.is_error]
    export = plan_export(topology)
    variables = variables_used(_referenced(Path(file)), env)
    notes = [f"{w.name}: {n}" for w in export.workloads for n in w.notes]
    if explain:
        return Exported(explain_export(export, in_image), notes, export, warnings)
    target = Target(image or "", in_image, workdir, namespace, variables,
                    topology.security.curve)
    text = render(header(export, target), documents(export, target))
    return Exported(text, notes, export, warnings)


def run_export(file: str, *, image: str | None, out: str | None = None,
               namespace: str | None = None, workdir: str = "/app", explain: bool = False,
               stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """The command: the text to ``out`` (or stdout), each note on stderr; exit 0."""
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    done = export_kubernetes(file, image=image, namespace=namespace, workdir=workdir,
                             explain=explain)
    if out is None or explain:
        stdout.write(done.text)
    else:
        try:
            Path(out).write_text(done.text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"-o {out}: cannot write it ({exc.strerror})") from None
    for warning in done.warnings:
        stderr.write(f"{warning}\n")
    if not explain:
        for note in done.notes:
            stderr.write(f"note: {note}\n")
    return 0


def host_checks(topology: Topology, source: SourceMap, root: Path) -> list[Diagnostic]:
    """E15x / W25x: what cannot cross hosts (external ipc endpoints, a cwd or program outside
    ``root``, the folder the image holds), from ``spec/checks/hosts.py``."""
    return check_hosts(topology, source, root)


def _path_in_image(file: Path, root: Path) -> str:
    rel = os.path.relpath(file.resolve(), root.resolve())
    if rel == ".." or rel.startswith(f"..{os.sep}"):
        raise UsageError(f"{file} is outside {root}: run `topo export` from the project "
                         "folder that the image holds at --workdir")
    return PurePosixPath(*Path(rel).parts).as_posix()


def _referenced(file: Path) -> list[str]:
    """The ``${VAR}`` names in the file's values (not in its comments)."""
    text = file.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:  # topo's loader took it; fall back to the whole text
        return [m.group(2) for m in _VAR.finditer(text) if m.group(2)]
    names: list[str] = []
    todo = [node] if node is not None else []
    while todo:
        n = todo.pop()
        if isinstance(n, yaml.ScalarNode):
            names += [m.group(2) for m in _VAR.finditer(str(n.value)) if m.group(2)]
        elif isinstance(n, yaml.SequenceNode):
            todo += n.value
        elif isinstance(n, yaml.MappingNode):
            todo += [v for _, v in n.value]
    return names


def header(export: Export, target: Target) -> list[str]:
    topology = export.topology
    lines = [
        f"Kubernetes manifests of topology {topology.name} ({target.file}), made by "
        "`topo export kubernetes`; apply them with `kubectl apply -f`.",
        f"Every container runs the image {target.image} (the project at {target.workdir}, "
        f"with topo installed): `topo up {target.file} --group GROUP`, topo's own supervisor "
        "for that group, so restarts, readiness and IPC inside a pod work as on one machine.",
        "",
        "Groups: nodes joined by ipc or inproc, a System V resource, a socket pair or a fifo "
        "must share a host; each group is one workload.",
    ]
    for group in export.grouping.groups:
        lines.append(f"  {group.name}: {', '.join(group.nodes)}")
        lines += [f"    {j}" for j in group.joins]
    if export.ports:
        exposed = {(p.node, p.socket, p.bind_index, p.replica)
                   for w in export.workloads for p in w.ports}
        lines += ["", f"Fixed ports for the wildcard tcp binds (from {PORT_BASE}, in file "
                      "order; the same file always gets the same ports):"]
        for (node, sock, i, r), port in export.ports.items():
            spec = topology.nodes[node]
            binds = sum(ep.transport == "tcp" for ep in spec.sockets[sock].bind)
            where = (f"bind {i} " if binds > 1 else "") + (
                f"replica {r} " if spec.replicas > 1 else "")
            seen = "its group's Service" if (node, sock, i, r) in exposed else "inside its pod"
            lines.append(f"  {node}.{sock} {where}: {port} ({seen})".replace(" :", ":"))
    if target.curve:
        lines += ["", "CURVE (security: {curve: true}): every pod mounts at "
                      f"{KEYS_DIR} every node's public key from a ConfigMap (0444) and the "
                      "secret keys of its own group's nodes from the group's Secret (0400), "
                      "so the pods authenticate each other as on one machine; make them once, "
                      "before applying these:",
                  Verbatim(f"  topo keys --make keys/ {target.file}")]
        lines += [Verbatim(f"  {c}") for c in keys_commands(export, target)]
        lines.append("Secret keys are 0400 and belong to root: the usual image runs as root; "
                     "one that runs as another user needs runAsUser: 0, or its own "
                     "defaultMode or fsGroup.")
    if target.variables:
        lines += ["", f"Set when it was exported: {', '.join(target.variables)}; every "
                      "container gets the same values, so that it reads the file the same way."]
    return lines
