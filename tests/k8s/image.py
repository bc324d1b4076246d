"""An image of topo and this project, built with no image registry.

    python3 -m tests.k8s.image [--php]     # prints the image's name

No registry is reachable here, so nothing starts ``FROM python``: Debian's
mirror (the one the host's apt uses, a dated snapshot, hence
``Check-Valid-Until false``) gives a minimal rootfs through ``mmdebstrap``,
which ``podman import`` turns into an image. pip inside a container reaches the
index but fails TLS (the CA is only on the host), so the host downloads the
wheels for the image's Python, and pip in the rootfs installs them with
``--no-index``. Two layers, each tagged with a hash of its inputs, so a second
run finds both and takes seconds:

- base ``localhost/topo-k8s-base:HASH``: Debian minbase with python3 (and
  php-cli, php-zmq with ``--php``) and a venv ``/opt/topo`` holding topo's
  dependencies. Inputs: this file, the mirror and suite, the packages, topo's
  ``Requires-Dist``. A cold build takes a minute or two.
- app ``localhost/topo-k8s:HASH``: the base plus topo's wheel, built from the
  checkout, and the project at ``/app`` (``APP``). Inputs: the base and the
  checkout's files that go in. A few seconds (``podman build``).

The checkout's files are the ones git lists, tracked or not but not ignored:
what the other tests import.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from tests.k8s.engine import CACHE, Podman

ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/topo-k8s-base"
APP_IMAGE = "localhost/topo-k8s"
VENV = "/opt/topo"
WORKDIR = "/app"
PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PACKAGES = ("python3", "python3-venv")
PHP_PACKAGES = ("php-cli", "php-zmq")
# What goes to /app: the topology folders and the code their nodes run. Not
# orchestrator/: nodes must import topo from the installed wheel, not the sources.
APP = ("topologies/", "examples/", "tests/__init__.py", "tests/k8s/")
WHEEL = ("pyproject.toml", "README.md", "orchestrator/")
# No documentation in the rootfs: less to unpack, a smaller image.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*",
                 "/usr/share/locale/*")
KEEP = 3  # images of each name kept; older ones go when a new one is built


def build(*, php: bool = False) -> str:
    """The app image's name, built unless an image of the same inputs exists."""
    podman = Podman()
    with _lock(), tempfile.TemporaryDirectory(prefix="topo-image-", dir=_scratch()) as tmp:
        work = Path(tmp)
        sources = _digests(WHEEL + APP)
        wheel = None
        requires = _declared()
        if requires is None:  # no tomllib (Python 3.10): the wheel's metadata says
            wheel = _wheel(_copy(WHEEL, work / "wheel-src"), work / "ctx" / "wheels")
            requires = _requires(wheel)
        base = f"{BASE}:{_base_key(php, requires)}"
        if not podman.exists("image", base):
            _build_base(podman, base, php, requires, work)
            _prune(podman, BASE, base)
        app = f"{APP_IMAGE}:{_hash(base.encode(), *sources)}"
        if not podman.exists("image", app):
            if wheel is None:
                wheel = _wheel(_copy(WHEEL, work / "wheel-src"), work / "ctx" / "wheels")
            _copy(APP, work / "ctx" / "app")
            _build_app(podman, base, app, work / "ctx", wheel.name)
            _prune(podman, APP_IMAGE, app)
        return app


def _declared() -> list[str] | None:
    """topo's dependencies as pyproject.toml declares them; None without tomllib."""
    try:
        import tomllib
    except ImportError:
        return None
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [str(d) for d in project["dependencies"]]


def mirror() -> tuple[str, str]:
    """(URI, suite) of the host's Debian archive, from its apt sources."""
    sources = Path("/etc/apt")
    for path in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, re.MULTILINE))
            uris, suites = fields.get("URIs", "").split(), fields.get("Suites", "").split()
            main = [s for s in suites if "-" not in s]
            if uris and main and "deb" in fields.get("Types", "deb").split():
                return uris[0], main[0]
    listed = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list"))]
    for path in listed:
        if path.is_file():
            for line in path.read_text().splitlines():
                m = re.match(r"deb\s+(?:\[[^]]*]\s+)?(\S+)\s+([a-z]+)\s", line)
                if m:
                    return m.group(1), m.group(2)
    raise RuntimeError("no Debian archive in /etc/apt/sources.list*: mmdebstrap needs one")


def _base_key(php: bool, requires: list[str]) -> str:
    uri, suite = mirror()
    recipe = [Path(__file__).read_bytes(), uri.encode(), suite.encode(),
              " ".join(PACKAGES + (PHP_PACKAGES if php else ())).encode(),
              "\n".join(requires).encode(), platform.machine().encode()]
    return _hash(*recipe)


def _build_base(podman: Podman, name: str, php: bool, requires: list[str], work: Path) -> None:
    uri, suite = mirror()
    rootfs = work / "rootfs"
    say(f"image: building {name} with mmdebstrap from {uri} {suite} (a minute or two)")
    _run(["mmdebstrap", "--mode=root", "--variant=minbase", "--quiet",
          f"--include={','.join(PACKAGES + (PHP_PACKAGES if php else ()))}",
          '--aptopt=Acquire::Check-Valid-Until "false"',
          *(f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES),
          suite, str(rootfs), uri], timeout=900)
    minor = _chroot(rootfs, "python3", "-c",
                    "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')")
    wheels = rootfs / "tmp" / "wheels"
    _dependency_wheels(requires, minor.strip(), wheels)
    _chroot(rootfs, "python3", "-m", "venv", VENV)
    _chroot(rootfs, f"{VENV}/bin/pip", "install", "--quiet", "--no-index", "--no-cache-dir",
            "--find-links", "/tmp/wheels", *requires)
    shutil.rmtree(wheels)
    (rootfs / WORKDIR.lstrip("/")).mkdir(exist_ok=True)  # WORKDIR must exist in the rootfs
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."],
                           stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        done = subprocess.run([podman.program, "import", "--quiet",
                               "--change", f"ENV PATH={PATH}", "--change", f"WORKDIR {WORKDIR}",
                               "-", name], stdin=tar.stdout, env=podman.environ(),
                              capture_output=True, text=True, timeout=600, check=False)
    finally:
        tar.stdout.close()
        tar.wait(timeout=600)
    if done.returncode != 0 or tar.returncode != 0:
        raise RuntimeError(f"podman import {name} failed: {done.stderr.strip()}")


def _dependency_wheels(requires: list[str], minor: str, dest: Path) -> None:
    """Wheels of ``requires`` (and theirs) for the image's Python, fetched on the host.

    Binary only, for the image's minor version and a manylinux platform. A
    package with no such wheel (sysv_ipc had none for a while) is built on the
    host, which works when the host's Python has the same minor version.
    """
    plat = f"manylinux2014_{platform.machine()}"
    fetch = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
             "--python-version", minor, "--platform", plat, "--dest", str(dest)]
    try:
        _run([*fetch, *requires], timeout=600)
        return
    except RuntimeError:
        pass
    host = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for req in requires:
        try:
            _run([*fetch, req], timeout=600)
        except RuntimeError:
            if host != minor:
                raise RuntimeError(
                    f"{req} has no wheel for Python {minor} on {plat}, and this Python "
                    f"({host}) cannot build one for it: run this with python{minor}") from None
            say(f"image: {req} has no wheel for Python {minor}; building it here")
            _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-binary", ":all:",
                  "--wheel-dir", str(dest), req], timeout=600)


def _build_app(podman: Podman, base: str, name: str, context: Path, wheel: str) -> None:
    say(f"image: building {name} (topo's wheel and the project at {WORKDIR})")
    (context / "Containerfile").write_text(
        f"FROM {base}\n"
        f"COPY wheels/{wheel} /tmp/\n"
        f"RUN pip install --quiet --no-index --no-deps --no-cache-dir /tmp/{wheel}"
        f" && rm /tmp/{wheel}\n"
        f"COPY app/ {WORKDIR}/\n")
    podman.run("build", "--quiet", "--pull=never", "--layers=false", "-t", name, str(context),
               timeout=600)


def _wheel(src: Path, dest: Path) -> Path:
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
          str(dest), str(src)], timeout=300)
    found = sorted(dest.glob("topo-*.whl"))
    if not found:
        raise RuntimeError(f"pip wheel left no topo wheel in {dest}")
    return found[0]


def _requires(wheel: Path) -> list[str]:
    """topo's dependencies, as its wheel's metadata names them (extras left out): the same
    as ``_declared``, for a Python without tomllib."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    found = re.findall(r"^Requires-Dist: (.+)$", text, re.MULTILINE)
    return [r.strip() for r in found if "extra ==" not in r]


def checkout_files(prefixes: tuple[str, ...]) -> list[str]:
    """The checkout's files under ``prefixes``: tracked or not, but not ignored by git."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard", "--", *prefixes],
                            cwd=ROOT, capture_output=True, check=False)
    if listed.returncode == 0:
        names = listed.stdout.decode().split("\0")
    else:  # not a git checkout: every file but caches
        names = [str(p.relative_to(ROOT)) for prefix in prefixes for p in
                 ([ROOT / prefix] if (ROOT / prefix).is_file() else (ROOT / prefix).rglob("*"))
                 if p.is_file() and "__pycache__" not in p.parts]
    return sorted({n for n in names if n and (ROOT / n).is_file()})


def _copy(prefixes: tuple[str, ...], dest: Path) -> Path:
    for name in checkout_files(prefixes):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    return dest


def _digests(prefixes: tuple[str, ...]) -> list[bytes]:
    return [name.encode() + b"\0" + (ROOT / name).read_bytes()
            for name in checkout_files(prefixes)]


def _hash(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _prune(podman: Podman, repository: str, keep: str) -> None:
    """Images of ``repository`` beyond the newest ``KEEP``; one in use stays."""
    listed = podman.names(["images", "--sort", "created"], "{{.Repository}}:{{.Tag}}")
    newest_first = [t for t in listed if t.rpartition(":")[0] == repository and t != keep]
    for tag in newest_first[KEEP - 1:]:
        podman.run("rmi", tag, check=False)


def _chroot(rootfs: Path, *argv: str) -> str:
    # A clean environment: the host's pip settings (index, certificates, find-links) are
    # the host's, not the image's.
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    done = subprocess.run(["chroot", str(rootfs), *argv], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chroot {' '.join(argv)} failed ({done.returncode}):\n"
                           f"{done.stderr.strip()}")
    return done.stdout


def _run(argv: list[str], *, timeout: float) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {' '.join(argv)}\n"
                           f"{done.stderr.strip()[-4000:]}")


def _scratch() -> str:
    """tmpfs when there is room: mmdebstrap unpacks twice as fast there as on this disk."""
    shm = Path("/dev/shm")
    with contextlib.suppress(OSError):
        if shutil.disk_usage(shm).free > 2 << 30:
            return str(shm)
    return tempfile.gettempdir()


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One build at a time on this machine: two test runs would build the same image."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "image.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.k8s.image",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--php", action="store_true", help="php-cli and php-zmq too")
    args = parser.parse_args(argv)
    print(build(php=args.php))
    return 0


if __name__ == "__main__":
    sys.exit(main())
