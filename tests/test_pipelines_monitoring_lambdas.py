"""The monitoring pipeline's listing Lambda and the single-run guard, against moto in-process."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from pipelines.lambdas import find_new_data, single_run

BUCKET = "artifacts"
RECORD = {
    "EndpointName": "cars-xgboost",
    "CaptureUri": f"s3://{BUCKET}/pipelines/datacapture",
    "DataQualityBaselineUri": f"s3://{BUCKET}/b/dq",
    "ModelQualityBaselineUri": f"s3://{BUCKET}/b/mq",
    "SchemaUri": f"s3://{BUCKET}/p/train/schema.json",
}
EVENT = {
    "NamePrefix": "cars",
    "ArtifactsUri": f"s3://{BUCKET}/pipelines",
    "Algorithms": ["xgboost", "linear"],
    "BookmarkParameter": "/cars/monitoring/bookmark",
    "Now": "2030-01-01T00:00:00Z",
}


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield boto3.client("s3"), boto3.client("ssm")


def test_nothing_deployed_means_nothing_to_monitor(aws):
    assert find_new_data.handler(EVENT) == {"HasData": False, "Runs": [], "Bookmark": {}}


def test_new_captures_and_batch_outputs_are_found_once(aws):
    s3, ssm = aws
    ssm.put_parameter(Name="/cars/xgboost/deployment", Value=json.dumps(RECORD), Type="String")
    s3.put_object(Bucket=BUCKET, Key="pipelines/datacapture/cars-xgboost/AllTraffic/2029/12/31/23/a.jsonl", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="pipelines/scored/xgboost/run1/batch.csv.out", Body=b"car-1,1,2\n")
    s3.put_object(Bucket=BUCKET, Key="pipelines/ground-truth/cars-xgboost/2029/12/31/23/l.jsonl", Body=b"{}")
    found = find_new_data.handler(EVENT)
    assert found["HasData"] is True
    runs = {r["Name"]: r for r in found["Runs"]}
    assert sorted(runs) == ["batch-xgboost-run1", "realtime-xgboost"]
    realtime = runs["realtime-xgboost"]
    assert realtime["HasGroundTruth"] is True and realtime["Start"] == "1970-01-01T00:00:00Z"
    assert realtime["Environment"]["sagemaker_endpoint_name"] == "cars-xgboost"
    assert realtime["Environment"]["end_time"] == "2030-01-01T00:00:00Z"
    assert runs["batch-xgboost-run1"]["Environment"]["id_columns"] == "1"
    assert runs["batch-xgboost-run1"]["DataUri"] == f"s3://{BUCKET}/pipelines/scored/xgboost/run1"
    # the pipeline writes the bookmark back; the same listing then finds nothing new
    ssm.put_parameter(Name=EVENT["BookmarkParameter"], Value=json.dumps(found["Bookmark"]), Type="String")
    assert find_new_data.handler(EVENT)["HasData"] is False


def test_a_corrupt_record_is_named(aws):
    _, ssm = aws
    ssm.put_parameter(Name="/cars/linear/deployment", Value="not json", Type="String")
    with pytest.raises(find_new_data.CorruptParameter, match="/cars/linear/deployment"):
        find_new_data.handler(EVENT)


def test_the_guard_needs_the_context_fields():
    with pytest.raises(single_run.InvalidEvent, match="StateMachineArn"):
        single_run.handler({"ExecutionArn": "x"})
    with pytest.raises(single_run.InvalidEvent, match="ISO 8601"):
        single_run.handler({"StateMachineArn": "a", "ExecutionArn": "b", "StartTime": "yesterday"})
