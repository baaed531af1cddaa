"""Fixtures for the container tests: the built images run as SageMaker runs them.

Every run is `docker run --read-only --tmpfs /tmp` with /opt/ml mounted, as the current user (root in CI, like
SageMaker). Without a reachable Docker engine or without the built images the tests are skipped with the reason,
except in CI (CI=true), where that is a failure: CI must run them.

Build the images first: `scripts/build_push.sh --no-push` (see the README; CI adds --base-image).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests import opt_ml as om
from tests.conftest import write_builtin_channels

REPO = Path(__file__).resolve().parents[2]
# BYOC_TEST_IMAGE_TAG: test images built under another tag (build_push.sh --tag T --no-latest) without replacing
# the :latest ones other work uses.
TAG = os.environ.get("BYOC_TEST_IMAGE_TAG", "latest")
IMAGES = {name: f"byoc-{name}:{TAG}" for name in ("xgboost", "linear", "monitor")}
ALGORITHMS = ("xgboost", "linear")
IN_CI = os.environ.get("CI", "").lower() == "true"
# Generous upper bounds so a hung container cannot hang the suite; no test relies on them being tight.
RUN_TIMEOUT = 300
READY_TIMEOUT = 120


def unavailable(reason: str) -> None:
    """Skip on a developer machine; fail in CI, where the container tests must run."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: container tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def docker(*args: str, timeout: float = 60, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if shutil.which("docker") is None:
        unavailable("no docker CLI on PATH")
    try:
        proc = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=30)
    except subprocess.TimeoutExpired:
        unavailable("Docker engine did not answer `docker info` within 30 s")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        unavailable(f"no Docker engine reachable ({last}); start one: scripts/services.sh start docker")


@pytest.fixture(scope="session")
def images(docker_engine) -> dict[str, str]:
    """The three images, built beforehand by scripts/build_push.sh --no-push."""
    missing = [image for image in IMAGES.values() if docker("image", "inspect", image, check=False).returncode]
    if missing:
        unavailable(
            f"images not built: {', '.join(missing)}; build them with scripts/build_push.sh --no-push "
            "(add --base-image byoc-debootstrap:bookworm where no public image can be pulled)"
        )
    return dict(IMAGES)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


# The images' non-root user (containers/Dockerfile): what the non-root tests run as.
NON_ROOT = "byoc"
NON_ROOT_UID = 1000


def _user(user: str | None = None) -> list[str]:
    if user is not None:
        return ["--user", user]
    # The caller's uid: files written into the mounts stay removable; in CI that is root, as on SageMaker.
    return ["--user", f"{os.getuid()}:{os.getgid()}"] if hasattr(os, "getuid") else []


def run_args(
    image: str,
    args: Sequence[str] = (),
    *,
    volumes: Sequence[tuple[Path, str, str]] = (),
    env: dict[str, str] | None = None,
    ports: Sequence[str] = (),
    name: str | None = None,
    detach: bool = False,
    remove: bool = True,
    entrypoint: str | None = None,
    network: str | None = None,
    network_alias: str | None = None,
    user: str | None = None,
) -> list[str]:
    cmd = ["run", "--read-only", "--tmpfs", "/tmp", *_user(user)]
    if network:
        cmd += ["--network", network]
    if network_alias:
        cmd += ["--network-alias", network_alias]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    if remove:
        cmd.append("--rm")
    if detach:
        cmd.append("--detach")
    if name:
        cmd += ["--name", name]
    for host, container, mode in volumes:
        cmd += ["--volume", f"{host}:{container}:{mode}"]
    for key, value in (env or {}).items():
        cmd += ["--env", f"{key}={value}"]
    for port in ports:
        cmd += ["--publish", f"127.0.0.1::{port}"]  # the engine picks a free host port
    return [*cmd, image, *args]


class Containers:
    """Starts containers under unique names and removes every one of them at teardown, even after failures."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def name(self, hint: str) -> str:
        hint = re.sub(r"[^a-zA-Z0-9_.-]", "", hint) or "run"
        name = f"byoc-test-{hint}-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        return name

    def run(self, image: str, args: Sequence[str] = (), *, timeout: float = RUN_TIMEOUT, **kwargs) -> Run:
        """Run to completion (`docker run --rm`), output captured."""
        name = self.name(args[0] if args else "noargs")
        cmd = run_args(image, args, name=name, **kwargs)
        try:
            proc = docker(*cmd, check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            docker("rm", "--force", name, check=False)
            raise AssertionError(f"docker {' '.join(cmd)} did not finish within {timeout} s") from None
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def start(self, image: str, args: Sequence[str] = (), **kwargs) -> str:
        """Start detached, without --rm so its exit code can be read after it stops."""
        name = self.name(args[0] if args else "noargs")
        docker(*run_args(image, args, name=name, detach=True, remove=False, **kwargs))
        return name

    def cleanup(self) -> None:
        for name in self.names:
            docker("rm", "--force", "--volumes", name, check=False)


@pytest.fixture
def containers(docker_engine) -> Iterator[Containers]:
    c = Containers()
    yield c
    c.cleanup()


@pytest.fixture(scope="session")
def session_containers(docker_engine) -> Iterator[Containers]:
    c = Containers()
    yield c
    c.cleanup()


def host_port(name: str, container_port: int) -> int:
    out = docker("port", name, f"{container_port}/tcp").stdout
    # "127.0.0.1:49153" (possibly one line per address family)
    return int(out.strip().splitlines()[0].rsplit(":", 1)[1])


def state(name: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)


def logs(name: str) -> str:
    proc = docker("logs", name, check=False)
    return proc.stdout + proc.stderr


def wait_ready(name: str, url: str, timeout: float = READY_TIMEOUT) -> None:
    """Poll /ping until 200; fail at once (with the logs) if the container exits instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not state(name)["Running"]:
            raise AssertionError(f"{name} exited {state(name)['ExitCode']} before answering /ping:\n{logs(name)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{name}: {url} not healthy within {timeout} s:\n{logs(name)}")


# -- training jobs -----------------------------------------------------------------------------------------------
def training_volumes(job: om.OptML) -> list[tuple[Path, str, str]]:
    """/opt/ml writable, its input read-only on top: a job must not write into its input."""
    return [(job.base_dir, "/opt/ml", "rw"), (job.base_dir / "input", "/opt/ml/input", "ro")]


def new_job(base: Path) -> om.OptML:
    job = om.OptML(base / "opt_ml")
    for sub in ("model", "output"):
        (job.base_dir / sub).mkdir(parents=True, exist_ok=True)
    return job


@dataclass
class ContainerTraining:
    job: om.OptML
    run: Run

    @property
    def model_dir(self) -> Path:
        return self.job.base_dir / "model"

    @property
    def failure_file(self) -> Path:
        return self.job.base_dir / "output" / "failure"


@pytest.fixture(scope="session")
def trained_in_container(images, session_containers, tmp_path_factory, car_splits, car_schema):
    """One training job per algorithm image, default hyperparameters but few rounds, on the real data."""
    fast = {"xgboost": {"num_round": "60"}, "linear": {"epochs": "5"}}
    results: dict[str, ContainerTraining] = {}

    def get(algorithm: str) -> ContainerTraining:
        if algorithm not in results:
            job = new_job(tmp_path_factory.mktemp(f"container-train-{algorithm}"))
            write_builtin_channels(job, car_splits, car_schema)
            job.hyperparameters(fast[algorithm])
            run = session_containers.run(images[algorithm], ["train"], volumes=training_volumes(job))
            results[algorithm] = ContainerTraining(job, run)
        return results[algorithm]

    return get
