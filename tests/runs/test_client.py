"""Finding a run (``runs/client.find_run``): by id, by the file it was started from, or alone.

No process is started: the runs are folders with the state files a supervisor writes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ControlError, UsageError
from orchestrator.runs.client import find_run
from orchestrator.runs.folder import write_state


def made_run(root: Path, run_id: str, file: Path | None) -> Path:
    folder = root / run_id
    folder.mkdir()
    state: dict[str, object] = {"run_id": run_id, "supervisor": {"pid": 1, "start": 1}}
    if file is not None:
        state["file"] = str(file.resolve())
    write_state(folder, state)
    return folder


def test_a_file_means_the_run_started_from_it_whatever_its_name_says(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    file, other = tmp_path / "app.yaml", tmp_path / "other.yaml"
    file.write_text("name: renamed-since\nnodes: {}\n")
    made_run(state_dir, "started-with-p", file)
    made_run(state_dir, "other", other)
    assert find_run(str(file)).run_id == "started-with-p"
    monkeypatch.chdir(tmp_path)
    assert find_run("app.yaml").run_id == "started-with-p"  # relative, as `topo up` was given it
    file.unlink()
    assert find_run(str(file)).run_id == "started-with-p"  # also once the file is gone


def test_a_file_no_run_was_started_from_names_the_known_runs(
    state_dir: Path, tmp_path: Path,
) -> None:
    made_run(state_dir, "r1", tmp_path / "a.yaml")
    made_run(state_dir, "r2", None)  # its supervisor died before it wrote the file's path
    with pytest.raises(ControlError,
                       match=r"no run was started from .*b\.yaml \(known runs: r1, r2\)"):
        find_run(str(tmp_path / "b.yaml"))


def test_a_file_started_twice_asks_for_a_run_id(state_dir: Path, tmp_path: Path) -> None:
    file = tmp_path / "a.yaml"
    made_run(state_dir, "one", file)
    made_run(state_dir, "two", file)
    with pytest.raises(UsageError, match=r"several runs were started from .*; name one: one, two"):
        find_run(str(file))


def test_a_run_id_and_the_only_run(state_dir: Path, tmp_path: Path) -> None:
    made_run(state_dir, "solo", None)
    assert find_run("solo").run_id == "solo"
    assert find_run(None).run_id == "solo"
    with pytest.raises(ControlError, match=r"no run named nope \(known runs: solo\)"):
        find_run("nope")
    with pytest.raises(UsageError, match="neither a run id nor a topology file"):
        find_run("../etc")


def test_the_client_commands_build_neither_sockets_nor_signals_enums() -> None:
    # `topo ps`, `down` and `restart` reach the supervisor through ``_socket`` and signal it
    # through ``_signal``: importing ``socket`` and ``signal`` builds their enums, ~4 ms a call.
    import subprocess
    import sys

    code = ("import sys; before = set(sys.modules); import orchestrator.runs.client; "
            "print(sorted({'socket', 'signal', 'selectors'} & (set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
