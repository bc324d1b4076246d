"""E101: yes, no, on or off written bare where the file wants text.

Most fields that want text refuse a boolean, and pydantic's error says to quote it.
Three take one on purpose and turn it into text, so that ``env: {DEBUG: true}``
means DEBUG=true: env values, ``vars:`` and subscribe topics. There YAML 1.1's
other spellings of a boolean would silently become something else than what was
written (``A: yes`` sets A=true, ``subscribe: [on]`` subscribes to the topic
"true"), so they are errors that say to quote the word.
"""

from __future__ import annotations

from orchestrator.spec.checks.context import Context
from orchestrator.spec.diagnostics import Position
from orchestrator.spec.phrases import quote_boolean
from orchestrator.spec.source import PathKey

# What YAML 1.1 reads as a boolean besides true and false (any case: PyYAML knows three).
OTHER_SPELLINGS = frozenset({"yes", "no", "on", "off"})


def check_booleans(ctx: Context) -> None:
    if not ctx.source.booleans:
        return  # nothing in the file was read as a boolean: the common case, at no cost
    flagged: set[Position] = set()  # a defaults: entry is pasted into every node
    topology = ctx.topology
    for key, text in topology.vars.items():
        _flag(ctx, flagged, ("vars", key), text, f"vars {key} is written",
              f"${{{key}}} would be replaced by {text}")
    for key, text in topology.defaults.env.items():
        _flag(ctx, flagged, ("defaults", "env", key), text, f"env {key} in defaults is written",
              f"the nodes would get {key}={text}")
    for name, node in topology.nodes.items():
        for key, text in node.env.items():
            _flag(ctx, flagged, ("nodes", name, "env", key), text,
                  f"env {key} of node {name} is written", f"the node would get {key}={text}")
        for sname, sock in node.sockets.items():
            for i, topic in enumerate(sock.subscribe or ()):
                _flag(ctx, flagged, ("nodes", name, "sockets", sname, "subscribe", i), topic,
                      f"socket {name}.{sname} subscribes to", f"the topic would be '{topic}'")


def _flag(ctx: Context, flagged: set[Position], path: PathKey, text: str, subject: str,
          effect: str) -> None:
    written = ctx.source.written_boolean(*path)
    if written is None or written.lower() not in OTHER_SPELLINGS:
        return
    pos = ctx.source.value(*path)
    if pos in flagged:
        return
    flagged.add(pos)
    ctx.emit(path, "E101", f"{subject} {written}, which YAML reads as the boolean {text}, so "
             f"{effect}", quote_boolean(written))
