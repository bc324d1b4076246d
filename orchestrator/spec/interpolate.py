"""``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` in scalar strings.

The environment overrides the file's ``vars:``; ``$$`` is a literal ``$``.
Pure: the caller passes the variables in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:-|:\?|-|\?)(?P<arg>[^}]*))?\}|(?P<bad>\{[^}]*\}?))"
)


class InterpolationError(ValueError):
    """A ``${VAR:?message}`` that was unset, or a malformed reference."""


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    def replace(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        if m.group("bad") is not None:
            raise InterpolationError(
                f"malformed variable reference '${m.group('bad')}'; "
                "write ${NAME}, ${NAME:-default} or ${NAME:?message}"
            )
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        value = variables.get(name)
        if op in (":-", "-"):
            if value is None or (op == ":-" and value == ""):
                return interpolate(arg or "", variables)
            return value
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise InterpolationError(
                    f"variable {name} is required: {arg}" if arg else f"variable {name} is required"
                )
            return value
        if value is None:
            raise InterpolationError(
                f"variable {name} is not set; set it in the environment, under vars:, "
                f"or give a default with ${{{name}:-default}}"
            )
        return value

    return _VAR.sub(replace, text)


def has_reference(text: str) -> bool:
    return "$" in text
