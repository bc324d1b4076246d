"""CURVE key files: ZeroMQ's certificate format, private from their first byte."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from orchestrator import certs


def test_a_keypair_is_two_z85_keys_that_belong_together() -> None:
    public, secret = certs.keypair()
    assert certs.is_z85_key(public) and certs.is_z85_key(secret)
    assert zmq.curve_public(secret.encode()).decode() == public


@given(st.text(max_size=60))
def test_is_z85_key_accepts_only_40_character_keys(text: str) -> None:
    if certs.is_z85_key(text):
        assert len(text) == 40


def test_is_z85_key_refuses_near_misses() -> None:
    public, _ = certs.keypair()
    assert not certs.is_z85_key(public[:-1])
    assert not certs.is_z85_key(public + "a")
    assert not certs.is_z85_key(public[:-1] + " ")
    assert not certs.is_z85_key("")


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277])
def test_make_keys_writes_private_secrets_and_readable_publics(tmp_path: Path,
                                                              umask: int) -> None:
    """Whatever the caller's umask, and the umask is the caller's again afterwards."""
    folder = tmp_path / "keys"
    old = os.umask(umask)
    try:
        publics = certs.make_keys(folder, ["broker", "worker"])
        assert os.umask(umask) == umask
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name, public in publics.items():
        secret_file = folder / f"{name}.key_secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / f"{name}.key").stat().st_mode) == 0o644
        assert certs.read_public(folder / f"{name}.key") == public
        pub, sec = certs.read_secret(secret_file)
        assert pub == public and zmq.curve_public(sec.encode()).decode() == public
    assert publics["broker"] != publics["worker"]


def test_a_secret_file_is_created_exclusively_with_mode_0600(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[int, int]] = []
    real_open = os.open

    def spy(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        opened.append((flags, mode))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", spy)
    certs.write_secret(tmp_path / "s.key_secret", *certs.keypair())
    (flags, mode), = opened
    assert flags & os.O_CREAT and flags & os.O_EXCL  # never an existing file, never a race
    assert mode == 0o600  # its bits from the first instant; a umask only takes bits away
    assert stat.S_IMODE((tmp_path / "s.key_secret").stat().st_mode) == 0o600


def test_an_existing_file_is_never_reused(tmp_path: Path) -> None:
    target = tmp_path / "s.key_secret"
    target.write_text("someone else's")
    with pytest.raises(FileExistsError):
        certs.write_secret(target, *certs.keypair())
    assert target.read_text() == "someone else's"
    with pytest.raises(FileExistsError):
        certs.make_keys(tmp_path, ["a"])  # the folder exists already


def test_pyzmq_reads_the_files_topo_writes(tmp_path: Path) -> None:
    import zmq.auth

    publics = certs.make_keys(tmp_path / "keys", ["n"])
    public, secret = zmq.auth.load_certificate(tmp_path / "keys" / "n.key_secret")
    assert public.decode() == publics["n"] and secret is not None


def test_topo_reads_the_files_pyzmq_writes(tmp_path: Path) -> None:
    import zmq.auth

    public_file, secret_file = zmq.auth.create_certificates(tmp_path, "client")
    public, secret = zmq.auth.load_certificate(secret_file)
    assert certs.read_public(public_file) == public.decode()
    assert certs.read_secret(secret_file) == (public.decode(), (secret or b"").decode())


@pytest.mark.parametrize(("text", "says"), [
    ("", "has no `public-key"),
    ("metadata\ncurve\n    public-key = \"short\"\n", "is not a CURVE key"),
    ("curve\n    secret-key = \"x\"\n", "has no `public-key"),
    ("hello world\n", "has no `public-key"),
])
def test_a_malformed_file_is_one_sentence(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(text)
    with pytest.raises(certs.KeyFileError, match=says):
        certs.read_public(path)


def test_missing_unreadable_and_public_only_files(tmp_path: Path) -> None:
    with pytest.raises(certs.KeyFileError, match="no such key file"):
        certs.read_public(tmp_path / "missing.key")
    (tmp_path / "bin.key").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(certs.KeyFileError, match="not text"):
        certs.read_public(tmp_path / "bin.key")
    certs.write_public(tmp_path / "p.key", certs.keypair()[0])
    with pytest.raises(certs.KeyFileError, match="holds no secret key"):
        certs.read_secret(tmp_path / "p.key")


def test_a_damaged_secret_key_is_never_shown(tmp_path: Path) -> None:
    public, secret = certs.keypair()
    path = tmp_path / "n.key_secret"
    path.write_text(certs.certificate(public, secret[:-1] + "xx"))
    with pytest.raises(certs.KeyFileError) as caught:
        certs.read_secret(path)
    assert secret[:20] not in str(caught.value) and "41 characters" in str(caught.value)
