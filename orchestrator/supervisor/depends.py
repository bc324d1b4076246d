"""``depends_on`` at run time: which waiting nodes may start now, and which never will.

A node starts once every replica of each node it depends on has been ready
(docs/reference.md#readiness). It is doomed, and never started, once one of
them can no longer get there (``replica.never_ready``), and so, in turn, is
every node that depends on it. Only the dependents of a node whose replicas
changed are looked at again, so a chain of any length costs one look per link.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence

from orchestrator.supervisor.replica import Replica, never_ready


class Gate:
    def __init__(self, nodes: Mapping[str, Sequence[Replica]],
                 depends_on: Mapping[str, Iterable[str]]) -> None:
        self._nodes = nodes
        self._deps = {n: [d for d in depends_on.get(n, ()) if d in nodes] for n in nodes}
        self.dependents: dict[str, list[str]] = {n: [] for n in nodes}
        for node, deps in self._deps.items():
            for d in deps:
                self.dependents[d].append(node)
        self.decided: set[str] = set()  # started, or doomed
        self._doomed: set[str] = set()
        self._queue: collections.deque[str] = collections.deque()

    def look_at(self, nodes: Iterable[str]) -> None:
        """Nodes whose dependencies may have changed (all of them, at the start)."""
        self._queue.extend(n for n in nodes if n not in self.decided)

    def take(self) -> tuple[list[Replica], list[Replica]]:
        """The replicas to start now and those never to start, for every node looked at."""
        start: list[Replica] = []
        doomed: list[Replica] = []
        while self._queue:
            node = self._queue.popleft()
            if node in self.decided:
                continue
            deps = [x for d in self._deps[node] for x in self._nodes[d]]
            if any(x.plan.node in self._doomed or never_ready(x) for x in deps):
                self.decided.add(node)
                self._doomed.add(node)
                doomed.extend(self._nodes[node])
                self._queue.extend(self.dependents[node])
            elif all(x.ever_ready for x in deps):
                self.decided.add(node)
                start.extend(self._nodes[node])
        return start, doomed

    def clear(self) -> None:
        """Nothing more starts (the run is stopping)."""
        self._queue.clear()
