#!/usr/bin/env python3
"""Write docs/topologies.md: every file in topologies/, its header comment and its drawing.

    python scripts/gen_topologies_doc.py           # rewrite docs/topologies.md
    python scripts/gen_topologies_doc.py --check   # exit 1 if the committed file is stale

For each topology: its title and description from the comment it opens with
(the ``# check-*`` lines left out), and ``topo graph``'s Mermaid drawing. The
ZeroMQ tour comes first in teaching order, then the Unix IPC examples, then any
other file by name. Variables take their defaults from the file (the
environment is ignored), so the output is the same on every machine.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.spec.validate import validate_file  # noqa: E402
from orchestrator.views.graph import render  # noqa: E402 - after the path is set

TARGET = ROOT / "docs" / "topologies.md"
TOUR = ("hello_reqrep", "rrbroker_poll", "rrbroker", "pubsub", "pipeline", "pipeline_kill",
        "tcp_and_ipc", "inproc_threads", "forwarder", "lazy_pirate", "paranoid_pirate",
        "process_pool", "php_lbbroker", "php_reqrep", "ironhouse")
LABEL = re.compile(r"^([A-Z][a-z]+):\s*(.*)$")
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+ )*topo \w")
CHECK = re.compile(r"^check-[a-z-]+:")
OUTPUT = re.compile(r"[:|0-9]|\.\.\.")


def ordered(paths: list[Path]) -> list[tuple[str, list[Path]]]:
    """The files grouped into sections, in reading order."""
    by_stem = {p.stem: p for p in paths}
    tour = [by_stem[s] for s in TOUR if s in by_stem]
    ipc = sorted(p for p in paths if p.stem.startswith("ipc_") and p not in tour)
    rest = sorted(p for p in paths if p not in tour and p not in ipc)
    sections = [("ZeroMQ patterns", tour), ("Unix IPC", ipc), ("More", rest)]
    return [(title, files) for title, files in sections if files]


def comment_lines(text: str) -> list[str]:
    """The opening comment without its ``#`` marks and without the ``check-*`` lines."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        body = stripped[1:]
        body = body[1:] if body.startswith(" ") else body
        if not CHECK.match(body.strip()):
            out.append(body.rstrip())
    while out and not out[-1].strip():
        out.pop()
    return out


def inline(prose: str) -> str:
    """Prose as Markdown: quoted output lines become code; `*` and `<` cannot start markup."""
    out = []
    for i, part in enumerate(re.split(r"(`[^`]*`)", prose)):
        if i % 2:  # already a code span
            out.append(part)
            continue
        pieces = re.split(r'"([^"]*)"', part)
        for j, piece in enumerate(pieces):
            if j % 2 and OUTPUT.search(piece):  # a quoted line of output: show it as code
                fence = "``" if "`" in piece else "`"
                out.append(f"{fence}{piece}{fence}")
            elif j % 2:
                out.append('"' + piece.replace("*", "\\*").replace("<", "&lt;") + '"')
            else:
                out.append(piece.replace("*", "\\*").replace("<", "&lt;"))
    return "".join(out)


def markdown_of_comment(lines: list[str]) -> tuple[str, str]:
    """(title, body in Markdown) of an opening comment."""
    title = inline(lines[0].strip()) if lines else ""
    blocks: list[tuple[str, list[str]]] = []  # (label, lines); label "" is plain text
    for line in lines[1:]:
        m = LABEL.match(line)
        if m:
            blocks.append((m[1], [m[2]]))
        elif not line.strip():
            blocks.append(("", []))
        elif blocks:
            blocks[-1][1].append(line.strip())
        else:
            blocks.append(("", [line.strip()]))
    out = []
    for label, body in blocks:
        if not body:
            continue
        commands = [b for b in body if COMMAND.match(b)] if label in ("Run", "Try") else []
        prose = inline(" ".join(b for b in body if b not in commands))
        if commands:
            out.append(f"**{label}:**\n\n```sh\n" + "\n".join(commands) + "\n```")
            if prose:
                out.append(prose)
        elif label:
            out.append(f"**{label}:** {prose}")
        else:
            out.append(prose)
    return title, "\n\n".join(out)


def section(path: Path) -> str:
    loaded = validate_file(path, environ={})
    if loaded.topology is None:
        raise SystemExit(f"{path}: does not load; run `topo validate {path}`")
    title, body = markdown_of_comment(comment_lines(path.read_text(encoding="utf-8")))
    mermaid = render(loaded.topology, "mermaid")
    return (f"### {path.stem}\n\n*{title}* — [`topologies/{path.name}`](../topologies/{path.name})"
            f"\n\n{body}\n\n```mermaid\n{mermaid}```\n")


def generate(folder: Path = ROOT / "topologies") -> str:
    sections = ordered(sorted(folder.glob("*.yaml")))
    parts = ["# The teaching topologies\n",
             "Every file in `topologies/` runs with one command, draws itself (`topo graph`) and "
             "explains itself (`topo explain`). Each section below is the comment the file opens "
             "with, then its drawing. `tests/integration/test_topologies.py` runs every file and "
             "checks the outcome its `# check-*` lines promise.\n",
             "This file is generated by `python scripts/gen_topologies_doc.py`; do not edit it "
             "by hand.\n"]
    for title, files in sections:
        parts.append(f"## {title}\n")
        for path in files:
            loaded = validate_file(path, environ={})
            desc = loaded.topology.description if loaded.topology else ""
            parts.append(f"- [{path.stem}](#{path.stem}): {desc}")
        parts[-1] += "\n"
        parts.extend(section(path) for path in files)
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if docs/topologies.md is not current")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is not current: run "
                  "`python scripts/gen_topologies_doc.py` and commit the result", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
