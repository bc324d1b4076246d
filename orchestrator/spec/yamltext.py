"""YAML text -> plain Python values plus the position of every key and value.

Built straight from the parser's event stream (libyaml's when PyYAML has it)
with an explicit stack: no node tree, no recursion, so a 10,000-node file
loads fast and a deeply nested one cannot crash the interpreter (libyaml's
own composer recurses in C and segfaults on deep nesting).

Scalars that hold ``${VAR}`` and mappings with merge keys (``<<``) are collected on
the way and finished once the whole file is read (``yamlfixups``), so ``vars:`` may
sit anywhere; keys are never substituted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from orchestrator.spec.diagnostics import Diagnostic, Position
from orchestrator.spec.source import Entry, PathKey, SourceMap
from orchestrator.spec.yamlfixups import Fixup, Merge, apply_merges, known_variables, substitute
from orchestrator.spec.yamlscalars import (
    BOOL,
    MERGE,
    RESOLVER_CHARS,
    STR,
    ScalarError,
    construct,
    resolve,
)

_PARSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 500
# Positions an alias may copy, beyond a share of the text's size: stops "billion laughs".
MAX_ALIAS_ENTRIES = 100_000


def _parse(text: str) -> Iterator[Any]:
    """The parser's events, as ``yaml.parse`` gives them, with one call per event where
    ``yaml.parse`` makes two (``check_event``, then ``get_event``) under a generator."""
    parser = _PARSER(text)
    try:
        get, stream_end = parser.get_event, yaml.StreamEndEvent
        while True:
            ev = get()
            if ev is None or ev.__class__ is stream_end:
                return
            yield ev
    finally:
        parser.dispose()


class YamlError(Exception):
    """A file that is not YAML (or that we refuse): becomes one E100."""

    def __init__(self, pos: Position, message: str,
                 hint: str = "check indentation, colons and quotes around this spot"):
        super().__init__(message)
        self.pos, self.message, self.hint = pos, message, hint


class _Frame:
    __slots__ = ("is_map", "value", "path", "key", "key_path", "key_pos", "merges", "anchor",
                 "log_start", "merge_seq")

    def __init__(self, is_map: bool, path: PathKey, anchor: str | None, log_start: int,
                 pos: Position):
        self.is_map = is_map
        self.value: Any = {} if is_map else []
        self.path = path
        self.key: Any = _NO_KEY  # mapping: the key waiting for its value
        # That key's path, made once: its value is recorded under the same tuple.
        self.key_path: PathKey = path
        self.key_pos = pos
        self.merges: list[Any] | None = None  # made on the first `<<`: most mappings have none
        self.anchor = anchor
        self.log_start = log_start
        self.merge_seq = False


# ``Position(...)`` goes through the named tuple's ``__new__``, a Python function; making the
# tuple directly takes half as long, and a 10,000-node file has 180,000 positions.
_new_position = tuple.__new__

_NO_KEY = object()
_MERGE_KEY = object()
_SKIP_KEY = object()  # a bad or duplicate key: its value is read and dropped


class EventBuilder:
    """Reads one text into plain values, recording positions (and booleans) in ``source``."""

    def __init__(self, source: SourceMap):
        self.file = source.file
        self.keys, self.values, self.booleans = source.keys, source.values, source.booleans
        self.diags: list[Diagnostic] = []
        self._anchors: dict[str, tuple[Any, list[Entry], tuple[str, bool, Position] | None]] = {}
        self._log: list[Entry] | None = None  # positions recorded while an anchor is open
        self._open_anchors = 0
        self._pasted = 0
        self._alias_budget = MAX_ALIAS_ENTRIES
        self._fixups: list[Fixup] = []
        self._merges: list[Merge] = []
        self._tags: dict[str, str] = {}  # plain text -> its implicit tag (``_resolve``)

    def pos(self, mark: Any) -> Position:
        return _new_position(Position, (self.file, mark.line + 1, mark.column + 1))

    def load(self, text: str, environ: Mapping[str, str]) -> tuple[bool, Any]:
        """(found a document, its value). Raises YamlError."""
        self._alias_budget = MAX_ALIAS_ENTRIES + 4 * len(text)
        try:
            found, root = self._events(text)
        except yaml.MarkedYAMLError as exc:
            raise _syntax_error(self.file, text, exc) from None
        except yaml.YAMLError as exc:
            raise YamlError(Position(self.file, 1, 1), f"YAML syntax error: {exc}") from None
        except UnicodeError:
            raise YamlError(Position(self.file, 1, 1), "the text holds characters that are not "
                            "valid Unicode", "save the file as UTF-8") from None
        if not found:
            return False, None
        substitute(self._fixups, known_variables(root, environ), self.diags, self.booleans)
        apply_merges(self._merges)
        return True, root

    def _record(self, table: dict[PathKey, Position], path: PathKey, pos: Position) -> None:
        if path not in table:
            table[path] = pos
            if self._log is not None:
                self._log.append((table, path, pos))

    def _events(self, text: str) -> tuple[bool, Any]:
        stack: list[_Frame] = []
        top: _Frame | None = None  # stack[-1], the mapping or sequence being read
        found, root, documents = False, None, 0
        file, values = self.file, self.values
        # The parser makes events of exactly these classes: one look at the class, not a chain
        # of isinstance calls, sorts each of the 230,000 events of a 10,000-node file.
        scalar, mapping, sequence = (yaml.ScalarEvent, yaml.MappingStartEvent,
                                     yaml.SequenceStartEvent)
        ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
        for ev in _parse(text):
            kind = ev.__class__
            if kind is scalar:
                if top is not None and self._plain_text(top, ev, file, values):
                    continue
                path = self._child_path(stack)
                pos = self.pos(ev.start_mark)
                value, fix = self._scalar(ev, pos, path, key=top is not None and top.is_map
                                          and top.key is _NO_KEY)
                if ev.anchor:
                    self._anchors[ev.anchor] = (value, [], fix)
                found, root = self._add(stack, value, pos, path, fix, root)
            elif kind is mapping or kind is sequence:
                if len(stack) >= MAX_DEPTH:
                    raise YamlError(self.pos(ev.start_mark), "YAML nesting is too deep",
                                    f"a topology nests a few levels deep, never {MAX_DEPTH}")
                path = self._child_path(stack)
                pos = self.pos(ev.start_mark)
                self._record(values, path, pos)
                if ev.anchor:
                    self._open_anchors += 1
                    if self._log is None:
                        self._log = []
                frame = _Frame(kind is mapping, path, ev.anchor,
                               len(self._log) if self._log is not None else 0, pos)
                if top is not None and top.is_map and top.key is _MERGE_KEY and not frame.is_map:
                    frame.merge_seq, frame.path = True, top.path
                stack.append(frame)
                top = frame
            elif kind in ends:
                frame = stack.pop()
                top = stack[-1] if stack else None
                if frame.merges:
                    self._merges.append((frame.value, frame.merges))
                if frame.anchor:
                    self._end_anchor(frame)
                if top is not None and top.is_map and top.key.__class__ is str:
                    # The common case of _add: a mapping or list as the value of a key.
                    top.value[top.key] = frame.value
                    top.key = _NO_KEY
                else:
                    found, root = self._add(stack, frame.value, frame.key_pos, frame.path, None,
                                            root)
            elif isinstance(ev, yaml.AliasEvent):
                found, root = self._alias(stack, ev, root)
            elif isinstance(ev, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise YamlError(self.pos(ev.start_mark), "YAML syntax error: the file holds "
                                    "more than one document (a second '---')")
        return found, root

    def _plain_text(self, top: _Frame, ev: yaml.ScalarEvent, file: str,
                    values: dict[PathKey, Position]) -> bool:
        """The common case, done fast: an untagged text scalar that needs no resolving,
        interpolation or diagnostic. False leaves the event to the general path."""
        text = ev.value
        if ev.tag is not None or ev.anchor is not None or "$" in text or (
                not ev.style and (not text or text[0] in RESOLVER_CHARS)
                and self._resolve(text) != STR):
            return False
        mark = ev.start_mark
        assert mark is not None  # the parser marks every event
        pos = _new_position(Position, (file, mark.line + 1, mark.column + 1))
        if top.is_map:
            key = top.key
            if key is _NO_KEY:
                if text in top.value:
                    return False
                path = top.path + (text,)
                self.keys[path] = pos
                if self._log is not None:
                    self._log.append((self.keys, path, pos))
                top.key, top.key_path = text, path
                return True
            if key is _SKIP_KEY or key is _MERGE_KEY:
                return False
            path = top.key_path
            top.value[key] = text
            top.key = _NO_KEY
        else:
            if top.merge_seq:
                return False
            path = top.path + (len(top.value),)
            top.value.append(text)
        if path not in values:
            values[path] = pos
            if self._log is not None:
                self._log.append((values, path, pos))
        return True

    def _resolve(self, text: str) -> str:
        """``resolve(text)``, once per distinct text of the file: the same keys and words
        (``type``, ``options``, ``never``) come back on every node."""
        tag = self._tags.get(text)
        if tag is None:
            tag = self._tags[text] = resolve(text)
        return tag

    def _end_anchor(self, frame: _Frame) -> None:
        log = self._log or []
        n = len(frame.path)
        entries = [(table, path[n:], pos) for table, path, pos in log[frame.log_start:]]
        self._anchors[frame.anchor or ""] = (frame.value, entries, None)
        self._open_anchors -= 1
        if not self._open_anchors:
            self._log = None

    def _alias(self, stack: list[_Frame], ev: yaml.AliasEvent, root: Any) -> tuple[bool, Any]:
        pos = self.pos(ev.start_mark)
        if ev.anchor not in self._anchors:
            raise YamlError(pos, f"YAML syntax error: found undefined alias '{ev.anchor}'")
        value, entries, fix = self._anchors[ev.anchor]
        path = self._child_path(stack)
        self._pasted += len(entries) + 1
        if self._pasted > self._alias_budget:
            raise YamlError(pos, "the file's aliases expand to too much data",
                            "use fewer aliases (*name), or write the values out")
        self._record(self.values, path, pos)
        for table, rel, p in entries:
            self._record(table, path + rel, p)
        return self._add(stack, value, pos, path, fix, root)

    def _child_path(self, stack: list[_Frame]) -> PathKey:
        if not stack:
            return ()
        top = stack[-1]
        if top.is_map:
            if top.key is _NO_KEY or top.key is _SKIP_KEY:
                return top.path + ("\0",)  # a key itself, or a dropped value: not recorded usefully
            return top.path if top.key is _MERGE_KEY else top.key_path
        return top.path if top.merge_seq else top.path + (len(top.value),)

    def _add(self, stack: list[_Frame], value: Any, pos: Position | None, path: PathKey,
             fix: tuple[str, bool, Position] | None, root: Any) -> tuple[bool, Any]:
        if not stack:
            if fix is not None:
                self._fixups.append(([value], 0, *fix))
            return True, value
        top = stack[-1]
        if not top.is_map:
            if top.merge_seq:
                _merge_into(stack[-2], value)
                return True, root
            if fix is not None:
                self._fixups.append((top.value, len(top.value), *fix))
            top.value.append(value)
            return True, root
        if top.key is _NO_KEY:
            top.key = self._key(top, value, pos)
            return True, root
        key, top.key = top.key, _NO_KEY
        if key is _MERGE_KEY:
            _merge_into(top, value)
        elif key is not _SKIP_KEY:
            if fix is not None:
                self._fixups.append((top.value, key, *fix))
            top.value[key] = value
        return True, root

    def _key(self, top: _Frame, key: Any, pos: Position | None) -> Any:
        pos = pos or Position(self.file, 1, 1)
        if key is _MERGE_KEY:
            return key
        if not isinstance(key, str | int | float | bool) or key is None:
            self.diags.append(Diagnostic.at(pos, "E101", "a mapping key must be a plain word",
                                            "write keys as plain text, like `type:`"))
            return _SKIP_KEY
        key = key if isinstance(key, str) else str(key)
        if key in top.value:
            self.diags.append(Diagnostic.at(pos, "E101", f"duplicate key '{key}'",
                                            "a key may appear once in a mapping; the later one "
                                            "would silently win"))
            return _SKIP_KEY
        path = top.key_path = top.path + (key,)
        self.keys[path] = pos
        if self._log is not None:
            self._log.append((self.keys, path, pos))
        return key

    def _scalar(self, ev: yaml.ScalarEvent, pos: Position, path: PathKey,
                key: bool) -> tuple[Any, tuple[str, bool, Position] | None]:
        plain = ev.implicit[0] and ev.tag in (None, "!") and ev.style in (None, "")
        tag = ev.tag
        if tag is None or tag == "!":
            tag = resolve(ev.value) if plain else STR
        if tag == MERGE and key:
            return _MERGE_KEY, None
        if not key:
            self._record(self.values, path, pos)
            if plain and tag == BOOL:
                self.booleans[pos] = ev.value  # `yes`: a diagnostic may have to quote it
        value = ev.value if tag == STR else self._construct(tag, ev, pos)
        if not key and isinstance(value, str) and "$" in value and path[:1] != ("vars",):
            return value, (value, plain, pos)
        return value, None

    def _construct(self, tag: str, ev: yaml.ScalarEvent, pos: Position) -> Any:
        try:
            return construct(tag, ev)
        except ScalarError as exc:
            self.diags.append(Diagnostic.at(pos, "E101", exc.message, exc.hint))
            return ev.value


def _merge_into(frame: _Frame, value: Any) -> None:
    """Keep ``value``, named by a ``<<`` key of ``frame``'s mapping, for ``apply_merges``."""
    if frame.merges is None:
        frame.merges = []
    frame.merges.append(value)


def _syntax_error(file: str, text: str, exc: yaml.MarkedYAMLError) -> YamlError:
    if _PARSER is not yaml.SafeLoader:
        # libyaml's messages are terse; the pure-Python parser names the culprit.
        try:
            for _ in yaml.parse(text, Loader=yaml.SafeLoader):
                pass
        except yaml.MarkedYAMLError as better:
            exc = better
        except (yaml.YAMLError, RecursionError):
            pass
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    context = f" ({exc.context})" if exc.context and exc.problem else ""
    return YamlError(Position(file, line, col), f"YAML syntax error: {problem}{context}")
