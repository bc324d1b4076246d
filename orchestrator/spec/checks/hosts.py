"""What cannot cross hosts (E150-E155, W250-W251): what `topo export` refuses or warns about.

On one machine every node shares the file system, the loopback interface and the
Unix sockets; exported (``topo export kubernetes``), each group (``spec/groups.py``)
runs in its own pod, from an image that holds one folder: the topology's (or the
``root`` the exporter names). So:

    E150  an ``external: true`` ipc or inproc endpoint: a peer outside the topology on
          this host (or in this process), which no pod has
    E151  a ``cwd`` outside that folder (an absolute path of this host, ``~``, or ``..``
          climbing out of it)
    E152  a program (``command``, ``ready.command``) named by a path outside that folder;
          a bare name found on PATH (``php``), or one in the system's own bin folders,
          is fine
    E153  an ``ftok:`` key whose file is outside that folder: ftok needs the file
    E154  a ``ready:`` probe (``tcp`` or ``ipc``) that watches an endpoint a node of
          another group binds: in its own pod the probe never sees it
    E155  a ``pythonpath`` folder outside that folder: the ``run:`` nodes import from it
    W250  a tcp connect to this host's loopback on a port no node binds: a service of
          this host, which a pod does not have
    W251  an ``external: true`` tcp bind on loopback: exported, only its own pod could
          reach it

Not one of the validator's ``PASSES``: a file with these runs fine on one machine;
only the exporter calls ``check_hosts``. Paths are compared as written (normalised,
not resolved through symlinks), as the planner places them.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath

from orchestrator.spec.checks.context import Context
from orchestrator.spec.checks.links import endpoint_path
from orchestrator.spec.diagnostics import Diagnostic, Position, sort_diagnostics
from orchestrator.spec.groups import group_nodes
from orchestrator.spec.links import Resolution, resolve
from orchestrator.spec.model import Topology
from orchestrator.spec.source import PathKey, SourceMap

# Programs here are the image's own too, like a bare name found on PATH.
SYSTEM_BIN = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/")


def check_hosts(topology: Topology, source: SourceMap,
                root: str | os.PathLike[str] | None = None) -> list[Diagnostic]:
    """The E15x / W25x diagnostics of a valid ``topology`` loaded from ``source.file``.

    ``root``: the folder the exported image holds (default: the topology file's folder);
    every path a node needs must be inside it.
    """
    ctx = Context(topology, source, {})
    hosts = _Hosts(ctx, root)
    for check in (hosts.external_ipc, hosts.folders, hosts.programs, hosts.ftok_keys,
                  hosts.probes, hosts.loopback):
        check()
    hosts.flush()
    return sort_diagnostics(ctx.diags)


class _Hosts:
    def __init__(self, ctx: Context, root: str | os.PathLike[str] | None) -> None:
        self.ctx = ctx
        self.topology = ctx.topology
        # Symlinks resolved in these two only, so that a root named through a link still holds
        # the file; what the file names is compared as written, as the planner places it.
        self.folder = os.path.dirname(os.path.realpath(ctx.source.file))
        self.root = os.path.realpath(root) if root is not None else self.folder
        self.where = (f"the topology's folder {self.root}" if self.root == self.folder
                      else f"{self.root}, the folder the image holds")
        self.found: Resolution = resolve(self.topology)
        # Diagnostics that several nodes share through `defaults:`: one per position.
        self._shared: dict[tuple[Position, str], tuple[list[str], str, str, str]] = {}

    # -- paths -------------------------------------------------------------------------------------

    def _inside(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root.rstrip("/") + "/")

    def _outside(self, text: str, base: str) -> str | None:
        """Why ``text`` (relative to ``base``) is not in the image, after "is"; None if it is."""
        image = "the image `topo export` builds"
        if text == "~" or text.startswith("~/"):
            return f"in this host's home folder; {image} holds {self.where} only"
        if posixpath.isabs(text):
            return (f"an absolute path of this host; {image} holds {self.where} only, at a "
                    "path of its own")
        resolved = posixpath.normpath(posixpath.join(base, text))
        return None if self._inside(resolved) else \
            f"{resolved}, outside {self.where}, which is all {image} holds"

    def _emit_shared(self, path: PathKey, code: str, node: str, lead: str, rest: str,
                     hint: str) -> None:
        """``LEAD node N, REST``: one diagnostic per position (a ``defaults:`` entry many
        nodes inherit), naming every node that has it: ``LEAD nodes A, B, REST``."""
        pos = self.ctx.source.value(*path)
        nodes, _, _, _ = self._shared.setdefault((pos, code), ([], lead, rest, hint))
        nodes.append(node)

    def flush(self) -> None:
        for (pos, code), (nodes, lead, rest, hint) in self._shared.items():
            who = f"node {nodes[0]}" if len(nodes) == 1 else f"nodes {', '.join(nodes)}"
            self.ctx.diags.append(Diagnostic.at(pos, code, f"{lead} {who}, {rest}", hint))

    # -- E150 --------------------------------------------------------------------------------------

    def external_ipc(self) -> None:
        for b in self.found.binds:
            if b.external and b.lit is not None and b.lit.transport in ("ipc", "inproc"):
                self._e150(endpoint_path(self.ctx, b.sock.node, b.sock.socket, "bind", b.index),
                           f"socket {b.sock} binds {b.text}", b.lit.transport)
        for link in self.found.links:
            if link.external and link.connector is not None and "://" in link.endpoint \
                    and link.transport in ("ipc", "inproc"):
                me = link.connector
                self._e150(endpoint_path(self.ctx, me.node, me.socket, "connect", link.index),
                           f"socket {me} connects to {link.endpoint}", link.transport)

    def _e150(self, path: PathKey, what: str, transport: str) -> None:
        reach = ("a Unix socket reaches only programs on its own host" if transport == "ipc"
                 else "inproc reaches only its own process")
        self.ctx.emit(path, "E150", f"{what} for a peer outside the topology (external), but "
                      f"{reach}: exported, no pod has that peer",
                      "let the outside peer meet it over tcp (bind or connect tcp://HOST:PORT, "
                      "marked external), or bring the peer into the topology as a node")

    # -- E151, E155 --------------------------------------------------------------------------------

    def folders(self) -> None:
        for name, node in self.topology.nodes.items():
            if node.cwd is None:
                continue
            why = self._outside(node.cwd, self.folder)
            if why is not None:
                self._emit_shared(
                    ("nodes", name, "cwd"), "E151", name, "the cwd of", f"{node.cwd!r}, is {why}",
                    "put what the node needs in that folder and give cwd relative to the "
                    "topology file (like `cwd: bin`), or leave cwd out")
        for i, folder in enumerate(self.topology.pythonpath or ()):
            why = self._outside(folder, self.folder)
            if why is not None:
                self.ctx.emit(self.ctx.item(("pythonpath",), i), "E155",
                              f"pythonpath {folder!r} is {why}: exported, the run: nodes "
                              "cannot import from it",
                              "put the modules in that folder (pythonpath: [.] is the default "
                              "with the folder topo runs in), or install them in the image")

    # -- E152 --------------------------------------------------------------------------------------

    def programs(self) -> None:
        for name, node in self.topology.nodes.items():
            if node.command:
                self._program(name, node.command[0], ("nodes", name, "command"), shared=False)
            if node.ready is not None and node.ready.command:
                self._program(name, node.ready.command[0], ("nodes", name, "ready", "command"),
                              shared=True)

    def _program(self, node: str, program: str, path: PathKey, *, shared: bool) -> None:
        if "/" not in program or program.startswith(SYSTEM_BIN):
            return  # found on PATH, in the image as on this host
        cwd = self.topology.nodes[node].cwd
        if not posixpath.isabs(program) and cwd and self._outside(cwd, self.folder):
            return  # its cwd is outside already (E151): one diagnostic is enough
        base = posixpath.normpath(posixpath.join(self.folder, cwd or "."))
        why = self._outside(program, base)
        if why is None:
            return
        hint = ("put the program in that folder and name it relative to the node's cwd "
                "(like ./bin/run.sh), or install it in the image and name it bare, as found "
                "on PATH")
        where = self.ctx.item(path, 0)
        if shared:
            self._emit_shared(where, "E152", node, "the ready.command of",
                              f"{program!r}, is {why}", hint)
        else:
            self.ctx.emit(where, "E152", f"node {node} runs {program!r}, which is {why}", hint)

    # -- E153 --------------------------------------------------------------------------------------

    def ftok_keys(self) -> None:
        for name, res in self.topology.ipc.items():
            if not isinstance(res.key, str) or not res.key.startswith("ftok:"):
                continue
            file, _, _ = res.key[len("ftok:"):].rpartition(":")
            why = self._outside(file, self.folder)
            if why is not None:
                self.ctx.emit(("ipc", name, "key"), "E153",
                              f"IPC resource {name} takes its key from the file {file!r} "
                              f"(ftok), which is {why}: exported, ftok finds no such file",
                              "name a file of that folder (the topology file itself will do: "
                              f"ftok:{posixpath.basename(self.ctx.source.file)}:a), or use "
                              "key: auto")

    # -- E154 --------------------------------------------------------------------------------------

    def probes(self) -> None:
        of = group_nodes(self.topology).of
        ports: dict[str, set[str]] = {}  # literal tcp port -> the nodes binding it
        paths: dict[str, set[str]] = {}  # ipc path (run-folder relative or absolute) -> nodes
        for b in self.found.binds:
            if b.lit is None or b.lit.wildcard:
                continue
            if b.lit.transport == "tcp":
                ports.setdefault(b.lit.port, set()).add(b.sock.node)
            elif b.lit.transport == "ipc":
                for path in self._ipc_paths(b.text, b.sock.node):
                    paths.setdefault(path, set()).add(b.sock.node)
        for name, node in self.topology.nodes.items():
            ready = node.ready
            if ready is None or ready.kind not in ("tcp", "ipc"):
                continue
            if ready.tcp is not None:
                target, binders = f"127.0.0.1:{ready.tcp}", ports.get(str(ready.tcp), set())
            else:
                text = str(ready.ipc).removeprefix("ipc://")
                target, binders = text, paths.get(posixpath.normpath(text), set())
            if not binders or any(of[b] == of[name] for b in binders):
                continue  # its own group binds it, or nobody does (the program may, itself)
            other = sorted(binders, key=list(self.topology.nodes).index)[0]
            self._emit_shared(
                ("nodes", name, "ready", ready.kind), "E154", name, "the readiness probe of",
                f"waiting for {target} to accept, watches what node {other} binds, in group "
                f"{of[other]}: exported, each group has a host of its own, and there the probe "
                "never succeeds",
                f"let depends_on wait for node {other} instead (the export keeps that order), "
                "and probe what the node itself opens")

    def _ipc_paths(self, text: str, node: str) -> list[str]:
        path = text[len("ipc://"):]
        if path.startswith("@") or path == "*":
            return []
        path = posixpath.normpath(path)
        replicas = self.topology.nodes[node].replicas
        if posixpath.isabs(path) or replicas == 1:
            return [path]
        return [f"{path}.{i}" for i in range(replicas)]  # one per replica, in the run folder

    # -- W250, W251 --------------------------------------------------------------------------------

    def loopback(self) -> None:
        bound = {b.lit.port for b in self.found.binds
                 if b.lit is not None and b.lit.transport == "tcp" and not b.lit.wildcard}
        for link in self.found.links:
            me = link.connector
            if me is None or link.binder is not None or link.fault is not None \
                    or "://" not in link.endpoint or link.transport != "tcp":
                continue
            host, port = _host_port(link.endpoint)
            if _loopback(host) and port not in bound:
                self.ctx.emit(endpoint_path(self.ctx, me.node, me.socket, "connect", link.index),
                              "W250", f"socket {me} connects to {link.endpoint}, which no node "
                              "of the topology binds: a service of this host, and exported, "
                              "127.0.0.1 is the node's own pod",
                              "give the service's address as other hosts reach it (marked "
                              "external: true), or bring the service in as a node")
        for b in self.found.binds:
            if b.external and b.lit is not None and b.lit.transport == "tcp" \
                    and _loopback(b.lit.host):
                self.ctx.emit(endpoint_path(self.ctx, b.sock.node, b.sock.socket, "bind",
                                            b.index),
                              "W251", f"socket {b.sock} binds {b.text} for peers outside the "
                              "topology (external), on loopback: exported, only its own pod "
                              "could reach it",
                              f"bind on tcp://*:{b.lit.port} (every interface of the pod), so "
                              "that a Service can bring outside peers to it")


def _host_port(endpoint: str) -> tuple[str, str]:
    rest = endpoint.split("://", 1)[1].rsplit(";", 1)[-1]
    host, _, port = rest.rpartition(":")
    return host.lower(), port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
