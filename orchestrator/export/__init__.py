"""Exporters: a topology file written for another platform (`topo export kubernetes`).

``workloads`` decides what each group becomes (pure), ``manifests`` writes those
decisions as Kubernetes objects, ``yamlout`` prints them with their comments,
``explain`` tells the decisions in words, and ``kubernetes`` is the command.
The layer may import ``spec`` and the base modules, nothing that runs a node.
"""
