"""Small phrases that diagnostics and explanations are built from. Pure text, no topology.

The checks, pydantic's error messages and ``topo explain`` all say "did you mean"
and list names the same way; this module is the one place that decides how.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def words(items: Iterable[str], last: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def quote_boolean(written: str, *, as_list: bool = False) -> str:
    """The hint for a word YAML read as a boolean where text belongs: quote what was written."""
    quoted = f'["{written}"], the word in quotes' if as_list else f'"{written}" in quotes'
    return (f"write {quoted}: YAML reads an unquoted yes, no, on, off, true or false as a "
            "boolean")
