"""Parsing of the file format's small value types: durations, sizes, modes, signals.

Pure functions; each raises ``ValueError`` with a sentence a user can act on.
"""

from __future__ import annotations

import re
import signal

# Shared with the JSON schema (schema.py), so the two never disagree on what a duration is.
DURATION_PATTERN = r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$"
_DURATION = re.compile(DURATION_PATTERN)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB|K|M|G)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1,
    "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
    "K": 1 << 10, "M": 1 << 20, "G": 1 << 30,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3,
}


def parse_duration(value: object) -> float:
    """``250ms``, ``5s``, ``1m``, ``1h`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '250ms', '5s', '1m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(
            f"{value!r} is not a duration; write '250ms', '5s', '1m' or a number of seconds"
        )
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError("a duration must be a finite number of seconds, zero or more")
    return seconds


def parse_size(value: object) -> int:
    """``4096``, ``64KiB``, ``1MiB``, ``1GiB`` -> bytes."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '64KiB', '1MiB'")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    else:
        raise ValueError(
            f"{value!r} is not a size; write a number of bytes or '64KiB', '1MiB', '1GiB'"
        )
    if size <= 0:
        raise ValueError("a size must be at least 1 byte")
    return size


def parse_mode(value: object) -> int:
    """``0o600`` (string or YAML octal int), ``"600"``, ``"0600"`` -> permission bits."""
    if isinstance(value, bool):
        raise ValueError("a mode is an octal number like 0o600")
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.startswith("0o"):
            text = text[2:]
        if not text or any(c not in "01234567" for c in text):
            raise ValueError(f"{value!r} is not an octal mode; write it like 0o600")
        mode = int(text, 8)
    else:
        raise ValueError(f"{value!r} is not an octal mode; write it like 0o600")
    if not 0 <= mode <= 0o777:
        raise ValueError(
            f"mode {oct(mode)} is out of range; permission bits go from 0o000 to 0o777"
        )
    return mode


def parse_signal(value: object) -> int:
    """``SIGTERM``, ``TERM``, ``15`` -> signal number."""
    if isinstance(value, bool):
        raise ValueError("a signal is a name like SIGTERM or a number")
    if isinstance(value, int):
        try:
            return int(signal.Signals(value))
        except ValueError:
            raise ValueError(f"{value} is not a signal number on this system") from None
    if isinstance(value, str):
        name = value.strip().upper()
        if name.isdigit():
            return parse_signal(int(name))
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            return int(signal.Signals[name])
        except KeyError:
            raise ValueError(
                f"{value!r} is not a signal name; write SIGTERM, SIGINT, ..."
            ) from None
    raise ValueError(f"{value!r} is not a signal; write SIGTERM, SIGINT, ... or a number")


def format_duration(seconds: float) -> str:
    """Seconds as the file writes them (``250ms``, ``5s``, ``2m``); ``parse_duration`` reads
    the text back to exactly ``seconds``, for any finite duration zero or more (nothing reads
    back as a negative or infinite one: those are written as they are, for a message)."""
    seconds = float(seconds)
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        return f"{seconds}s"
    candidates: list[tuple[float, str]] = []
    if 0 < seconds < 1:
        candidates.append((seconds * 1000, "ms"))
    elif seconds >= 60 and seconds % 60 == 0:
        candidates.append((seconds / 60, "m"))
    for value, unit in candidates:
        text = _plain_number(value) + unit
        # Scaling can round (0.001 * 1000 is not always exact): keep a unit only if it reads back.
        if parse_duration(text) == seconds:
            return text
    return _plain_number(seconds) + "s"


def _plain_number(value: float) -> str:
    """The shortest text that reads back as ``value``, without an exponent (1e-05 -> 0.00001)."""
    # deferred: decimal only for the views that print durations, not in every supervisor
    from decimal import Decimal

    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
