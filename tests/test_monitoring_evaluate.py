"""The evaluate-drift Lambda against moto in server mode (S3 for outputs and state, SNS -> SQS to read the
published message back)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from monitoring import evaluate
from tests.moto_server import moto_server

DRIFT = {
    "feature_name": "mileage",
    "constraint_check_type": "baseline_drift_check",
    "description": "Baseline drift distance: 0.4312 exceeds threshold: 0.1",
}
TYPE = {
    "feature_name": "cylinder",
    "constraint_check_type": "data_type_check",
    "description": "Data type match requirement is not met.",
}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    requests.post(moto_url + "/moto-api/reset", timeout=5)
    for k, v in {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    for k in ("DRIFT_TOPIC_ARN", "ALERT_AFTER_CONSECUTIVE", "ALERT_STATE_URI", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    s3, sns, sqs = boto3.client("s3"), boto3.client("sns"), boto3.client("sqs")
    s3.create_bucket(Bucket="mon")
    topic = sns.create_topic(Name="drift")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn)
    return {"s3": s3, "sqs": sqs, "queue": queue, "topic": topic}


def _put_run(s3, prefix: str, violations: list[dict], mq: list[dict] | None = None) -> str:
    s3.put_object(Bucket="mon", Key=f"{prefix}/constraint_violations.json", Body=json.dumps({"violations": violations}))
    summary = {
        "endpoint": "car-prices",
        "batch_job": None,
        "monitoring_schedule": "hourly",
        "window": {"start": "2024-01-01T10:00:00Z", "end": "2024-01-01T11:00:00Z"},
    }
    s3.put_object(Bucket="mon", Key=f"{prefix}/monitoring_report.json", Body=json.dumps(summary))
    if mq is not None:
        body = json.dumps({"violations": mq})
        s3.put_object(Bucket="mon", Key=f"{prefix}/model_quality/constraint_violations.json", Body=body)
    return f"s3://mon/{prefix}/"


def _messages(aws: dict[str, Any]) -> list[dict]:
    sqs = aws["sqs"]
    out: list[dict] = []
    while True:
        resp = sqs.receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10, WaitTimeSeconds=0)
        msgs = resp.get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            envelope = json.loads(m["Body"])
            out.append({"subject": envelope.get("Subject"), "message": json.loads(envelope["Message"])})
            sqs.delete_message(QueueUrl=aws["queue"], ReceiptHandle=m["ReceiptHandle"])


def test_one_message_with_enriched_violations(aws: dict[str, Any]) -> None:
    mq = [
        {
            "metric_name": "rmse",
            "constraint_check_type": "GreaterThanThreshold",
            "description": "Metric rmse with 2500.5 was GreaterThanThreshold 2000.0",
        }
    ]
    uri = _put_run(aws["s3"], "runs/r1", [DRIFT, TYPE], mq)
    result = evaluate.handler({"output_uri": uri, "topic_arn": aws["topic"]})
    assert result["alerted"] and result["violations"] == 3
    assert result["features"] == ["cylinder", "mileage", "rmse"]
    msgs = _messages(aws)
    assert len(msgs) == 1
    body = msgs[0]["message"]
    assert msgs[0]["subject"].startswith("Drift on car-prices: 3 violations")
    assert body["endpoint"] == "car-prices" and body["schedule"] == "hourly"
    drift = next(v for v in body["violations"] if v["feature"] == "mileage")
    assert drift["distance"] == 0.4312 and drift["threshold"] == 0.1
    assert drift["window_start"] == "2024-01-01T10:00:00Z" and drift["window_end"] == "2024-01-01T11:00:00Z"
    rmse = next(v for v in body["violations"] if v["feature"] == "rmse")
    assert rmse["value"] == 2500.5 and rmse["threshold"] == 2000.0


def test_no_violations_no_message(aws: dict[str, Any]) -> None:
    uri = _put_run(aws["s3"], "runs/clean", [])
    result = evaluate.handler({"output_uri": uri, "topic_arn": aws["topic"]})
    assert not result["drift_detected"] and not result["alerted"]
    assert _messages(aws) == []


def test_alert_only_after_n_consecutive_runs(aws: dict[str, Any]) -> None:
    s3 = aws["s3"]
    ev = {"topic_arn": aws["topic"], "consecutive": 2, "state_uri": "s3://mon/state/car-prices.json"}
    r1 = evaluate.handler({**ev, "output_uri": _put_run(s3, "runs/a", [DRIFT])})
    assert r1["consecutive_violating_runs"] == 1 and not r1["alerted"]
    assert _messages(aws) == []
    # a retried invocation for the same run does not count twice
    r1b = evaluate.handler({**ev, "output_uri": _put_run(s3, "runs/a", [DRIFT])})
    assert r1b["consecutive_violating_runs"] == 1 and not r1b["alerted"]
    r2 = evaluate.handler({**ev, "output_uri": _put_run(s3, "runs/b", [DRIFT])})
    assert r2["consecutive_violating_runs"] == 2 and r2["alerted"]
    assert len(_messages(aws)) == 1
    r3 = evaluate.handler({**ev, "output_uri": _put_run(s3, "runs/c", [DRIFT])})
    assert not r3["alerted"] and _messages(aws) == []  # no storm: next reminder at 4
    evaluate.handler({**ev, "output_uri": _put_run(s3, "runs/d", [])})  # a clean run resets the streak
    state = json.loads(s3.get_object(Bucket="mon", Key="state/car-prices.json")["Body"].read())
    assert state["consecutive"] == 0
    r5 = evaluate.handler({**ev, "output_uri": _put_run(s3, "runs/e", [DRIFT])})
    assert r5["consecutive_violating_runs"] == 1 and not r5["alerted"]


def test_local_violations_file(aws: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "constraint_violations.json").write_text(json.dumps({"violations": [DRIFT]}))
    result = evaluate.handler({"output_uri": str(tmp_path), "topic_arn": aws["topic"], "batch_job": "score-2024-01-01"})
    assert result["alerted"] and result["batch_job"] == "score-2024-01-01"
    (msg,) = _messages(aws)
    assert msg["subject"] == "Drift on score-2024-01-01: 1 violations (mileage)"


def test_missing_violations_file_is_an_error(aws: dict[str, Any]) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("s3://mon/runs/none/constraint_violations.json")):
        evaluate.handler({"output_uri": "s3://mon/runs/none/"})
