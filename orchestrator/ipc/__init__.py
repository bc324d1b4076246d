"""A run's System V objects, socket pairs and fifos: keys, creation before any node
starts, hand-over to nodes, and removal of exactly what a run recorded."""
