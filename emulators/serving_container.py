"""Run a serving image the way batch transform does: ``docker run IMAGE serve`` with the model at /opt/ml/model.

The container listens on 8080 inside; it is published on an ephemeral port of 127.0.0.1 only (Docker picks it, so
there is no race for a free port). The model directory is mounted read-only, as SageMaker's is. A ``model.tar.gz``
is extracted first (SageMaker untars ModelDataUrl into /opt/ml/model). The container is removed on every exit
path: success, failure, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path


class ContainerError(RuntimeError):
    pass


def _docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ContainerError("the docker client is not installed; use --endpoint URL with a running server") from None
    if check and proc.returncode != 0:
        err = " ".join(proc.stderr.split()) or f"exit code {proc.returncode}"
        raise ContainerError(f"docker {args[0]} failed: {err}")
    return proc


@contextlib.contextmanager
def model_directory(path: Path) -> Iterator[Path]:
    """A directory holding the model: ``path`` itself, or ``path`` (a .tar.gz) extracted to a temporary one."""
    if path.is_dir():
        yield path.resolve()
        return
    if not path.is_file():
        raise ContainerError(f"--model-dir {path}: no such directory or model.tar.gz")
    tmp = Path(tempfile.mkdtemp(prefix="transform-model-"))
    try:
        try:
            with tarfile.open(path, "r:*") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as err:
            raise ContainerError(f"--model-dir {path}: not a directory nor a readable tar archive ({err})") from None
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ServingContainer:
    def __init__(self, container_id: str, name: str):
        self.id = container_id
        self.name = name

    def url(self) -> str:
        out = _docker("port", self.id, "8080/tcp").stdout.split()
        if not out:
            raise ContainerError(f"container {self.name} publishes no port for 8080")
        port = out[0].rpartition(":")[2]
        return f"http://127.0.0.1:{port}"

    def exit_reason(self) -> str | None:
        """None while running; otherwise the exit code and the end of the log."""
        state = _docker("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", self.id, check=False)
        if state.returncode != 0:
            return "the container is gone"
        running, _, code = state.stdout.strip().partition(" ")
        if running == "true":
            return None
        return f"exit code {code}; last log lines: {self.log_tail()}"

    def log_tail(self, lines: int = 5) -> str:
        logs = _docker("logs", "--tail", str(lines), self.id, check=False)
        return " | ".join(line for line in (logs.stdout + logs.stderr).splitlines() if line.strip()) or "(none)"


@contextlib.contextmanager
def run_serving_container(image: str, model_dir: Path, env: Mapping[str, str]) -> Iterator[ServingContainer]:
    name = f"local-transform-{uuid.uuid4().hex[:12]}"
    with model_directory(model_dir) as model:
        args = ["run", "-d", "--name", name, "-p", "127.0.0.1::8080", "-v", f"{model}:/opt/ml/model:ro"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        try:
            container_id = _docker(*args, image, "serve").stdout.strip()
            container = ServingContainer(container_id, name)
            yield container
        finally:
            # By name: also covers a `docker run` that created the container and then failed or was interrupted.
            _docker("rm", "-f", name, check=False, timeout=60)
