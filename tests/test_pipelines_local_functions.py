"""Lambda functions bound in-process answer ``Invoke`` as the Lambda service does; unbound names reach moto."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from pipelines.local import functions


class MetricsNotFound(Exception):
    pass


def ok(event, context):
    return {"echo": event, "function": context.function_name}


def broken(event, context):
    raise MetricsNotFound(f"no metric for {event['TrainingJobName']}")


@pytest.fixture
def client():
    with functions.bound({"ok": ok, "broken": broken}), mock_aws():
        yield boto3.client("lambda", region_name="us-east-1")


def test_a_bound_function_answers_with_its_result(client):
    answer = client.invoke(FunctionName="arn:aws:lambda:us-east-1:123456789012:function:ok", Payload=b'{"a": 1}')
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert json.loads(answer["Payload"].read()) == {"echo": {"a": 1}, "function": "ok"}


def test_an_exception_is_an_unhandled_function_error_named_by_its_class(client):
    answer = client.invoke(FunctionName="broken", Payload=json.dumps({"TrainingJobName": "j1"}))
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    body = json.loads(answer["Payload"].read())
    assert body["errorType"] == "MetricsNotFound" and body["errorMessage"] == "no metric for j1"


def test_unbound_names_pass_through_to_moto(client):
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="nobody", Payload=b"{}")


def test_a_name_cannot_be_bound_twice():
    with (
        functions.bound({"ok": ok}),
        pytest.raises(RuntimeError, match="already bound: ok"),
        functions.bound({"ok": ok}),
    ):
        pass
