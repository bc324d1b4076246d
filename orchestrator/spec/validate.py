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
from orchestrator.spec.diagnostics import Diagnostic, fails, sort_diagnostics, summary, to_json
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


def run_validate(files: Sequence[str], *, strict: bool = False, fmt: str = "text",
                 environ: Mapping[str, str] | None = None) -> int:
    all_diags: list[Diagnostic] = []
    for f in files:
        all_diags.extend(validate_file(f, environ).diagnostics)
    if fmt == "json":
        print(to_json(all_diags))
    else:
        for d in all_diags:
            print(d.format())
        if all_diags:
            print(summary(all_diags, len(files)), file=sys.stderr)
    # Notes never fail, not even with --strict: there is nothing to fix.
    return 1 if fails(all_diags, strict=strict) else 0
