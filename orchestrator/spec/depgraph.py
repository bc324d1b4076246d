"""The order ``depends_on`` puts nodes in: tiers, and what stands in the way of one.

``dependency_order`` is the one place this is worked out. The validator reports
its unknown names and cycles (E140); the planner turns its tiers into the plan's
``tiers``, which the supervisor starts in order and stops in reverse.

Tier 0 holds the nodes that depend on nothing; every other node sits one tier
after the deepest node it depends on (the longest path below it), so a tier
only waits for tiers before it. Within a tier, nodes keep the order of the file.

The search is an iterative depth-first search in file order, each node's
dependencies in the order they are listed: the same graph always gives the same
answer, and a chain of any length (written in either order) needs no recursion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Unknown:
    """``node``'s depends_on entry ``index`` names ``name``, which is no node."""

    node: str
    index: int
    name: str


@dataclass(frozen=True)
class Cycle:
    """A circle of dependencies, ``a -> b -> c -> a`` (the first node again at the end).

    ``node``'s depends_on entry ``index`` is the one that closes it: the place to point at.
    """

    nodes: tuple[str, ...]
    node: str
    index: int


@dataclass(frozen=True)
class DependencyOrder:
    tiers: tuple[tuple[str, ...], ...]  # every node exactly once, file order within a tier
    unknown: tuple[Unknown, ...]  # in file order
    cycles: tuple[Cycle, ...]  # one per entry that closes a circle, in the search's order


def dependency_order(depends_on: Mapping[str, Sequence[str]]) -> DependencyOrder:
    """Tiers, unknown names and cycles of ``depends_on`` (node -> the names it lists).

    Unknown names and the entry that closes each cycle are left out of the tiers, so
    every node still gets one; a plan needs the graph free of both first.
    """
    edges: dict[str, list[tuple[str, int]]] = {}
    unknown: list[Unknown] = []
    for name, deps in depends_on.items():
        known = []
        for index, dep in enumerate(deps):
            if dep in depends_on:
                known.append((dep, index))
            else:
                unknown.append(Unknown(name, index, dep))
        edges[name] = known

    level: dict[str, int] = {}  # finished nodes
    cycles: list[Cycle] = []
    for root in edges:
        if root in level:
            continue
        # The path from root to the node being searched, and how far each node got
        # through its dependencies; at_depth finds a node on the path in one look-up.
        path, progress, at_depth = [root], [0], {root: 0}
        while path:
            name = path[-1]
            todo = edges[name]
            step = progress[-1]
            if step == len(todo):
                # Every dependency is finished now, except the ones up the path (cycles).
                level[name] = 1 + max((level[d] for d, _ in todo if d in level), default=-1)
                path.pop()
                progress.pop()
                del at_depth[name]
                continue
            progress[-1] = step + 1
            dep, index = todo[step]
            if dep in at_depth:
                cycles.append(Cycle((*path[at_depth[dep]:], dep), name, index))
            elif dep not in level:
                at_depth[dep] = len(path)
                path.append(dep)
                progress.append(0)

    buckets: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for name in edges:
        buckets[level[name]].append(name)
    return DependencyOrder(tuple(tuple(b) for b in buckets), tuple(unknown), tuple(cycles))
