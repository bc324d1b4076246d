"""``orchestrator.structs`` against ``dataclasses``: every struct of the package and its twin.

The twin is the class's own source, compiled again with ``@dataclass`` where it says
``@struct``: whatever the two make of the same body must behave alike.
"""

from __future__ import annotations
import __future__

import dataclasses
import inspect
import re
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.ipc.keys import Live
from orchestrator.ipc.resources import Resource
from orchestrator.plan import (
    BackoffPlan,
    IpcPlan,
    NodePlan,
    Plan,
    ReadyPlan,
    ReplicaPlan,
    SocketPlan,
)
from orchestrator.structs import FrozenInstanceError, field, fields, replace, struct
from orchestrator.supervisor.policy import Decision, History, RestartPolicy
from orchestrator.supervisor.readiness import Probe
from orchestrator.supervisor.replica import Options, Replica
from orchestrator.supervisor.run import Hooks
from orchestrator.supervisor.spawn import Proc
from orchestrator.supervisor.watching import _Pending, _SocketView

PACKAGE = [SocketPlan, IpcPlan, ReadyPlan, BackoffPlan, NodePlan, ReplicaPlan, Plan,
           RestartPolicy, History, Decision, Probe, Options, Replica, Hooks, Proc,
           _SocketView, _Pending, Live, Resource]


def twin(cls: type) -> type:
    """``cls`` as ``@dataclass`` makes it from the same source, in the same module."""
    source = textwrap.dedent(inspect.getsource(cls))
    source = re.sub(r"^@struct\b", "@dc_twin.dataclass", source, flags=re.M)
    source = re.sub(r"\bfield\(", "dc_twin.field(", source)
    namespace = dict(vars(sys.modules[cls.__module__]), dc_twin=dataclasses)
    code = compile(source, f"<twin of {cls.__qualname__}>", "exec",
                   flags=__future__.annotations.compiler_flag, dont_inherit=True)
    exec(code, namespace)  # noqa: S102
    made: type = namespace[cls.__name__]
    made.__qualname__ = cls.__qualname__
    return made


TWINS = {cls: twin(cls) for cls in PACKAGE}

VALUES = st.one_of(st.none(), st.integers(-3, 3), st.text("ab", max_size=2),
                   st.tuples(st.integers(0, 2)), st.booleans())


def test_every_struct_of_the_lean_path_is_here() -> None:
    # A struct added to the package without its twin here would go unchecked.
    import orchestrator.supervisor.lean  # noqa: F401 - loads the supervisor's modules
    import orchestrator.supervisor.run  # noqa: F401

    seen = {obj for mod in list(sys.modules.values())
            if getattr(mod, "__name__", "").startswith("orchestrator.")
            for obj in vars(mod).values()
            if isinstance(obj, type) and "__struct_fields__" in vars(obj)}
    assert seen <= set(PACKAGE)


@pytest.mark.parametrize("cls", PACKAGE, ids=lambda c: c.__name__)
def test_same_signature_fields_and_class_attributes(cls: type) -> None:
    ours, theirs = inspect.signature(cls), inspect.signature(TWINS[cls])
    assert list(ours.parameters) == list(theirs.parameters)
    for name, p in ours.parameters.items():
        q = theirs.parameters[name]
        assert (p.default is inspect.Parameter.empty) == (q.default is inspect.Parameter.empty)
        if q.default is not inspect.Parameter.empty and repr(q.default) != "<factory>":
            assert p.default == q.default
    assert fields(cls) == tuple(f.name for f in dataclasses.fields(TWINS[cls]))
    assert vars(cls)["__match_args__"] == vars(TWINS[cls])["__match_args__"]
    for name in fields(cls):  # a field's default is no class attribute where dataclasses'...
        assert (name in vars(cls)) == (name in vars(TWINS[cls]))  # ...is none either
    assert (cls.__hash__ is None) == (TWINS[cls].__hash__ is None)


def _pair(cls: type, data: st.DataObject) -> tuple[dict[str, Any], Any, Any]:
    params = inspect.signature(cls).parameters
    args: dict[str, Any] = {name: data.draw(VALUES, label=name) for name, p in params.items()
            if p.default is inspect.Parameter.empty or data.draw(st.booleans())}
    if cls is Replica:  # its __post_init__ reads plan.name
        args["plan"] = ReplicaPlan("n", data.draw(st.integers(0, 3)), "run")
    return args, cls(**args), TWINS[cls](**args)


def _outcome(fn: Any) -> Any:
    try:
        return ("value", fn())
    except Exception as exc:  # noqa: BLE001 - the kind of failure is what is compared
        return ("raises", AttributeError if isinstance(exc, AttributeError) else type(exc))


@settings(max_examples=60, deadline=None)
@pytest.mark.parametrize("cls", PACKAGE, ids=lambda c: c.__name__)
@given(data=st.data())
def test_behaves_as_its_dataclass_twin(cls: type, data: st.DataObject) -> None:
    args, ours, theirs = _pair(cls, data)
    assert repr(ours) == repr(theirs)
    assert vars(ours) == vars(theirs)
    assert list(vars(ours)) == list(vars(theirs))  # the order to_dict writes them in
    args2, ours2, theirs2 = _pair(cls, data)
    assert (ours == ours2) == (theirs == theirs2)
    assert (ours == ours) == (theirs == theirs)
    assert (ours == object()) == (theirs == object())
    assert _outcome(lambda: hash(ours) == hash(ours2)) == _outcome(
        lambda: hash(theirs) == hash(theirs2))
    name = data.draw(st.sampled_from(fields(cls)))
    assert _outcome(lambda: setattr(ours, name, 1)) == _outcome(lambda: setattr(theirs, name, 1))
    assert _outcome(lambda: delattr(ours2, name)) == _outcome(lambda: delattr(theirs2, name))
    assert _outcome(lambda: setattr(ours, "other", 1)) == _outcome(
        lambda: setattr(theirs, "other", 1))
    change = {n: data.draw(VALUES) for n in data.draw(st.sets(st.sampled_from(
        list(inspect.signature(cls).parameters) or ["x"]))) if n != "plan"}
    assert _outcome(lambda: repr(replace(ours, **change))) == _outcome(
        lambda: repr(dataclasses.replace(theirs, **change)))


def test_a_frozen_struct_refuses_changes_with_a_frozen_error() -> None:
    s = SocketPlan("out", "PUSH")
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'type'"):
        s.type = "PULL"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del s.name
    assert isinstance(FrozenInstanceError(), AttributeError)


def test_factories_make_a_new_value_per_instance_and_post_init_runs() -> None:
    a, b = SocketPlan("a", "PUB"), SocketPlan("b", "SUB")
    assert a.options == {} and a.options is not b.options
    r = Replica(ReplicaPlan("w", 2, "run"), RestartPolicy(), Probe("started"))
    assert r.name == "w.2" and r.history == History() and r != Replica(
        r.plan, r.policy, r.probe)  # eq=False: identity
    assert hash(r) == object.__hash__(r)  # eq=False keeps object's hash
    assert hash(History()) == hash(History())


def test_inherited_fields_come_first_and_keep_their_defaults() -> None:
    @struct(frozen=True)
    class Base:
        a: int
        b: list[int] = field(default_factory=list)

    @struct(frozen=True)
    class Child(Base):
        c: str = "c"

    x = Child(1)
    assert fields(Child) == ("a", "b", "c") and x.b == []
    assert repr(x).endswith(".<locals>.Child(a=1, b=[], c='c')")  # the qualname, as dataclasses
    assert replace(x, c="d") == Child(1, [], "d")
    assert Child(1) != Base(1)  # another class is never equal, as with dataclasses


def test_a_required_field_after_a_default_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="field b without a default follows one"):
        @struct
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]


def test_replace_refuses_what_init_does_not_take() -> None:
    r = Replica(ReplicaPlan("w", 0, "run"), RestartPolicy(), Probe("started"))
    with pytest.raises(TypeError, match="has no field 'name' that __init__ takes"):
        replace(r, name="x")
    assert replace(r, restarts=3).restarts == 3 and replace(r, restarts=3).name == "w.0"


def test_the_supervisor_loads_no_dataclasses() -> None:
    # What the module is for: the lean path must not import dataclasses (and inspect).
    import subprocess

    code = ("import sys; import orchestrator.supervisor.lean, orchestrator.supervisor.run, "
            "orchestrator.child.node, orchestrator.child.watch, orchestrator.child.rehearsal, "
            "orchestrator.start.foreground, orchestrator.spec.cache; "
            "print(sorted({'dataclasses', 'inspect'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"

