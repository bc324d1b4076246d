"""A run on disk and how to reach it: its private folder and state file, the control
channel to its supervisor (both ends), process identity by pid and start time, and the
commands that reach a run after `topo up` (ls, restart, down, gc)."""
