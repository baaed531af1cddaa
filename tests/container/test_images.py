"""What the images are: entry point dispatch, labels, environment, and what must not be in them."""

from __future__ import annotations

import json

import pytest

from tests.container.conftest import IMAGES, docker

pytestmark = pytest.mark.container


def inspect(image: str) -> dict:
    return json.loads(docker("image", "inspect", image).stdout)[0]


@pytest.mark.parametrize("image", IMAGES.values())
@pytest.mark.parametrize("args", [[], ["nonsense"], ["Train"]], ids=["no-command", "unknown", "wrong-case"])
def test_unknown_or_missing_command_prints_usage_and_exits_2(images, containers, image, args):
    run = containers.run(image, args)
    assert run.returncode == 2
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith("usage: byoc {train|serve|preprocess|baseline|monitor"), line
    if args:
        assert f"'{args[0]}'" in line


@pytest.mark.parametrize("command", ["preprocess", "baseline", "monitor", "tables"])
def test_processing_commands_dispatch_to_their_jobs(images, containers, command):
    """--help proves the command reaches its module and that the module imports in the image."""
    run = containers.run(images["monitor"], [command, "--help"])
    assert run.returncode == 0, run.output
    assert run.stdout.startswith("usage:"), run.output


@pytest.mark.parametrize("image", IMAGES.values())
def test_labels_entrypoint_and_environment(images, image):
    config = inspect(image)["Config"]
    labels = config["Labels"]
    assert labels["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    assert labels["org.opencontainers.image.version"] not in ("", "0.0.0")
    assert len(labels["org.opencontainers.image.revision"].removesuffix("-dirty")) == 40
    assert labels["org.opencontainers.image.title"] == image.split(":")[0]
    assert config["Entrypoint"] == ["/usr/local/bin/byoc"]
    assert not config.get("Cmd")
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env.get("ALGORITHM") == {"byoc-xgboost": "xgboost", "byoc-linear": "linear"}.get(image.split(":")[0])
    assert not config["WorkingDir"].startswith("/opt/ml")


def test_python_and_nothing_that_belongs_to_the_build(images, containers):
    script = (
        "import importlib.util, os, shutil, sys;"
        "print(sys.version_info[:2], sys.prefix, sys.base_prefix);"
        "print([t for t in ('gcc', 'cc', 'make', 'apt-get') if shutil.which(t) and t != 'apt-get']);"
        "print([p for p in ('/root/.cache', '/tmp/build', '/opt/byoc/tests', '/opt/byoc/containers')"
        " if os.path.exists(p)]);"
        "print(importlib.util.find_spec('xgboost').origin)"
    )
    run = containers.run(images["xgboost"], ["-c", script], entrypoint="python")
    assert run.returncode == 0, run.output
    version, compilers, leftovers, xgboost_origin = run.stdout.splitlines()
    assert version == "(3, 11) /opt/venv /usr", version
    assert compilers == "[]"
    assert leftovers == "[]"
    assert xgboost_origin.startswith("/opt/venv/")


def test_no_gpu_libraries_in_the_venv(images, containers):
    """xgboost-cpu, not the xgboost wheel that drags in NCCL (~470 MB)."""
    find = (
        "find /opt/venv \\( -iname '*nccl*.so*' -o -iname '*cuda*.so*' -o -iname '*cublas*.so*' "
        "-o -path '*/site-packages/nvidia' \\) | head -5"
    )
    run = containers.run(images["xgboost"], ["-c", find], entrypoint="sh")
    assert run.returncode == 0, run.output
    assert run.stdout == ""
