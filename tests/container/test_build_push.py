"""scripts/build_push.sh for real: moto plays the ECR API, a local docker-registry with htpasswd plays ECR's registry.

The registry's only user is AWS, with the password that moto's GetAuthorizationToken hands out, so the script's
whole flow runs: describe/create repository, token, docker login, tag, push, digest. Then the image is pulled back
by digest and serves. The tests start their own moto and registries on free ports (the shared ones on 5000/5001
stay untouched) and build under their own tags with --no-latest, so the engine's :latest images stay as they were.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest
import requests

from emulators.local_server import free_port
from tests.container.conftest import REPO, docker, host_port, unavailable, wait_ready
from tests.moto_server import moto_server

pytestmark = [pytest.mark.container, pytest.mark.slow]

SCRIPT = REPO / "scripts" / "build_push.sh"
REGION = "us-east-1"
# build_push.sh's stdout: "<registry>/byoc-<name>:<tag> <registry>/byoc-<name>@sha256:<digest>"
DIGEST_LINE = re.compile(
    r"^(?P<uri>\S+/byoc-(?P<name>[a-z]+):(?P<tag>\S+)) (?P<ref>\S+/byoc-[a-z]+@sha256:[0-9a-f]{64})$"
)
INSTALL_HINT = "install it with scripts/services.sh install"


def reachable(url: str) -> bool:
    try:
        requests.get(url, timeout=5)
        return True
    except requests.RequestException:
        return False


def wait_until(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while not reachable(url):
        assert proc.poll() is None, f"{what} exited: {proc.stderr.read().decode() if proc.stderr else ''}"
        assert time.monotonic() < deadline, f"{what} did not answer {url} within 60 s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def moto(images):
    """This module's own moto server (ECR), on a free port."""
    with moto_server() as url:
        yield url


def ecr(moto_url: str):
    return boto3.client(
        "ecr", region_name=REGION, endpoint_url=moto_url, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def ecr_password(moto_url: str) -> str:
    token = ecr(moto_url).get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode().split(":", 1)[1]


def start_registry(root: Path, password: str, *, read_only: bool = False) -> tuple[str, subprocess.Popen]:
    """A docker-registry on a free port whose only user is AWS with ``password`` (optionally read-only)."""
    bcrypt = pytest.importorskip("bcrypt")
    if subprocess.run(["which", "docker-registry"], capture_output=True, check=False).returncode:
        unavailable(f"docker-registry not installed; {INSTALL_HINT}")
    root.mkdir(parents=True)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    (root / "htpasswd").write_text(f"AWS:{hashed}\n")
    addr = f"127.0.0.1:{free_port()}"
    maintenance = "  maintenance:\n    readonly:\n      enabled: true\n" if read_only else ""
    (root / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n"
        f"{maintenance}http:\n  addr: {addr}\n"
        f"auth:\n  htpasswd:\n    realm: test\n    path: {root}/htpasswd\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until(f"http://{addr}/v2/", proc, "docker-registry")
    except AssertionError:
        proc.kill()
        raise
    return addr, proc


@pytest.fixture(scope="module")
def registry(moto, tmp_path_factory):
    """This module's own registry, with the password this module's moto hands out."""
    addr, proc = start_registry(tmp_path_factory.mktemp("registry") / "root", ecr_password(moto))
    yield addr
    proc.terminate()
    proc.wait(timeout=30)


def base_image_env() -> dict[str, str]:
    """Rebuild from the base the images were built from, so the script's build is a cache hit."""
    if os.environ.get("BYOC_BASE_IMAGE"):
        return {"BYOC_BASE_IMAGE": os.environ["BYOC_BASE_IMAGE"]}
    if docker("image", "inspect", "byoc-debootstrap:bookworm", check=False).returncode == 0:
        return {"BYOC_BASE_IMAGE": "byoc-debootstrap:bookworm"}
    return {}


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """Dummy credentials for moto, no profile or instance role to fall back on, a private Docker config."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BYOC_BASE_IMAGE"))}
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    return {
        **clean,
        **base_image_env(),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "DOCKER_CONFIG": str(docker_config),
    }


def build_push(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False
    )


def push_args(tag: str, registry: str, moto_url: str) -> list[str]:
    return [
        "--region", REGION, "--endpoint-url", moto_url, "--registry", registry, "--images", "linear", "--tag", tag,
        "--no-latest",
    ]  # fmt: skip


def image_id(ref: str) -> str | None:
    proc = docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("build_push: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def pushed(moto, registry, tmp_path_factory):
    """One real push of byoc-linear to an ECR repository that did not exist before. This module's moto is its own,
    but the refusal tests may have run first (random order) and had build_push create the repository already."""
    client = ecr(moto)
    with contextlib.suppress(client.exceptions.RepositoryNotFoundException):
        client.delete_repository(repositoryName="byoc-linear", force=True)
    tag = f"pushtest-{uuid.uuid4().hex[:8]}"
    docker_config = tmp_path_factory.mktemp("docker-config")
    env = {**os.environ, **base_image_env(), "DOCKER_CONFIG": str(docker_config)}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true")
    env.pop("AWS_PROFILE", None)
    latest = image_id("byoc-linear:latest")
    proc = build_push(env, *push_args(tag, registry, moto))
    # A tag of our own on the pushed image: the pull test removes the image's tags, and without another tag the
    # engine would delete the image with its last build steps, so the second run would rebuild them with new
    # timestamps (a different digest) whenever :latest was not built from this very revision.
    docker("tag", f"byoc-linear:{tag}", f"byoc-linear:{tag}-kept", check=False)
    yield proc, tag, env, latest
    for ref in (f"{registry}/byoc-linear:{tag}", f"byoc-linear:{tag}", f"byoc-linear:{tag}-kept"):
        docker("rmi", ref, check=False)


def test_push_prints_uri_and_digest_on_stdout_and_leaves_latest_alone(pushed, registry):
    proc, tag, _, latest = pushed
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.splitlines()  # --no-latest: the one tag
    match = DIGEST_LINE.match(line)
    assert match, proc.stdout
    assert (match["uri"], match["tag"]) == (f"{registry}/byoc-linear:{tag}", tag)
    assert image_id("byoc-linear:latest") == latest  # the engine's :latest image was not rebuilt or retagged


def test_repository_created_with_scan_on_push(pushed, moto):
    proc, _, _, _ = pushed
    assert proc.returncode == 0, proc.stderr
    assert "created ECR repository byoc-linear (scan on push)" in proc.stderr
    [repo] = ecr(moto).describe_repositories(repositoryNames=["byoc-linear"])["repositories"]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}


def test_registry_holds_the_manifest_under_that_digest(pushed, registry, moto):
    proc, _, _, _ = pushed
    assert proc.returncode == 0, proc.stderr
    ref = DIGEST_LINE.match(proc.stdout.splitlines()[0])["ref"]
    digest = ref.rsplit("@", 1)[1]
    response = requests.get(
        f"http://{registry}/v2/byoc-linear/manifests/{digest}",
        auth=("AWS", ecr_password(moto)),
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == digest


def test_pulled_back_by_digest_it_serves(pushed, registry, containers, trained_in_container):
    proc, tag, env, _ = pushed
    assert proc.returncode == 0, proc.stderr
    ref = DIGEST_LINE.match(proc.stdout.splitlines()[0])["ref"]
    docker("rmi", f"{registry}/byoc-linear:{tag}", f"byoc-linear:{tag}")
    docker("rmi", ref, check=False)  # a digest reference left by the push, if any
    pull = docker("pull", ref, env=env, timeout=600)
    assert "Digest: " + ref.rsplit("@", 1)[1] in pull.stdout, pull.stdout
    training = trained_in_container("linear")
    try:
        name = containers.start(ref, ["serve"], volumes=[(training.model_dir, "/opt/ml/model", "ro")], ports=["8080"])
        wait_ready(name, f"http://127.0.0.1:{host_port(name, 8080)}/ping")
    finally:
        containers.cleanup()
        docker("rmi", ref, check=False)


def test_second_run_creates_nothing_and_pushes_the_same_digest(pushed, env, registry, moto):
    first, tag, _, _ = pushed
    assert first.returncode == 0, first.stderr
    second = build_push(env, *push_args(tag, registry, moto))
    assert second.returncode == 0, second.stderr
    assert "ECR repository byoc-linear exists" in second.stderr
    assert "created" not in second.stderr
    assert second.stdout == first.stdout
    assert [r["repositoryName"] for r in ecr(moto).describe_repositories()["repositories"]] == ["byoc-linear"]


def latest_id(name: str) -> str | None:
    proc = docker("image", "inspect", "--format", "{{.Id}}", f"{name}:latest", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def test_no_push_builds_and_prints_local_tags_without_aws(images, env):
    """--no-latest: only the given tag; the local :latest (which other work may be running) stays as it was."""
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}  # proves no AWS call is made
    tag = f"nopush-{uuid.uuid4().hex[:8]}"
    before = latest_id("byoc-monitor")
    try:
        proc = build_push(env, "--no-push", "--no-latest", "--images", "byoc-monitor", "--tag", tag)
        assert proc.returncode == 0, proc.stderr
        [line] = proc.stdout.splitlines()
        assert re.fullmatch(rf"byoc-monitor:{tag} sha256:[0-9a-f]{{64}}", line), line
        labels = docker("image", "inspect", "--format", "{{json .Config.Labels}}", f"byoc-monitor:{tag}").stdout
        assert "org.opencontainers.image.revision" in labels
        assert latest_id("byoc-monitor") == before
    finally:
        docker("rmi", f"byoc-monitor:{tag}", check=False)


# -- failing fast, one line each ---------------------------------------------------------------------------------
def test_docker_not_reachable(env):
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    proc = build_push(env, *push_args("never", "127.0.0.1:9", "http://127.0.0.1:9"), timeout=120)
    assert proc.returncode == 1
    assert error_line(proc).startswith(
        "build_push: error: Docker engine not reachable (DOCKER_HOST=unix:///nonexistent"
    )
    assert proc.stdout == ""


def test_missing_credentials(moto, registry, env):
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    proc = build_push(env, *push_args("never", registry, moto), timeout=120)
    assert proc.returncode == 1
    assert error_line(proc).startswith("build_push: error: no AWS credentials found")
    assert "building" not in proc.stderr, "must fail before the build"
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("arg", "value", "message"),
    [
        ("--images", "xgboost,cuda", "--images: unknown image 'cuda'"),
        ("--account", "12345", "--account: received '12345', expected a 12-digit AWS account ID"),
        ("--tag", "-bad", "--tag: received '-bad', not a valid Docker tag"),
    ],
)
def test_bad_arguments(env, arg, value, message):
    proc = build_push(env, arg, value, timeout=60)
    assert proc.returncode == 1
    assert message in error_line(proc)


@pytest.fixture
def own_registry(tmp_path):
    """More registries for one test, each on a free port with the given AWS password (and optionally read-only)."""
    procs: list[subprocess.Popen] = []

    def start(password: str, *, read_only: bool = False) -> str:
        addr, proc = start_registry(tmp_path / f"registry-{len(procs)}", password, read_only=read_only)
        procs.append(proc)
        return addr

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def test_registry_refuses_the_login(moto, env, own_registry):
    registry = own_registry("not-the-ecr-token-password")
    proc = build_push(env, *push_args("never", registry, moto), timeout=120)
    assert proc.returncode == 1
    assert error_line(proc).startswith(f"build_push: error: docker login to {registry} refused:")
    assert "building" not in proc.stderr, "must fail before the build"
    assert proc.stdout == ""


def test_registry_refuses_the_push(moto, env, own_registry):
    registry = own_registry(ecr_password(moto), read_only=True)
    tag = f"refused-{uuid.uuid4().hex[:8]}"
    try:
        proc = build_push(env, *push_args(tag, registry, moto))
        assert proc.returncode == 1
        assert error_line(proc).startswith(f"build_push: error: push of {registry}/byoc-linear:{tag} refused:")
        assert proc.stdout == ""
    finally:
        for ref in (f"{registry}/byoc-linear:{tag}", f"byoc-linear:{tag}"):
            docker("rmi", ref, check=False)
