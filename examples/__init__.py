"""Node code for the teaching topologies in ``topologies/`` (SPEC §4: ``def main(node)``)."""
