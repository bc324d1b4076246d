"""`topo export kubernetes --explain`: the export's decisions in words, instead of YAML.

Per group: which link put which nodes together (the ``Join`` lines), the workload
kind and why, the Service and its ports, what it waits for, and the notes.
"""

from __future__ import annotations

from orchestrator.export.workloads import Export, Workload
from orchestrator.export.yamlout import WIDTH, wrap


def explain_export(export: Export, file: str) -> str:
    topology = export.topology
    count = len(export.workloads)
    lines = [f"Topology {topology.name} ({file}): {count} group{'s' * (count != 1)}, each one "
             "workload whose container runs `topo up FILE --group GROUP`.", ""]
    for work in export.workloads:
        lines += _group(work)
        lines.append("")
    return "\n".join(_wrap(lines)).rstrip("\n") + "\n"


def _group(work: Workload) -> list[str]:
    group = work.group
    lines = [f"Group {work.name}: {', '.join(group.nodes)}"]
    if group.joins:
        lines += [f"  {j}" for j in group.joins]
    else:
        lines.append(f"  {group.nodes[0]} alone: no ipc or inproc link, System V resource, "
                     "socket pair or fifo ties it to another node")
    pods = f"{work.pods} pod{'s' * (work.pods != 1)}"
    lines.append(f"  {work.kind} {work.name}, {pods}: {work.why}")
    if work.ports:
        kind = "headless Service" if work.headless else "Service"
        ports = ", ".join(f"{p.port} ({p.name}: {p.node}"
                          f"{f'.{p.replica}' if work.per_pod else ''}.{p.socket})"
                          for p in work.ports)
        lines.append(f"  {kind} {work.name}: {ports}; reached as {_hosts(work)}")
    elif work.service:
        lines.append(f"  headless Service {work.name}, no ports: no other group connects to "
                     "it, but others wait for it (it lists the group's pods once they are "
                     "Ready)")
    else:
        lines.append("  no Service: no other group connects to it or waits for it")
    for wait in work.waits:
        lines.append(f"  waits for {', '.join(wait.targets)} ({wait.node} depends_on {wait.on})")
    lines += [f"  note: {n}" for n in work.notes]
    return lines


def _hosts(work: Workload) -> str:
    if work.headless:
        return f"{work.name}-N.{work.name} (N = 0..{work.pods - 1})"
    return work.name


def _wrap(lines: list[str]) -> list[str]:
    return [w for line in lines for w in wrap(line, WIDTH)]
