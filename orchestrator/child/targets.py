"""Node functions by name: ``module:function`` imported once, in the supervisor, before forking.

Every forked child then shares the imported code (``node.run_child`` calls it).
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from orchestrator.child.roles import ROLES
from orchestrator.errors import RunError
from orchestrator.plan import Plan

if TYPE_CHECKING:
    from orchestrator.child.node import NodeFunction


def preload(plan: Plan) -> dict[str, NodeFunction]:
    """Import every node function and role of ``plan``.

    Returns the callables by the ``run`` string, or ``role:<name>`` for roles.
    ``plan.pythonpath`` goes to the front of ``sys.path`` first, in order.
    """
    front = list(plan.pythonpath)
    sys.path[:] = front + [p for p in sys.path if p not in front]
    if any(s.curve for r in plan.replicas for s in r.sockets):
        # deferred: only a CURVE run needs it; loaded here once, not in each forked child
        import orchestrator.child.curve  # noqa: F401
    if any(r.sockets and r.kind != "command" for r in plan.replicas):
        # deferred: counters, monitors and taps of run and role nodes' sockets (watch.py)
        import orchestrator.child.watch  # noqa: F401
    targets: dict[str, NodeFunction] = {}
    for replica in plan.replicas:
        if replica.kind == "role" and replica.role is not None:
            key = f"role:{replica.role}"
            if key not in targets:
                if replica.role not in ROLES:
                    known = ", ".join(sorted(ROLES))
                    raise RunError(f"node {replica.node} uses unknown role {replica.role!r}; "
                                   f"the roles are {known}")
                targets[key] = ROLES[replica.role]
        elif replica.kind == "run" and replica.run is not None and replica.run not in targets:
            targets[replica.run] = import_target(replica.run, replica.node)
    return targets


def import_target(target: str, node: str) -> NodeFunction:
    """``module:function`` (or ``module:Class.method``) -> the callable, or ``RunError``."""
    module_name, _, attr_path = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # noqa: BLE001 - a module may raise anything, SystemExit included
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = str(exc) if isinstance(exc, ImportError) else f"{type(exc).__name__}: {exc}"
        raise RunError(f"cannot import module {module_name!r} for node {node}: {detail}") from None
    obj: Any = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            # deferred: difflib (and its re patterns) only to word an error, never in a good run
            import difflib

            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            owner = f"module {module_name!r}" if obj is module else repr(obj)
            raise RunError(f"{owner} has no function {part!r} (node {node}){hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise RunError(f"{target} is not a function (node {node}): it is a {type(obj).__name__}")
    return obj  # type: ignore[no-any-return]
