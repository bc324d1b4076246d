"""The node contract, at its public path: what a node program gets from topo.

A ``run:`` function is called with a ``Node``; a Python ``command:`` program calls
``from_env()`` and gets the same object, built from the ``TOPO_*`` environment. The
implementation lives in ``orchestrator/child/``, with everything else that runs
inside a node; see docs/reference.md#the-node-contract.
"""

from __future__ import annotations

from orchestrator.child.node import Node, from_env

__all__ = ["Node", "from_env"]
