"""topo: declarative topologies for ZeroMQ and Unix IPC."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.errors import TopoError

if TYPE_CHECKING:
    from orchestrator.api import Run, up

__all__ = ["Run", "TopoError", "up"]


def __getattr__(name: str) -> Any:
    # `orchestrator.up` and `orchestrator.Run` load the API on first use: the `topo`
    # command, which imports this package too, starts faster without it.
    if name in ("up", "Run"):
        # deferred: the `topo` command imports this package too, and starts faster without the API
        from orchestrator import api

        return getattr(api, name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
