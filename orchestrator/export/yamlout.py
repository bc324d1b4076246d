"""Documents as one multi-document YAML stream, each with its comment lines above it.

PyYAML's ``safe_dump`` writes each body in the order it was built (``sort_keys=False``)
and never folds a line; text with line breaks (the wait script) is a literal block.
Comments are written by hand, wrapped to ``WIDTH`` (a ``Verbatim`` line, a command to
copy, never is). The same documents always give the same bytes: there is no timestamp
and no set in the output.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Sequence

import yaml

from orchestrator.export.manifests import Document

WIDTH = 92


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _list(dumper: yaml.SafeDumper, value: list[object]) -> yaml.SequenceNode:
    # A list of short words (a command, its arguments) reads best on one line.
    flow = bool(value) and all(isinstance(v, str | int) and "\n" not in str(v) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(str, _text)
_Dumper.add_representer(list, _list)


class Verbatim(str):
    """A comment line written as it is, however long: a command to copy, whole."""


def wrap(line: str, width: int) -> list[str]:
    """``line`` wrapped to ``width``, never inside a `code span`; follow-ups indented."""
    indent = line[: len(line) - len(line.lstrip())]
    kept = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", "\0"), line.strip())
    wrapped = textwrap.wrap(kept, width - len(indent), break_long_words=False,
                            break_on_hyphens=False) or [""]
    return [f"{indent}{'  ' * (i > 0)}{w}".replace("\0", " ") for i, w in enumerate(wrapped)]


def comment(lines: Iterable[str]) -> str:
    """``# `` lines, each wrapped to WIDTH with its leading spaces kept on the follow-ups."""
    out = []
    for line in lines:
        if not line.strip():
            out.append("#")
            continue
        if isinstance(line, Verbatim):
            out.append(f"# {line}")
            continue
        out += [f"# {w}" for w in wrap(line, WIDTH - 2)]
    return "".join(f"{line}\n" for line in out)


def render(header: Sequence[str], docs: Sequence[Document]) -> str:
    parts = [comment(header)]
    for doc in docs:
        body = yaml.dump(doc.body, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                         width=10_000, allow_unicode=True)
        parts.append(f"---\n{comment(doc.comments)}{body}")
    return "".join(parts)
