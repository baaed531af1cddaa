"""Where the jobs run: the built images through a Docker engine, or the same entry points as local processes.

Both runners offer the same five operations (preprocess, train, serve, baseline, monitor), so the steps never
branch on which one runs them. ``pick("auto")`` takes Docker when an engine answers and the three images exist.

Containers run as SageMaker runs them: ``--read-only --tmpfs /tmp``, /opt/ml mounted, inputs read-only, no network
for jobs (network isolation), the caller's uid:gid so every file they write stays the user's, and they are always
removed: a job on exit, a server when its ``with`` block ends, everything left over by ``close()`` (Ctrl-C, failure).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from lifecycle.jobs import REPO, JobResult, ProcessingJob
from lifecycle.progress import StepFailed

IMAGES = {"xgboost": "byoc-xgboost", "linear": "byoc-linear", "monitor": "byoc-monitor"}
MODULES = {"preprocess": "processing.preprocess", "baseline": "monitoring.baseline", "monitor": "monitoring.monitor"}
JOB_TIMEOUT_S = 600
READY_TIMEOUT_S = 120
SERVER_ENV = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}  # two servers on a small machine: one worker each


class Runner:
    name = "?"

    def describe(self) -> str:
        raise NotImplementedError

    # -- the five operations ---------------------------------------------------------------------------------
    def preprocess(self, base_dir: Path, raw: Path, output: Path) -> JobResult:
        job = ProcessingJob("preprocess", base_dir, inputs={"data": raw}, outputs={"output": output})
        job.args = ["--input", job.input_path("data"), "--output", job.output_path("output")]
        return self.process(job)

    def train(self, algorithm: str, base_dir: Path) -> JobResult:
        raise NotImplementedError

    def serve(self, algorithm: str, version_dir: Path) -> contextlib.AbstractContextManager[str]:
        """A context manager yielding the model server's URL; ``version_dir/model`` holds the model."""
        raise NotImplementedError

    def baseline(self, base_dir: Path, dataset: Path, output: Path, *, model_quality: bool = False) -> JobResult:
        job = ProcessingJob("baseline", base_dir, inputs={"baseline_dataset": dataset}, outputs={"baseline": output})
        job.env = {
            "dataset_source": job.input_path("baseline_dataset"),
            "dataset_format": '{"csv": {"header": false}}',
            "output_path": job.output_path("baseline"),
        }
        job.args = ["--model-quality"] if model_quality else []
        return self.process(job)

    def monitor(self, base_dir: Path, inputs: Mapping[str, Path], output: Path, env: Mapping[str, str]) -> JobResult:
        """``inputs`` name -> host folder (``env`` refers to them as /opt/ml/processing/input/<name>); results go
        to ``output`` (/opt/ml/processing/resultdata)."""
        job = ProcessingJob("monitor", base_dir, inputs=dict(inputs), outputs={"resultdata": output})
        job.env = {"output_path": job.output_path("resultdata"), **env}
        return self.process(job)

    # -- what each runner implements ---------------------------------------------------------------------------
    def process(self, job: ProcessingJob) -> JobResult:
        raise NotImplementedError

    def close(self) -> None:
        """Remove whatever is still running (called on every exit path)."""


# -- local processes ---------------------------------------------------------------------------------------------
class LocalRunner(Runner):
    """`python -m <entry point>` with SAGEMAKER_BASE_DIR as /opt/ml: what the image runs, without the image."""

    name = "local"

    def __init__(self, why: str = "requested with --runner local"):
        self.why = why

    def describe(self) -> str:
        return f"local processes ({self.why}): the images' entry points with SAGEMAKER_BASE_DIR as /opt/ml"

    @staticmethod
    def _run(name: str, module: str, base_dir: Path, env: Mapping[str, str], args: list[str]) -> JobResult:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "SAGEMAKER_BASE_DIR": str(base_dir), **env}
        proc = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=JOB_TIMEOUT_S,
            check=False,
        )
        return JobResult(name, proc.returncode, proc.stdout, base_dir)

    def train(self, algorithm: str, base_dir: Path) -> JobResult:
        return self._run(f"train-{algorithm}", "algorithms.train", base_dir, {"ALGORITHM": algorithm}, [])

    def process(self, job: ProcessingJob) -> JobResult:
        job.prepare()
        env = {k: job.to_host(v) for k, v in job.env.items()}
        args = [job.to_host(a) for a in job.args]
        return self._run(job.command, MODULES[job.command], job.base_dir, env, args)

    @contextlib.contextmanager
    def serve(self, algorithm: str, version_dir: Path) -> Iterator[str]:
        from serving.local import LocalServer

        server = LocalServer(algorithm, version_dir, workers=1, env=SERVER_ENV)
        try:
            try:
                status = server.start(timeout=READY_TIMEOUT_S)
            except RuntimeError as e:
                raise StepFailed(
                    f"the {algorithm} model server did not start: {str(e).splitlines()[0]}", str(e)
                ) from None
            if status != 200:
                raise StepFailed(f"the {algorithm} model server answers /ping with {status}", server.log())
            yield server.url
        finally:
            server.__exit__(None, None, None)  # stops it (SIGTERM, drain) and removes its log file


# -- Docker ----------------------------------------------------------------------------------------------------------
def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def docker_status(tag: str = "latest") -> tuple[bool, str]:
    """(usable, what was found): an engine that answers and the three images with ``tag``."""
    if shutil.which("docker") is None:
        return False, "no docker CLI on PATH"
    try:
        info = _docker("info", "--format", "{{.ServerVersion}}", timeout=20)
    except subprocess.TimeoutExpired:
        return False, "the Docker engine did not answer within 20 s"
    if info.returncode != 0:
        return False, "no Docker engine reachable"
    missing = [f"{i}:{tag}" for i in IMAGES.values() if _docker("image", "inspect", f"{i}:{tag}").returncode != 0]
    if missing:
        return False, f"images not built: {', '.join(missing)} (scripts/build_push.sh --no-push builds them)"
    return True, f"Docker engine {info.stdout.strip()}, images {', '.join(f'{i}:{tag}' for i in IMAGES.values())}"


class DockerRunner(Runner):
    name = "docker"

    def __init__(self, found: str, tag: str = "latest"):
        self.found, self.tag = found, tag
        self.names: list[str] = []

    def describe(self) -> str:
        return f"docker ({self.found})"

    def image(self, key: str) -> str:
        return f"{IMAGES[key]}:{self.tag}"

    def _name(self, hint: str) -> str:
        name = f"lifecycle-{hint}-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        return name

    @staticmethod
    def _common() -> list[str]:
        user = ["--user", f"{os.getuid()}:{os.getgid()}"] if hasattr(os, "getuid") else []
        return ["--read-only", "--tmpfs", "/tmp", *user]

    def _run_job(
        self,
        hint: str,
        image: str,
        mounts: list[tuple[Path, str, bool]],
        env: Mapping[str, str],
        args: list[str],
        base_dir: Path,
    ) -> JobResult:
        name = self._name(hint)
        cmd = ["run", "--rm", "--name", name, *self._common(), "--network", "none"]
        for host, container, read_only in mounts:
            cmd += ["--volume", f"{host.resolve()}:{container}:{'ro' if read_only else 'rw'}"]
        for key, value in env.items():
            cmd += ["--env", f"{key}={value}"]
        try:
            proc = _docker(*cmd, image, *args, timeout=JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"{hint}: the container did not finish within {JOB_TIMEOUT_S} s") from None
        finally:
            self._remove(name)
        if proc.returncode == 125:  # the engine refused to start it: not the job's own failure
            raise StepFailed(f"{hint}: docker run failed: {' '.join(proc.stderr.split())}")
        paths = tuple((host, container) for host, container, _ in mounts)
        return JobResult(hint, proc.returncode, proc.stdout + proc.stderr, base_dir, paths)

    def _remove(self, name: str) -> None:
        if name in self.names:
            _docker("rm", "--force", "--volumes", name)
            self.names.remove(name)

    def train(self, algorithm: str, base_dir: Path) -> JobResult:
        # /opt/ml writable, its input read-only on top: a job must not write into its input
        mounts = [(base_dir, "/opt/ml", False), (base_dir / "input", "/opt/ml/input", True)]
        return self._run_job(f"train-{algorithm}", self.image(algorithm), mounts, {}, ["train"], base_dir)

    def process(self, job: ProcessingJob) -> JobResult:
        job.prepare()
        return self._run_job(
            job.command, self.image("monitor"), job.mounts(), job.env, [job.command, *job.args], job.base_dir
        )

    @contextlib.contextmanager
    def serve(self, algorithm: str, version_dir: Path) -> Iterator[str]:
        name = self._name(f"serve-{algorithm}")
        cmd = ["run", "--detach", "--name", name, *self._common(), "--publish", "127.0.0.1::8080"]
        cmd += ["--volume", f"{(version_dir / 'model').resolve()}:/opt/ml/model:ro"]
        for key, value in SERVER_ENV.items():
            cmd += ["--env", f"{key}={value}"]
        try:
            proc = _docker(*cmd, self.image(algorithm), "serve")
            if proc.returncode != 0:
                raise StepFailed(f"docker run {self.image(algorithm)} serve failed: {' '.join(proc.stderr.split())}")
            port = _docker("port", name, "8080/tcp").stdout.split()
            if not port:
                raise StepFailed(f"the {algorithm} container publishes no port", self._logs(name))
            url = f"http://127.0.0.1:{port[0].rpartition(':')[2]}"
            self._wait_ready(name, algorithm, url)
            yield url
        finally:
            self._remove(name)

    def _wait_ready(self, name: str, algorithm: str, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        checked = 0.0
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError as e:
                raise StepFailed(
                    f"the {algorithm} model server answers /ping with {e.code}", self._logs(name)
                ) from None
            except OSError:
                pass
            if time.monotonic() - checked > 1:
                checked = time.monotonic()
                state = _docker("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", name).stdout.split()
                if state and state[0] != "true":
                    raise StepFailed(
                        f"the {algorithm} container exited ({state[1]}) before answering /ping", self._logs(name)
                    )
            time.sleep(0.1)
        raise StepFailed(f"the {algorithm} container did not answer /ping within {READY_TIMEOUT_S} s", self._logs(name))

    @staticmethod
    def _logs(name: str) -> str:
        proc = _docker("logs", "--tail", "30", name)
        return proc.stdout + proc.stderr

    def close(self) -> None:
        for name in list(self.names):
            self._remove(name)


def pick(mode: str, tag: str = "latest") -> Runner:
    """``auto``: Docker when usable, else local processes (saying why); ``docker`` insists; ``local`` never asks."""
    if mode == "local":
        return LocalRunner()
    usable, found = docker_status(tag)
    if usable:
        return DockerRunner(found, tag)
    if mode == "docker":
        raise StepFailed(f"--runner docker: {found}")
    return LocalRunner(why=f"{found}; --runner docker insists on Docker")
