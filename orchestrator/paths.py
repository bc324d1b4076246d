"""Where runs live: ``$TOPO_STATE_DIR``, else ``$XDG_RUNTIME_DIR/topo``, else ``/tmp/topo-$UID``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
IPC_PATH_MAX = 107
# In a run folder: every replica's lines and topo's events, as `name | line`.
OUTPUT_LOG = "output.log"
# In a detached run's folder: the supervisor's own stdout and stderr.
SUPERVISOR_LOG = "supervisor.log"
# In a run folder with security.curve: NODE.key (public) and NODE.key_secret (0600), 0700.
KEYS_DIR = "keys"


def state_root(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("TOPO_STATE_DIR"):
        return Path(env["TOPO_STATE_DIR"])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "topo"
    return Path(f"/tmp/topo-{os.getuid()}")


def run_dir(run_id: str, environ: Mapping[str, str] | None = None) -> Path:
    return state_root(environ) / run_id
