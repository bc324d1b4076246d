"""Node code for the teaching topologies in ``topologies/``: ``def main(node)`` functions.

The contract: docs/reference.md#the-node-contract.
"""
