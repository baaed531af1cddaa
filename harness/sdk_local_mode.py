"""The SageMaker Python SDK (v2) in local mode with this project's images, and not one AWS call.

    lm = open_local_mode(Path("build/local-mode"))          # offline environment, guards, LocalSession
    trained = train(lm, "xgboost", "byoc-xgboost", channels, {"num_round": "100"})
    with endpoint(lm, "byoc-xgboost", trained.model_data) as ep:
        ep.csv.predict("8221,6,4,1,1,1,Buick,sedan")
    transform(lm, "byoc-xgboost", trained.model_data, features_dir, out_dir)
    lm.close()                                              # removes every container of this run

Each trap local mode has is handled here, and listed in harness/README.md: the SDK's telemetry and STS calls
(TelemetryOptOut), CloudWatch Logs (``logs=False``), ``Model.deploy`` returning None (``predictor_cls``),
containers left running when a call fails or hangs (timeouts, labels, removal), error answers taken for
predictions (every non-2xx from the container raises here), the fixed host port 8080 (a free port per run),
and the 30 s sleeps of ``wait=True`` (local calls are synchronous anyway).
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_REGION = "us-east-1"
# A full ARN: with a bare role name the SDK asks IAM for the ARN.
LOCAL_ROLE = "arn:aws:iam::000000000000:role/byoc-local-mode"
# Every container this module starts carries this label (value: the run id), so cleanup never guesses by name.
LABEL = "io.github.sagemaker-byoc.local-mode-run"
TELEMETRY_OPT_OUT = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
TIMEOUTS = {"train": 900.0, "deploy": 240.0, "transform": 600.0}
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def offline_environ(region: str = DEFAULT_REGION) -> dict[str, str]:
    """What the process environment must say so that neither the SDK nor botocore looks for AWS.

    Dummy keys (not the user's: the SDK copies the session's keys into every container's environment and into the
    compose file on disk), no EC2 instance-metadata probe, a region (the SDK refuses to start without one)."""
    return {
        "AWS_ACCESS_KEY_ID": "local-mode-dummy-key",
        "AWS_SECRET_ACCESS_KEY": "local-mode-dummy-secret",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
    }


# -- no AWS call: a botocore hook and a socket guard -------------------------------------------------------------
class AwsCallAttempted(RuntimeError):
    """Something tried to reach a host other than this machine."""


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1, localhost; also 0.0.0.0 / :: (a local bind or a connect that stays on this machine)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


class LoopbackGuard:
    """Records, and refuses, every attempt to reach anything but 127.0.0.1 / ::1 / localhost.

    Two layers: a botocore ``before-send`` hook on the session's boto3 session (every AWS API call, with its URL),
    and, while installed, a guard on socket connects and name lookups in this process (the SDK's telemetry uses
    ``requests``, not botocore). The docker / docker-compose subprocesses talk to the engine over its Unix socket
    and are not affected. ``attempts`` keeps every refused target even when a caller swallows the exception."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._lock = threading.Lock()
        self._saved: dict[str, Any] = {}

    def _refuse(self, what: str) -> None:
        with self._lock:
            self.attempts.append(what)
        raise AwsCallAttempted(f"local mode must not reach {what}: only 127.0.0.1/localhost is allowed")

    # botocore: event "before-send", called with the prepared request
    def before_send(self, request, **_: Any) -> None:
        if not is_loopback(urlsplit(request.url).hostname):
            self._refuse(f"{request.method} {request.url}")

    def watch(self, boto_session) -> None:
        # Register before clients are made: botocore clients copy the session's handlers when they are created.
        boto_session.events.register("before-send", self.before_send, unique_id=f"byoc-loopback-{id(self)}")

    # sockets: patched for the life of the guard
    def install(self) -> LoopbackGuard:
        if self._saved:
            return self
        real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
        real_getaddrinfo = socket.getaddrinfo
        guard = self

        def check(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(str(address[0])):
                guard._refuse(f"{address[0]}:{address[1]}")

        def connect(sock, address):
            check(sock, address)
            return real_connect(sock, address)

        def connect_ex(sock, address):
            check(sock, address)
            return real_connect_ex(sock, address)

        def getaddrinfo(host, *args, **kwargs):
            name = host.decode() if isinstance(host, bytes) else host
            if name not in (None, "") and not is_loopback(str(name)):
                guard._refuse(f"name lookup of {name}")
            return real_getaddrinfo(host, *args, **kwargs)

        self._saved = {"connect": real_connect, "connect_ex": real_connect_ex, "getaddrinfo": real_getaddrinfo}
        self._patch(connect, connect_ex, getaddrinfo)
        return self

    def uninstall(self) -> None:
        if self._saved:
            self._patch(self._saved["connect"], self._saved["connect_ex"], self._saved["getaddrinfo"])
            self._saved = {}

    @staticmethod
    def _patch(connect: Any, connect_ex: Any, getaddrinfo: Any) -> None:
        # setattr: replacing methods of the socket module is the point of this guard
        setattr(socket.socket, "connect", connect)  # noqa: B010
        setattr(socket.socket, "connect_ex", connect_ex)  # noqa: B010
        setattr(socket, "getaddrinfo", getaddrinfo)  # noqa: B010


# -- containers ------------------------------------------------------------------------------------------------------
def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def run_containers(run_id: str, *, only_exited: bool = False) -> list[str]:
    """Ids of the containers local mode started for this run (running or not)."""
    args = ["ps", "--all", "--quiet", "--filter", f"label={LABEL}={run_id}"]
    if only_exited:
        args += ["--filter", "status=exited"]
    try:
        proc = docker(*args)
    except (OSError, subprocess.TimeoutExpired):  # no docker CLI, or an engine that hangs: nothing we can list
        return []
    return proc.stdout.split() if proc.returncode == 0 else []


def _crashed(run_id: str) -> str | None:
    """A container of the run that exited with a non-zero code (a stop by the SDK exits 0 after draining)."""
    for container in run_containers(run_id, only_exited=True):
        proc = docker("inspect", "--format", "{{.State.ExitCode}}", container)
        if proc.returncode == 0 and proc.stdout.strip() not in ("", "0"):
            return container
    return None


def _pings(lm: LocalMode) -> bool:
    """Whether the run's serving port answers /ping with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{lm.serving_port}/ping", timeout=0.5) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def remove_containers(run_id: str) -> list[str]:
    """Stop, then remove this run's containers; a `docker-compose up` waiting on them then returns.

    Stopped with SIGTERM first (the server drains and exits 0 within a second): a SIGKILL made docker-compose exit
    137, and the SDK's thread then raised an exception of its own into the test log."""
    ids = run_containers(run_id)
    if ids:
        docker("stop", "--time", "10", *ids, timeout=120)
        docker("rm", "--force", "--volumes", *ids, timeout=120)
    return ids


def container_logs(container: str, lines: int = 30) -> str:
    proc = docker("logs", "--tail", str(lines), container)
    return (proc.stdout + proc.stderr).strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose_command() -> list[str] | None:
    """What local mode will run: Compose v2 (`docker compose`) first, then v1 (`docker-compose`), as the SDK does."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def preflight(images: list[str]) -> str | None:
    """Why local mode cannot run here (one line), or None."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        info = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer `docker info` within 30 s"
    if info.returncode != 0:
        return f"no Docker engine reachable ({(info.stderr.strip().splitlines() or ['?'])[-1]})"
    if compose_command() is None:
        return "no Docker Compose (local mode needs `docker compose` or `docker-compose`; see harness/README.md)"
    missing = [image for image in images if docker("image", "inspect", image).returncode != 0]
    if missing:
        return f"image(s) not built: {', '.join(missing)} (scripts/build_push.sh --no-push)"
    return None


# -- the session -----------------------------------------------------------------------------------------------------
class LocalModeError(RuntimeError):
    """A local-mode step failed; the message says which step and why."""


class InvocationFailed(LocalModeError):
    """The container answered /invocations with an error; the real service raises ModelError here."""

    def __init__(self, status: int, body: bytes):
        text = body.decode("utf-8", "replace").strip().splitlines()
        super().__init__(f"/invocations answered {status}: {(text or [''])[0][:300]}")
        self.status = status
        self.body = body


@dataclass
class LocalMode:
    session: Any  # sagemaker.local.LocalSession
    guard: LoopbackGuard
    run_id: str
    work_dir: Path
    serving_port: int
    timeouts: dict[str, float] = field(default_factory=lambda: dict(TIMEOUTS))

    def close(self, *, keep_scratch: bool = False) -> list[str]:
        """Remove every container of this run (running, stopped or failed), the SDK's scratch folders (compose
        files, copies of /opt/ml) unless asked to keep them, and lift the socket guard."""
        try:
            return remove_containers(self.run_id)
        finally:
            self.guard.uninstall()
            if not keep_scratch:
                shutil.rmtree(self.work_dir / "containers", ignore_errors=True)

    def __enter__(self) -> LocalMode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_status(invoke: Callable[..., dict]) -> Callable[..., dict]:
    """Local mode hands back whatever /invocations answers, a 4xx/5xx body included (a batch transform writes it
    into the .out file as if it were predictions). Raise instead, like the service."""

    def checked(*args: Any, **kwargs: Any) -> dict:
        response = invoke(*args, **kwargs)
        body = response["Body"]
        if not 200 <= body.status < 300:
            data = body.read()
            body.close()
            raise InvocationFailed(body.status, data)
        return response

    return checked


def open_local_mode(
    work_dir: Path,
    *,
    region: str = DEFAULT_REGION,
    serving_port: int | None = None,
    read_only: bool = True,
    guard_sockets: bool = True,
) -> LocalMode:
    """A LocalSession that cannot reach AWS. Sets the process environment (``offline_environ``) first.

    Containers run with a read-only root and a /tmp tmpfs (as the images are meant to run) and carry the run's
    label; their scratch (compose file, mounted /opt/ml folders) lives under ``work_dir``."""
    os.environ.update(offline_environ(region))
    import boto3
    from sagemaker.local import LocalSession

    guard = LoopbackGuard()
    if guard_sockets:
        guard.install()
    boto_session = boto3.Session(
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region_name=region,
    )
    guard.watch(boto_session)
    session = LocalSession(boto_session=boto_session, sagemaker_config=TELEMETRY_OPT_OUT)
    run_id = uuid.uuid4().hex[:12]
    port = serving_port or free_port()
    root = Path(work_dir).resolve() / "containers"
    root.mkdir(parents=True, exist_ok=True)
    container_config: dict[str, Any] = {"labels": {LABEL: run_id}}
    if read_only:
        # Local mode mounts /opt/ml's subfolders, not /opt/ml itself (SageMaker does): sagemaker-training creates
        # /opt/ml/code at import, so it gets a tmpfs too.
        container_config |= {"read_only": True, "tmpfs": ["/tmp", "/opt/ml/code"]}
    session.config = {
        "local": {
            "local_code": True,
            # Local mode publishes 8080 by default: a stale container or any other server there would answer /ping.
            "serving_port": port,
            "container_root": str(root),
            "container_config": container_config,
        }
    }
    runtime = session.sagemaker_runtime_client
    runtime.invoke_endpoint = _check_status(runtime.invoke_endpoint)
    return LocalMode(session, guard, run_id, Path(work_dir).resolve(), port)


# -- supervision: timeouts, early failure, cleanup ------------------------------------------------------------------
def supervised(
    lm: LocalMode, what: str, call: Callable[[], Any], *, timeout: float, serving: bool = False, grace: float = 30
) -> Any:
    """Run an SDK call in a thread; on timeout, or (``serving``) when a container of the run exits while the SDK
    still polls /ping, remove the run's containers so the SDK call returns, and raise LocalModeError.

    The SDK itself gives up on /ping only after 120 s and never stops a container whose call failed."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"local-mode-{what}", daemon=True)
    started = time.monotonic()
    thread.start()
    reason = None
    answered = False  # once /ping answered, an exit is the SDK stopping the container (end of a transform)
    while thread.is_alive():
        thread.join(0.25 if serving and not answered else 1.0)
        if not thread.is_alive():
            break
        answered = answered or (serving and _pings(lm))
        if time.monotonic() - started > timeout:
            reason = f"did not finish within {timeout:.0f} s"
        elif serving and not answered and (crashed := _crashed(lm.run_id)):
            tail = container_logs(crashed)
            reason = f"the serving container exited before it answered /ping:\n{tail}"
        if reason:
            remove_containers(lm.run_id)
            thread.join(grace)  # the SDK call returns once its containers are gone
            break
    if reason is None and "error" in outcome:
        remove_containers(lm.run_id)
        error = outcome["error"]
        detail = str(error) if isinstance(error, LocalModeError) else f"{type(error).__name__}: {error}"
        raise LocalModeError(f"{what} failed: {detail}") from error
    if reason is not None:
        raise LocalModeError(f"{what} {reason}")
    return outcome.get("value")


class _Tee(io.TextIOBase):
    """Local mode streams the container's output to sys.stdout; keep a copy to apply the metric regexes to."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.chunks: list[str] = []

    def write(self, text: str) -> int:
        self.chunks.append(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def text(self) -> str:
        return "".join(self.chunks)


def parse_metrics(log: str, definitions: Sequence[Mapping[str, str]]) -> dict[str, float]:
    """The last value each MetricDefinition regex finds in the log, as SageMaker reports the final metric."""
    found: dict[str, float] = {}
    for definition in definitions:
        matches = re.findall(definition["Regex"], log)
        if matches:
            found[definition["Name"]] = float(matches[-1])
    return found


# -- the steps -------------------------------------------------------------------------------------------------------
@dataclass
class Trained:
    algorithm: str
    model_data: str  # file:///.../model.tar.gz
    seconds: float
    metrics: dict[str, float]
    log: str

    @property
    def model_path(self) -> Path:
        return Path(urlsplit(self.model_data).path)


def channel_uris(channels_dir: Path, names: tuple[str, ...] = ("train", "validation")) -> dict[str, str]:
    return {name: f"file://{(Path(channels_dir) / name).resolve()}" for name in names if (channels_dir / name).is_dir()}


def train(
    lm: LocalMode,
    algorithm: str,
    image: str,
    channels_dir: Path,
    hyperparameters: Mapping[str, str] | None = None,
    *,
    echo: bool = True,
    instance_count: int = 1,
) -> Trained:
    """One local training job on the ``file://`` channels found in channels_dir (train, validation).

    ``instance_count`` > 1 runs that many containers (algo-1, algo-2, ...) on one compose network: a multi-host job.
    """
    from sagemaker.estimator import Estimator

    from algorithms.metric_definitions import definitions

    metric_definitions = definitions(algorithm)
    # One folder per job: local mode writes model.tar.gz / output.tar.gz straight into output_path (no job-name
    # prefix, even after a failure), and a deploy later unpacks the archive next to itself and mounts that folder.
    output = lm.work_dir / "training" / f"{algorithm}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    output.mkdir(parents=True)
    estimator = Estimator(
        image_uri=image,
        role=LOCAL_ROLE,
        instance_count=instance_count,
        instance_type="local",
        output_path=f"file://{output}",  # without it the SDK asks S3 (and STS) for its default bucket
        hyperparameters=dict(hyperparameters or {}),
        # local mode does not evaluate them; parse_metrics does. (The SDK's list of dict[str, str | PipelineVariable]
        # is invariant, so a list of plain string dicts does not match it.)
        metric_definitions=metric_definitions,  # type: ignore[arg-type]
        sagemaker_session=lm.session,
        base_job_name=f"byoc-{algorithm}",
    )
    inputs = channel_uris(channels_dir)
    if "train" not in inputs:
        raise LocalModeError(f"no train channel in {channels_dir} (expected {channels_dir}/train/)")
    tee = _Tee(sys.stdout if echo else io.StringIO())
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(tee):
            # The local job runs synchronously inside fit(); wait=True with logs=False would only add a 5 s sleep,
            # and logs=True would read CloudWatch Logs outside local mode.
            supervised(
                lm, f"training {algorithm}", lambda: estimator.fit(inputs, wait=False), timeout=lm.timeouts["train"]
            )
    except LocalModeError as exc:
        reason = failure_reason(output / "output.tar.gz")
        if reason:
            raise LocalModeError(f"training {algorithm} failed: {reason}") from exc
        raise
    finally:
        remove_containers(lm.run_id)  # compose leaves the exited training container behind
    seconds = time.monotonic() - started
    log = tee.text()
    return Trained(algorithm, estimator.model_data, seconds, parse_metrics(log, metric_definitions), log)


@dataclass
class Endpoint:
    name: str
    csv: Any  # sagemaker.Predictor: text/csv in, text/csv out
    json: Any  # sagemaker.Predictor: application/json in and out
    seconds: float


def check_model_data(model_data: str) -> None:
    """Fail now rather than after the SDK's 120 s of /ping polling: a file:// model.tar.gz holding files.

    (A failed local training job still leaves a model.tar.gz, an empty one.)"""
    parts = urlsplit(model_data)
    if parts.scheme != "file":
        raise LocalModeError(f"model data must be a file:// URI here (no S3 in local mode), received {model_data!r}")
    path = Path(parts.path)
    if not path.is_file():
        raise LocalModeError(f"model data {path} does not exist")
    try:
        files = model_files(path)
    except Exception as exc:  # tarfile raises several types for a damaged archive
        raise LocalModeError(f"model data {path} is not a readable .tar.gz: {exc}") from exc
    if not files:
        raise LocalModeError(f"model data {path} holds no files (the archive of a failed training job?)")


@contextlib.contextmanager
def endpoint(lm: LocalMode, image: str, model_data: str) -> Iterator[Endpoint]:
    """A local endpoint for the model; deleted, and its container removed, on exit."""
    from sagemaker.deserializers import CSVDeserializer, JSONDeserializer
    from sagemaker.model import Model
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import CSVSerializer, JSONSerializer

    check_model_data(model_data)
    name = f"byoc-local-{lm.run_id}-{uuid.uuid4().hex[:6]}"
    model = Model(
        image_uri=image,
        model_data=model_data,
        role=LOCAL_ROLE,
        sagemaker_session=lm.session,
        predictor_cls=Predictor,
        name=name,
    )
    started = time.monotonic()
    # wait=False: the local CreateEndpoint already blocks until /ping answers; wait=True only adds a 30 s sleep.
    csv = supervised(
        lm,
        "deploy",
        lambda: model.deploy(
            initial_instance_count=1,
            instance_type="local",
            endpoint_name=name,
            wait=False,
            serializer=CSVSerializer(),
            deserializer=CSVDeserializer(),
        ),
        timeout=lm.timeouts["deploy"],
        serving=True,
    )
    seconds = time.monotonic() - started
    if csv is None:
        raise LocalModeError("Model.deploy returned no predictor (predictor_cls missing)")
    status = lm.session.sagemaker_client.describe_endpoint(EndpointName=name)["EndpointStatus"]
    if status != "InService":
        raise LocalModeError(f"endpoint {name} is {status}, not InService, after deploy returned")
    json_predictor = Predictor(
        name, sagemaker_session=lm.session, serializer=JSONSerializer(), deserializer=JSONDeserializer()
    )
    try:
        yield Endpoint(name, csv, json_predictor, seconds)
    finally:
        try:
            csv.delete_endpoint(delete_endpoint_config=True)
            model.delete_model()
        finally:
            remove_containers(lm.run_id)  # delete_endpoint stops compose; the stopped container would remain


@dataclass
class Transformed:
    output_dir: Path
    seconds: float
    description: dict


IGNORED_BY_LOCAL_MODE = ("input_filter", "join_source", "output_filter")


def refuse_ignored_options(options: Mapping[str, str | None]) -> None:
    """Raise when a DataProcessing option is set to anything but its default: local mode would drop it silently."""
    unknown = sorted(set(options) - set(IGNORED_BY_LOCAL_MODE))
    if unknown:
        raise TypeError(f"transform() got unexpected keyword arguments: {', '.join(unknown)}")
    given = [key for key in IGNORED_BY_LOCAL_MODE if options.get(key) not in (None, "", "$", "None")]
    if given:
        raise LocalModeError(
            f"SageMaker local mode ignores {', '.join(given)} (the output would silently differ from a real "
            "transform job); use `python -m emulators.transform` (see harness/README.md), which honours them"
        )


def transform(
    lm: LocalMode,
    image: str,
    model_data: str,
    input_path: Path,
    output_dir: Path,
    *,
    content_type: str = "text/csv",
    accept: str = "text/csv",
    split_type: str = "Line",
    assemble_with: str = "Line",
    strategy: str = "MultiRecord",
    max_payload_mb: int = 6,
    **data_processing: str,
) -> Transformed:
    """A local batch transform: one ``<name>.out`` per input file in output_dir.

    Local mode silently ignores InputFilter, JoinSource and OutputFilter (and sends one request at a time); they
    are refused here rather than ignored: use ``python -m emulators.transform`` for them."""
    refuse_ignored_options(data_processing)
    check_model_data(model_data)
    from sagemaker.model import Model

    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    name = f"byoc-local-{lm.run_id}-{uuid.uuid4().hex[:6]}"
    model = Model(image_uri=image, model_data=model_data, role=LOCAL_ROLE, sagemaker_session=lm.session, name=name)
    transformer = model.transformer(
        instance_count=1,
        instance_type="local",
        strategy=strategy,
        assemble_with=assemble_with,
        output_path=f"file://{output_dir}",  # else the SDK asks S3 for its default bucket
        accept=accept,
        max_payload=max_payload_mb,
    )
    started = time.monotonic()

    def run() -> None:
        # logs=True reads CloudWatch Logs and fails; wait=True only sleeps 5 s: the local job runs synchronously.
        transformer.transform(
            f"file://{Path(input_path).resolve()}",
            content_type=content_type,
            split_type=split_type,
            job_name=name,
            wait=False,
            logs=False,
        )

    try:
        supervised(lm, "batch transform", run, timeout=lm.timeouts["transform"], serving=True)
        description = lm.session.sagemaker_client.describe_transform_job(TransformJobName=name)
    finally:
        with contextlib.suppress(Exception):
            model.delete_model()
        remove_containers(lm.run_id)
    if description["TransformJobStatus"] != "Completed":
        raise LocalModeError(f"transform job {name} is {description['TransformJobStatus']}")
    return Transformed(output_dir, time.monotonic() - started, description)


def failure_reason(output_tar: Path) -> str | None:
    """The first line of /opt/ml/output/failure, which local mode packs into output.tar.gz even when the job fails."""
    import tarfile

    if not output_tar.is_file():
        return None
    with tarfile.open(output_tar) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.removeprefix("./") == "failure":
                content = tar.extractfile(member)
                if content is None:
                    continue
                data = content.read().decode("utf-8", "replace").strip()
                return data.splitlines()[0] if data else None
    return None


def model_files(model_tar: Path) -> list[str]:
    """The member names of a model.tar.gz (regular files), for checks and reports."""
    import tarfile

    with tarfile.open(model_tar) as tar:
        return sorted(m.name.removeprefix("./") for m in tar.getmembers() if m.isfile())


def summary(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
