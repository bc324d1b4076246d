"""Classes of named fields, as ``dataclasses`` makes them, for the modules a supervisor loads.

``@struct`` gives a class the ``__init__``, ``__repr__`` and ``__eq__`` that
``@dataclass`` would, and with ``frozen=True`` the same refusal to be changed and the
same ``__hash__``. It exists for speed: a run's supervisor defines 19 such classes
before its first fork, and with ``dataclasses`` that cost a `topo up` about 40 ms,
the import (which loads ``inspect``, ``ast`` and ``dis``: 13 ms) and, per class, the
source of each method compiled on its own. Here only ``__init__``,
whose signature is the class's own, is compiled (0.25 ms); the other methods are
closures over the class's fields. The supervisor's pages, and so every forked
node's, are about 1 MiB smaller too.

Only what this package uses is supported: defaults, ``field(default_factory=...)``,
``field(init=False)`` with ``__post_init__``, ``frozen`` and ``eq``; annotations are
read as written (``from __future__ import annotations``), never evaluated.
``tests/test_structs.py`` holds each class of the package against its ``dataclasses``
twin. The validator, the views and the tests may use ``dataclasses``: they are not
on the path of a start.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")

_FIELDS = "__struct_fields__"


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a ``frozen`` struct (as ``dataclasses.FrozenInstanceError``)."""


class _Field:
    __slots__ = ("default_factory", "init")

    def __init__(self, default_factory: Callable[[], Any] | None, init: bool) -> None:
        self.default_factory = default_factory
        self.init = init


def field(*, default_factory: Callable[[], Any] | None = None, init: bool = True) -> Any:
    """A field's default made anew for each instance, or a field ``__init__`` does not take."""
    return _Field(default_factory, init)


@overload
@dataclass_transform(field_specifiers=(field,))
def struct(cls: type[T], /) -> type[T]: ...


@overload
def struct(*, frozen: bool = False, eq: bool = True) -> Callable[[type[T]], type[T]]: ...


def struct(cls: type[T] | None = None, /, *, frozen: bool = False,
           eq: bool = True) -> type[T] | Callable[[type[T]], type[T]]:
    """``@struct``, ``@struct(frozen=True)``, ``@struct(eq=False)``: see the module's text.

    Type checkers read it as they read ``@dataclass`` (``dataclass_transform``).
    """
    def wrap(c: type[T]) -> type[T]:
        return _make(c, frozen=frozen, eq=eq)

    return wrap if cls is None else wrap(cls)


def fields(obj: Any) -> tuple[str, ...]:
    """The names of a struct's fields (class or instance), in order."""
    return getattr(obj, _FIELDS)  # type: ignore[no-any-return]


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of ``obj`` with ``changes`` (as ``dataclasses.replace``)."""
    cls = type(obj)
    init = cls.__struct_init__  # type: ignore[attr-defined]
    for name in changes:
        if name not in init:
            raise TypeError(f"{cls.__name__} has no field {name!r} that __init__ takes")
    return cls(**{name: changes[name] if name in changes else getattr(obj, name)
                  for name in init})


def _make(cls: type[T], *, frozen: bool, eq: bool) -> type[T]:
    # name -> (default or _NONE, default_factory or None, in __init__): the bases' first
    specs: dict[str, tuple[Any, Callable[[], Any] | None, bool]] = {}
    for base in reversed(cls.__mro__[1:]):
        specs.update(getattr(base, "__struct_specs__", {}))
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, _NONE)
        if isinstance(value, _Field):
            delattr(cls, name)  # the instance's value, never a class attribute
            specs[name] = (_NONE, value.default_factory, value.init)
        else:
            specs[name] = (value, None, True)
    env: dict[str, Any] = {"_set": object.__setattr__, "_MISSING": _NONE}
    params, body = [], []
    for name, (value, factory, init) in specs.items():
        assign = f"_set(self, {name!r}, {{}})" if frozen else f"self.{name} = {{}}"
        if factory is not None:
            env[f"_f_{name}"] = factory
        if not init:
            if factory is not None:
                body.append(assign.format(f"_f_{name}()"))
            continue
        if factory is not None:
            params.append(f"{name}=_MISSING")
            body.append(assign.format(f"_f_{name}() if {name} is _MISSING else {name}"))
        elif value is not _NONE:
            env[f"_d_{name}"] = value
            params.append(f"{name}=_d_{name}")
            body.append(assign.format(name))
        elif params and "=" in params[-1]:
            raise TypeError(f"{cls.__name__}: field {name} without a default follows "
                            "one with a default")
        else:
            params.append(name)
            body.append(assign.format(name))
    if any("__post_init__" in c.__dict__ for c in cls.__mro__):
        body.append("self.__post_init__()")
    names = tuple(specs)
    source = "\n".join([f"def __init__(self, {', '.join(params)}):",
                        *(f"    {line}" for line in body or ["pass"])])
    made: dict[str, Any] = {}
    exec(compile(source, f"<struct {cls.__qualname__}>", "exec"), env, made)  # noqa: S102
    methods: dict[str, Any] = {"__init__": made["__init__"]}
    # The rest need no source of their own: closures over the class and its fields.
    values = _getter(names)

    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, values(self), strict=True))
        return f"{type(self).__qualname__}({shown})"

    if "__repr__" not in cls.__dict__:  # the class's own is kept, as dataclasses keeps it
        methods["__repr__"] = __repr__
    if eq:
        def __eq__(self: Any, other: Any) -> Any:
            if other.__class__ is self.__class__:
                return values(self) == values(other)
            return NotImplemented

        methods["__eq__"] = __eq__
    if frozen:
        def __setattr__(self: Any, name: str, value: Any) -> None:
            if type(self) is cls or name in names:
                raise FrozenInstanceError(f"cannot assign to field {name!r}")
            super(cls, self).__setattr__(name, value)

        def __delattr__(self: Any, name: str) -> None:
            if type(self) is cls or name in names:
                raise FrozenInstanceError(f"cannot delete field {name!r}")
            super(cls, self).__delattr__(name)

        methods.update(__setattr__=__setattr__, __delattr__=__delattr__)
        if eq:
            def __hash__(self: Any) -> int:
                return hash(values(self))

            methods["__hash__"] = __hash__
    for name, fn in methods.items():
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, fn)
    if eq and not frozen:
        cls.__hash__ = None  # type: ignore[assignment]  # as dataclasses: mutable and eq
    init_names = tuple(n for n, (_, _, init) in specs.items() if init)
    for attribute, value in ((_FIELDS, names), ("__struct_specs__", specs),
                             ("__struct_init__", init_names), ("__match_args__", init_names)):
        setattr(cls, attribute, value)
    return cls


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The fields' values as one tuple (``attrgetter`` gives a bare value for one name)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        name = names[0]
        return lambda obj: (getattr(obj, name),)
    return lambda obj: ()


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_NONE: Any = _Missing()
