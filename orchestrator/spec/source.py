"""Where each part of a topology file sits: the source map every diagnostic is placed with.

The YAML reader (``yamltext``) fills it, the loader pastes ``defaults:`` positions
into the nodes that inherit them, and pydantic's errors and the checks read it
back. It lives apart from all of them so that none has to import another for it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from orchestrator.spec.diagnostics import Position

# A path through the file's data: mapping keys and list indices, from the top.
PathKey = tuple[str | int, ...]
# One recorded position: the table it is in (keys or values), its path, the position.
Entry = tuple[dict[PathKey, Position], PathKey, Position]


@dataclass
class SourceMap:
    """Where each key and value of the file sits. Paths are tuples of keys and indices.

    ``booleans`` holds what was written for each unquoted value that YAML read as a
    boolean (``yes``, ``off``, ``${FLAG}`` that became ``on``), by its position: a
    diagnostic about a value that should have been text can quote what the user typed.
    """

    file: str
    keys: dict[PathKey, Position] = field(default_factory=dict)
    values: dict[PathKey, Position] = field(default_factory=dict)
    booleans: dict[Position, str] = field(default_factory=dict)

    def value(self, *path: str | int) -> Position:
        """Position of the value at ``path``, or of its nearest ancestor that exists."""
        return self._nearest(self.values, tuple(path))

    def key(self, *path: str | int) -> Position:
        """Position of the key at ``path`` (its value's, for list items)."""
        p = tuple(path)
        while p:
            if p in self.keys:
                return self.keys[p]
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), Position(self.file, 1, 1))

    def written_boolean(self, *path: str | int) -> str | None:
        """What was written at ``path`` when YAML read it as a boolean, else None."""
        pos = self.values.get(tuple(path))
        return self.booleans.get(pos) if pos is not None else None

    def _nearest(self, table: Mapping[PathKey, Position], path: PathKey) -> Position:
        while path:
            if path in table:
                return table[path]
            path = path[:-1]
        return table.get((), Position(self.file, 1, 1))

    def paste(self, entries: list[Entry], dst: PathKey) -> None:
        """Record ``entries`` (paths relative to their subtree) again under ``dst``, keeping
        any position ``dst`` already has: a node's own key wins over the inherited one."""
        for table, rel, pos in entries:
            table.setdefault(dst + rel, pos)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Loading builds hundreds of thousands of small acyclic objects, most of them this map's
    paths and positions; the cyclic collector would scan them again and again for nothing
    (a third of the time on 10,000 nodes). Loading and checking both run under it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
