"""Every file in topologies/ runs with `topo up` and does what its header comment says.

A teaching topology opens with a comment that says what it teaches, how to run
it and what you should see, and ends that comment with its expected outcome in
machine-checkable lines:

    # check-args: --exit-code-from client     optional: extra `topo up` arguments
    # check-exit: 0                           required: the exit status of `topo up`
    # check-line: client\\.0 \\| done           zero or more: a regex some output line matches
    # check-no-line: client\\.0 .*sports       zero or more: a regex no output line matches

Each file runs as ``python -m orchestrator up FILE --no-color --timeout 60 ARGS``
in a subprocess under ``no_leftovers``; a new file without ``check-exit`` fails.
The files are parametrized one test each, so ``pytest -n 2`` spreads them.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.spec.validate import validate_file
from tests.conftest import Leftovers
from tests.tools import need, need_php_extension
from tests.topo_samples import ROOT, TEACHING

HEADER = re.compile(r"^#\s*check-(args|exit|line|no-line):\s?(.*)$")
# What no run may print: a Python traceback, a PHP fatal error.
CRASHES = re.compile(r"Traceback \(most recent call last\)|PHP (Fatal|Parse) error")
# PHP functions -> the extension a PHP node needs for them.
PHP_EXTENSIONS = {r"\bZMQ": "zmq", r"\bmsg_(get_queue|send|receive)\b": "sysvmsg",
                  r"\bshmop_\w+": "shmop", r"\bsem_(get|acquire|release)\b": "sysvsem"}


@dataclass(frozen=True)
class Expected:
    exit: int
    args: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()
    no_lines: tuple[str, ...] = ()
    comment: str = field(default="", repr=False)


def leading_comment(text: str) -> list[str]:
    """The comment lines the file opens with (blank lines inside the block are kept)."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        out.append(stripped)
    return out


def expected_of(text: str) -> Expected:
    """The ``check-*`` lines of a file's opening comment; ``ValueError`` says what is wrong."""
    comment = leading_comment(text)
    found: dict[str, list[str]] = {"args": [], "exit": [], "line": [], "no-line": []}
    for line in comment:
        m = HEADER.match(line)
        if m:
            found[m[1]].append(m[2].strip())
    if len(found["exit"]) != 1:
        raise ValueError("the opening comment needs exactly one `# check-exit: N` line "
                         f"(found {len(found['exit'])}): the expected outcome of `topo up`")
    if not found["exit"][0].isdigit():
        raise ValueError(f"check-exit must be a number, not {found['exit'][0]!r}")
    for rx in found["line"] + found["no-line"]:
        try:
            re.compile(rx)
        except re.error as exc:
            raise ValueError(f"check line {rx!r} is not a regular expression: {exc}") from None
    return Expected(
        exit=int(found["exit"][0]),
        args=tuple(a for line in found["args"] for a in shlex.split(line)),
        lines=tuple(found["line"]),
        no_lines=tuple(found["no-line"]),
        comment="\n".join(comment),
    )


def php_extensions(path: Path) -> set[str]:
    """The PHP extensions the topology's PHP programs use (empty: no PHP node)."""
    loaded = validate_file(path)
    needed: set[str] = set()
    if loaded.topology is None:  # test_validates_clean_or_names_its_warnings says why
        return needed
    for node in loaded.topology.nodes.values():
        argv = node.command or []
        if not argv or not Path(argv[0]).name.startswith("php"):
            continue
        needed.add("php")
        cwd = path.parent / (node.cwd or ".")
        for arg in argv[1:]:
            if arg.endswith(".php") and (cwd / arg).is_file():
                source = (cwd / arg).read_text(encoding="utf-8")
                needed.update(ext for rx, ext in PHP_EXTENSIONS.items() if re.search(rx, source))
    return needed


def ids(path: Path) -> str:
    return path.stem


# -- the header itself (pure) ---------------------------------------------------------------------


def test_expected_of_reads_every_kind_of_line() -> None:
    text = ("# A title.\n#\n# check-args: --exit-code-from client -p 'a b'\n# check-exit: 3\n"
            "# check-line: client\\.0 \\| done\n#check-line: second\n"
            "# check-no-line: sports\nname: x\n# check-line: not in the header\n")
    e = expected_of(text)
    assert e.exit == 3
    assert e.args == ("--exit-code-from", "client", "-p", "a b")
    assert e.lines == ("client\\.0 \\| done", "second")
    assert e.no_lines == ("sports",)
    assert "A title." in e.comment and "not in the header" not in e.comment


@pytest.mark.parametrize(("text", "problem"), [
    ("# no outcome\nname: x\n", "exactly one `# check-exit: N`"),
    ("# check-exit: 0\n# check-exit: 1\n", "found 2"),
    ("name: x\n# check-exit: 0\n", "found 0"),
    ("# check-exit: zero\n", "must be a number"),
    ("# check-exit: 0\n# check-line: (unclosed\n", "not a regular expression"),
])
def test_expected_of_rejects_a_file_without_a_clear_outcome(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        expected_of(text)


# -- every file: documented, validated, run --------------------------------------------------------


def test_there_are_teaching_topologies() -> None:
    assert len(TEACHING) >= 14, [p.name for p in TEACHING]


@pytest.mark.parametrize("path", TEACHING, ids=ids)
def test_header_says_what_it_teaches_how_to_run_it_and_what_to_see(path: Path) -> None:
    expected = expected_of(path.read_text(encoding="utf-8"))
    comment = expected.comment
    for label in ("Teaches:", "Run:", "See:"):
        assert label in comment, f"{path.name}: the opening comment has no {label!r} part"
    command = f"topo up topologies/{path.name}"
    assert command in comment, f"{path.name}: the comment does not show `{command}`"
    if expected.args:
        # The command the comment shows is the one the test runs.
        shown = " ".join(comment.replace("#", " ").split())
        assert f"{command} {shlex.join(expected.args)}" in shown, (
            f"{path.name}: the comment's run command lacks {shlex.join(expected.args)}")


@pytest.mark.parametrize("path", TEACHING, ids=ids)
def test_validates_clean_or_names_its_warnings(path: Path) -> None:
    loaded = validate_file(path)
    errors = [d.format() for d in loaded.diagnostics if d.is_error]
    assert not errors, errors
    comment = "\n".join(leading_comment(path.read_text(encoding="utf-8")))
    # A warning is allowed only on purpose: the opening comment names its code (and why).
    unexplained = [d.format() for d in loaded.diagnostics if d.code not in comment]
    assert not unexplained, unexplained


RUNS = [pytest.param(p, id=p.stem, marks=[pytest.mark.php] if php_extensions(p) else [])
        for p in TEACHING]


@pytest.mark.parametrize("path", RUNS)
def test_topology_runs_as_its_header_says(path: Path, no_leftovers: Leftovers) -> None:
    expected = expected_of(path.read_text(encoding="utf-8"))
    needed = php_extensions(path)
    if needed:
        need("php", "apt-get install php-cli")
        for extension in sorted(needed - {"php"}):
            need_php_extension(extension)
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "up", str(path), "--no-color", "--timeout", "60",
         *expected.args],
        cwd=ROOT, env=no_leftovers.env(), capture_output=True, text=True, timeout=90,
        check=False,
    )
    output = result.stdout + result.stderr
    lines = output.splitlines()
    assert result.returncode == expected.exit, (
        f"{path.name}: exit {result.returncode}, expected {expected.exit}\n{output}")
    missing = [rx for rx in expected.lines if not any(re.search(rx, ln) for ln in lines)]
    assert not missing, f"{path.name}: no output line matches {missing}\n{output}"
    unwanted = [ln for rx in expected.no_lines for ln in lines if re.search(rx, ln)]
    assert not unwanted, f"{path.name}: lines that must not be there: {unwanted}\n{output}"
    crashes = [ln for ln in lines if CRASHES.search(ln)]
    assert not crashes, f"{path.name}: a node crashed\n{output}"


def test_docs_topologies_md_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_topologies_doc.py"), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_docs_topologies_md_has_every_topology() -> None:
    text = (ROOT / "docs" / "topologies.md").read_text(encoding="utf-8")
    for path in TEACHING:
        assert f"### {path.stem}\n" in text
        assert f"](../topologies/{path.name})" in text
    assert text.count("```mermaid\nflowchart LR\n") == len(TEACHING)
