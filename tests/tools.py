"""External programs some tests need (php, dot): skip locally with a reason, fail in CI.

CI sets TOPO_REQUIRE_TOOLS=1 after installing them, so a missing tool there is a
failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def need(program: str, why: str) -> str:
    path = shutil.which(program)
    if path is None:
        message = f"{program} is not installed ({why})"
        if os.environ.get("TOPO_REQUIRE_TOOLS"):
            pytest.fail(message + "; TOPO_REQUIRE_TOOLS is set, so this is an error")
        pytest.skip(message)
    return path


def need_php_extension(extension: str) -> str:
    php = need("php", "apt-get install php-cli")
    modules = subprocess.run([php, "-m"], capture_output=True, text=True, check=False).stdout
    if extension.lower() not in modules.lower().split():
        message = f"php extension {extension} is not installed (apt-get install php-{extension})"
        if os.environ.get("TOPO_REQUIRE_TOOLS"):
            pytest.fail(message + "; TOPO_REQUIRE_TOOLS is set, so this is an error")
        pytest.skip(message)
    return php
