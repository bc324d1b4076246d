"""The validation cache (orchestrator/spec/cache.py): the same answer, at once, and only
when nothing it depends on has changed; an entry it cannot trust is ignored."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import orchestrator.spec.validate as validate_module
from orchestrator import cli
from orchestrator.runs.client import all_runs
from orchestrator.runs.gc import gc
from orchestrator.spec import cache
from orchestrator.spec.cache import CACHE_DIR, RecordingEnviron

REPO = Path(__file__).resolve().parents[2]
TEXT = """\
nodes:
  a:
    run: x:y
    sockets:
      s: {type: PUSH, bind: "tcp://127.0.0.1:${PORT:-5555}"}
"""


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    monkeypatch.setenv("TOPO_STATE_DIR", str(root))
    monkeypatch.delenv("PORT", raising=False)
    return root


class Checks:
    """Counts the real checks ``topo validate`` makes (a replayed answer makes none)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = validate_module.run_validate

        def counted(*args: Any, **kwargs: Any) -> int:
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(validate_module, "run_validate", counted)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Checks:
    return Checks(monkeypatch)


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def entries(root: Path) -> list[Path]:
    return sorted((root / CACHE_DIR).glob("validate-*.json"))


def test_the_same_command_is_answered_again_from_a_private_entry(
        state: Path, tmp_path: Path, checks: Checks, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(TEXT)
    first = validate(capsys, str(f))
    assert first[0] == 0 and "W205" in first[1] and "warning(s)" in first[2]
    assert validate(capsys, str(f)) == first
    assert checks.count == 1
    assert stat.S_IMODE((state / CACHE_DIR).stat().st_mode) == 0o700
    assert stat.S_IMODE(state.stat().st_mode) == 0o700  # made as `topo up` makes it
    [entry] = entries(state)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    # --strict, --format and --no-cache are other answers; --no-cache keeps nothing
    assert validate(capsys, "--strict", str(f))[0] == 1
    assert json.loads(validate(capsys, "--format", "json", str(f))[1])[0]["code"] == "W205"
    assert validate(capsys, "--no-cache", str(f)) == first
    assert checks.count == 4 and len(entries(state)) == 3


def test_a_change_to_the_file_or_to_a_variable_it_reads_is_checked_again(
        state: Path, tmp_path: Path, checks: Checks, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(TEXT)
    validate(capsys, str(f))
    monkeypatch.setenv("SOMETHING_ELSE", "1")  # not read by the check: still the same answer
    validate(capsys, str(f))
    assert checks.count == 1
    monkeypatch.setenv("PORT", "80x")
    code, out, _ = validate(capsys, str(f))
    assert checks.count == 2 and code == 1 and "80x" in out
    monkeypatch.delenv("PORT")
    f.write_text(TEXT.replace("PUSH", "PUSHY"))
    code, out, _ = validate(capsys, str(f))
    assert checks.count == 3 and code == 1 and "PUSHY" in out


@pytest.mark.parametrize("damage", ["garbage", "shape", "key", "mode", "symlink", "env"])
def test_an_entry_that_cannot_be_trusted_is_ignored_and_written_anew(
        state: Path, tmp_path: Path, checks: Checks, capsys: pytest.CaptureFixture[str],
        damage: str) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(TEXT)
    first = validate(capsys, str(f))
    [entry] = entries(state)
    doc = json.loads(entry.read_text())
    lie = {**doc, "out": "all good\n", "err": "", "code": 0}
    if damage == "garbage":
        entry.write_bytes(b"\x00{not json")
    elif damage == "shape":
        entry.write_text(json.dumps({**lie, "code": "0"}))
    elif damage == "key":
        entry.write_text(json.dumps({**lie, "key": "0" * 64}))
    elif damage == "mode":
        entry.write_text(json.dumps(lie))
        entry.chmod(0o644)  # someone else could have written it
    elif damage == "symlink":
        other = tmp_path / "elsewhere.json"
        other.write_text(json.dumps(lie))
        other.chmod(0o600)
        entry.unlink()
        entry.symlink_to(other)
    else:
        entry.write_text(json.dumps({**lie, "env": {"PORT": "5555"}}))  # PORT is unset now
    assert validate(capsys, str(f)) == first
    assert checks.count == 2
    assert not entry.is_symlink() and stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert json.loads(entry.read_text())["out"] == first[1]


def test_a_file_that_cannot_be_read_is_the_same_sentence_and_nothing_is_kept(
        state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = validate(capsys, str(tmp_path / "missing.yaml"))
    assert code == 2 and out == "" and err == f"topo: {tmp_path / 'missing.yaml'}: no such file\n"
    assert not (state / CACHE_DIR).exists()


def test_a_cache_folder_that_is_not_private_is_not_written_into(
        state: Path, tmp_path: Path, checks: Checks, capsys: pytest.CaptureFixture[str]) -> None:
    (state / CACHE_DIR).mkdir(parents=True)
    (state / CACHE_DIR).chmod(0o755)
    f = tmp_path / "t.yaml"
    f.write_text(TEXT)
    assert validate(capsys, str(f)) == validate(capsys, str(f))
    assert checks.count == 2 and entries(state) == []


def test_at_most_keep_entries_the_oldest_go(
        state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "KEEP", 2)
    files = []
    for i in range(4):
        f = tmp_path / f"t{i}.yaml"
        f.write_text(TEXT + f"# {i}\n")
        validate(capsys, str(f))
        files.append(f)
        for e in entries(state):  # mtimes a second apart, whatever the clock's grain
            os.utime(e, ns=(e.stat().st_atime_ns, e.stat().st_mtime_ns - 10**9))
    kept = [json.loads(e.read_text()) for e in entries(state)]
    outs = "".join(k["out"] for k in kept)
    assert len(kept) == 2 and str(files[2]) in outs and str(files[3]) in outs


def test_runs_listings_and_gc_skip_the_cache_folder(state: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(TEXT)
    validate(capsys, str(f))
    assert (state / CACHE_DIR).is_dir()
    assert all_runs() == [] and gc(state) == []
    assert (state / CACHE_DIR).is_dir()


def test_a_replayed_answer_loads_neither_the_model_nor_pydantic(
        state: Path, tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(TEXT)
    env = {**os.environ, "TOPO_STATE_DIR": str(state)}
    env.pop("PORT", None)
    argv = [sys.executable, "-X", "importtime", "-m", "orchestrator", "validate", str(f)]
    runs = [subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=60, check=False) for _ in range(2)]
    imported = [{line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines()
                 if line.startswith("import time:")} for r in runs]
    assert "pydantic" in imported[0] and "orchestrator.spec.model" in imported[0]
    assert "pydantic" not in imported[1] and "orchestrator.spec.model" not in imported[1]
    assert "zmq" not in imported[1] and "yaml" not in imported[1]
    said = [(r.returncode, r.stdout, [x for x in r.stderr.splitlines()
                                      if not x.startswith("import time:")]) for r in runs]
    assert said[0] == said[1] and said[0][0] == 0 and "W205" in said[0][1]


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=6),
       st.lists(st.text(min_size=1, max_size=5), max_size=8))
def test_the_recording_environ_notes_every_name_looked_up(env: dict[str, str],
                                                          names: list[str]) -> None:
    rec = RecordingEnviron(env)
    for i, name in enumerate(names):
        if i % 3 == 0:
            assert rec.get(name) == env.get(name)
        elif i % 3 == 1:
            assert (name in rec) == (name in env)
        else:
            assert rec.get(name, "dflt") == env.get(name, "dflt")
    assert rec.read == {n: env.get(n) for n in names}
    assert not rec.listed
    assert dict(rec) == env and rec.listed


def test_an_answer_that_read_key_files_is_not_kept(
        state: Path, tmp_path: Path, checks: Checks, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(TEXT + "security: {allow: [client.key]}\n")
    assert validate(capsys, str(f))[0] == 1  # E133: no such key file
    assert entries(state) == []  # the key file may appear without the topology changing


def test_a_run_id_none_is_not_the_default_run_id(tmp_path: Path, state: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(TEXT)
    keys = {cache.PlanCache.for_up(str(f), run_id=r, exit_code_from=e).key  # type: ignore[union-attr]
            for r, e in ((None, None), ("None", None), (None, "None"))}
    assert len(keys) == 3


def test_an_answer_whose_file_changed_while_it_was_checked_is_not_kept(
        state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(TEXT)
    real = validate_module.run_validate

    def edited_meanwhile(*args: Any, **kwargs: Any) -> int:
        f.write_text(TEXT.replace("PUSH", "PUSHY"))  # what the check reads is not what was keyed
        return real(*args, **kwargs)

    monkeypatch.setattr(validate_module, "run_validate", edited_meanwhile)
    validate(capsys, str(f))
    assert entries(state) == []
