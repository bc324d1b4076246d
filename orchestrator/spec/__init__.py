"""The pure core: the topology file as data, its checks and its plan.

The model, the YAML loader with source positions, the ZeroMQ rules, the validator's
checks and the planner take data and return data: no process, socket or file is
touched here beyond reading the topology file. Everything below this folder in the
layer order (``supervisor/``, ``child/``, ``ipc/``, ``runs/``) never imports it, which
keeps pydantic out of the process that forks every node (tests/test_layers.py).
"""
