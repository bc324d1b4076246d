"""Diagnostics: what `topo validate` says about a file, with where it says it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Position:
    file: str
    line: int  # 1-based
    col: int  # 1-based


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    col: int
    severity: Severity
    code: str
    message: str
    hint: str = ""

    @classmethod
    def at(
        cls, pos: Position, code: str, message: str, hint: str = ""
    ) -> Diagnostic:
        severity: Severity = "warning" if code.startswith("W") else "error"
        return cls(pos.file, pos.line, pos.col, severity, code, message, hint)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.file, self.line, self.col, self.code, self.message)

    def format(self) -> str:
        head = f"{self.file}:{self.line}:{self.col}: {self.severity}[{self.code}] {self.message}"
        return f"{head}\n  hint: {self.hint}" if self.hint else head

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def sort_diagnostics(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Stable order, duplicates removed: the same file always prints the same lines."""
    return sorted(set(diags), key=Diagnostic.sort_key)


def to_json(diags: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in diags], indent=2)
