"""What every check pass works on: the topology, where its parts sit, and the findings so far."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.model import Topology
from orchestrator.spec.source import PathKey, SourceMap


@dataclass
class Context:
    """What every pass needs: the topology, where its parts sit in the file, and the output."""

    topology: Topology
    source: SourceMap
    environ: Mapping[str, str]
    diags: list[Diagnostic] = field(default_factory=list)

    def emit(self, path: PathKey, code: str, message: str, hint: str, *, key: bool = False) -> None:
        pos = self.source.key(*path) if key else self.source.value(*path)
        self.diags.append(Diagnostic.at(pos, code, message, hint))

    def item(self, path: PathKey, index: int) -> PathKey:
        """The path of a list item, or of the list itself when YAML gave a lone scalar."""
        p = path + (index,)
        return p if p in self.source.values else path

    def replicas(self, node: str) -> int:
        spec = self.topology.nodes.get(node)
        return spec.replicas if spec is not None else 1
