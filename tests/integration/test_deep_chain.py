"""A `depends_on` chain of 1,500 nodes, written either way round, validates and runs.

Dependency tiers were once computed recursively by the planner: the file passed
`topo validate` and `topo up` then died with RecursionError. One iterative function
(``orchestrator/spec/depgraph.py``) now serves the validator and the planner.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Leftovers
from tests.integration.test_up import REPO

pytestmark = pytest.mark.slow

LENGTH = 1500


def chain_file(tmp_path: Path, *, dependents_first: bool) -> Path:
    """n0 <- n1 <- ... : node i depends on node i-1; every node runs `true` once."""
    order = range(LENGTH - 1, -1, -1) if dependents_first else range(LENGTH)
    lines = ["name: chain", "nodes:"]
    for i in order:
        deps = f", depends_on: [n{i - 1}]" if i else ""
        lines.append(f'  n{i}: {{command: ["true"], restart: never{deps}}}')
    path = tmp_path / "chain.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("dependents_first", [True, False], ids=["dependents-first", "in-order"])
def test_a_1500_node_chain_validates_and_runs(
        tmp_path: Path, no_leftovers: Leftovers, dependents_first: bool) -> None:
    path = chain_file(tmp_path, dependents_first=dependents_first)
    topo = [sys.executable, "-m", "orchestrator"]
    checked = subprocess.run([*topo, "validate", str(path)], env=no_leftovers.env(), cwd=REPO,
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ran = subprocess.run([*topo, "up", "--no-color", "--timeout", "120", str(path)],
                         env=no_leftovers.env(), cwd=REPO, capture_output=True, text=True,
                         timeout=180, check=False)
    assert "Traceback" not in ran.stderr, ran.stderr[-2000:]
    assert ran.returncode == 0, ran.stderr[-2000:]
