"""depends_on tiers and cycles: one function for the validator and the planner, any length.

The properties are checked against definitions written the simple way (recursion
on small graphs, peeling off nodes whose dependencies are all placed), on every
kind of graph hypothesis can make: chains, diamonds, self-loops, unknown names.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import RunError
from orchestrator.spec.checks import check
from orchestrator.spec.depgraph import Cycle, Unknown, dependency_order
from orchestrator.spec.loader import load_text
from orchestrator.spec.model import Topology
from orchestrator.spec.planner import dependency_tiers, plan_run
from orchestrator.spec.validate import validate_file

CHAIN = 1500  # well past the default recursion limit of 1,000 frames


@pytest.fixture
def default_recursion_limit() -> Iterator[None]:
    """Whatever the test runner set, the chain must plan under CPython's default."""
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(saved)


def chain_text(n: int, *, dependents_first: bool) -> str:
    """n0 <- n1 <- ... : each node depends on the one before it, written in either order."""
    order = range(n - 1, -1, -1) if dependents_first else range(n)
    lines = ["name: chain", "nodes:"]
    for i in order:
        deps = f"[n{i - 1}]" if i else "[]"
        lines.append(f"  n{i}: {{command: [prog], depends_on: {deps}}}")
    return "\n".join(lines) + "\n"


# -- small, by hand -----------------------------------------------------------------------------


def test_tiers_are_longest_path_levels_in_file_order() -> None:
    order = dependency_order({"d": ["b", "c"], "c": ["a"], "b": [], "a": [], "e": ["a"]})
    assert order.tiers == (("b", "a"), ("c", "e"), ("d",))
    assert order.unknown == () and order.cycles == ()


def test_unknown_names_are_reported_where_they_are_listed() -> None:
    order = dependency_order({"a": ["b", "zz"], "b": ["yy"]})
    assert order.unknown == (Unknown("a", 1, "zz"), Unknown("b", 0, "yy"))
    assert order.tiers == (("b",), ("a",))


def test_a_cycle_names_its_nodes_and_the_entry_that_closes_it() -> None:
    order = dependency_order({"a": ["b"], "b": ["c"], "c": ["x", "a"], "x": []})
    assert order.cycles == (Cycle(("a", "b", "c", "a"), "c", 1),)
    assert dependency_order({"a": ["a"]}).cycles == (Cycle(("a", "a"), "a", 0),)
    # Every node still gets a tier, so a caller can report and go on.
    assert sorted(n for t in order.tiers for n in t) == ["a", "b", "c", "x"]


def test_the_planner_refuses_what_the_validator_reports() -> None:
    with pytest.raises(RunError, match="cycle through node a"):
        dependency_tiers(_topology({"a": ["b"], "b": ["a"]}))
    with pytest.raises(RunError, match="node zz, which does not exist"):
        dependency_tiers(_topology({"a": ["zz"]}))


# -- long chains: no recursion anywhere ----------------------------------------------------------


@pytest.mark.usefixtures("default_recursion_limit")
@pytest.mark.parametrize("dependents_first", [True, False], ids=["dependents-first", "in-order"])
def test_a_long_chain_validates_and_plans(tmp_path: Path, dependents_first: bool) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text(chain_text(CHAIN, dependents_first=dependents_first))
    loaded = validate_file(path, {"TOPO_STATE_DIR": str(tmp_path / "state")})
    assert [d for d in loaded.diagnostics if d.is_error] == []
    assert loaded.topology is not None
    plan = plan_run(loaded.topology, path, "r", tmp_path / "run", environ={},
                    allocate_port=lambda host: 20000)
    assert plan.tiers == tuple((f"n{i}",) for i in range(CHAIN))
    assert len(plan.replicas) == CHAIN


@pytest.mark.usefixtures("default_recursion_limit")
def test_a_long_cycle_is_one_e140() -> None:
    text = chain_text(CHAIN, dependents_first=True).replace("n0: {command: [prog], depends_on: []",
                                                            f"n0: {{command: [prog], depends_on: "
                                                            f"[n{CHAIN - 1}]")
    loaded = load_text(text, "chain.yaml", {})
    assert loaded.topology is not None
    found = check(loaded.topology, loaded.source, {"TOPO_STATE_DIR": "/tmp/topo-t"})
    (cycle,) = [d for d in found if d.code == "E140"]
    assert cycle.message.count(" -> ") == CHAIN and (cycle.line, cycle.col) == (CHAIN + 2, 38)


# -- properties ----------------------------------------------------------------------------------


def _topology(deps: Mapping[str, Sequence[str]]) -> Topology:
    return Topology.model_validate(
        {"name": "t", "nodes": {n: {"command": ["x"], "depends_on": list(d)}
                                for n, d in deps.items()}})


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    """Up to 12 nodes in a drawn file order, each listing known names, unknown ones, itself."""
    names = draw(st.lists(st.sampled_from([f"n{i}" for i in range(12)]), min_size=1,
                          max_size=12, unique=True))
    pool = st.sampled_from([*names, "ghost"])
    return {n: draw(st.lists(pool, max_size=4)) for n in names}


def _has_cycle(deps: Mapping[str, Sequence[str]]) -> bool:
    """Peel off nodes whose known dependencies are all peeled: what is left sits on a cycle."""
    left = set(deps)
    while True:
        free = {n for n in left if not any(d in left for d in deps[n] if d in deps)}
        if not free:
            return bool(left)
        left -= free


def _level(deps: Mapping[str, Sequence[str]], name: str) -> int:
    known = [d for d in deps[name] if d in deps]
    return 1 + max((_level(deps, d) for d in known), default=-1)


@settings(max_examples=400, deadline=None)
@given(graphs())
def test_tiers_respect_every_edge_and_cycles_are_found(deps: dict[str, list[str]]) -> None:
    order = dependency_order(deps)
    placed = [n for tier in order.tiers for n in tier]
    assert sorted(placed) == sorted(deps)  # every node exactly once
    for tier in order.tiers:
        assert list(tier) == [n for n in deps if n in tier]  # file order within a tier
    assert order.unknown == tuple(Unknown(n, i, d) for n, ds in deps.items()
                                  for i, d in enumerate(ds) if d not in deps)
    assert bool(order.cycles) == _has_cycle(deps)
    for cycle in order.cycles:
        ring = cycle.nodes
        assert ring[0] == ring[-1] and len(set(ring[:-1])) == len(ring) - 1
        for a, b in zip(ring, ring[1:], strict=False):
            assert b in deps[a]  # each step is a real depends_on edge
        assert (cycle.node, deps[cycle.node][cycle.index]) == (ring[-2], ring[-1])
    if not order.cycles:
        tier_of = {n: t for t, tier in enumerate(order.tiers) for n in tier}
        for a, ds in deps.items():
            for d in ds:
                if d in deps:
                    assert tier_of[d] < tier_of[a]  # a starts only after what it needs
            assert tier_of[a] == _level(deps, a)  # and no later than it must
    assert dependency_order(deps) == order  # deterministic
