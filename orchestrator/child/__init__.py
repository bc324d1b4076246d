"""What runs inside a node: the ``Node`` object and a forked child's life, socket
building from a plan, the stop signal, node functions by name and the built-in roles.
Imported by the supervisor before it forks, so it must stay as lean as the supervisor."""
