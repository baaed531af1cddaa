"""The monitoring pipeline's "find new data" step: what arrived since the last run, per deployed model.

Event::

    {"NamePrefix": "cars", "ArtifactsUri": "s3://bucket/pipelines", "Algorithms": ["xgboost", "linear"],
     "BookmarkParameter": "/cars/monitoring/bookmark", "Now": "2024-01-01T12:00:00Z"}

For each algorithm with a deployment record (``/<NamePrefix>/<algorithm>/deployment``, written by the training
pipeline), it lists the endpoint's data capture (``<CaptureUri>/<EndpointName>/``) and the batch scoring outputs
(``<ArtifactsUri>/scored/<algorithm>/<run>/``, monitored as the batch job ``<NamePrefix>-<algorithm>-score-<run>``,
the scoring pipeline's transform job), keeping what was written after the bookmark, and whether ground
truth exists (``<ArtifactsUri>/ground-truth/<EndpointName>/``). Result::

    {"HasData": true,
     "Runs": [{"Name": "realtime-xgboost", "Kind": "realtime", "Algorithm": "xgboost", "Target": "cars-xgboost",
               "DataUri": "s3://.../datacapture/cars-xgboost", "Start": "...", "End": "...",
               "HasGroundTruth": true, "GroundTruthUri": "...", "DataBaselineUri": "...",
               "QualityBaselineUri": "...", "SchemaUri": "..."}, ...],
     "Bookmark": {"realtime/xgboost": "2024-01-01T11:59:58Z", "batch/xgboost": "..."}}

The bookmark (the newest LastModified seen per source) is the stand-in for Glue job bookmarks; the pipeline
writes it back only after every monitor run succeeded, so a failed run is monitored again next time. A real-time
run's window starts at the previous bookmark (the first run: everything) and ends at ``Now``.

Errors (the class name is the Step Functions error name): ``InvalidEvent``, ``CorruptParameter``.
Standard library and boto3 only (present in the Lambda runtime): the deployment package is this file.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

EPOCH = "1970-01-01T00:00:00Z"
# the monitor job's dataset_format per kind of source (Model Monitor's environment contract)
CAPTURE_FORMAT = json.dumps({"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}})
BATCH_FORMAT = json.dumps({"csv": {"header": False}})


class InvalidEvent(Exception):
    pass


class CorruptParameter(Exception):
    pass


def _client(service: str):
    import boto3  # created per call, so that tests and local runs can intercept boto3.client

    return boto3.client(service, region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise InvalidEvent(f"expected an s3:// URI, received {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key.rstrip("/")


def _objects(s3, uri: str) -> list[dict[str, Any]]:
    bucket, prefix = _split(uri)
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        out += page.get("Contents", [])
    return out


def _parameter(ssm, name: str) -> dict[str, Any] | None:
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return None
    try:
        doc = json.loads(value)
    except json.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise CorruptParameter(f"parameter {name}: expected a JSON object, received {value[:80]!r}")
    return doc


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    needed = ("NamePrefix", "ArtifactsUri", "Algorithms", "BookmarkParameter", "Now")
    if not isinstance(event, dict) or any(k not in event for k in needed):
        raise InvalidEvent(f"expected {', '.join(needed)}")
    now = _parse(event["Now"])
    ssm, s3 = _client("ssm"), _client("s3")
    bookmark = _parameter(ssm, event["BookmarkParameter"]) or {}
    new_bookmark = dict(bookmark)
    artifacts = event["ArtifactsUri"].rstrip("/")
    runs = []
    for algorithm in event["Algorithms"]:
        record = _parameter(ssm, f"/{event['NamePrefix']}/{algorithm}/deployment")
        if record is None:
            continue
        endpoint = record["EndpointName"]
        common = {
            "Algorithm": algorithm,
            "DataBaselineUri": record["DataQualityBaselineUri"],
            "QualityBaselineUri": record["ModelQualityBaselineUri"],
            "SchemaUri": record["SchemaUri"],
        }
        key = f"realtime/{algorithm}"
        since = _parse(bookmark.get(key, EPOCH))
        capture_uri = f"{record['CaptureUri'].rstrip('/')}/{endpoint}"
        fresh = [o for o in _objects(s3, capture_uri) if o["LastModified"] > since]
        if fresh:
            truth_uri = f"{artifacts}/ground-truth/{endpoint}"
            has_truth = bool(_objects(s3, truth_uri))
            runs.append({
                "Name": f"realtime-{algorithm}", "Kind": "realtime", "Target": endpoint, "DataUri": capture_uri,
                "Start": _iso(since), "End": _iso(now), "HasGroundTruth": has_truth,
                "GroundTruthUri": truth_uri if has_truth else "", **common,
                "Environment": {"dataset_format": CAPTURE_FORMAT, "sagemaker_endpoint_name": endpoint,
                                "start_time": _iso(since), "end_time": _iso(now)},
            })  # fmt: skip
            new_bookmark[key] = _iso(max(o["LastModified"] for o in fresh))
        key = f"batch/{algorithm}"
        since = _parse(bookmark.get(key, EPOCH))
        scored = f"{artifacts}/scored/{algorithm}"
        fresh = [o for o in _objects(s3, scored) if o["LastModified"] > since and o["Key"].endswith(".out")]
        for run in sorted({o["Key"][len(_split(scored)[1]) + 1 :].split("/")[0] for o in fresh}):
            job = f"{event['NamePrefix']}-{algorithm}-score-{run}"  # the scoring pipeline's transform job
            runs.append({
                "Name": f"batch-{algorithm}-{run}", "Kind": "batch", "Target": job,
                "DataUri": f"{scored}/{run}", "Start": "", "End": "", "HasGroundTruth": False, "GroundTruthUri": "",
                **common,
                "Environment": {"dataset_format": BATCH_FORMAT, "id_columns": "1", "batch_job_name": job},
            })  # fmt: skip
        if fresh:
            new_bookmark[key] = _iso(max(o["LastModified"] for o in fresh))
    return {"HasData": bool(runs), "Runs": runs, "Bookmark": new_bookmark}
