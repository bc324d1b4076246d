"""interpolate.py: ${VAR}, ${VAR:-default}, ${VAR:?message} and $$."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.spec.interpolate import InterpolationError, has_reference, interpolate
from orchestrator.spec.loader import load_text

VARS = {"A": "alpha", "EMPTY": "", "N": "3"}


@pytest.mark.parametrize(("text", "result"), [
    ("plain", "plain"),
    ("${A}", "alpha"),
    ("x-${A}-y", "x-alpha-y"),
    ("${A}${N}", "alpha3"),
    ("${MISSING:-fallback}", "fallback"),
    ("${EMPTY:-fallback}", "fallback"),
    ("${EMPTY-fallback}", ""),
    ("${MISSING-fallback}", "fallback"),
    ("${A:-fallback}", "alpha"),
    ("${MISSING:-}", ""),
    ("${A:?needed}", "alpha"),
    ("${EMPTY?needed}", ""),
    ("$$", "$"),
    ("$${A}", "${A}"),
    ("cost: $$5", "cost: $5"),
    ("$A", "$A"),  # only the braced form is a reference
    ("100$", "100$"),
])
def test_substitution(text: str, result: str) -> None:
    assert interpolate(text, VARS) == result


@pytest.mark.parametrize(("text", "message"), [
    ("${MISSING}", "MISSING is not set"),
    ("${MISSING:?set it to the pool size}", "set it to the pool size"),
    ("${EMPTY:?must not be empty}", "must not be empty"),
    ("${MISSING?}", "MISSING is required"),
    ("${1BAD}", "malformed"),
    ("${A", "malformed"),
    ("${}", "malformed"),
])
def test_errors(text: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=message):
        interpolate(text, VARS)


def test_environment_overrides_vars() -> None:
    text = "vars: {N: 2}\nnodes:\n  a:\n    command: [prog]\n    replicas: ${N}\n"
    loaded = load_text(text, "f.yaml", {})
    assert loaded.topology is not None and loaded.topology.nodes["a"].replicas == 2
    loaded = load_text(text, "f.yaml", {"N": "5"})
    assert loaded.topology is not None and loaded.topology.nodes["a"].replicas == 5


def test_has_reference() -> None:
    assert has_reference("${A}") and not has_reference("plain")


@given(st.text(alphabet=st.characters(blacklist_characters="$"), max_size=30))
def test_text_without_dollar_is_unchanged(text: str) -> None:
    assert interpolate(text, VARS) == text


@given(st.text(max_size=30))
def test_only_interpolation_errors(text: str) -> None:
    with contextlib.suppress(InterpolationError):
        interpolate(text, VARS)
