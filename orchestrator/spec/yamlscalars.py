"""What one YAML scalar means: its implicit tag, and the Python value for a tag.

``yamltext`` reads the event stream and keeps positions; this module only answers
"what is ``0o600`` / ``yes`` / ``2024-01-01`` / ``!!binary ...``?" with the rules
of PyYAML's safe loader (YAML 1.1), so a topology file reads exactly as
``yaml.safe_load`` would read it, and every value is a plain str, int, float,
bool or None.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

STR = "tag:yaml.org,2002:str"
BOOL = "tag:yaml.org,2002:bool"  # yes no on off true false, in three cases each (YAML 1.1)
MERGE = "tag:yaml.org,2002:merge"

_RESOLVERS = Resolver.yaml_implicit_resolvers
# First characters of plain scalars that might be something other than text.
RESOLVER_CHARS = frozenset(k for k in _RESOLVERS if k)
# Scalar constructors keep no state between calls (only collections do), so one serves all.
_CONSTRUCTOR = SafeConstructor()


class ScalarError(Exception):
    """A scalar that cannot be read as its tag says; the caller reports it (E101)."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


def resolve(text: str) -> str:
    """The tag YAML gives a plain (unquoted, untagged) scalar: ``yes`` is a bool, ``8`` an int."""
    resolvers = _RESOLVERS.get(text[:1] if text else "", [])
    for tag, regexp in resolvers:
        if regexp.match(text):
            return str(tag)
    for tag, regexp in _RESOLVERS.get(None, []):
        if regexp.match(text):
            return str(tag)
    return STR


def construct(tag: str, ev: yaml.ScalarEvent) -> Any:
    """The value of scalar ``ev`` read as ``tag``. Raises ScalarError."""
    if tag == MERGE:
        return ev.value  # `<<` as a value is just text
    ctor = SafeConstructor.yaml_constructors.get(tag)
    if ctor is None:
        raise ScalarError(f"unsupported YAML tag {tag}",
                          "remove the tag; topology files use plain values")
    try:
        # No marks on the node: the diagnostic already says where, so the error need not.
        value = ctor(_CONSTRUCTOR, yaml.ScalarNode(tag, ev.value, style=ev.style))
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise ScalarError(f"cannot read {ev.value!r} as {tag}: {exc}",
                          "remove the tag or fix the value") from None
    # `!!timestamp x` (AttributeError) and `!!bool maybe` (KeyError): PyYAML's constructor
    # assumes the implicit resolver's pattern matched.
    except (AttributeError, KeyError):
        raise ScalarError(f"cannot read {ev.value!r} as {tag}",
                          "remove the tag or fix the value") from None
    if isinstance(value, bytes | bytearray):
        return value.decode("latin-1")
    return _plain(value)


def retype(text: str) -> Any:
    """What YAML would make of ``text`` written plain: after ``${VAR}`` in a plain scalar is
    substituted, ``replicas: ${WORKERS}`` must be an integer, as if the number were written."""
    tag = resolve(text)
    if tag == STR:
        return text
    try:
        value = SafeConstructor.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, text))
    except (yaml.YAMLError, ValueError, TypeError, KeyError, OverflowError):
        return text
    return _plain(value)


def _plain(value: Any) -> Any:
    if not isinstance(value, str | int | float | bool | type(None)):
        return str(value)  # timestamps and the like: keep the text
    return value
