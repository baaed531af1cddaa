"""The shell scripts (build, push, services, base image, wheelhouse) and the images' entry point: lint-clean."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONTAINERS = REPO / "containers"
SCRIPTS = [*sorted((REPO / "scripts").glob("*.sh")), CONTAINERS / "byoc", CONTAINERS / "install_venv.sh"]


def test_there_are_scripts():
    assert {p.name for p in SCRIPTS} >= {"build_push.sh", "services.sh", "base_image.sh", "wheelhouse.sh", "byoc"}


def test_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("shellcheck not installed (CI=true: scripts/services.sh install installs it)")
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    proc = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_executable_with_a_shebang(path):
    assert os.access(path, os.X_OK), f"{path} is not executable"
    assert path.read_text().startswith(("#!/usr/bin/env bash\n", "#!/bin/sh\n"))


def test_the_build_context_leaves_out_what_the_images_do_not_need():
    """.dockerignore is a whitelist: everything is out unless named (the context stays small and cache-friendly)."""
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    included = {line[1:] for line in lines if line.startswith("!")}
    assert not included & {".git", ".venv", "tests", "build", "cardata", "benchmarks"}
