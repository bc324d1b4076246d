"""What is left to do once a whole YAML text is read: ``${VAR}``, then merge keys.

``${VAR}`` is substituted only after the last event, so ``vars:`` may sit anywhere
in the file; the environment wins over ``vars:``. A plain scalar that held a
reference becomes what YAML would make of the substituted text, so
``replicas: ${WORKERS}`` is an integer. Merge keys (``<<``) are applied last, so
merged values are substituted too. ``yamltext`` collects both lists as it reads.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from typing import Any

from orchestrator.spec.diagnostics import Diagnostic, Position
from orchestrator.spec.interpolate import InterpolationError, interpolate
from orchestrator.spec.yamlscalars import retype

# A scalar holding ``$``: the list or mapping it sits in, its index or key there, its
# text, whether it was plain (unquoted, untagged), and where it was written.
Fixup = tuple[Any, Any, str, bool, Position]
# A mapping with ``<<`` keys, and the values those keys named (mappings, or lists of them).
Merge = tuple[dict[Any, Any], list[Any]]


def known_variables(root: Any, environ: Mapping[str, str]) -> Mapping[str, str]:
    """What ``${NAME}`` can stand for: the file's ``vars:`` under the environment.

    A view, not a copy: only the names the file uses are looked up in the environment
    (which is how the validation cache knows what an answer depends on, spec/cache.py).
    """
    raw_vars = root.get("vars") if isinstance(root, dict) else None
    found = {str(k): _var_text(v) for k, v in raw_vars.items()} \
        if isinstance(raw_vars, dict) else {}
    return ChainMap(environ, found)  # type: ignore[arg-type]


def substitute(fixups: list[Fixup], variables: Mapping[str, str], diags: list[Diagnostic],
               booleans: dict[Position, str]) -> None:
    """Put each fix-up's substituted value in its place; a reference that fails is an E101."""
    for container, slot, text, plain, pos in fixups:
        try:
            new: Any = interpolate(text, variables)
        except InterpolationError as exc:
            diags.append(Diagnostic.at(pos, "E101", str(exc),
                                       "variables come from the environment and from vars:"))
            continue
        if plain and new != text:
            new = retype(new)
            if isinstance(new, bool):
                booleans[pos] = text  # the fix is to quote what was written: "${X}"
        container[slot] = new


def apply_merges(merges: list[Merge]) -> None:
    """Each ``<<`` adds the keys a mapping does not have; an earlier source wins a tie."""
    for result, sources in merges:
        merged: dict[Any, Any] = {}
        for src in sources:
            if isinstance(src, dict):
                for k, v in src.items():
                    merged.setdefault(k, v)
        for k, v in merged.items():
            result.setdefault(k, v)


def _var_text(value: Any) -> str:
    """A ``vars:`` value as the text ``${VAR}`` puts in its place."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
