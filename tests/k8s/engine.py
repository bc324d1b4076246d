"""podman as this machine needs it: runc, ulimits it can set, a private containers.conf.

What was found by trying, on Debian 12's podman 4.3 as root in a VM:

- crun (podman's first choice) fails with "cgroups in hybrid mode not supported":
  the cgroup v1 hierarchy has a cgroup v2 mount next to it. runc works.
- root has every capability but CAP_SYS_RESOURCE, so runc cannot raise a limit
  above the hard one it inherited ("error setting rlimit type 7": podman asks
  for 1048576 open files). ``nofile=1024:1024`` and ``nproc=4096:4096`` work; a
  ``--ulimit`` on the command line replaces the whole default list, so the
  config file, not the command line, sets both.

Both go into a ``containers.conf`` of our own, named by ``CONTAINERS_CONF`` in
the environment of every podman this module runs, so the machine's config and
any other user of podman stay as they are.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CONTAINERS_CONF = """\
# topo's tests: runc (crun fails here), ulimits that root without CAP_SYS_RESOURCE
# may set, and no journald or systemd to lean on.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

CACHE = Path(os.environ.get("TOPO_K8S_CACHE", "/var/tmp/topo-k8s"))


class EngineError(Exception):
    """A podman command failed; the message has its command line and what it said."""


def containers_conf() -> Path:
    """The private containers.conf, written once (again when its text changed)."""
    path = CACHE / "containers.conf"
    if not path.is_file() or path.read_text() != CONTAINERS_CONF:
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}")
        tmp.write_text(CONTAINERS_CONF)
        tmp.replace(path)
    return path


@dataclass
class Podman:
    """Runs podman with the private config; ``env`` is the rest of its environment."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    program: str = "podman"

    def environ(self) -> dict[str, str]:
        return {**self.env, "CONTAINERS_CONF": str(containers_conf())}

    def run(self, *args: str, timeout: float = 60.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run([self.program, *args], env=self.environ(), timeout=timeout,
                                  capture_output=True, check=False, text=True)
        except subprocess.TimeoutExpired as exc:
            raise EngineError(f"podman {' '.join(args)} took more than {timeout:g}s") from exc
        if check and done.returncode != 0:
            raise EngineError(f"podman {' '.join(args)} exited with {done.returncode}:\n"
                              f"{done.stderr.strip() or done.stdout.strip()}")
        return done

    def out(self, *args: str, timeout: float = 60.0) -> str:
        return self.run(*args, timeout=timeout).stdout.strip()

    def names(self, what: Sequence[str], fmt: str) -> list[str]:
        """``podman pod ps`` and friends as a list of names (one per line of ``fmt``)."""
        return [line for line in self.out(*what, "--format", fmt).splitlines() if line]

    def exists(self, kind: str, name: str) -> bool:
        """``podman image|container|pod|network|volume|secret exists NAME``."""
        if kind == "secret":  # podman 4.3 has no `secret exists`
            return name in self.names(["secret", "ls"], "{{.Name}}")
        return self.run(kind, "exists", name, check=False).returncode == 0
