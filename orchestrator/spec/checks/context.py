"""What every check pass works on: the topology, where its parts sit, and the findings so far."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.paths import state_root
from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.links import Resolution, resolve
from orchestrator.spec.model import Topology
from orchestrator.spec.source import PathKey, SourceMap


@dataclass
class Context:
    """What every pass needs: the topology, where its parts sit in the file, and the output."""

    topology: Topology
    source: SourceMap
    environ: Mapping[str, str]
    diags: list[Diagnostic] = field(default_factory=list)
    _resolution: Resolution | None = field(default=None, init=False, repr=False)

    def resolution(self) -> Resolution:
        """The binds and links of the file (``links.resolve``), resolved once for every pass;
        relative ipc paths are placed in the run folder the file would get."""
        if self._resolution is None:
            self._resolution = resolve(self.topology,
                                       state_root(self.environ) / self.topology.name)
        return self._resolution

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
