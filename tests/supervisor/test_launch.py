"""The lean supervisor's hand-over: a prepared plan runs the same whether exec'd or not."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from orchestrator.errors import RunAlive
from orchestrator.plan import Plan
from orchestrator.start.prepare import prepare
from orchestrator.supervisor.lean import LAUNCH_FILE, exec_launch
from tests.conftest import Leftovers
from tests.integration.test_up import FUNCS, topology


def test_when_exec_fails_the_plan_runs_in_this_process(
    tmp_path: Path, no_leftovers: Leftovers, monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    path = topology(tmp_path, f"""
        nodes:
          a: {{run: "{FUNCS}:ok", restart: never}}
        """)
    plan = prepare(path, err=io.BytesIO())

    def no_exec(*args: object) -> None:
        raise OSError(8, "Exec format error")

    monkeypatch.setattr(os, "execv", no_exec)
    assert exec_launch(plan, {"no_color": True}) == 0
    assert b"a.0  | hello from a.0" in capfdbinary.readouterr().out
    assert not Path(plan.run_dir).exists()


def test_prepare_claims_the_run_and_the_plan_survives_json(
    tmp_path: Path, no_leftovers: Leftovers
) -> None:
    path = topology(tmp_path, f"""
        nodes:
          a:
            run: "{FUNCS}:ok"
            ready: {{timeout: 2s, log: x}}
            backoff: {{initial: 50ms, factor: 3, max: 1s}}
          b: {{command: ["true"], depends_on: [a], stop_timeout: 250ms}}
        """)
    plan = prepare(path, err=io.BytesIO())
    try:
        with pytest.raises(RunAlive):
            prepare(path, err=io.BytesIO())
        import json

        again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
        assert again == plan
        assert plan.nodes["a"].ready is not None and plan.nodes["a"].ready.kind == "log"
        assert plan.nodes["a"].backoff.factor == 3.0 and plan.nodes["b"].stop_timeout == 0.25
        assert plan.nodes["b"].depends_on == ("a",)
        assert not (Path(plan.run_dir) / LAUNCH_FILE).exists()
    finally:
        from orchestrator.runs.folder import remove_run_dir

        remove_run_dir(Path(plan.run_dir))


def test_the_exec_d_supervisor_imports_this_very_package_from_outside_any_install(
    tmp_path: Path, no_leftovers: Leftovers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exec'd process puts the folder holding `orchestrator/` first on its path, so
    it finds the same copy even where topo is not installed (the API's callers)."""
    path = topology(tmp_path, f"""
        nodes:
          a: {{run: "{FUNCS}:ok", restart: never}}
        """)
    plan = prepare(path, err=io.BytesIO())
    seen: list[list[str]] = []

    def no_exec(_program: str, argv: list[str]) -> None:
        seen.append(argv)
        raise OSError(8, "Exec format error")  # then the plan runs here, as in the test above

    monkeypatch.setattr(os, "execv", no_exec)
    assert exec_launch(plan, {"no_color": True}) == 0
    (argv,) = seen
    package_parent = Path(argv[3])
    assert (package_parent / "orchestrator" / "supervisor" / "lean.py").is_file()
    assert "from orchestrator.supervisor.lean import main" in argv[2]
