"""Semantic checks of a loaded topology (SPEC §2): every E1xx beyond the schema, and W2xx.

PLACEHOLDER: being written. ``check`` returns diagnostics; it never raises.
"""

from __future__ import annotations

from collections.abc import Mapping

from .diagnostics import Diagnostic
from .loader import SourceMap
from .model import Topology


def check(
    topology: Topology, source: SourceMap, environ: Mapping[str, str] | None = None
) -> list[Diagnostic]:
    return []
