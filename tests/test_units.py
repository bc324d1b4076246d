"""units.py: durations, sizes, modes and signals, each with a sentence when it is wrong."""

from __future__ import annotations

import contextlib
import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator import units


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("5s", 5.0), ("1m", 60.0), ("1h", 3600.0), (" 2 s ", 2.0), ("1.5s", 1.5),
    (".5s", 0.5), ("3", 3.0), (3, 3.0), (0.1, 0.1), (0, 0.0),
])
def test_durations(text: object, seconds: float) -> None:
    assert units.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5 seconds", "-1s", "1d", "ms", True, None, [1], -2,
                                 float("nan"), float("inf")])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        units.parse_duration(bad)


@given(st.integers(min_value=0, max_value=10**8).map(lambda ms: ms / 1000))
def test_duration_round_trip(seconds: float) -> None:
    text = units.format_duration(seconds)
    assert units.parse_duration(text) == pytest.approx(seconds, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize(("text", "size"), [
    (4096, 4096), ("4096", 4096), ("64KiB", 65536), ("1MiB", 1 << 20), ("1GiB", 1 << 30),
    ("2K", 2048), ("1KB", 1000), ("3MB", 3_000_000), ("10B", 10), (" 1 MiB ", 1 << 20),
])
def test_sizes(text: object, size: int) -> None:
    assert units.parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "1.5MiB", "lots", "1TiB", 0, -1, "0", True, 1.5, None])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        units.parse_size(bad)


@pytest.mark.parametrize(("text", "mode"), [
    (0o600, 0o600), ("0o640", 0o640), ("600", 0o600), ("0600", 0o600), ("0O755", 0o755), (0, 0),
])
def test_modes(text: object, mode: int) -> None:
    assert units.parse_mode(text) == mode


@pytest.mark.parametrize("bad", ["0o800", "rw", "", 0o1000, -1, True, 1.0, "0o"])
def test_bad_modes(bad: object) -> None:
    with pytest.raises(ValueError, match="mode"):
        units.parse_mode(bad)


@pytest.mark.parametrize(("text", "number"), [
    ("SIGTERM", signal.SIGTERM), ("term", signal.SIGTERM), ("INT", signal.SIGINT),
    (9, signal.SIGKILL), ("15", signal.SIGTERM), (" sighup ", signal.SIGHUP),
])
def test_signals(text: object, number: int) -> None:
    assert units.parse_signal(text) == number


@pytest.mark.parametrize("bad", ["SIGNOPE", "nope", 0, 999, True, 1.5, None])
def test_bad_signals(bad: object) -> None:
    with pytest.raises(ValueError, match="signal"):
        units.parse_signal(bad)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.25, "250ms"), (5, "5s"), (60, "1m"), (90, "90s"), (0, "0s"), (120, "2m"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert units.format_duration(seconds) == text


@given(st.text(max_size=12))
def test_never_anything_but_value_error(text: str) -> None:
    for parse in (units.parse_duration, units.parse_size, units.parse_mode, units.parse_signal):
        with contextlib.suppress(ValueError):
            parse(text)


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_format_duration_reads_back_exactly(seconds: float) -> None:
    text = units.format_duration(seconds)
    assert units.parse_duration(text) == seconds
    assert "e" not in text.lower()  # no exponent: parse_duration does not read one
