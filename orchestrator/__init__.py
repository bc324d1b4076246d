"""topo: declarative topologies for ZeroMQ and Unix IPC."""

from __future__ import annotations

from .errors import TopoError

__all__ = ["TopoError"]
