"""The package's layers, read from its source: imports run one way and never in a circle.

Every module of ``orchestrator/`` is parsed (AST, nothing is imported) and its
imports are checked against the layer order below. ``check_layers`` is pure, so it
is also tested on made-up import maps: a broken rule must be reported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "orchestrator"

# Modules at the top of the package that every layer may use: the exception tree, the
# plan (what the spec layer hands the supervisor), where runs live, value parsing, and
# CURVE key files (for `topo up` to make, nodes to read and the validator to check).
BASE = {"errors", "plan", "paths", "units", "certs", "structs"}

# Which layers each layer may import (besides itself). "front" is the public face and
# the command line: cli, api, node, pytest_plugin, __init__, __main__.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "base": frozenset(),
    "ipc": frozenset({"base"}),
    "runs": frozenset({"ipc", "base"}),
    "child": frozenset({"ipc", "base"}),
    "supervisor": frozenset({"child", "runs", "ipc", "base"}),
    "spec": frozenset({"base"}),
    # views read what the child layer writes: a tap's frames (child/watch.py, roles.py).
    "views": frozenset({"spec", "supervisor", "runs", "ipc", "child", "base"}),
    "start": frozenset({"spec", "supervisor", "runs", "ipc", "child", "base"}),
    # Exporters read the file model and write text: nothing that runs a node.
    "export": frozenset({"spec", "base"}),
    "front": frozenset({"start", "views", "export", "spec", "supervisor", "runs", "ipc", "child",
                        "base"}),
}

# The layers that end up in the lean supervisor and every forked node: no heavy libraries.
LEAN = frozenset({"base", "ipc", "runs", "child", "supervisor"})
HEAVY = frozenset({"pydantic", "yaml", "psutil"})


@dataclass(frozen=True)
class Import:
    module: str  # the module that imports
    target: str  # what it imports (a module of the package, or a top-level library)
    line: int
    in_function: bool
    type_only: bool  # under `if TYPE_CHECKING:`
    deferred: bool  # a `# deferred: ...` comment on its line or the line above


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "front"  # orchestrator/__init__.py
    if (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return "base" if parts[1] in BASE else "front"


def _resolve(name: str, modules: Iterable[str]) -> str:
    """The longest prefix of ``name`` that is a module of the package."""
    known = set(modules)
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return name


def imports_of(module: str, path: Path, modules: Iterable[str]) -> list[Import]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found: list[Import] = []

    def deferred(lineno: int) -> bool:
        """A `# deferred` on the import's line or in the comment block right above it."""
        if "# deferred" in lines[lineno - 1]:
            return True
        above = lineno - 2
        while above >= 0 and lines[above].strip().startswith("#"):
            if lines[above].strip().startswith("# deferred"):
                return True
            above -= 1
        return False

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> None:
        group_deferred = False  # one `# deferred` comment covers the imports right below it
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                group_deferred = group_deferred or deferred(child.lineno)
            else:
                group_deferred = False
            fn = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            tc = type_only or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(
                child.test))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base]) if base else ".".join(anchor)
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                         for a in child.names]
            for name in names:
                target = (_resolve(name, modules) if name.startswith("orchestrator")
                          else name.split(".")[0])
                assert isinstance(child, (ast.Import, ast.ImportFrom))
                found.append(Import(module, target, child.lineno, fn, tc, group_deferred))
            visit(child, fn, tc)

    visit(tree, False, False)
    return found


def package_imports() -> list[Import]:
    modules = all_modules()
    return [imp for m, p in modules.items() for imp in imports_of(m, p, modules)]


def check_layers(imports: Iterable[Import]) -> list[str]:
    """Every import that breaks a layer rule, as a sentence."""
    problems = []
    for imp in imports:
        src = layer_of(imp.module)
        if imp.target.startswith("orchestrator"):
            dst = layer_of(imp.target)
            if dst != src and dst not in MAY_IMPORT[src]:
                problems.append(f"{imp.module}:{imp.line} imports {imp.target}: "
                                f"the {src} layer may not import the {dst} layer")
        elif src in LEAN and imp.target in HEAVY:
            problems.append(f"{imp.module}:{imp.line} imports {imp.target}, which the lean "
                            "supervisor and every forked node would then carry")
    return problems


def find_cycles(imports: Iterable[Import]) -> list[list[str]]:
    """Circles of module-level imports between the package's modules (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.in_function or imp.type_only or not imp.target.startswith("orchestrator"):
            continue
        if imp.target != imp.module:
            graph.setdefault(imp.module, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def undeferred_function_imports(imports: Iterable[Import]) -> list[str]:
    return [f"{imp.module}:{imp.line} imports {imp.target} inside a function without a "
            "`# deferred: why` comment" for imp in imports
            if imp.in_function and not imp.type_only and not imp.deferred]


# -- the package as it is ------------------------------------------------------------------------


def test_every_import_follows_the_layer_order() -> None:
    problems = check_layers(package_imports())
    assert not problems, "\n".join(problems)


def test_no_module_level_import_cycle() -> None:
    assert find_cycles(package_imports()) == []


def test_an_import_inside_a_function_says_what_it_defers() -> None:
    problems = undeferred_function_imports(package_imports())
    assert not problems, "\n".join(problems)


def test_every_folder_is_a_known_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= set(MAY_IMPORT), folders - set(MAY_IMPORT)
    assert {layer_of(m) for m in all_modules()} <= set(MAY_IMPORT)


# -- the checker on made-up packages: it must see what it is there to see ------------------------


def _imp(module: str, target: str, *, in_function: bool = False, deferred: bool = False) -> Import:
    return Import(module, target, 1, in_function, False, deferred)


def test_the_checker_reports_the_supervisor_importing_the_spec_layer() -> None:
    bad = [_imp("orchestrator.supervisor.supervisor", "orchestrator.spec.model")]
    assert check_layers(bad) == [
        "orchestrator.supervisor.supervisor:1 imports orchestrator.spec.model: "
        "the supervisor layer may not import the spec layer"]


def test_the_checker_reports_pydantic_in_a_lean_layer_but_not_in_spec() -> None:
    assert check_layers([_imp("orchestrator.child.node", "pydantic")])
    assert check_layers([_imp("orchestrator.spec.model", "pydantic")]) == []


def test_the_checker_allows_downward_imports() -> None:
    good: Mapping[str, str] = {
        "orchestrator.cli": "orchestrator.spec.validate",
        "orchestrator.supervisor.spawn": "orchestrator.runs.procinfo",
        "orchestrator.views.graph": "orchestrator.spec.links",
        "orchestrator.spec.model": "orchestrator.units",
        "orchestrator.api": "orchestrator.export.kubernetes",
        "orchestrator.export.workloads": "orchestrator.spec.groups",
    }
    assert check_layers(_imp(m, t) for m, t in good.items()) == []


def test_the_checker_keeps_exporters_away_from_what_runs_nodes() -> None:
    assert check_layers([_imp("orchestrator.export.kubernetes", "orchestrator.start.prepare")])
    assert check_layers([_imp("orchestrator.supervisor.run", "orchestrator.export.manifests")])


def test_the_checker_finds_a_cycle_and_ignores_function_level_imports() -> None:
    a, b, c = "orchestrator.spec.a", "orchestrator.spec.b", "orchestrator.spec.c"
    assert find_cycles([_imp(a, b), _imp(b, c), _imp(c, a)]) == [[a, b, c]]
    assert find_cycles([_imp(a, b), _imp(b, a, in_function=True)]) == []
    assert undeferred_function_imports([_imp(b, a, in_function=True)])
    assert undeferred_function_imports([_imp(b, a, in_function=True, deferred=True)]) == []


def test_the_reader_sees_this_module_as_its_layer() -> None:
    assert layer_of("orchestrator") == "front"
    assert layer_of("orchestrator.cli") == "front"
    assert layer_of("orchestrator.errors") == "base"
    assert layer_of("orchestrator.spec.checks.links") == "spec"
    assert module_name(PACKAGE / "spec" / "checks" / "__init__.py") == "orchestrator.spec.checks"
