"""The ``topo`` command: parses arguments and calls the library.

Exit status: 0 success, 1 the topology or the run failed, 2 the command could
not run (bad arguments, missing file). ``topo up`` has the run's own codes
(SPEC §3): 124 timeout, 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import TopoError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\n(run `{self.prog} --help` for usage)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="topo", description="Declarative topologies for ZeroMQ and Unix IPC.")
    parser.add_argument("--version", action="version", version=f"topo {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("validate", help="check topology files before anything runs")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.add_argument("--format", choices=["text", "json"], default="text")

    sub.add_parser("schema", help="print the JSON Schema of the topology format")

    p = sub.add_parser("graph", help="draw a topology as Mermaid or Graphviz DOT")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")

    p = sub.add_parser("explain", help="describe a topology in plain words")
    p.add_argument("file", metavar="FILE")

    p = sub.add_parser("up", help="start a topology and supervise it")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-p", "--run-id", dest="run_id", metavar="RUN")
    p.add_argument("--timeout", type=_seconds, metavar="S",
                   help="stop the run after S seconds (exit 124)")
    p.add_argument("--exit-code-from", dest="exit_code_from", metavar="NODE")
    p.add_argument("--abort-on-failure", action="store_true")
    p.add_argument("--no-color", action="store_true")
    return parser


def _seconds(text: str) -> float:
    from .units import parse_duration

    try:
        return parse_duration(text if not text.replace(".", "", 1).isdigit() else float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("topo")
    except PackageNotFoundError:
        return "0+unknown"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 2
        return int(_dispatch(args))
    except TopoError as exc:
        print(f"topo: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "validate":
        from .validate import run_validate

        return run_validate(args.files, strict=args.strict, fmt=args.format)
    if args.command == "schema":
        import json

        from .schema import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.command == "graph":
        from .graph import render
        from .validate import load_or_raise

        topology = load_or_raise(args.file).topology
        assert topology is not None  # load_or_raise raises when the file has errors
        print(render(topology, args.format), end="")
        return 0
    if args.command == "explain":
        from .explain import explain
        from .validate import load_or_raise

        loaded = load_or_raise(args.file)
        assert loaded.topology is not None  # load_or_raise raises when the file has errors
        print(explain(loaded.topology, loaded.diagnostics), end="")
        return 0
    if args.command == "up":
        from .runner import up_from_cli

        return up_from_cli(args)
    raise UsageError(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
