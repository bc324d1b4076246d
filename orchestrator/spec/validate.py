"""`topo validate`: load a file, run every check, report.

``validate_file`` is the one entry point the CLI, ``topo up`` and the other
commands share: it never raises for bad input, only for an unreadable file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from orchestrator.errors import InvalidTopology, UsageError
from orchestrator.spec.checks import check
from orchestrator.spec.diagnostics import Diagnostic, sort_diagnostics, to_json
from orchestrator.spec.loader import Loaded, load_file


def validate_file(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Loaded:
    """Load ``path`` and return it with every diagnostic, sorted; topology is None on errors."""
    try:
        loaded = load_file(path, environ)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a topology file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror})") from None
    diags = list(loaded.diagnostics)
    if loaded.topology is not None:
        diags.extend(check(loaded.topology, loaded.source, environ))
    loaded.diagnostics = sort_diagnostics(diags)
    if any(d.is_error for d in loaded.diagnostics):
        loaded.topology = None
    return loaded


def load_or_raise(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Loaded:
    """Like ``validate_file`` but raises ``InvalidTopology`` when there are errors."""
    loaded = validate_file(path, environ)
    if loaded.topology is None:
        raise InvalidTopology([d for d in loaded.diagnostics if d.is_error])
    return loaded


def run_validate(files: Sequence[str], *, strict: bool = False, fmt: str = "text") -> int:
    all_diags: list[Diagnostic] = []
    for f in files:
        all_diags.extend(validate_file(f).diagnostics)
    if fmt == "json":
        print(to_json(all_diags))
    else:
        for d in all_diags:
            print(d.format())
        errors = sum(d.is_error for d in all_diags)
        warnings = len(all_diags) - errors
        if all_diags:
            print(f"{errors} error(s), {warnings} warning(s) in {len(files)} file(s)",
                  file=sys.stderr)
    failed = any(d.is_error for d in all_diags) or (strict and bool(all_diags))
    return 1 if failed else 0
