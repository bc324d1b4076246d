"""Playing exported manifests under podman: a network of our own, two phases, a full clean-up.

    python3 -m tests.k8s.kube topologies/rrbroker.yaml   # by hand: export, play, show, remove

``played(podman, docs, tag, folder)`` creates the network ``TAG-net``, makes the
copy podman can play (``manifests.for_podman``, with addresses from that
network), and on the way out (a failure included) runs ``podman kube down`` and
removes what kube down leaves: pods, the named volumes of ConfigMaps and
Secrets, the Secrets, the network. ``leftovers()`` says what is still there.

Every wait has a deadline; each poll asks podman about a condition.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.k8s.engine import EngineError, Podman
from tests.k8s.manifests import Doc, Playable, Pod, Unit, for_podman

POLL = 0.25  # seconds between two looks at a pod that is not there yet


@dataclass
class Played:
    podman: Podman
    playable: Playable
    network: str
    folder: Path
    tag: str

    def start(self, jobs: bool, ready_within: float = 60.0) -> None:
        """Plays the units of one phase (``jobs`` or the others), each from its own file."""
        for i, unit in enumerate(u for u in self.playable.units if u.job == jobs):
            path = self.folder / f"{'job' if jobs else 'run'}-{i}.yaml"
            path.write_text(yaml.safe_dump_all(unit.documents, sort_keys=False))
            self.podman.run("kube", "play", "--network", self.network,
                            *(a for p in unit.pods for a in ("--ip", p.ip)), str(path),
                            timeout=120)
        if not jobs:
            self.wait_ready([u for u in self.playable.units if not u.job], ready_within)

    def wait_ready(self, units: list[Unit], within: float) -> None:
        """Until every readinessProbe of ``units`` passes (what Kubernetes would wait for)."""
        deadline = time.monotonic() + within
        todo = [(c, cmd) for u in units for p in u.pods for c, cmd in p.probes]
        while todo:
            todo = [(c, cmd) for c, cmd in todo
                    if self.podman.run("exec", c, *cmd, check=False).returncode != 0]
            if todo and time.monotonic() > deadline:
                raise EngineError(f"not Ready after {within:g}s: {', '.join(c for c, _ in todo)}"
                                  + self.describe())
            if todo:
                time.sleep(POLL)  # a poll against the deadline

    def wait_exit(self, container: str, within: float) -> int:
        """The exit code of ``container`` once it has ended."""
        try:
            out = self.podman.out("wait", container, timeout=within)
        except EngineError as exc:
            raise EngineError(f"{container} did not end within {within:g}s"
                              + self.describe()) from exc
        return int(out.splitlines()[-1])

    def logs(self, container: str) -> str:
        done = self.podman.run("logs", container, check=False)
        return done.stdout + done.stderr

    def pod(self, workload: str) -> list[Pod]:
        """The pods of the exported workload named ``workload`` ("worker")."""
        return [p for u in self.playable.units if u.workload.split()[-1] == workload
                for p in u.pods]

    def describe(self) -> str:
        """Each container's state and last lines: what a failure message needs."""
        lines = []
        for pod in self.playable.pods():
            for c in pod.containers:
                state = self.podman.run("inspect", c, "--format",
                                        "{{.State.Status}} {{.State.ExitCode}}", check=False)
                tail = self.podman.run("logs", "--tail", "15", c, check=False)
                lines.append(f"--- {c}: {state.stdout.strip() or 'not created'}\n"
                             f"{(tail.stdout + tail.stderr).rstrip()}")
        return "\n" + "\n".join(lines)

    def down(self) -> None:
        path = self.folder / "down.yaml"
        path.write_text(yaml.safe_dump_all(self.playable.documents(), sort_keys=False))
        self.podman.run("kube", "down", str(path), timeout=120, check=False)
        for pod in self._mine(["pod", "ps"], "{{.Name}}"):  # a play that failed half-way
            self.podman.run("pod", "rm", "--force", pod, timeout=120, check=False)
        for volume in self.playable.volumes:
            self.podman.run("volume", "rm", "--force", volume, check=False)
        for secret in self.playable.secrets:
            if self.podman.exists("secret", secret):
                self.podman.run("secret", "rm", secret, check=False)
        self.podman.run("network", "rm", "--force", self.network, check=False)

    def leftovers(self) -> list[str]:
        left = [f"pod {p}" for p in self._mine(["pod", "ps"], "{{.Name}}")]
        left += [f"container {c}" for c in self._mine(["ps", "--all"], "{{.Names}}")]
        left += [f"volume {v}" for v in self.playable.volumes
                 if self.podman.exists("volume", v)]
        left += [f"volume {v}" for v in self._mine(["volume", "ls"], "{{.Name}}")
                 if v not in self.playable.volumes]
        left += [f"secret {s}" for s in self.playable.secrets if self.podman.exists("secret", s)]
        if self.podman.exists("network", self.network):
            left.append(f"network {self.network}")
        return left

    def _mine(self, what: list[str], fmt: str) -> list[str]:
        return [n for n in self.podman.names(what, fmt) if n.startswith(f"{self.tag}-")]


@contextlib.contextmanager
def played(podman: Podman, docs: list[Doc], tag: str, folder: Path) -> Iterator[Played]:
    """The copy of ``docs`` ready to play on network ``TAG-net``; everything goes on exit."""
    network = f"{tag}-net"
    podman.run("network", "create", network)
    run = Played(podman, Playable([], {}, []), network, folder, tag)
    try:
        subnet = podman.out("network", "inspect", network, "--format",
                            "{{range .Subnets}}{{.Subnet}} {{end}}").split()[0]
        hosts = ipaddress.ip_network(subnet).hosts()
        for _ in range(9):  # .1 is the gateway; leave a few for podman's own
            next(hosts)
        run.playable = for_podman(docs, tag, (str(h) for h in hosts))
        yield run
    finally:
        run.down()


def main(argv: list[str] | None = None) -> int:
    """Exports FILE with the image of ``tests.k8s.image``, plays it, prints each Job's log."""
    parser = argparse.ArgumentParser(prog="python3 -m tests.k8s.kube", description=main.__doc__)
    parser.add_argument("file", metavar="FILE", help="a topology under the checkout's root")
    parser.add_argument("--within", type=float, default=120.0, metavar="S",
                        help="how long the Jobs may take (default 120)")
    args = parser.parse_args(argv)
    from tests.k8s.image import ROOT, build  # deferred: only the command builds an image

    exported = subprocess.run([sys.executable, "-m", "orchestrator", "export", "kubernetes",
                               args.file, "--image", build()],
                              cwd=ROOT, capture_output=True, text=True, check=False)
    sys.stderr.write(exported.stderr)
    if exported.returncode != 0:
        return exported.returncode
    docs = [d for d in yaml.safe_load_all(exported.stdout) if d]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp, \
            played(Podman(), docs, f"kt{os.getpid()}", Path(tmp)) as run:
        for note in run.playable.notes:
            print(f"podman play: {note}", file=sys.stderr)
        run.start(jobs=False)
        run.start(jobs=True)
        for pod in (p for u in run.playable.units if u.job for p in u.pods):
            for container in pod.containers:
                code = run.wait_exit(container, args.within)
                print(f"--- {container} exited with {code}\n{run.logs(container).rstrip()}")
                failed = failed or code
    return failed


if __name__ == "__main__":
    sys.exit(main())
