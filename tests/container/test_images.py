"""What the images are: entry point dispatch, labels, environment, and what each role's image holds and does not."""

from __future__ import annotations

import json

import pytest

from tests.container.conftest import IMAGES, NON_ROOT, NON_ROOT_UID, docker

pytestmark = pytest.mark.container

# Each image offers its role's commands only (containers/byoc lists those whose module the image holds).
COMMANDS = {
    "xgboost": "train|serve",
    "linear": "train|serve",
    "monitor": "preprocess|baseline|monitor|merge|report|tables",
}
# Per role: what its code imports (must be there) and what it must not carry (another role's, or a dependency of a
# dependency that no code of the role calls: scipy's other subpackages, sagemaker-training's own dependencies).
ROLE_MODULES = {
    "algorithm": (
        ["xgboost", "xgboost.collective", "numpy", "pandas", "flask", "gunicorn", "orjson", "fastparquet",
         "scipy.sparse"],
        ["pyarrow", "datasketches", "duckdb", "sklearn", "gevent", "paramiko", "psutil", "google.protobuf",
         "scipy.stats", "scipy.optimize", "scipy.linalg"],
    ),
    "monitor": (
        ["pyarrow.parquet", "pyarrow.csv", "datasketches", "numpy", "pandas"],
        ["xgboost", "scipy", "flask", "gunicorn", "sagemaker_training", "boto3", "botocore", "fastparquet",
         "duckdb", "sklearn"],
    ),
}  # fmt: skip


def role(image: str) -> str:
    return "monitor" if image.startswith("byoc-monitor:") else "algorithm"


def inspect(image: str) -> dict:
    return json.loads(docker("image", "inspect", image).stdout)[0]


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("args", [[], ["nonsense"], ["Train"]], ids=["no-command", "unknown", "wrong-case"])
def test_unknown_or_missing_command_prints_usage_and_exits_2(images, containers, name, args):
    run = containers.run(images[name], args)
    assert run.returncode == 2
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith(f"usage: byoc {{{COMMANDS[name]}}} [ARGS...]"), line
    if args:
        assert f"'{args[0]}'" in line


@pytest.mark.parametrize(
    "name, command", [("monitor", "train"), ("monitor", "serve"), ("xgboost", "preprocess"), ("linear", "monitor")]
)
def test_an_image_refuses_another_roles_command(images, containers, name, command):
    run = containers.run(images[name], [command])
    assert run.returncode == 2, run.output
    assert run.stderr.splitlines() == [f"usage: byoc {{{COMMANDS[name]}}} [ARGS...] (received '{command}')"]


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
    # Root by default: SageMaker documents that it expects containers to run as root (its mounts are root's).
    assert config.get("User", "") == ""


@pytest.mark.parametrize("image", IMAGES.values())
def test_python_and_nothing_that_belongs_to_the_build(images, containers, image):
    script = (
        "import importlib.util, os, shutil, sys;"
        "print(sys.version_info[:2], sys.prefix, sys.base_prefix);"
        "print([t for t in ('gcc', 'cc', 'make', 'pip', 'pip3', 'easy_install') if shutil.which(t)]);"
        "print([m for m in ('pip', 'setuptools', 'wheel', 'pkg_resources') if importlib.util.find_spec(m)]);"
        "print([p for p in ('/root/.cache', '/tmp/build', '/opt/byoc/tests', '/opt/byoc/containers',"
        " '/opt/byoc/harness', '/opt/byoc/lifecycle', '/opt/byoc/emulators', '/opt/byoc/pipelines', '/opt/ml')"
        " if os.path.exists(p)]);"
    )
    run = containers.run(image, ["-c", script], entrypoint="python")
    assert run.returncode == 0, run.output
    version, tools, installers, leftovers = run.stdout.splitlines()
    assert version == "(3, 11) /opt/venv /usr", version
    assert tools == "[]"
    assert installers == "[]"
    assert leftovers == "[]"


@pytest.mark.parametrize("image", IMAGES.values())
def test_each_role_carries_what_its_code_imports_and_nothing_else_named(images, containers, image):
    present, absent = ROLE_MODULES[role(image)]
    script = (
        "import importlib, importlib.util, sys\n"
        "def found(name):\n"
        "    try:\n"
        "        return importlib.util.find_spec(name) is not None\n"
        "    except ModuleNotFoundError:\n"
        "        return False\n"
        f"for name in {present!r}: importlib.import_module(name)\n"
        f"print([name for name in {absent!r} if found(name)])\n"
    )
    run = containers.run(image, ["-c", script], entrypoint="python")
    assert run.returncode == 0, run.output
    assert run.stdout.strip() == "[]", f"{image} carries {run.stdout.strip()}"


def test_no_gpu_libraries_in_the_venv(images, containers):
    """xgboost-cpu, not the xgboost wheel that drags in NCCL (~470 MB)."""
    find = (
        "find /opt/venv \\( -iname '*nccl*.so*' -o -iname '*cuda*.so*' -o -iname '*cublas*.so*' "
        "-o -path '*/site-packages/nvidia' \\) | head -5"
    )
    run = containers.run(images["xgboost"], ["-c", find], entrypoint="sh")
    assert run.returncode == 0, run.output
    assert run.stdout == ""


@pytest.mark.parametrize("image", IMAGES.values())
def test_non_root_user_exists_and_can_read_everything(images, containers, image):
    """`--user byoc` (or any uid): the code, the venv and the entry point are readable, nothing needs writing."""
    script = "id -u; find /opt/venv /opt/byoc /usr/local/bin/byoc ! -perm -o=r | head -5"
    run = containers.run(image, ["-c", script], entrypoint="sh", user=NON_ROOT)
    assert run.returncode == 0, run.output
    uid, *unreadable = run.stdout.splitlines()
    assert uid == str(NON_ROOT_UID)
    assert unreadable == []
