"""topo as users get it: a wheel built from the tracked files, installed into a fresh venv.

A subpackage left out of ``pyproject.toml`` would pass every other test (they import
from the checkout) and break every installed copy; here the wheel alone must validate
a file and run a topology, from a folder outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import Leftovers
from tests.integration.test_up import REPO

pytestmark = pytest.mark.slow

ONE_NODE = """\
name: wheel_check
nodes:
  tick:
    role: ticker
    with: {count: 1, interval: 10ms, payload: "from the wheel"}
    restart: never
    sockets:
      out: {type: PUB, bind: "ipc://tick"}
  hello:
    command: [sh, -c, "echo hello from the wheel"]
    restart: never
"""


def _tracked_copy(dest: Path) -> Path:
    """The files git tracks (what a clean clone holds), without build leftovers."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                            check=False)
    if listed.returncode != 0:  # not a git checkout: copy the tree without caches
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(
            ".git", "__pycache__", "*.egg-info", "build", "dist"))
        return dest
    for name in listed.stdout.decode().split("\0"):
        if name and (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = _tracked_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(src)], check=True, timeout=300)
    (found,) = out.glob("topo-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)]
    subprocess.run(pip, check=True, timeout=600)
    return env_dir / "bin"


def test_the_wheel_holds_every_module_of_the_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    source = {p.relative_to(REPO).as_posix() for p in (REPO / "orchestrator").rglob("*.py")}
    assert source, "no source found"
    assert source - names == set(), "modules missing from the wheel"
    assert "orchestrator/py.typed" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "topo = orchestrator.cli:run" in text
    assert "topo = orchestrator.pytest_plugin" in text


def test_the_installed_wheel_validates_and_runs_a_topology(
        installed: Path, tmp_path: Path, no_leftovers: Leftovers) -> None:
    file = tmp_path / "wheel_check.yaml"
    file.write_text(ONE_NODE)
    env = no_leftovers.env()
    env.pop("PYTHONPATH", None)
    where = subprocess.run([str(installed / "python"), "-c",
                            "import orchestrator; print(orchestrator.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                           check=True).stdout.strip()
    assert where.startswith(str(installed.parent)), where  # the wheel's copy, not the checkout

    checked = subprocess.run([str(installed / "topo"), "validate", str(file)], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stderr

    ran = subprocess.run([str(installed / "topo"), "up", "--no-color", "--timeout", "30",
                          str(file)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "hello from the wheel" in ran.stdout
    assert os.path.basename(str(installed.parent)) in where
