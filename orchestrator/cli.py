"""The ``topo`` command: parses arguments and calls the library.

Exit status: 0 success, 1 the topology or the run failed, 2 the command could
not run (bad arguments, missing file). ``topo up`` has the run's own codes
(docs/reference.md#exit-codes): 124 timeout, 130 SIGINT, 143 SIGTERM.

Each command imports only the layers it needs, inside its branch of ``_dispatch``:
`topo validate` never loads the supervisor, `topo ps` never loads pydantic.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from orchestrator.errors import TopoError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # main() prints "topo: " before every error; a subcommand adds its own name.
        command = self.prog.removeprefix("topo").strip()
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message}\n(run `{self.prog} --help` for usage)")


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked: importlib.metadata costs every command ~14 ms."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"topo {_version()}")
        parser.exit()


COMMANDS = ("validate", "schema", "graph", "explain", "up", "down", "ps", "top", "tap", "ls",
            "logs", "keys", "export", "gc", "restart")


class _Skipped:
    """What ``build_parser(command)`` makes of the other commands' parsers: nothing."""

    def add_argument(self, *args: object, **kwargs: object) -> None:
        pass

    def add_subparsers(self, *args: object, **kwargs: object) -> _Skipped:
        return self

    def add_parser(self, *args: object, **kwargs: object) -> _Skipped:
        return self


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or, given the ``command`` the arguments name, one that knows only
    that command: each subcommand's parser costs ~0.4 ms of gettext look-ups to make (8 ms
    for all 16, on every call of `topo`)."""
    parser = _Parser(prog="topo", description="Declarative topologies for ZeroMQ and Unix IPC.")
    parser.add_argument("--version", action=_VersionAction)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    class _Sub:
        @staticmethod
        def add_parser(name: str, **kwargs: Any) -> Any:
            return (subparsers.add_parser(name, **kwargs) if command in (None, name)
                    else _Skipped())

    sub = _Sub()

    p = sub.add_parser("validate", help="check topology files before anything runs")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--no-cache", action="store_true",
                   help="check again even when nothing the answer depends on has changed")

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
    p.add_argument("-d", "--detach", action="store_true",
                   help="run in the background; return once every node is ready")
    p.add_argument("--wait-timeout", type=_seconds, default=60.0, metavar="S",
                   help="with -d: give up (and tear down) if not every node is ready "
                        "after S seconds (default 60)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON event per line on stdout (output included)")
    p.add_argument("--allow", action="append", default=[], metavar="KEYFILE",
                   help="with security.curve: let the client whose public key file this is "
                        "connect to every CURVE server of the run (repeatable)")
    p.add_argument("--group", metavar="GROUP",
                   help="run only this group of the topology, reaching the others over tcp "
                        "(what an exported container runs; see `topo export kubernetes`)")
    p.add_argument("--replica", type=_count, metavar="N",
                   help="with --group of one replicated node: run only its replica N")
    p.add_argument("--resolve", action="append", default=[], type=_host_of, metavar="GROUP=HOST",
                   help="with --group: reach that group at HOST instead of its Service name "
                        "(repeatable)")
    p.add_argument("--keys", metavar="DIR",
                   help="with security.curve: take the nodes' key files from DIR instead of "
                        "making them (what the groups of one exported run share)")
    p.add_argument("--ready-file", metavar="PATH", type=_in_a_folder,
                   help="create PATH once every node is ready (a container's readiness probe)")
    # The Python API's runs end with the process that started them (orchestrator.api).
    p.add_argument("--owner-pid", type=int, help=argparse.SUPPRESS)

    p = sub.add_parser("down", help="stop a run and remove everything it created")
    p.add_argument("run", nargs="?", metavar="RUN|FILE")

    p = sub.add_parser("ps", help="show the replicas of a run (of every run without RUN)")
    p.add_argument("run", nargs="?", metavar="RUN")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("top", help="watch a run live: replicas, sockets, messages per second")
    p.add_argument("run", nargs="?", metavar="RUN")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.add_argument("--json", action="store_true", help="print one JSON document and exit")

    p = sub.add_parser("tap", help="print each message crossing one socket of a run")
    p.add_argument("run", metavar="RUN")
    p.add_argument("target", metavar="NODE.SOCKET", help="node.socket or node.N.socket")
    p.add_argument("--count", type=_count, metavar="N", help="exit after N messages")
    p.add_argument("--json", action="store_true", help="one JSON object per message")

    p = sub.add_parser("ls", help="list runs, alive or dead")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("logs", help="show a run's output, merged")
    p.add_argument("run", nargs="?", metavar="RUN")
    p.add_argument("nodes", nargs="*", metavar="NODE", help="node or node.N; default all")
    p.add_argument("-f", "--follow", action="store_true", help="follow until the run ends")
    p.add_argument("--tail", type=_count, metavar="N", help="only the last N lines")
    p.add_argument("--no-color", action="store_true")

    p = sub.add_parser("keys", help="print the CURVE public keys of a run's nodes")
    p.add_argument("run", metavar="RUN|FILE")
    p.add_argument("node", nargs="?", metavar="NODE", help="only this node's key")
    p.add_argument("--make", metavar="DIR",
                   help="make a key pair per node of FILE in the new folder DIR instead "
                        "(for `topo up --keys DIR`)")

    p = sub.add_parser("export", help="write a topology for another platform (kubernetes)")
    targets = p.add_subparsers(dest="target", metavar="TARGET", parser_class=_Parser,
                               required=True)
    p = targets.add_parser("kubernetes", help="Kubernetes manifests: one workload per group")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--image", metavar="IMAGE",
                   help="the image every container runs: the project, with topo installed")
    p.add_argument("-o", "--output", dest="output", metavar="OUT",
                   help="write the manifests to OUT instead of stdout")
    p.add_argument("--namespace", metavar="NS", help="put every object in namespace NS")
    p.add_argument("--workdir", default="/app", metavar="DIR",
                   help="where the image holds the project (default /app)")
    p.add_argument("--explain", action="store_true",
                   help="say which link put which nodes together and what each group "
                        "becomes, instead of the manifests")

    sub.add_parser("gc", help="remove what dead runs left behind (only topo's own)")

    p = sub.add_parser("restart", help="restart a node (all replicas) or one replica node.N")
    p.add_argument("run", metavar="RUN")
    p.add_argument("nodes", nargs="+", metavar="NODE")
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    # argparse stops filling `NODE...` at the first option: `logs RUN --tail 5 worker` would
    # leave `worker` over. Names after options still belong to it.
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None) in ("logs", "restart") and not any(
            e.startswith("-") for e in extra):
        args.nodes = [*args.nodes, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "command", None) == "logs":
        args.run, args.nodes = _split_run(args.run, args.nodes)
    return args


def _split_run(run: str | None, nodes: list[str]) -> tuple[str | None, list[str]]:
    """`logs [RUN] [NODE...]`: the first name is a run only if a run has that name."""
    if run is None:
        return None, nodes
    # deferred: each command loads only its own layers
    from orchestrator.paths import run_dir

    if run_dir(run).is_dir() if "/" not in run else True:
        return run, nodes
    return None, [run, *nodes]


def _in_a_folder(text: str) -> str:
    """A file path whose folder exists (it is created later, when it cannot say why)."""
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"{text}: the folder {folder} does not exist")
    return os.path.abspath(text)


def _host_of(text: str) -> tuple[str, str]:
    group, eq, host = text.partition("=")
    if not eq or not group or not host:
        raise argparse.ArgumentTypeError(f"expected GROUP=HOST, not {text!r}")
    return group, host


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    # deferred: each command loads only its own layers
    from orchestrator.units import parse_duration

    try:
        return parse_duration(text if not text.replace(".", "", 1).isdigit() else float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _version() -> str:
    # deferred: importlib.metadata costs every command ~14 ms; only --version needs it
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("topo")
    except PackageNotFoundError:
        return "0+unknown"


def run() -> NoReturn:
    """The `topo` command: ``main()``, then out without the interpreter's tear-down.

    Nothing of the command's is left to finalize once ``main`` returns; the tear-down
    of every module the command imported would add ~10 ms to each `topo` call.
    """
    try:
        code = main()
    except SystemExit as exc:  # --help and --version end in argparse
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # as the interpreter does with sys.exit("message")
            print(exc.code, file=sys.stderr)
            code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError):  # `topo ps | head` closed it
            stream.flush()
    os._exit(code & 0xFF)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    named = words[0] if words and words[0] in COMMANDS else None
    try:
        args = _parse(build_parser(named), argv)
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


def _validate(args: argparse.Namespace) -> int:
    """`topo validate`, told from the cache when nothing it depends on has changed."""
    # deferred: each command loads only its own layers
    from orchestrator.spec.cache import ValidateCache

    cache = None if args.no_cache else ValidateCache.for_command(
        args.files, strict=args.strict, fmt=args.format)
    if cache is not None:
        code = cache.replay()
        if code is not None:
            return code
    # deferred: the model and pydantic, only when the file has to be checked
    from orchestrator.spec.validate import run_validate

    if cache is None:
        return run_validate(args.files, strict=args.strict, fmt=args.format)
    with cache.record() as environ:
        code = run_validate(args.files, strict=args.strict, fmt=args.format, environ=environ)
    cache.keep(code)
    return code


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "validate":
        return _validate(args)
    if args.command == "schema":
        # deferred: each command loads only its own layers
        import json

        # deferred: each command loads only its own layers
        from orchestrator.views.schema import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.command == "graph":
        # deferred: each command loads only its own layers
        from orchestrator.spec.validate import load_or_raise
        from orchestrator.views.graph import render

        topology = load_or_raise(args.file).topology
        assert topology is not None  # load_or_raise raises when the file has errors
        print(render(topology, args.format), end="")
        return 0
    if args.command == "explain":
        # deferred: each command loads only its own layers
        from orchestrator.spec.validate import load_or_raise
        from orchestrator.views.explain import explain

        loaded = load_or_raise(args.file)
        assert loaded.topology is not None  # load_or_raise raises when the file has errors
        print(explain(loaded.topology, loaded.diagnostics), end="")
        return 0
    if args.command == "up":
        if args.detach:
            return _up_detached(args)
        # deferred: each command loads only its own layers
        from orchestrator.start.foreground import up_from_cli

        return up_from_cli(args)
    if args.command in ("down", "ls", "restart"):
        # deferred: each command loads only its own layers
        from orchestrator.runs import client as runs

        if args.command == "down":
            return runs.down(args.run)
        if args.command == "ls":
            return runs.ls(as_json=args.json)
        return runs.restart(args.run, args.nodes)
    if args.command == "export":
        # deferred: each command loads only its own layers
        from orchestrator.export.kubernetes import run_export

        return run_export(args.file, image=args.image, out=args.output,
                          namespace=args.namespace, workdir=args.workdir, explain=args.explain)
    if args.command == "gc":
        # deferred: each command loads only its own layers
        from orchestrator.paths import state_root
        from orchestrator.runs.gc import gc

        said = gc(state_root())
        print("\n".join(said) if said else "nothing to clean: no dead run is left")
        return 0
    if args.command == "ps":
        # deferred: each command loads only its own layers
        from orchestrator.views.ps import ps

        return ps(args.run, as_json=args.json)
    if args.command == "top":
        # deferred: each command loads only its own layers
        from orchestrator.views.top import top

        try:
            return top(args.run, once=args.once, as_json=args.json)
        except KeyboardInterrupt:
            return 0
    if args.command == "tap":
        # deferred: each command loads only its own layers
        from orchestrator.views.tap import tap

        return tap(args.run, args.target, count=args.count, as_json=args.json)
    if args.command == "logs":
        # deferred: each command loads only its own layers
        from orchestrator.views.logs import logs

        return logs(args.run, args.nodes, follow=args.follow, tail=args.tail,
                    no_color=args.no_color)
    if args.command == "keys":
        # deferred: each command loads only its own layers
        from orchestrator.views.keys import keys, make

        if args.make is not None:
            if args.node is not None:
                raise UsageError("topo keys --make DIR FILE takes no NODE")
            return make(args.make, args.run)
        return keys(args.run, args.node)
    raise UsageError(f"unknown command {args.command}")

def _up_detached(args: argparse.Namespace) -> int:
    # deferred: each command loads only its own layers
    from orchestrator.start.detached import up_detached

    if args.exit_code_from:
        raise UsageError("--exit-code-from needs a foreground run; it cannot go with -d")
    if args.json:
        raise UsageError("--json streams a foreground run's events; it cannot go with -d")
    group = None
    if args.group is not None or args.replica is not None or args.resolve:
        # deferred: the groups need the model (pydantic); a kept plan is started without it
        from orchestrator.start.prepare import group_choice

        group = group_choice(args)
    run_id = up_detached(args.file, run_id=args.run_id, timeout=args.timeout,
                         wait_timeout=args.wait_timeout, abort_on_failure=args.abort_on_failure,
                         owner_pid=args.owner_pid, allow=args.allow,
                         group=group, ready_file=args.ready_file, keys=args.keys,
                         progress=sys.stderr.isatty(), cache=True)
    print(run_id)
    print(f"run {run_id} is up: `topo ps {run_id}`, `topo logs -f {run_id}`, "
          f"`topo down {run_id}`", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
