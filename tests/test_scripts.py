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


COMMANDS = {
    "train": "algorithms.train",
    "serve": "serving.serve",
    "preprocess": "processing.preprocess",
    "baseline": "monitoring.baseline",
    "monitor": "monitoring.monitor",
    "merge": "monitoring.merge",
    "report": "monitoring.report",
    "tables": "analytics.append",
}


def byoc(*args: str, python: str = "/bin/echo") -> subprocess.CompletedProcess:
    """The images' entry point with this checkout as /opt/byoc and ``python`` in place of the image's Python."""
    env = {**os.environ, "BYOC_APP": str(REPO), "BYOC_PYTHON": python}
    return subprocess.run([REPO / "containers" / "byoc", *args], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("command", "module"), COMMANDS.items())
def test_entry_point_runs_each_commands_module_with_its_arguments(command, module):
    proc = byoc(command, "--x", "a b")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"-m {module} --x a b\n", "")


@pytest.mark.parametrize(("args", "why"), [(["fit"], " (received 'fit')"), ([], " (no command given)")])
def test_entry_point_refuses_an_unknown_command_listing_the_known_ones(args, why):
    proc = byoc(*args)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"usage: byoc {{{'|'.join(COMMANDS)}}} [ARGS...]{why}\n"


@pytest.mark.parametrize(
    ("script", "args", "code", "stderr"),
    [
        ("build_push.sh", ["--regoin", "x"], 1, "build_push: error: unknown argument '--regoin' (see --help)\n"),
        ("build_push.sh", ["--region"], 1, "build_push: error: --region needs a value\n"),
        ("base_image.sh", ["--forse"], 2, "usage: scripts/base_image.sh [--force]\n"),
        ("services.sh", ["restart"], 2,
         "usage: scripts/services.sh {install|start|stop|status} [docker|moto|registry ...]\n"),
    ],
)  # fmt: skip
def test_scripts_refuse_a_bad_argument_naming_it_before_doing_anything(script, args, code, stderr, tmp_path):
    env = {**os.environ, "BYOC_STATE_DIR": str(tmp_path / "state"), "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    for tool in ("docker", "aws", "debootstrap"):  # stand-ins that leave a trace if the script went on to use them
        (tmp_path / tool).write_text(f"#!/bin/sh\ntouch {tmp_path}/ran-{tool}\n")
        (tmp_path / tool).chmod(0o755)
    proc = subprocess.run(
        [REPO / "scripts" / script, *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert (proc.returncode, proc.stderr) == (code, stderr)
    assert not list(tmp_path.glob("ran-*"))


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
