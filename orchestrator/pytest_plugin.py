"""The pytest plugin: topologies as fixtures (registered through the ``pytest11`` entry point).

::

    def test_answers(topology):                  # a factory, function-scoped
        run = topology("topology.yaml")          # up and ready; down after the test
        sock = run.connect("broker.frontend")

    @pytest.mark.topology("topology.yaml", timeout=10)
    def test_marked(topology_run):               # the run the marker asked for
        ...

``topology_module`` is the module-scoped factory. Relative files are looked up
from the current folder, then the test file's folder, then the rootdir. Every
run gets a unique id, so ports, ipc paths and SysV keys never meet under
pytest-xdist; every run is stopped after its test (or module), passed or
failed, and stops by itself if the test process dies.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from orchestrator.api import Run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "topology(file, run_id=None, timeout=10, env=None): start FILE (topo up -d) for the "
        "test; the topology_run fixture gives its orchestrator.Run",
    )


class TopologyFactory:
    """Starts runs with ``orchestrator.up`` and stops them all at the end of its scope."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        self.runs: list[Run] = []

    def __call__(self, file: str | os.PathLike[str], run_id: str | None = None,
                 timeout: float = 10.0, env: Mapping[str, str] | None = None) -> Run:
        # deferred: pytest loads every plugin at start-up; the API loads when a test asks for a run
        from orchestrator.api import up

        run = up(self._find(Path(file)), run_id, timeout, env=env)
        self.runs.append(run)
        return run

    def close(self) -> None:
        errors = []
        for run in reversed(self.runs):
            try:
                run.down()
            except Exception as exc:  # noqa: BLE001 - every run is stopped, then one error told
                errors.append(f"{run.run_id}: {exc}")
        self.runs.clear()
        if errors:
            pytest.fail("could not stop: " + "; ".join(errors), pytrace=False)

    def _find(self, file: Path) -> Path:
        if file.is_absolute() or file.exists():
            return file
        for base in (Path(str(self.request.path)).parent, Path(str(self.request.config.rootpath))):
            if (base / file).exists():
                return base / file
        return file  # `topo up` says it is missing


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> Iterator[TopologyFactory]:
    factory = TopologyFactory(request)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def topology_module(request: pytest.FixtureRequest) -> Iterator[TopologyFactory]:
    factory = TopologyFactory(request)
    yield factory
    factory.close()


@pytest.fixture
def topology_run(request: pytest.FixtureRequest, topology: TopologyFactory) -> Any:
    marker = request.node.get_closest_marker("topology")
    if marker is None or not marker.args:
        pytest.fail("topology_run needs @pytest.mark.topology('file.yaml') on the test",
                    pytrace=False)
    return topology(*marker.args, **marker.kwargs)
