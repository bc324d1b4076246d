"""The leftovers check itself: it must see what a run left, and survive runs that end meanwhile."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import leftovers_in


def _tree(root: Path) -> Path:
    run = root / "run1"
    (run / "logs").mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(run / "backend"))
    sock.close()
    os.mkfifo(run / "pipe")
    return run


def test_leftovers_in_sees_ipc_files_and_run_folders(tmp_path: Path) -> None:
    run = _tree(tmp_path)
    assert sorted(leftovers_in(tmp_path)) == sorted([
        f"ipc file {run / 'backend'}", f"ipc file {run / 'pipe'}", f"run folder {run}"])
    assert leftovers_in(tmp_path / "gone") == []


def test_leftovers_in_tolerates_a_folder_that_vanishes_while_it_walks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _tree(tmp_path)
    real_scandir = os.scandir

    def scandir(path: str | os.PathLike[str] = ".") -> Iterator[os.DirEntry[str]]:
        if Path(path) == run / "logs":  # removed by its run after the parent was listed
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert f"run folder {run}" in leftovers_in(tmp_path)
