"""A local SageMaker: the API operations the pipelines call, answered by running the real images (or their entry
points as local processes) against S3 as the caller's boto3 sees it (moto in tests).

    backend = LocalSageMaker(workdir, runners.pick("auto"))
    backend.handle("CreateTrainingJob", {...})       # what `pipelines.local.intercept` routes boto3 calls to
    backend.wait("training", "job-1", 600)
    backend.close()

Requests are validated against botocore's service model, responses have its shapes, errors its codes and AWS's
messages. Jobs and endpoint changes run in background threads, as on AWS (Create* answers at once, Describe*
shows the progress). Every job keeps its /opt/ml tree under ``workdir/jobs/<kind>/<name>/`` for inspection.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import random
import re
import shutil
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import requests
from botocore.exceptions import ParamValidationError
from botocore.response import StreamingBody
from botocore.validate import validate_parameters

from emulators import transform as tf
from emulators.capture import INFERENCE_ID_HEADER, CaptureProxy
from emulators.model_server import ModelServer, ServerError
from pipelines.local.jobs import ProcessingJob
from pipelines.local.runners import ENTRYPOINT, Image, Runner, RunnerError

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
OPT_ML = "/opt/ml"
PROCESSING = "/opt/ml/processing"
REASON_LIMIT = 1024  # SageMaker shows the first 1024 characters of /opt/ml/output/failure
JOB_TERMINAL = ("Completed", "Failed", "Stopped")
ENDPOINT_BUSY = ("Creating", "Updating", "Deleting", "SystemUpdating", "RollingBack")
NAME_FIELDS = {  # operation -> the name parameters the resource-name pattern applies to
    "CreateTrainingJob": ("TrainingJobName",),
    "CreateProcessingJob": ("ProcessingJobName",),
    "CreateTransformJob": ("TransformJobName", "ModelName"),
    "CreateModel": ("ModelName",),
    "CreateEndpointConfig": ("EndpointConfigName",),
    "CreateEndpoint": ("EndpointName", "EndpointConfigName"),
    "UpdateEndpoint": ("EndpointName", "EndpointConfigName"),
}
RUNTIME_OPERATIONS = ("InvokeEndpoint",)
_CLIENT_LOCK = threading.Lock()  # boto3's default session is not thread-safe when creating clients
_MODELS: dict[str, Any] = {}


class SageMakerError(Exception):
    """An API error as AWS answers it: ``code`` (the error shape), ``message``, HTTP ``status``; ``extra`` are
    modeled fields of the error (ModelError's OriginalStatusCode, ...)."""

    def __init__(self, code: str, message: str, status: int = 400, **extra: Any):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status, self.extra = code, message, status, extra


def service_model(service: str):
    if service not in _MODELS:
        _MODELS[service] = botocore.session.get_session().get_service_model(service)
    return _MODELS[service]


def now() -> datetime:
    return datetime.now(UTC)


def one_line(text: object, limit: int = REASON_LIMIT) -> str:
    return " ".join(str(text).split())[:limit]


def first_line(path: Path) -> str:
    """The first non-empty line of a file (at most 1024 characters), or ''."""
    if not path.is_file():
        return ""
    for line in path.read_text(errors="replace").splitlines():
        if line.strip():
            return line.strip()[:REASON_LIMIT]
    return ""


def split_s3(uri: str) -> tuple[str, str]:
    m = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not m:
        raise RunnerError(f"{uri} is not an s3:// URI")
    return m.group(1), m.group(2)


def s3_client(region: str):
    with _CLIENT_LOCK:
        return boto3.client("s3", region_name=region)


# -- state --------------------------------------------------------------------------------------------------------
@dataclass
class Job:
    kind: str  # training | processing | transform
    name: str
    arn: str
    request: dict
    dir: Path
    created: datetime = field(default_factory=now)
    status: str = "InProgress"
    secondary: str = "Starting"
    transitions: list[dict] = field(default_factory=list)
    failure: str = ""
    exit_message: str = ""
    started: datetime | None = None
    ended: datetime | None = None
    modified: datetime = field(default_factory=now)
    metrics: list[dict] = field(default_factory=list)
    artifacts: str = ""
    log: str = ""
    stop_requested: bool = False
    timed_out: bool = False  # StoppingCondition.MaxRuntimeInSeconds ran out
    thread: threading.Thread | None = None


@dataclass
class Variant:
    """A running production variant: its server (and capture proxy) live until ``stack`` is closed."""

    name: str
    model: str
    instance_type: str
    desired: int
    weight: float
    url: str  # where invocations go: the capture proxy when there is one
    server_url: str
    stack: contextlib.ExitStack
    proxy: CaptureProxy | None = None


@dataclass
class Endpoint:
    name: str
    arn: str
    config: str
    created: datetime = field(default_factory=now)
    modified: datetime = field(default_factory=now)
    status: str = "Creating"
    failure: str = ""
    variants: list[Variant] = field(default_factory=list)
    capture: dict | None = None  # the serving config's DataCaptureConfig
    deleted: bool = False
    generation: int = 0
    thread: threading.Thread | None = None


class LocalSageMaker:
    def __init__(self, workdir: Path, runner: Runner, region: str = "us-east-1", account: str = "123456789012"):
        self.workdir, self.runner, self.region, self.account = Path(workdir), runner, region, account
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._jobs: dict[tuple[str, str], Job] = {}
        self._models: dict[str, dict] = {}
        self._configs: dict[str, dict] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._uploaded: dict[Path, int] = {}  # capture file -> size last uploaded
        self._flush_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- the API ----------------------------------------------------------------------------------------------
    def handle(self, operation: str, params: dict) -> dict:
        """Answer one API call (SageMaker, or sagemaker-runtime's InvokeEndpoint) or raise SageMakerError."""
        service = "sagemaker-runtime" if operation in RUNTIME_OPERATIONS else "sagemaker"
        model = service_model(service)
        method = getattr(self, "_op_" + re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower(), None)
        if operation not in model.operation_names or method is None:
            raise SageMakerError(
                "UnknownOperationException", f"{operation} is not supported by the local SageMaker backend"
            )
        params = dict(params or {})
        try:
            validate_parameters(params, model.operation_model(operation).input_shape)
        except ParamValidationError as e:
            raise SageMakerError("ValidationException", one_line(e.kwargs.get("report", str(e)), 2000)) from None
        for key in NAME_FIELDS.get(operation, ()):
            if key in params and not NAME_PATTERN.match(params[key]):
                raise SageMakerError(
                    "ValidationException",
                    f"1 validation error detected: Value '{params[key]}' at '{key[0].lower() + key[1:]}' failed to "
                    f"satisfy constraint: Member must satisfy regular expression pattern: {NAME_PATTERN.pattern}",
                )
        if self._closed:
            raise SageMakerError("ServiceUnavailable", "the local SageMaker backend is closed", 503)
        return method(params)

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:{kind}/{name.lower()}"

    # -- jobs (common) ----------------------------------------------------------------------------------------
    def _new_job(self, kind: str, name: str, params: dict, title: str, arn_kind: str) -> Job:
        with self._lock:
            if (kind, name) in self._jobs:
                raise SageMakerError(
                    "ResourceInUse",
                    f"{title} names must be unique within an AWS account and region, and a {title.lower()} with "
                    f"this name already exists ({self._jobs[kind, name].arn})",
                )
            folder = self.workdir / "jobs" / kind / name
            if folder.exists():  # left by an earlier backend in the same workdir
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            job = Job(kind, name, self.arn(arn_kind, name), params, folder)
            self._jobs[kind, name] = job
        return job

    def _job(self, kind: str, name: str) -> Job:
        with self._lock:
            job = self._jobs.get((kind, name))
        if job is None:
            raise SageMakerError("ResourceNotFound", "Requested resource not found.")
        return job

    def _start(self, target: Callable[[], object], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    def _launch(self, job: Job, body: Callable[[Job], None]) -> None:
        def run() -> None:
            try:
                self._set(job, started=now())
                body(job)
                if job.stop_requested:
                    self._finish(job, "Stopped", "Stopped")
                elif job.status == "InProgress":
                    self._finish(job, "Completed", "Completed")
            except RunnerError as e:
                if job.log == "" and e.log:
                    job.log = e.log
                self._finish(job, "Stopped" if job.stop_requested else "Failed", "Failed", str(e))
            except Exception as e:  # our bug: the job fails, with the cause in one line
                self._finish(job, "Failed", "Failed", f"InternalServerError: {type(e).__name__}: {one_line(e)}")
            finally:
                with self._lock:  # never left in progress, whatever went wrong above
                    if job.status in ("InProgress", "Stopping"):
                        job.status = "Stopped" if job.stop_requested else "Failed"
                        job.failure = job.failure or ("" if job.stop_requested else "InternalServerError")
                        job.ended = job.ended or now()
                if job.log:
                    (job.dir / "job.log").write_text(job.log.rstrip("\n") + "\n")

        job.thread = self._start(run, f"{job.kind}-{job.name}")

    def _set(self, job: Job, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(job, key, value)
            job.modified = now()

    def _secondary(self, job: Job, status: str, message: str = "") -> None:
        if job.stop_requested and status not in (*JOB_TERMINAL, "MaxRuntimeExceeded"):  # the job body stops here
            raise RunnerError("stopped by StopJob")
        with self._lock:
            t = now()
            if job.transitions and "EndTime" not in job.transitions[-1]:
                job.transitions[-1]["EndTime"] = t
            entry = {"Status": status, "StartTime": t, "StatusMessage": message or status}
            if status in (*JOB_TERMINAL, "MaxRuntimeExceeded"):
                entry["EndTime"] = t
            job.transitions.append(entry)
            job.secondary = status
            job.modified = t

    def _finish(self, job: Job, status: str, secondary: str, failure: str = "") -> None:
        if job.stop_requested:
            status, secondary = "Stopped", "MaxRuntimeExceeded" if job.timed_out else "Stopped"
        self._secondary(job, secondary, failure)
        with self._lock:
            job.status = status
            job.failure = one_line(failure) if status == "Failed" else ""
            job.ended = now()

    def _stop_job(self, kind: str, name: str) -> dict:
        job = self._job(kind, name)
        with self._lock:
            if job.status != "InProgress":
                raise SageMakerError(
                    "ValidationException",
                    f"The request was rejected because the {kind} job is in status {job.status}.",
                )
            job.stop_requested = True
            job.status = "Stopping"
            job.secondary = "Stopping"
        self._start(lambda: self._stop_hosts(job), f"stop-{name}")
        return {}

    def _stop_hosts(self, job: Job) -> None:
        """A job's one /opt/ml, or each host's of a multi-instance processing job."""
        for base in [job.dir, *sorted(job.dir.glob("algo-*"))]:
            self.runner.stop(base)

    @contextlib.contextmanager
    def _deadline(self, job: Job):
        """Stop the job when StoppingCondition.MaxRuntimeInSeconds runs out, as SageMaker does (status Stopped)."""
        limit = job.request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
        if not limit:
            yield
            return

        def expire() -> None:
            with self._lock:
                job.timed_out = job.stop_requested = True
            self._stop_hosts(job)

        timer = threading.Timer(limit, expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _times(self, job: Job, start_key: str, end_key: str) -> dict:
        out: dict[str, Any] = {"CreationTime": job.created, "LastModifiedTime": job.modified}
        if job.started:
            out[start_key] = job.started
        if job.ended:
            out[end_key] = job.ended
        return out

    # -- S3 ---------------------------------------------------------------------------------------------------
    def _download(self, uri: str, dest: Path, what: str, share: tuple[int, int] | None = None) -> list[Path]:
        """An S3 prefix (or one object) into ``dest``, keeping the key paths under the prefix (File mode);
        ``share`` (rank, hosts): only every hosts-th object from the rank-th (ShardedByS3Key)."""
        bucket, prefix = split_s3(uri)
        s3 = s3_client(self.region)
        keys = []
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        except s3.exceptions.NoSuchBucket:
            raise RunnerError(f"ClientError: {what}: the bucket of {uri} does not exist") from None
        if not keys:
            raise RunnerError(f'ClientError: No S3 objects found under S3 URL "{uri}" given in {what}.')
        if share is not None:
            keys = sorted(keys)[share[0] :: share[1]]
        dest.mkdir(parents=True, exist_ok=True)
        files = []
        for key in keys:
            rel = key.rsplit("/", 1)[-1] if key == prefix else key[len(prefix) :].lstrip("/")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
            files.append(target)
        return files

    def _upload_dir(self, src: Path, uri: str) -> list[str]:
        bucket, prefix = split_s3(uri)
        s3 = s3_client(self.region)
        keys = []
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            key = "/".join(x for x in (prefix.rstrip("/"), path.relative_to(src).as_posix()) if x)
            s3.upload_file(str(path), bucket, key)
            keys.append(key)
        return keys

    def _upload_file(self, path: Path, uri: str) -> None:
        bucket, key = split_s3(uri)
        s3_client(self.region).upload_file(str(path), bucket, key)

    def _resolve(self, uri: str) -> Image:
        try:
            return self.runner.resolve_image(uri)
        except RunnerError as e:
            raise RunnerError(f"ClientError: {e}") from None

    # -- training -----------------------------------------------------------------------------------------------
    def _op_create_training_job(self, p: dict) -> dict:
        stopping = p["StoppingCondition"]
        if p.get("EnableManagedSpotTraining"):
            wait, run = stopping.get("MaxWaitTimeInSeconds"), stopping.get("MaxRuntimeInSeconds", 86400)
            if wait is None or wait < run:
                raise SageMakerError(
                    "ValidationException",
                    "Invalid MaxWaitTimeInSeconds. It must be present and be greater than or equal to "
                    "MaxRuntimeInSeconds",
                )
        elif "MaxWaitTimeInSeconds" in stopping:
            raise SageMakerError(
                "ValidationException", "MaxWaitTimeInSeconds can only be set with EnableManagedSpotTraining"
            )
        spec = p["AlgorithmSpecification"]
        if "TrainingImage" not in spec:
            raise SageMakerError("ValidationException", "AlgorithmSpecification.TrainingImage is required here")
        if spec.get("TrainingInputMode", "File") != "File":
            raise SageMakerError("ValidationException", "only TrainingInputMode File is supported locally")
        for metric in spec.get("MetricDefinitions", []):
            try:
                re.compile(metric["Regex"])
            except re.error as e:
                raise SageMakerError("ValidationException", f"MetricDefinitions {metric['Name']}: {e}") from None
        job = self._new_job("training", p["TrainingJobName"], p, "Training job", "training-job")
        self._launch(job, self._run_training)
        return {"TrainingJobArn": job.arn}

    def _run_training(self, job: Job) -> None:
        p, base = job.request, job.dir
        image = self._resolve(p["AlgorithmSpecification"]["TrainingImage"])
        self._secondary(job, "Downloading", "Downloading input data")
        config = base / "input" / "config"
        config.mkdir(parents=True)
        channels = {}
        for channel in p.get("InputDataConfig", []):
            name = channel["ChannelName"]
            source = channel["DataSource"].get("S3DataSource")
            if source is None or source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise RunnerError(f"ClientError: channel {name}: only S3DataSource with S3DataType S3Prefix runs here")
            self._download(source["S3Uri"], base / "input" / "data" / name, f"channel {name}")
            entry = {
                "TrainingInputMode": channel.get("InputMode", p["AlgorithmSpecification"].get("TrainingInputMode")),
                "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
                "RecordWrapperType": channel.get("RecordWrapperType", "None"),
            }
            if "ContentType" in channel:
                entry["ContentType"] = channel["ContentType"]
            channels[name] = entry
        # As SageMaker writes them: every hyperparameter a string; one host locally, whatever InstanceCount says.
        (config / "hyperparameters.json").write_text(json.dumps(p.get("HyperParameters", {})))
        (config / "inputdataconfig.json").write_text(json.dumps(channels))
        (config / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
        )
        checkpoint = p.get("CheckpointConfig")
        checkpoint_dir, checkpoint_uri = None, ""
        if checkpoint:
            checkpoint_uri = checkpoint["S3Uri"]
            local = checkpoint.get("LocalPath", "/opt/ml/checkpoints")
            if local != OPT_ML and not local.startswith(OPT_ML + "/"):
                raise RunnerError(f"ClientError: CheckpointConfig.LocalPath {local}: locally it must be under /opt/ml")
            checkpoint_dir = base / Path(local).relative_to(OPT_ML)
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            # A local process has no /opt/ml: it gets the host folder (the container path otherwise).
            path = str(checkpoint_dir) if self.runner.name == "local" else local
            (config / "checkpointconfig.json").write_text(json.dumps({"LocalPath": path, "S3Uri": checkpoint["S3Uri"]}))
            with contextlib.suppress(RunnerError):  # nothing to restore on a first run
                self._download(checkpoint["S3Uri"], checkpoint_dir, "CheckpointConfig")
        for sub in ("model", "output/data"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self._secondary(job, "Training", "Training image download completed. Training in progress.")
        try:
            with self._deadline(job):
                result = self.runner.train(image.key, base, image=image.ref)
        finally:
            if checkpoint_dir is not None and any(checkpoint_dir.iterdir()):
                self._upload_dir(checkpoint_dir, checkpoint_uri)
        job.log = result.log
        job.metrics = self._metrics(p["AlgorithmSpecification"].get("MetricDefinitions", []), result.log)
        if job.stop_requested:
            return
        if not result.ok:
            reason = first_line(base / "output" / "failure") or (
                f"AlgorithmError: exit code {result.returncode}: {result.last_line()}"
            )
            raise RunnerError(reason, result.log)
        self._secondary(job, "Uploading", "Uploading generated training model")
        out = p["OutputDataConfig"]["S3OutputPath"].rstrip("/") + f"/{job.name}/output"
        tars = base / "tars"
        tars.mkdir()
        self._tar(base / "model", tars / "model.tar.gz")
        self._tar(base / "output" / "data", tars / "output.tar.gz")
        self._upload_file(tars / "model.tar.gz", out + "/model.tar.gz")
        self._upload_file(tars / "output.tar.gz", out + "/output.tar.gz")
        job.artifacts = out + "/model.tar.gz"

    @staticmethod
    def _tar(src: Path, target: Path) -> None:
        with tarfile.open(target, "w:gz") as tar:  # files at the archive root, as SageMaker packs /opt/ml/model
            for path in sorted(src.iterdir()) if src.is_dir() else []:
                tar.add(path, arcname=path.name)

    @staticmethod
    def _metrics(definitions: list[dict], log: str) -> list[dict]:
        """As SageMaker computes them: each regex over the log lines; the last match's first group is final."""
        out = []
        lines = log.splitlines()
        for d in definitions:
            regex, value = re.compile(d["Regex"]), None
            for line in lines:
                m = regex.search(line)
                if m and m.groups():
                    with contextlib.suppress(ValueError, TypeError):
                        value = float(m.group(1))
            if value is not None:
                out.append({"MetricName": d["Name"], "Value": value, "Timestamp": now()})
        return out

    def _op_describe_training_job(self, p: dict) -> dict:
        job = self._job("training", p["TrainingJobName"])
        r = job.request
        with self._lock:
            out = {
                "TrainingJobName": job.name,
                "TrainingJobArn": job.arn,
                "ModelArtifacts": {"S3ModelArtifacts": job.artifacts} if job.artifacts else {"S3ModelArtifacts": ""},
                "TrainingJobStatus": job.status,
                "SecondaryStatus": job.secondary,
                "HyperParameters": r.get("HyperParameters", {}),
                "AlgorithmSpecification": {"TrainingInputMode": "File", **r["AlgorithmSpecification"]},
                "RoleArn": r["RoleArn"],
                "InputDataConfig": r.get("InputDataConfig", []),
                "OutputDataConfig": r["OutputDataConfig"],
                "ResourceConfig": r["ResourceConfig"],
                "StoppingCondition": r["StoppingCondition"],
                "EnableManagedSpotTraining": r.get("EnableManagedSpotTraining", False),
                "SecondaryStatusTransitions": [dict(t) for t in job.transitions],
                **self._times(job, "TrainingStartTime", "TrainingEndTime"),
            }
            for key in ("CheckpointConfig", "Environment", "EnableNetworkIsolation", "VpcConfig"):
                if key in r:
                    out[key] = r[key]
            if job.failure:
                out["FailureReason"] = job.failure
            if job.metrics:
                out["FinalMetricDataList"] = [dict(m) for m in job.metrics]
            if job.started and job.ended:
                seconds = max(1, int((job.ended - job.started).total_seconds()))
                out["TrainingTimeInSeconds"] = seconds
                out["BillableTimeInSeconds"] = seconds
        return out

    def _op_stop_training_job(self, p: dict) -> dict:
        return self._stop_job("training", p["TrainingJobName"])

    # -- processing -----------------------------------------------------------------------------------------------
    def _op_create_processing_job(self, p: dict) -> dict:
        for item in p.get("ProcessingInputs", []):
            s3 = item.get("S3Input")
            if s3 is None:
                raise SageMakerError(
                    "ValidationException", f"ProcessingInput {item['InputName']}: only S3Input runs here"
                )
            self._check_local_path(s3["LocalPath"], f"ProcessingInput {item['InputName']}")
            if s3.get("S3InputMode", "File") != "File" or s3.get("S3DataType") != "S3Prefix":
                raise SageMakerError(
                    "ValidationException",
                    f"ProcessingInput {item['InputName']}: only S3DataType S3Prefix with S3InputMode File runs here",
                )
        for item in p.get("ProcessingOutputConfig", {}).get("Outputs", []):
            s3 = item.get("S3Output")
            if s3 is None or s3.get("S3UploadMode") != "EndOfJob":
                raise SageMakerError(
                    "ValidationException",
                    f"ProcessingOutput {item['OutputName']}: only S3Output with EndOfJob runs here",
                )
            self._check_local_path(s3["LocalPath"], f"ProcessingOutput {item['OutputName']}")
        job = self._new_job("processing", p["ProcessingJobName"], p, "Processing job", "processing-job")
        self._launch(job, self._run_processing)
        return {"ProcessingJobArn": job.arn}

    @staticmethod
    def _check_local_path(path: str, what: str) -> None:
        if not path.startswith(PROCESSING + "/") or ".." in path.split("/"):
            raise SageMakerError("ValidationException", f"{what}: LocalPath {path} must be under {PROCESSING}/")

    def _run_processing(self, job: Job) -> None:
        """One /opt/ml per instance (``ClusterConfig.InstanceCount``), each with SageMaker's resourceconfig.json
        and processingjobconfig.json; ShardedByS3Key inputs give each host every N-th object (sorted keys), the
        hosts run at once, and every host's outputs are uploaded to the same S3Uri, as SageMaker does."""
        p = job.request
        app = p["AppSpecification"]
        image = self._resolve(app["ImageUri"])
        count = int(p["ProcessingResources"]["ClusterConfig"].get("InstanceCount", 1))
        hosts = [f"algo-{i + 1}" for i in range(count)]
        bases = [job.dir] if count == 1 else [job.dir / host for host in hosts]
        for item in p.get("ProcessingInputs", []):
            s3 = item["S3Input"]
            sharded = s3.get("S3DataDistributionType") == "ShardedByS3Key"
            for rank, base in enumerate(bases):
                share = (rank, count) if sharded else None
                dest = base / Path(s3["LocalPath"]).relative_to(OPT_ML)
                self._download(s3["S3Uri"], dest, item["InputName"], share=share)
        outputs = p.get("ProcessingOutputConfig", {}).get("Outputs", [])
        argv = [*app.get("ContainerEntrypoint", []), *app.get("ContainerArguments", [])]
        entrypoint: list[str] = []
        if app.get("ContainerEntrypoint") and Path(argv[0]).name != Path(ENTRYPOINT).name:
            entrypoint, argv = list(app["ContainerEntrypoint"]), list(app.get("ContainerArguments", []))
        elif app.get("ContainerEntrypoint"):
            argv = argv[1:]  # the images' own entry point: the same as none
        if not argv and not entrypoint:
            raise RunnerError(f"ClientError: ContainerArguments must name the image's command ({ENTRYPOINT})")
        command, args = (argv[0], argv[1:]) if not entrypoint else (Path(entrypoint[0]).name, argv)
        specs = []
        for host, base in zip(hosts, bases, strict=True):
            for item in outputs:
                (base / Path(item["S3Output"]["LocalPath"]).relative_to(OPT_ML)).mkdir(parents=True, exist_ok=True)
            # The whole /opt/ml tree is the host's folder: inputs and outputs sit where their LocalPath says.
            spec = ProcessingJob(command, base, env=dict(p.get("Environment", {})), args=args, entrypoint=entrypoint)
            self._host_config(spec, p, host, hosts)
            specs.append(spec)
        self._secondary(job, "Processing")
        with self._deadline(job):
            if count == 1:
                results = [self.runner.process(specs[0], image=image.ref)]
            else:
                done: dict[int, Any] = {}

                def run_host(i: int) -> None:
                    try:
                        done[i] = self.runner.process(specs[i], image=image.ref)
                    except Exception as e:  # re-raised below, in the job's thread
                        done[i] = e

                threads = [self._start(functools.partial(run_host, i), f"{job.name}-{hosts[i]}") for i in range(count)]
                for t in threads:
                    t.join()
                for i in range(count):
                    if isinstance(done.get(i), Exception):
                        raise done[i]
                    if i not in done:
                        raise RunnerError(f"InternalServerError: host {hosts[i]} did not report a result")
                results = [done[i] for i in range(count)]
        job.log = "".join(r.log if count == 1 else f"[{h}]\n{r.log}" for h, r in zip(hosts, results, strict=True))
        messages = [(first_line(b / "output" / "message"), first_line(b / "output" / "failure")) for b in bases]
        failed = next((i for i, r in enumerate(results) if not r.ok), None)
        pick = failed if failed is not None else 0
        message, failure = messages[pick]
        job.exit_message = message or failure
        if job.stop_requested:
            return
        if failed is not None:
            result = results[failed]
            reason = failure or message or f"AlgorithmError: exit code {result.returncode}: {result.last_line()}"
            raise RunnerError(reason if count == 1 else f"{hosts[failed]}: {reason}", result.log)
        self._secondary(job, "Uploading")
        for base in bases:  # every host to the same prefix: a later host's file of the same name replaces one
            for item in outputs:
                s3 = item["S3Output"]
                self._upload_dir(base / Path(s3["LocalPath"]).relative_to(OPT_ML), s3["S3Uri"])

    def _host_config(self, spec: ProcessingJob, request: dict, host: str, hosts: list[str]) -> None:
        """resourceconfig.json and processingjobconfig.json as SageMaker Processing writes them (paths as the
        runner's job sees them: a local process gets its host folders)."""
        config = spec.base_dir / "config"
        config.mkdir(parents=True, exist_ok=True)
        resource = {"current_host": host, "hosts": hosts, "network_interface_name": "eth0"}
        (config / "resourceconfig.json").write_text(json.dumps(resource))
        doc = json.loads(json.dumps(request))
        if self.runner.name == "local":
            for item in doc.get("ProcessingInputs", []):
                item["S3Input"]["LocalPath"] = str(
                    spec.base_dir / Path(item["S3Input"]["LocalPath"]).relative_to(OPT_ML)
                )
        (config / "processingjobconfig.json").write_text(json.dumps(doc))

    def _op_describe_processing_job(self, p: dict) -> dict:
        job = self._job("processing", p["ProcessingJobName"])
        r = job.request
        with self._lock:
            out = {
                "ProcessingJobName": job.name,
                "ProcessingJobArn": job.arn,
                "ProcessingJobStatus": job.status,
                "ProcessingResources": r["ProcessingResources"],
                "AppSpecification": r["AppSpecification"],
                "RoleArn": r["RoleArn"],
                **self._times(job, "ProcessingStartTime", "ProcessingEndTime"),
            }
            for key in ("ProcessingInputs", "ProcessingOutputConfig", "StoppingCondition", "Environment"):
                if key in r:
                    out[key] = r[key]
            if job.exit_message:
                out["ExitMessage"] = job.exit_message
            if job.failure:
                out["FailureReason"] = job.failure
        return out

    def _op_stop_processing_job(self, p: dict) -> dict:
        return self._stop_job("processing", p["ProcessingJobName"])

    # -- models and endpoint configs --------------------------------------------------------------------------
    def _op_create_model(self, p: dict) -> dict:
        name = p["ModelName"]
        container = p.get("PrimaryContainer") or (p.get("Containers") or [None])[0]
        if container is None or "Image" not in container:
            raise SageMakerError("ValidationException", "PrimaryContainer with an Image is required locally")
        if p.get("Containers") and len(p["Containers"]) > 1:
            raise SageMakerError("ValidationException", "inference pipelines (several Containers) do not run locally")
        with self._lock:
            if name in self._models:
                raise SageMakerError(
                    "ValidationException", f'Cannot create already existing model "{self.arn("model", name)}".'
                )
            self._models[name] = {**p, "PrimaryContainer": container, "_created": now()}
        return {"ModelArn": self.arn("model", name)}

    def _find(self, table: dict, name: str, what: str) -> Any:
        """A model, endpoint config or endpoint by name; absent: AWS's ValidationException."""
        with self._lock:
            found = table.get(name)
        if found is None:
            raise SageMakerError("ValidationException", f'Could not find {what} "{name}".')
        return found

    def _model(self, name: str) -> dict:
        return self._find(self._models, name, "model")

    def _op_describe_model(self, p: dict) -> dict:
        m = self._model(p["ModelName"])
        out = {k: v for k, v in m.items() if not k.startswith("_") and k != "Tags"}
        return {**out, "ModelArn": self.arn("model", m["ModelName"]), "CreationTime": m["_created"]}

    def _op_delete_model(self, p: dict) -> dict:
        self._model(p["ModelName"])
        with self._lock:
            self._models.pop(p["ModelName"], None)
        return {}

    def _op_create_endpoint_config(self, p: dict) -> dict:
        name = p["EndpointConfigName"]
        for v in p["ProductionVariants"]:
            self._model(v["ModelName"])  # AWS checks the models exist
        names = [v["VariantName"] for v in p["ProductionVariants"]]
        if len(set(names)) != len(names):
            raise SageMakerError("ValidationException", f"VariantName values must be unique: {names}")
        capture = p.get("DataCaptureConfig")
        if capture and capture.get("EnableCapture", True):
            if not 0 <= capture["InitialSamplingPercentage"] <= 100:
                raise SageMakerError("ValidationException", "InitialSamplingPercentage must be between 0 and 100")
            split_s3(capture["DestinationS3Uri"])
        with self._lock:
            if name in self._configs:
                raise SageMakerError(
                    "ValidationException",
                    f'Cannot create already existing endpoint configuration "{self.arn("endpoint-config", name)}".',
                )
            self._configs[name] = {**p, "_created": now()}
        return {"EndpointConfigArn": self.arn("endpoint-config", name)}

    def _config(self, name: str) -> dict:
        return self._find(self._configs, name, "endpoint configuration")

    def _op_describe_endpoint_config(self, p: dict) -> dict:
        c = self._config(p["EndpointConfigName"])
        out = {k: v for k, v in c.items() if not k.startswith("_") and k != "Tags"}
        return {
            **out,
            "EndpointConfigArn": self.arn("endpoint-config", c["EndpointConfigName"]),
            "CreationTime": c["_created"],
        }

    def _op_delete_endpoint_config(self, p: dict) -> dict:
        self._config(p["EndpointConfigName"])
        with self._lock:
            self._configs.pop(p["EndpointConfigName"], None)
        return {}

    # -- endpoints ----------------------------------------------------------------------------------------------
    def _op_create_endpoint(self, p: dict) -> dict:
        name = p["EndpointName"]
        config = self._config(p["EndpointConfigName"])
        with self._lock:
            if name in self._endpoints:
                raise SageMakerError(
                    "ValidationException",
                    f'Cannot create already existing endpoint "{self.arn("endpoint", name)}".',
                )
            ep = Endpoint(name, self.arn("endpoint", name), config["EndpointConfigName"])
            self._endpoints[name] = ep
        ep.thread = self._start(lambda: self._deploy(ep, config, update=False), f"endpoint-{name}")
        return {"EndpointArn": ep.arn}

    def _op_update_endpoint(self, p: dict) -> dict:
        ep = self._endpoint(p["EndpointName"])
        config = self._config(p["EndpointConfigName"])
        with self._lock:
            if ep.status != "InService":
                raise SageMakerError(
                    "ValidationException",
                    f'Cannot update in-progress endpoint "{ep.arn}".'
                    if ep.status in ENDPOINT_BUSY
                    else f'Cannot update endpoint "{ep.arn}" in status {ep.status}.',
                )
            ep.status, ep.failure, ep.modified = "Updating", "", now()
        ep.thread = self._start(lambda: self._deploy(ep, config, update=True), f"endpoint-{ep.name}")
        return {"EndpointArn": ep.arn}

    def _endpoint(self, name: str) -> Endpoint:
        return self._find(self._endpoints, name, "endpoint")

    def _deploy(self, ep: Endpoint, config: dict, *, update: bool) -> None:
        """Bring the config's variants up; then switch to them (InService), or fail (create) / keep the old ones
        (update: AWS rolls back, the endpoint stays InService with its old EndpointConfigName)."""
        with self._lock:
            ep.generation += 1
            generation = ep.generation
        variants: list[Variant] = []
        try:
            for v in config["ProductionVariants"]:
                variants.append(self._variant(ep, config, v, generation))
        except Exception as e:
            for variant in variants:
                self._retire(variant)
            reason = str(e) if isinstance(e, RunnerError) else f"InternalServerError: {type(e).__name__}: {e}"
            with self._lock:
                ep.failure, ep.modified = one_line(reason), now()
                ep.status = "InService" if update and ep.variants else "Failed"
            return
        with self._lock:
            if ep.deleted or self._closed:
                old, ep.variants = variants, []
            else:
                old, ep.variants = ep.variants, variants
                ep.config, ep.capture = config["EndpointConfigName"], config.get("DataCaptureConfig")
                ep.status, ep.failure, ep.modified = "InService", "", now()
        for variant in old:  # traffic goes to the new variants already: stop the old ones
            self._retire(variant)

    def _variant(self, ep: Endpoint, config: dict, v: dict, generation: int) -> Variant:
        try:
            model = self._model(v["ModelName"])
        except SageMakerError as e:
            raise RunnerError(e.message) from None
        container = model["PrimaryContainer"]
        image = self._resolve(container["Image"])
        folder = (
            self.workdir / "endpoints" / ep.name / f"{generation}-{config['EndpointConfigName']}" / v["VariantName"]
        )
        if folder.exists():
            shutil.rmtree(folder)
        self._model_dir(container.get("ModelDataUrl"), folder / "model")
        stack = contextlib.ExitStack()
        try:
            url = stack.enter_context(
                self.runner.serve(image.key, folder, image=image.ref, env=container.get("Environment", {}))
            )
            proxy = None
            capture = config.get("DataCaptureConfig")
            if capture and capture.get("EnableCapture", True):
                header = capture.get("CaptureContentTypeHeader", {})
                proxy = CaptureProxy(
                    url,
                    self._capture_root(capture["DestinationS3Uri"]),
                    ep.name,
                    v["VariantName"],
                    sampling_percentage=capture["InitialSamplingPercentage"],
                    csv_content_types=header.get("CsvContentTypes", []),
                    json_content_types=header.get("JsonContentTypes", []),
                ).start()
                stack.callback(proxy.stop)
        except RunnerError as e:
            stack.close()
            raise RunnerError(f"ClientError: variant {v['VariantName']}: {e}", e.log) from None
        except BaseException:
            stack.close()
            raise
        return Variant(
            v["VariantName"],
            v["ModelName"],
            v.get("InstanceType", ""),
            v.get("InitialInstanceCount", 1),
            float(v.get("InitialVariantWeight", 1.0)),
            proxy.url if proxy else url,
            url,
            stack,
            proxy,
        )

    def _model_dir(self, url: str | None, target: Path) -> None:
        """The model archive extracted where the server reads /opt/ml/model (no archive: an empty folder)."""
        target.mkdir(parents=True)
        if not url:
            return
        archive = target.parent / "model.tar.gz"
        try:
            bucket, key = split_s3(url)
            s3_client(self.region).download_file(bucket, key, str(archive))
        except Exception as e:
            raise RunnerError(f'ClientError: Could not download model data from URL "{url}": {one_line(e)}') from None
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(target, filter="data")  # no links out, no absolute paths
        except (tarfile.TarError, OSError, EOFError) as e:
            raise RunnerError(
                f'ClientError: Failed to extract model data archive from URL "{url}". Please ensure that the object '
                f"located at the URL is a valid tar.gz archive ({one_line(e, 200)})"
            ) from None

    def _capture_root(self, destination: str) -> Path:
        bucket, prefix = split_s3(destination)
        return self.workdir / "capture" / bucket / prefix.strip("/")

    @staticmethod
    def _retire(variant: Variant) -> None:
        variant.stack.close()  # the proxy's files stay for flush_capture()

    def _op_describe_endpoint(self, p: dict) -> dict:
        ep = self._endpoint(p["EndpointName"])
        with self._lock:
            out = {
                "EndpointName": ep.name,
                "EndpointArn": ep.arn,
                "EndpointConfigName": ep.config,
                "EndpointStatus": ep.status,
                "CreationTime": ep.created,
                "LastModifiedTime": ep.modified,
            }
            if ep.variants:
                out["ProductionVariants"] = [
                    {
                        "VariantName": v.name,
                        "CurrentWeight": v.weight,
                        "DesiredWeight": v.weight,
                        "CurrentInstanceCount": v.desired,
                        "DesiredInstanceCount": v.desired,
                    }
                    for v in ep.variants
                ]
            if ep.capture:
                out["DataCaptureConfig"] = {
                    "EnableCapture": ep.capture.get("EnableCapture", True),
                    "CaptureStatus": "Started" if ep.capture.get("EnableCapture", True) else "Stopped",
                    "CurrentSamplingPercentage": ep.capture["InitialSamplingPercentage"],
                    "DestinationS3Uri": ep.capture["DestinationS3Uri"],
                }
            if ep.failure:
                out["FailureReason"] = ep.failure
        return out

    def _op_delete_endpoint(self, p: dict) -> dict:
        ep = self._endpoint(p["EndpointName"])
        with self._lock:
            ep.deleted = True
            ep.status = "Deleting"
            variants, ep.variants = ep.variants, []
            self._endpoints.pop(ep.name, None)

        def retire() -> None:
            for variant in variants:
                self._retire(variant)
            with contextlib.suppress(Exception):  # S3 may be gone when this runs late
                self.flush_capture()

        self._start(retire, f"delete-{ep.name}")  # servers drain for seconds; AWS deletes asynchronously too
        return {}

    # -- invocations ----------------------------------------------------------------------------------------------
    def _op_invoke_endpoint(self, p: dict) -> dict:
        with self._lock:
            ep = self._endpoints.get(p["EndpointName"])
            variants = list(ep.variants) if ep and ep.status in ("InService", "Updating") else []
        if not variants:
            raise SageMakerError(
                "ValidationException", f"Endpoint {p['EndpointName']} of account {self.account} not found."
            )
        if "TargetVariant" in p:
            variants = [v for v in variants if v.name == p["TargetVariant"]]
            if not variants:
                raise SageMakerError(
                    "ValidationException",
                    f"Invalid target variant {p['TargetVariant']} for endpoint {p['EndpointName']}",
                )
        variant = random.choices(variants, weights=[v.weight or 1e-9 for v in variants])[0]
        body = p["Body"]
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode()
        headers = {"Content-Type": p.get("ContentType", "application/octet-stream")}
        if "Accept" in p:
            headers["Accept"] = p["Accept"]
        if "InferenceId" in p:
            headers[INFERENCE_ID_HEADER] = p["InferenceId"]  # capture records it as eventMetadata.inferenceId
        if "CustomAttributes" in p:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = p["CustomAttributes"]
        try:
            with requests.Session() as s:
                s.trust_env = False  # never through a proxy from the environment
                r = s.post(variant.url + "/invocations", data=body, headers=headers, timeout=65)
        except requests.RequestException as e:
            raise SageMakerError(
                "ModelError",
                f'Received server error (0) from {variant.name} with message "{one_line(e, 300)}".',
                424,
                OriginalStatusCode=0,
                OriginalMessage=one_line(e, 300),
            ) from None
        if r.status_code >= 400:
            kind = "client" if r.status_code < 500 else "server"
            text = r.content.decode(errors="replace").strip()
            group = f"/aws/sagemaker/Endpoints/{p['EndpointName']}"
            raise SageMakerError(
                "ModelError",
                f'Received {kind} error ({r.status_code}) from {variant.name} with message "{text}". See '
                f"https://{self.region}.console.aws.amazon.com/cloudwatch/home?region={self.region}"
                f"#logEventViewer:group={group} in account {self.account} for more information.",
                424,
                OriginalStatusCode=r.status_code,
                OriginalMessage=text,
                LogStreamArn=f"arn:aws:logs:{self.region}:{self.account}:log-group:{group}",
            )
        out: dict[str, Any] = {
            "Body": StreamingBody(io.BytesIO(r.content), len(r.content)),
            "ContentType": r.headers.get("Content-Type", ""),
            "InvokedProductionVariant": variant.name,
        }
        if "X-Amzn-SageMaker-Custom-Attributes" in r.headers:
            out["CustomAttributes"] = r.headers["X-Amzn-SageMaker-Custom-Attributes"]
        return out

    # -- transform --------------------------------------------------------------------------------------------
    def _op_create_transform_job(self, p: dict) -> dict:
        self._model(p["ModelName"])
        source = p["TransformInput"]["DataSource"]["S3DataSource"]
        if source.get("S3DataType") != "S3Prefix":
            raise SageMakerError("ValidationException", "only S3DataType S3Prefix runs here")
        spec = self._transform_spec(p, Path("/nonexistent/in"), Path("/nonexistent/out"))
        try:
            spec.validate()
        except tf.JobError as e:
            raise SageMakerError("ValidationException", str(e)) from None
        job = self._new_job("transform", p["TransformJobName"], p, "Transform job", "transform-job")
        self._launch(job, self._run_transform)
        return {"TransformJobArn": job.arn}

    @staticmethod
    def _transform_spec(p: dict, inputs: Path, output: Path) -> tf.TransformJob:
        ti, to, dp = p["TransformInput"], p["TransformOutput"], p.get("DataProcessing", {})
        client = p.get("ModelClientConfig", {})
        return tf.TransformJob(
            inputs=inputs,
            output=output,
            content_type=ti.get("ContentType"),
            accept=to.get("Accept"),
            split_type=ti.get("SplitType", "None"),
            assemble_with=to.get("AssembleWith", "None"),
            batch_strategy=p.get("BatchStrategy"),
            max_payload_mb=p.get("MaxPayloadInMB"),
            max_concurrent_transforms=p.get("MaxConcurrentTransforms"),
            input_filter=dp.get("InputFilter", "$"),
            join_source=dp.get("JoinSource", "None"),
            output_filter=dp.get("OutputFilter", "$"),
            environment=p.get("Environment", {}),
            invocations_timeout=client.get("InvocationsTimeoutInSeconds", 600),
            invocations_max_retries=client.get("InvocationsMaxRetries", 3),
        )

    def _run_transform(self, job: Job) -> None:
        p, base = job.request, job.dir
        model = self._model(p["ModelName"])["PrimaryContainer"]
        image = self._resolve(model["Image"])
        inputs, output = base / "input", base / "output"
        self._download(p["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"], inputs, "TransformInput")
        spec = self._transform_spec(p, inputs, output)
        server_dir = base / "server"
        self._model_dir(model.get("ModelDataUrl"), server_dir / "model")
        env = {**model.get("Environment", {}), **spec.container_environment()}
        lines: list[str] = []
        server_stack = contextlib.ExitStack()
        try:
            url = server_stack.enter_context(self.runner.serve(image.key, server_dir, image=image.ref, env=env))
            server = ModelServer(
                url, invocation_timeout=spec.invocations_timeout, max_retries=spec.invocations_max_retries
            )
            server.wait_until_healthy(60)
            report = tf.run_transform(spec, server, log=lines.append)
        except (tf.JobError, ServerError) as e:
            raise RunnerError(f"ClientError: {e}", "\n".join(lines)) from None
        finally:
            job.log = "\n".join(lines)
            # A server drains for a few seconds on SIGTERM: the job's result does not wait for it (close() does).
            self._start(server_stack.close, f"stop-server-{job.name}")
        if job.stop_requested:
            return
        if report.failures:  # no partial output: nothing is uploaded
            raise RunnerError(f"ClientError: {report.failures[0]}", job.log)
        destination = p["TransformOutput"]["S3OutputPath"]
        self._upload_dir(output, destination)

    def _op_describe_transform_job(self, p: dict) -> dict:
        job = self._job("transform", p["TransformJobName"])
        r = job.request
        with self._lock:
            out = {
                "TransformJobName": job.name,
                "TransformJobArn": job.arn,
                "TransformJobStatus": job.status,
                "ModelName": r["ModelName"],
                "TransformInput": r["TransformInput"],
                "TransformOutput": r["TransformOutput"],
                "TransformResources": r["TransformResources"],
                "CreationTime": job.created,
            }
            for key in ("MaxConcurrentTransforms", "MaxPayloadInMB", "BatchStrategy", "Environment", "DataProcessing"):
                if key in r:
                    out[key] = r[key]
            if job.started:
                out["TransformStartTime"] = job.started
            if job.ended:
                out["TransformEndTime"] = job.ended
            if job.failure:
                out["FailureReason"] = job.failure
        return out

    def _op_stop_transform_job(self, p: dict) -> dict:
        job = self._job("transform", p["TransformJobName"])
        with self._lock:
            if job.status != "InProgress":
                raise SageMakerError(
                    "ValidationException",
                    f"The request was rejected because the transform job is in status {job.status}.",
                )
            job.stop_requested, job.status = True, "Stopping"
        return {}

    # -- helpers for the main job and tests ------------------------------------------------------------------
    def endpoint_url(self, name: str) -> str:
        """The URL requests to the endpoint go to (its first variant's capture proxy when capture is on)."""
        ep = self._endpoint(name)
        with self._lock:
            if not ep.variants:
                raise SageMakerError("ValidationException", f"Endpoint {name} of account {self.account} not found.")
            return ep.variants[0].url

    def server_url(self, name: str) -> str:
        """The endpoint's first model server itself, behind no capture proxy."""
        ep = self._endpoint(name)
        with self._lock:
            if not ep.variants:
                raise SageMakerError("ValidationException", f"Endpoint {name} of account {self.account} not found.")
            return ep.variants[0].server_url

    def flush_capture(self) -> list[str]:
        """Upload every capture file that grew since the last flush to its DestinationS3Uri; return the S3 URIs."""
        root = self.workdir / "capture"
        uploaded: list[str] = []
        if not root.is_dir():
            return uploaded
        with self._flush_lock:
            return self._flush(root, uploaded)

    def _flush(self, root: Path, uploaded: list[str]) -> list[str]:
        s3 = None
        for path in sorted(root.rglob("*.jsonl")):
            size = path.stat().st_size
            if size == 0 or self._uploaded.get(path) == size:
                continue
            bucket, key = path.relative_to(root).as_posix().split("/", 1)
            s3 = s3 or s3_client(self.region)
            s3.upload_file(str(path), bucket, key)
            self._uploaded[path] = size
            uploaded.append(f"s3://{bucket}/{key}")
        return uploaded

    def wait(self, kind: str, name: str, timeout: float = 600, poll: float = 0.1) -> dict:
        """Describe ``kind`` (training | processing | transform | endpoint) until it leaves its transient states."""
        describe = {
            "training": ("DescribeTrainingJob", "TrainingJobName", "TrainingJobStatus"),
            "processing": ("DescribeProcessingJob", "ProcessingJobName", "ProcessingJobStatus"),
            "transform": ("DescribeTransformJob", "TransformJobName", "TransformJobStatus"),
            "endpoint": ("DescribeEndpoint", "EndpointName", "EndpointStatus"),
        }[kind]
        deadline = time.monotonic() + timeout
        while True:
            out = self.handle(describe[0], {describe[1]: name})
            status = out[describe[2]]
            if status not in ("InProgress", "Stopping", *ENDPOINT_BUSY):
                return out
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind} {name} still {status} after {timeout:g} s")
            time.sleep(poll)

    def close(self) -> None:
        """Stop every job, server and proxy (every exit path; idempotent), then upload the capture files."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            jobs = [j for j in self._jobs.values() if j.status in ("InProgress", "Stopping")]
            variants = [v for ep in self._endpoints.values() for v in ep.variants]
            for ep in self._endpoints.values():
                ep.variants = []
            threads = list(self._threads)
        for job in jobs:
            job.stop_requested = True
            with contextlib.suppress(Exception):
                self._stop_hosts(job)
        for variant in variants:
            with contextlib.suppress(Exception):
                self._retire(variant)
        deadline = time.monotonic() + 30
        while threads and time.monotonic() < deadline:  # jobs end by starting server-stopping threads: re-read
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            with self._lock:
                threads = [t for t in self._threads if t.is_alive() and t is not threading.current_thread()]
        if threads:  # a server still starting after 30 s: whatever the runner runs goes
            self.runner.close()
        with contextlib.suppress(Exception):
            self.flush_capture()

    def __enter__(self) -> LocalSageMaker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def jobs(self) -> list[Job]:
        """Every job so far (its ``dir`` holds its /opt/ml tree and job.log)."""
        with self._lock:
            return list(self._jobs.values())
