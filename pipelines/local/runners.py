"""Where the jobs run: the built images through a Docker engine, or the same entry points as local processes.

Both runners offer the same operations (preprocess, train, serve, baseline, monitor; process for any processing
command; resolve_image and stop for the local SageMaker backend), so callers never branch on which one runs them.
``pick("auto")`` takes Docker when an engine answers and the three images exist.

Containers run as SageMaker runs them: ``--read-only --tmpfs /tmp``, /opt/ml mounted, inputs read-only, no network
for jobs (network isolation), the caller's uid:gid so every file they write stays the user's, and they are always
removed: a job on exit, a server when its ``with`` block ends, everything left over by ``close()`` (Ctrl-C, failure).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.local.jobs import REPO, JobResult, ProcessingJob

IMAGES = {"xgboost": "byoc-xgboost", "linear": "byoc-linear", "monitor": "byoc-monitor"}
KEYS = {v: k for k, v in IMAGES.items()}
# The images' processing commands (containers/byoc) and the module each one runs.
MODULES = {
    "preprocess": "processing.preprocess",
    "baseline": "monitoring.baseline",
    "monitor": "monitoring.monitor",
    "merge": "monitoring.merge",
    "report": "monitoring.report",
    "tables": "analytics.append",
}
ENTRYPOINT = "/usr/local/bin/byoc"
JOB_TIMEOUT_S = 600
READY_TIMEOUT_S = 120
# Every container of one run carries this label with the run's id (BYOC_RUN_ID when set, else a new one), so that
# the run's containers can be found among whatever else the engine runs.
RUN_LABEL = "byoc.lifecycle.run"
SERVER_ENV = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}  # two servers on a small machine: one worker each


class RunnerError(Exception):
    """A job or server cannot run: ``message`` is one line for the user; ``log`` the output that explains it."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(" ".join(str(message).split()) or "failed")
        self.log = log


@dataclass(frozen=True)
class Image:
    """An image as a runner runs it: ``ref`` for ``docker run``, ``key`` the algorithm or ``monitor`` (or the
    repository name of an image that is not ours)."""

    ref: str
    key: str


def repository(uri: str) -> tuple[str, str]:
    """(last path component of the repository, tag or ``@digest``) of an image URI as build_push.sh prints it."""
    last = uri.rsplit("/", 1)[-1]
    if "@" in last:
        name, digest = last.split("@", 1)
        return name, "@" + digest
    name, _, tag = last.partition(":")
    return name, tag or "latest"


class Runner:
    name = "?"

    def describe(self) -> str:
        raise NotImplementedError

    def resolve_image(self, uri: str) -> Image:
        """What this runner runs for an ImageUri; RunnerError (one line naming the image) when it cannot."""
        raise NotImplementedError

    def stop(self, base_dir: Path) -> bool:
        """Stop the job running in ``base_dir`` (StopTrainingJob); False when none runs there."""
        return False

    # -- the five operations ---------------------------------------------------------------------------------
    def preprocess(self, base_dir: Path, raw: Path, output: Path) -> JobResult:
        job = ProcessingJob("preprocess", base_dir, inputs={"data": raw}, outputs={"output": output})
        job.args = ["--input", job.input_path("data"), "--output", job.output_path("output")]
        return self.process(job)

    def train(self, algorithm: str, base_dir: Path, *, image: str | None = None) -> JobResult:
        """``image``: a resolved ``Image.ref`` instead of the algorithm's own image (Docker only)."""
        raise NotImplementedError

    def serve(
        self, algorithm: str, version_dir: Path, *, image: str | None = None, env: Mapping[str, str] | None = None
    ) -> contextlib.AbstractContextManager[str]:
        """A context manager yielding the model server's URL; ``version_dir/model`` holds the model; ``env`` is
        the container's environment on top of the defaults."""
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
    def process(self, job: ProcessingJob, *, image: str | None = None) -> JobResult:
        """``job.command`` is the image's command; ``image`` a resolved ``Image.ref`` (default: byoc-monitor)."""
        raise NotImplementedError

    def close(self) -> None:
        """Remove whatever is still running (called on every exit path)."""


# -- local processes ---------------------------------------------------------------------------------------------
class LocalRunner(Runner):
    """`python -m <entry point>` with SAGEMAKER_BASE_DIR as /opt/ml: what the image runs, without the image."""

    name = "local"

    def __init__(self, why: str = "requested with --runner local"):
        self.why = why
        self._lock = threading.Lock()
        self._procs: dict[Path, subprocess.Popen] = {}  # base_dir -> running job, for stop() and close()
        self._servers: list = []

    def describe(self) -> str:
        return f"local processes ({self.why}): the images' entry points with SAGEMAKER_BASE_DIR as /opt/ml"

    def resolve_image(self, uri: str) -> Image:
        name, _ = repository(uri)
        if name not in KEYS:
            raise RunnerError(
                f"image {uri}: the local-process runner runs only {', '.join(IMAGES.values())} (no Docker image used)"
            )
        return Image(name, KEYS[name])

    def _run(self, name: str, module: str, base_dir: Path, env: Mapping[str, str], args: list[str]) -> JobResult:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "SAGEMAKER_BASE_DIR": str(base_dir), **env}
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C reaches us, not the job: close() stops it
        )
        key = base_dir.resolve()
        with self._lock:
            self._procs[key] = proc
        try:
            out, _ = proc.communicate(timeout=JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise RunnerError(f"{name}: the job did not finish within {JOB_TIMEOUT_S} s", out) from None
        finally:
            with self._lock:
                self._procs.pop(key, None)
            if proc.poll() is None:  # interrupted while waiting
                proc.kill()
                proc.wait()
        return JobResult(name, proc.returncode, out, base_dir)

    def stop(self, base_dir: Path) -> bool:
        with self._lock:
            proc = self._procs.get(base_dir.resolve())
        if proc is None or proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGTERM)  # what SageMaker sends; SIGKILL follows if it lingers
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return True

    def train(self, algorithm: str, base_dir: Path, *, image: str | None = None) -> JobResult:
        return self._run(f"train-{algorithm}", "algorithms.train", base_dir, {"ALGORITHM": algorithm}, [])

    def process(self, job: ProcessingJob, *, image: str | None = None) -> JobResult:
        if job.entrypoint:  # the images' own entry point is what runs here; another one needs the image
            raise RunnerError(f"ContainerEntrypoint {job.entrypoint}: the local-process runner runs only {ENTRYPOINT}")
        if job.command not in MODULES:
            raise RunnerError(f"{job.command!r} is not a processing command of the images ({', '.join(MODULES)})")
        job.prepare()
        env = {k: job.to_host(v) for k, v in job.env.items()}
        args = [job.to_host(a) for a in job.args]
        return self._run(job.command, MODULES[job.command], job.base_dir, env, args)

    @contextlib.contextmanager
    def serve(
        self, algorithm: str, version_dir: Path, *, image: str | None = None, env: Mapping[str, str] | None = None
    ) -> Iterator[str]:
        from emulators.local_server import LocalServer

        server = LocalServer(algorithm, version_dir, workers=1, env={**SERVER_ENV, **(env or {})})
        with self._lock:
            self._servers.append(server)
        try:
            try:
                status = server.start(timeout=READY_TIMEOUT_S)
            except RuntimeError as e:
                raise RunnerError(
                    f"the {algorithm} model server did not start: {str(e).splitlines()[0]}", str(e)
                ) from None
            if status != 200:
                raise RunnerError(f"the {algorithm} model server answers /ping with {status}", server.log())
            yield server.url
        finally:
            server.__exit__(None, None, None)  # stops it (SIGTERM, drain) and removes its log file
            with self._lock:
                if server in self._servers:
                    self._servers.remove(server)

    def close(self) -> None:
        with self._lock:
            procs, servers = list(self._procs.values()), list(self._servers)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for server in servers:
            server.stop(timeout=10)


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
        self.run_id = os.environ.get("BYOC_RUN_ID") or uuid.uuid4().hex
        self.names: list[str] = []
        self._jobs: dict[Path, str] = {}  # base_dir -> container name of the running job
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"docker ({self.found})"

    def image(self, key: str) -> str:
        return f"{IMAGES[key]}:{self.tag}"

    def resolve_image(self, uri: str) -> Image:
        """As given when the engine has it, else the repository's last path component with the tag (an ECR URI
        of an image built here); a digest falls back to the ``latest`` tag."""
        name, tag = repository(uri)
        candidates = [uri, f"{name}{tag}" if tag.startswith("@") else f"{name}:{tag}"]
        if tag.startswith("@"):
            candidates.append(f"{name}:latest")
        for candidate in dict.fromkeys(candidates):
            if _docker("image", "inspect", candidate).returncode == 0:
                return Image(candidate, KEYS.get(name, name))
        raise RunnerError(f"image {uri} is not in the local Docker engine (nor {', '.join(candidates[1:])})")

    def _name(self, hint: str) -> str:
        name = f"lifecycle-{hint}-{uuid.uuid4().hex[:8]}"
        with self._lock:
            self.names.append(name)
        return name

    def _common(self) -> list[str]:
        user = ["--user", f"{os.getuid()}:{os.getgid()}"] if hasattr(os, "getuid") else []
        return ["--read-only", "--tmpfs", "/tmp", *user, "--label", f"{RUN_LABEL}={self.run_id}"]

    def _run_job(
        self,
        hint: str,
        image: str,
        mounts: list[tuple[Path, str, bool]],
        env: Mapping[str, str],
        args: list[str],
        base_dir: Path,
        entrypoint: list[str] | None = None,
    ) -> JobResult:
        name = self._name(hint)
        cmd = ["run", "--rm", "--name", name, *self._common(), "--network", "none"]
        for host, container, read_only in mounts:
            cmd += ["--volume", f"{host.resolve()}:{container}:{'ro' if read_only else 'rw'}"]
        for key, value in env.items():
            cmd += ["--env", f"{key}={value}"]
        if entrypoint:
            cmd += ["--entrypoint", entrypoint[0]]
            args = [*entrypoint[1:], *args]
        job = base_dir.resolve()
        with self._lock:
            self._jobs[job] = name
        try:
            proc = _docker(*cmd, image, *args, timeout=JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RunnerError(f"{hint}: the container did not finish within {JOB_TIMEOUT_S} s") from None
        finally:
            with self._lock:
                self._jobs.pop(job, None)
            self._remove(name)
        if proc.returncode == 125:  # the engine refused to start it: not the job's own failure
            raise RunnerError(f"{hint}: docker run failed: {' '.join(proc.stderr.split())}")
        paths = tuple((host, container) for host, container, _ in mounts)
        return JobResult(hint, proc.returncode, proc.stdout + proc.stderr, base_dir, paths)

    def _remove(self, name: str) -> None:
        with self._lock:
            if name not in self.names:
                return
            self.names.remove(name)
        _docker("rm", "--force", "--volumes", name)

    def stop(self, base_dir: Path) -> bool:
        with self._lock:
            name = self._jobs.get(base_dir.resolve())
        if name is None:
            return False
        _docker("stop", "--time", "10", name, timeout=30)  # SIGTERM, then SIGKILL: as SageMaker stops a job
        return True

    def train(self, algorithm: str, base_dir: Path, *, image: str | None = None) -> JobResult:
        # /opt/ml writable, its input read-only on top: a job must not write into its input
        mounts = [(base_dir, "/opt/ml", False), (base_dir / "input", "/opt/ml/input", True)]
        return self._run_job(f"train-{algorithm}", image or self.image(algorithm), mounts, {}, ["train"], base_dir)

    def process(self, job: ProcessingJob, *, image: str | None = None) -> JobResult:
        job.prepare()
        return self._run_job(
            job.command,
            image or self.image("monitor"),
            job.mounts(),
            job.env,
            [job.command, *job.args],
            job.base_dir,
            job.entrypoint,
        )

    @contextlib.contextmanager
    def serve(
        self, algorithm: str, version_dir: Path, *, image: str | None = None, env: Mapping[str, str] | None = None
    ) -> Iterator[str]:
        image = image or self.image(algorithm)
        name = self._name(f"serve-{algorithm}")
        cmd = ["run", "--detach", "--name", name, *self._common(), "--publish", "127.0.0.1::8080"]
        cmd += ["--volume", f"{(version_dir / 'model').resolve()}:/opt/ml/model:ro"]
        for key, value in {**SERVER_ENV, **(env or {})}.items():
            cmd += ["--env", f"{key}={value}"]
        try:
            proc = _docker(*cmd, image, "serve")
            if proc.returncode != 0:
                raise RunnerError(f"docker run {image} serve failed: {' '.join(proc.stderr.split())}")
            port = _docker("port", name, "8080/tcp").stdout.split()
            if not port:
                raise RunnerError(f"the {algorithm} container publishes no port", self._logs(name))
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
                raise RunnerError(
                    f"the {algorithm} model server answers /ping with {e.code}", self._logs(name)
                ) from None
            except OSError:
                pass
            if time.monotonic() - checked > 1:
                checked = time.monotonic()
                state = _docker("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", name).stdout.split()
                if state and state[0] != "true":
                    raise RunnerError(
                        f"the {algorithm} container exited ({state[1]}) before answering /ping", self._logs(name)
                    )
            time.sleep(0.1)
        raise RunnerError(
            f"the {algorithm} container did not answer /ping within {READY_TIMEOUT_S} s", self._logs(name)
        )

    @staticmethod
    def _logs(name: str) -> str:
        proc = _docker("logs", "--tail", "30", name)
        return proc.stdout + proc.stderr

    def close(self) -> None:
        with self._lock:
            names = list(self.names)
        for name in names:
            self._remove(name)


def pick(mode: str, tag: str = "latest") -> Runner:
    """``auto``: Docker when usable, else local processes (saying why); ``docker`` insists; ``local`` never asks."""
    if mode == "local":
        return LocalRunner()
    usable, found = docker_status(tag)
    if usable:
        return DockerRunner(found, tag)
    if mode == "docker":
        raise RunnerError(f"--runner docker: {found}")
    return LocalRunner(why=f"{found}; --runner docker insists on Docker")
