"""Semantic checks of a loaded topology: every E1xx beyond the schema, W2xx and N3xx.

The codes are listed in docs/reference.md#diagnostics. ``check`` is called once
the loader produced a ``Topology``; it returns diagnostics and never raises. The
work is split by subject, one pass each:

    nodes.py     nodes and sockets on their own (E102 E110 E140, option names, W201 W207)
    roles.py     the built-in roles' contract (E103)
    links.py     binds and who talks to whom (E120-E128, W202-W206, W208), from the links
                 that ``spec/links.py`` resolves for the graph and explain too
    ipc.py       IPC resources (E130-E132)
    booleans.py  yes / no / on / off where env, vars or subscribe want text (E101)
    security.py  CURVE (E111 E129 E133, W209-W211, N301): what it cannot cover, what it
                 leaves plain, the `allow:` key files

``context.py`` holds what every pass works on. Every pass is linear in the size of
the file: binds are indexed by endpoint, nothing compares all sockets pairwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from orchestrator.spec.checks import booleans, ipc, links, nodes, roles, security
from orchestrator.spec.checks.context import Context
from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.model import Topology
from orchestrator.spec.source import SourceMap, paused_gc

# Every pass, in the order they run (``validate_file`` sorts what they find).
PASSES: tuple[Callable[[Context], None], ...] = (
    nodes.check_kinds, roles.check_roles, nodes.check_sockets, nodes.check_depends_on,
    links.check_links, ipc.check_ipc, booleans.check_booleans, security.check_security)


def check(
    topology: Topology, source: SourceMap, environ: Mapping[str, str] | None = None
) -> list[Diagnostic]:
    with paused_gc():
        ctx = Context(topology, source, os.environ if environ is None else environ)
        for run_pass in PASSES:
            try:
                run_pass(ctx)
            except Exception as exc:  # noqa: BLE001 - a validator bug must not hide the others
                ctx.diags.append(Diagnostic(
                    source.file, 1, 1, "error", "E199",
                    f"internal error in topo's validator ({type(exc).__name__}: {exc}); "
                    "this is a bug in topo, not in your file",
                    "please report it with the file that caused it"))
        return ctx.diags
