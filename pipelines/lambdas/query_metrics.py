"""The training pipeline's "query metrics" step: the finished training job's RMSE, for the threshold gate.

Event::

    {"TrainingJobName": "cars-xgboost-20240101T1200", "MetricName": "test:rmse"}   # MetricName optional

Result::

    {"TrainingJobName": "...", "MetricName": "test:rmse", "Rmse": 3012.5,
     "Metrics": {"test:rmse": 3012.5, "test:mae": 2100.1, ...}, "Source": "FinalMetricDataList"}

The metric comes from DescribeTrainingJob's ``FinalMetricDataList`` (the job's ``MetricDefinitions``, see
``python -m algorithms.metric_definitions``). When it is not there (no metric definitions were given, or the
log line was not parsed), it comes from ``evaluation.json`` in the job's output archive
``<S3OutputPath>/<job>/output/output.tar.gz`` (Model Monitor's ``regression_metrics`` layout, written by
``algorithms/train.py`` on the test channel); Source is then ``"evaluation.json"`` and the metrics are named
``test:rmse``, ``test:mae``, ``test:mse``, ``test:r2``.

Errors (the class name is the Step Functions error name), each with a one-line message:
``InvalidEvent``, ``TrainingJobNotFound``, ``TrainingJobNotCompleted``, ``MetricsNotFound``, ``MetricNotFinite``.

The archive is read from S3 as a stream, in memory: nothing is extracted to disk, evaluation.json must be a
regular file, and the bytes read are bounded.

Standard library and boto3 only (present in the Lambda runtime): the deployment package is this file.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import tarfile
from typing import Any

DEFAULT_METRIC = "test:rmse"
EVALUATION_FILE = "evaluation.json"
EVALUATION_SPLIT = "test"  # the pipeline always gives the job a test channel, so evaluation.json is on test
EVALUATION_METRICS = ("rmse", "mae", "mse", "r2")
# Bounds on the archive: compressed bytes read from S3, member bytes skipped (a gzip bomb), members, and the
# size of evaluation.json itself (a few hundred bytes in practice).
MAX_ARCHIVE_BYTES = 256 * 2**20
MAX_SCANNED_BYTES = 1024 * 2**20
MAX_MEMBERS = 10_000
MAX_EVALUATION_BYTES = 2**20


class InvalidEvent(Exception):
    pass


class TrainingJobNotFound(Exception):
    pass


class TrainingJobNotCompleted(Exception):
    pass


class MetricsNotFound(Exception):
    pass


class MetricNotFinite(Exception):
    pass


def _region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def _client(service: str):
    # Created per call, so that tests and local runs can intercept boto3.client.
    import boto3

    return boto3.client(service, region_name=_region())


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    job_name, metric_name = _parse_event(event)
    job = _describe(job_name)
    status = job.get("TrainingJobStatus")
    if status != "Completed":
        reason = _one_line(job.get("FailureReason") or "")
        raise TrainingJobNotCompleted(
            f"training job {job_name} is {status}, not Completed" + (f": {reason}" if reason else "")
        )

    final = {
        m["MetricName"]: m.get("Value")
        for m in job.get("FinalMetricDataList") or []
        if isinstance(m, dict) and "MetricName" in m
    }
    if metric_name in final:
        metrics, source = final, "FinalMetricDataList"
    else:
        metrics, source = _evaluation_metrics(job, metric_name), EVALUATION_FILE

    value = metrics[metric_name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MetricNotFinite(f"training job {job_name}: {metric_name} is {value!r} in {source}, not a finite number")
    return {
        "TrainingJobName": job_name,
        "MetricName": metric_name,
        "Rmse": float(value),
        "Metrics": {
            k: (float(v) if isinstance(v, int | float) and math.isfinite(v) else None) for k, v in metrics.items()
        },
        "Source": source,
    }


def _parse_event(event: Any) -> tuple[str, str]:
    if not isinstance(event, dict):
        raise InvalidEvent(f"expected a JSON object with TrainingJobName, received {type(event).__name__}")
    job_name = event.get("TrainingJobName")
    if not isinstance(job_name, str) or not job_name.strip():
        raise InvalidEvent(f"TrainingJobName: expected a non-empty string, received {job_name!r}")
    metric_name = event.get("MetricName") or DEFAULT_METRIC
    if not isinstance(metric_name, str):
        raise InvalidEvent(f"MetricName: expected a string such as {DEFAULT_METRIC!r}, received {metric_name!r}")
    return job_name.strip(), metric_name


def _describe(job_name: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    sagemaker = _client("sagemaker")
    try:
        return sagemaker.describe_training_job(TrainingJobName=job_name)
    except ClientError as e:
        error = e.response.get("Error", {})
        # SageMaker answers ValidationException "Could not find training job ..." for an unknown name.
        if error.get("Code") in ("ValidationException", "ResourceNotFound") and "find" in error.get("Message", ""):
            raise TrainingJobNotFound(f"training job {job_name} not found: {_one_line(error.get('Message'))}") from e
        raise


def _evaluation_metrics(job: dict[str, Any], metric_name: str) -> dict[str, Any]:
    job_name = job["TrainingJobName"]
    split, _, short = metric_name.partition(":")
    if split != EVALUATION_SPLIT or short not in EVALUATION_METRICS:
        raise MetricsNotFound(
            f"training job {job_name}: no {metric_name} in FinalMetricDataList, and {EVALUATION_FILE} only has "
            f"{', '.join(f'{EVALUATION_SPLIT}:{m}' for m in EVALUATION_METRICS)}"
        )
    output_path = (job.get("OutputDataConfig") or {}).get("S3OutputPath", "")
    if not output_path.startswith("s3://"):
        raise MetricsNotFound(f"training job {job_name}: no {metric_name} in FinalMetricDataList and no S3OutputPath")
    uri = f"{output_path.rstrip('/')}/{job_name}/output/output.tar.gz"
    doc = _read_evaluation(uri, job_name, metric_name)
    regression = doc.get("regression_metrics") if isinstance(doc, dict) else None
    if not isinstance(regression, dict) or not isinstance(regression.get(short), dict):
        raise MetricsNotFound(
            f"training job {job_name}: no {metric_name} in FinalMetricDataList, and {uri} {EVALUATION_FILE} has no "
            f"regression_metrics.{short}.value"
        )
    return {
        f"{EVALUATION_SPLIT}:{m}": regression[m].get("value")
        for m in EVALUATION_METRICS
        if isinstance(regression.get(m), dict)
    }


def _read_evaluation(uri: str, job_name: str, metric_name: str) -> Any:
    from botocore.exceptions import ClientError

    s3 = _client("s3")
    bucket, _, key = uri[len("s3://") :].partition("/")
    missing = f"training job {job_name}: no {metric_name} in FinalMetricDataList"
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey as e:
        raise MetricsNotFound(f"{missing}, and no output archive at {uri}") from e
    except ClientError as e:
        # Without s3:ListBucket a missing key is AccessDenied, so name the code instead of guessing.
        code = e.response.get("Error", {}).get("Code", "")
        if code not in ("AccessDenied", "403"):
            raise
        raise MetricsNotFound(f"{missing}, and {uri} cannot be read: {code}") from e
    if obj.get("ContentLength", 0) > MAX_ARCHIVE_BYTES:
        raise MetricsNotFound(f"{missing}, and {uri} is larger than {MAX_ARCHIVE_BYTES} bytes")
    body = _Bounded(obj["Body"], MAX_ARCHIVE_BYTES, uri)
    try:
        # "r|gz": a forward-only stream, so the archive is never held whole nor written anywhere.
        # typeshed asks for a seekable, writable file whatever the mode; a stream mode only reads.
        with tarfile.open(fileobj=body, mode="r|gz") as tar:  # type: ignore[call-overload]
            scanned = 0
            for count, member in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise MetricsNotFound(f"{missing}, and {uri} has more than {MAX_MEMBERS} members")
                name = posixpath.normpath(member.name.lstrip("/"))
                if name != EVALUATION_FILE:
                    scanned += max(member.size, 0)
                    if scanned > MAX_SCANNED_BYTES:
                        raise MetricsNotFound(f"{missing}, and {EVALUATION_FILE} not in the first bytes of {uri}")
                    continue
                if not member.isreg():
                    raise MetricsNotFound(f"{uri}: {member.name} is not a regular file")
                if member.size > MAX_EVALUATION_BYTES:
                    raise MetricsNotFound(f"{uri}: {member.name} is larger than {MAX_EVALUATION_BYTES} bytes")
                data = tar.extractfile(member).read(MAX_EVALUATION_BYTES + 1)
                try:
                    return json.loads(data)
                except ValueError as e:
                    raise MetricsNotFound(f"{uri}: {member.name} is not valid JSON: {_one_line(e)}") from e
    except (tarfile.TarError, EOFError, OSError) as e:
        raise MetricsNotFound(f"{missing}, and {uri} is not a readable tar.gz: {_one_line(e)}") from e
    raise MetricsNotFound(f"{missing}, and {uri} holds no {EVALUATION_FILE}")


class _Bounded:
    """A read-only stream that refuses to deliver more than ``limit`` bytes."""

    def __init__(self, raw: Any, limit: int, uri: str):
        self._raw, self._left, self._uri = raw, limit, uri

    def read(self, size: int = -1) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        data = self._raw.read(want)
        self._left -= len(data)
        if self._left < 0:
            raise MetricsNotFound(f"{self._uri}: archive larger than its bound")
        return data
