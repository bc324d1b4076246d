"""The supervisor and what it needs: one state machine fed one event at a time
(``supervisor.py``, with the collaborators it owns: ``timers``, ``launch``,
``depends``, ``readying``, ``shutdown``; the interfaces it talks through:
``ports``), its event loop, the one module that forks, execs and kills
(``spawn.py``), the guardian, output, and the composition root that runs a
plan to its end (``run.py``).

It takes a ``Plan`` (``orchestrator/plan.py``), never the file model: this layer
never imports ``spec/`` or pydantic (tests/test_layers.py), so the lean supervisor
that ``topo up`` execs (``lean.py``) stays small and forks fast.
"""
