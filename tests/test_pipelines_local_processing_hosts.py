"""A processing job with InstanceCount 2 in the local SageMaker backend, through boto3 (S3 in moto, the
local-process runner): the monitor on two hosts with a ShardedByS3Key capture input, every host's output
uploaded to the same prefix, then the merge job over that prefix: the result of one monitor job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws

from harness import capturegen
from pipelines.local import intercept
from pipelines.local.runners import LocalRunner
from pipelines.local.sagemaker import LocalSageMaker
from tests.test_monitoring_support import PROCESSING, PROCESSING_ENV, START, cars, features, make_baseline, predictions

REGION = "us-east-1"
BUCKET = "hosts-bucket"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
MONITOR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/byoc-monitor:latest"
ENV = PROCESSING_ENV


def s3():
    return boto3.client("s3", region_name=REGION)


def _input(name: str, prefix: str, distribution: str = "FullyReplicated") -> dict:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": f"s3://{BUCKET}/{prefix}",
            "LocalPath": f"{PROCESSING}/input/{name}",
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": distribution,
        },
    }


def _job(name: str, count: int, args: list[str], inputs: list[dict], output: str) -> dict:
    return {
        "ProcessingJobName": name,
        "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": MONITOR, "ContainerArguments": args},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": count, "InstanceType": "ml.m5.large",
                                                  "VolumeSizeInGB": 5}},
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "resultdata", "S3Output": {
            "S3Uri": f"s3://{BUCKET}/{output}", "LocalPath": f"{PROCESSING}/resultdata", "S3UploadMode": "EndOfJob"}}]},
        "Environment": ENV,
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }  # fmt: skip


def _keys(prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def _json(key: str) -> dict:
    return json.loads(s3().get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.fixture
def backend(tmp_path, monkeypatch) -> Iterator[LocalSageMaker]:
    base = make_baseline(tmp_path, monkeypatch)
    frame = cars().sample(n=1200, replace=True, random_state=9).reset_index(drop=True)
    frame["mileage"] = frame["mileage"] * 2 + 15_000
    root = tmp_path / "captures"
    capturegen.write_captures(
        root, features(frame), predictions(frame), START, spacing=timedelta(seconds=6), lines_per_file=200
    )
    for name in ("SAGEMAKER_BASE_DIR", *ENV):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        s3().create_bucket(Bucket=BUCKET)
        for f in sorted(root.rglob("*.jsonl")):
            s3().upload_file(str(f), BUCKET, f"capture/{f.relative_to(root).as_posix()}")
        for f in ("statistics.json", "constraints.json"):
            s3().upload_file(str(base / f), BUCKET, f"baseline/{f}")
        s3().upload_file(str(tmp_path / "train" / "schema.json"), BUCKET, "baseline/schema.json")
        local = LocalSageMaker(tmp_path / "local-sagemaker", LocalRunner("tests"), REGION)
        with intercept.installed(local):
            yield local
        local.close()


def test_two_instances_write_per_host_and_the_merge_job_gives_one_result(backend) -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    inputs = [_input("dataset", "capture", "ShardedByS3Key"), _input("baseline", "baseline")]
    sm.create_processing_job(**_job("monitor-hosts", 2, ["monitor"], inputs, "runs/two"))
    done = backend.wait("processing", "monitor-hosts", 240)
    assert done["ProcessingJobStatus"] == "Completed", done.get("FailureReason")
    assert _keys("runs/two/") == [
        "runs/two/hosts/algo-1/profile_state.json",
        "runs/two/hosts/algo-2/profile_state.json",
    ]
    counts = [_json(f"runs/two/hosts/algo-{i}/profile_state.json")["profile"]["item_count"] for i in (1, 2)]
    assert counts == [600, 600]  # 6 capture objects of 200 lines, 3 to each host

    merge_inputs = [_input("shards", "runs/two/hosts"), _input("baseline", "baseline")]
    sm.create_processing_job(**_job("merge-hosts", 1, ["merge", "--states", f"{PROCESSING}/input/shards"],
                                    merge_inputs, "runs/two"))  # fmt: skip
    assert backend.wait("processing", "merge-hosts", 240)["ProcessingJobStatus"] == "Completed"
    sm.create_processing_job(**_job("monitor-one", 1, ["monitor"], inputs, "runs/one"))
    assert backend.wait("processing", "monitor-one", 240)["ProcessingJobStatus"] == "Completed"
    merged, single = _json("runs/two/monitoring_report.json"), _json("runs/one/monitoring_report.json")
    assert merged["records"] == single["records"] == 1200
    assert _json("runs/two/constraint_violations.json") == _json("runs/one/constraint_violations.json")
    assert _json("runs/two/constraint_violations.json")["violations"]  # the drifted mileage


def test_a_failing_host_fails_the_job_naming_it(backend) -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    inputs = [_input("dataset", "capture", "ShardedByS3Key"), _input("baseline", "baseline")]
    request = _job("monitor-bad", 2, ["monitor"], inputs, "runs/bad")
    request["Environment"] = {**ENV, "bookmark": "Enabled"}  # refused on several hosts
    sm.create_processing_job(**request)
    done = backend.wait("processing", "monitor-bad", 240)
    assert done["ProcessingJobStatus"] == "Failed"
    assert done["FailureReason"].startswith("algo-1: bookmark: not supported on 2 hosts")
    assert _keys("runs/bad/") == []
