"""YAML text -> (Topology, SourceMap, diagnostics), keeping every source position.

``yamltext`` builds plain Python values from the YAML event stream so each
key and value keeps its line and column (in a ``source.SourceMap``), and
interpolates ``${VAR}`` in scalars; here we apply ``defaults:`` to every node,
and only then hand the data to pydantic. Pydantic's errors come back with a
``loc`` path, which the source map turns into ``file:line:col``
(``pydantic_errors``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.model import NodeSettings, Topology, default_topology_name
from orchestrator.spec.pydantic_errors import from_pydantic
from orchestrator.spec.source import Entry, SourceMap, paused_gc
from orchestrator.spec.yamltext import EventBuilder, YamlError


@dataclass
class Loaded:
    topology: Topology | None
    source: SourceMap
    diagnostics: list[Diagnostic]
    raw: Any = None


def load_text(
    text: str, file: str = "<string>", environ: Mapping[str, str] | None = None
) -> Loaded:
    """Parse and check one topology file's text. Never raises for bad input."""
    with paused_gc():
        return _load_text(text, file, environ)


def _load_text(text: str, file: str, environ: Mapping[str, str] | None) -> Loaded:
    source = SourceMap(file)
    environ = os.environ if environ is None else environ
    builder = EventBuilder(source)
    try:
        found, raw = builder.load(text, environ)
    except YamlError as exc:
        return Loaded(None, source, [Diagnostic.at(exc.pos, "E100", exc.message, exc.hint)])
    if not found:
        return Loaded(None, source, [Diagnostic(file, 1, 1, "error", "E101", "the file is empty",
                                                "a topology needs at least a `nodes:` mapping")])
    diags = builder.diags
    if not isinstance(raw, dict):
        diags.append(Diagnostic.at(source.value(), "E101", "a topology file must be a mapping",
                                   "start with `nodes:` at the top level"))
        return Loaded(None, source, diags, raw)
    raw.setdefault("name", default_topology_name(Path(file).stem))
    _apply_defaults(raw, source)
    try:
        topology = Topology.model_validate(raw)
    except ValidationError as exc:
        # A value the loader already reported (say, a failed ${VAR}) needs no second error.
        taken = {(d.line, d.col) for d in diags}
        diags.extend(d for d in from_pydantic(exc, source) if (d.line, d.col) not in taken)
        return Loaded(None, source, diags, raw)
    except RecursionError:
        diags.append(Diagnostic(file, 1, 1, "error", "E101", "the file nests too deeply",
                                "flatten the nested lists and mappings"))
        return Loaded(None, source, diags, raw)
    return Loaded(topology if not any(d.is_error for d in diags) else None, source, diags, raw)


def load_file(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Loaded:
    """Read and check a file. Raises ``OSError`` for a file that cannot be read."""
    p = Path(path)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        diag = Diagnostic(str(path), 1, 1, "error", "E100",
                          f"the file is not UTF-8 text ({exc.reason})", "save the file as UTF-8")
        return Loaded(None, SourceMap(str(path)), [diag])
    return load_text(text, str(path), environ)


def _apply_defaults(raw: dict[str, Any], source: SourceMap) -> None:
    defaults, nodes = raw.get("defaults"), raw.get("nodes")
    if not isinstance(defaults, dict) or not isinstance(nodes, dict):
        return
    # The keys a node may inherit, looked up once rather than once per node; the others are
    # reported once, at defaults.
    inherited = [(key, value) for key, value in defaults.items()
                 if key in NodeSettings.model_fields]
    # Positions under defaults: are gathered once, so applying them stays linear in the nodes.
    under: dict[str, list[Entry]] = {key: [] for key, _ in inherited}
    for table in (source.keys, source.values):
        for path, pos in table.items():
            if len(path) >= 2 and path[0] == "defaults" and path[1] in under:
                under[path[1]].append((table, path[1:], pos))
    for name, node in nodes.items():
        if not isinstance(node, dict):
            continue
        dst = ("nodes", name)
        for key, value in inherited:
            if key == "env" and isinstance(value, dict) and isinstance(node.get("env"), dict):
                node["env"] = {**value, **node["env"]}
                source.paste(under[key], dst)
            elif key not in node:
                node[key] = value
                source.paste(under[key], dst)
