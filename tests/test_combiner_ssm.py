"""serving.combiner reading the endpoint names from the training pipeline's SSM deployment records
(<MODEL>_DEPLOYMENT_PARAMETER): moto in the process for SSM, botocore's Stubber for sagemaker-runtime and for the
SSM failures moto does not produce."""

from __future__ import annotations

import io
import json
import time

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from serving import combiner

REGION = "eu-west-1"
XGB, LIN = "/cars/xgboost/deployment", "/cars/linear/deployment"


def record(endpoint: str, algorithm: str = "xgboost") -> str:
    """A deployment record as the training pipeline's "Deployment record" state writes it (abridged)."""
    return json.dumps(
        {"Algorithm": algorithm, "EndpointName": endpoint, "EndpointConfigName": f"{endpoint}-config-run1",
         "ModelName": f"{endpoint}-model-run1", "Rmse": 1234.5, "ExecutionName": "run1"}
    )  # fmt: skip


@pytest.fixture
def ssm(monkeypatch):
    for name, value in {"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    for name in combiner.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(combiner, "_ssm", [])
    monkeypatch.setattr(combiner, "_deployments", {})
    with mock_aws():
        client = boto3.client("ssm", region_name=REGION)
        client.put_parameter(Name=XGB, Value=record("cars-xgboost"), Type="String")
        client.put_parameter(Name=LIN, Value=record("cars-linear", "linear"), Type="String")
        yield client


@pytest.fixture
def calls():
    """GetParameter calls the combiner's SSM client makes, by parameter name."""
    made: list[str] = []
    combiner._ssm_client().meta.events.register(
        "before-parameter-build.ssm.GetParameter", lambda params, **_: made.append(params["Name"])
    )
    return made


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    return now


ENV = {"XGBOOST_DEPLOYMENT_PARAMETER": XGB, "LINEAR_DEPLOYMENT_PARAMETER": LIN}


def answer(response: dict) -> tuple[int, dict]:
    return response["statusCode"], json.loads(response["body"])


def event(body: str = "1,2,3") -> dict:
    return {
        "version": "2.0",
        "routeKey": "POST /predict",
        "headers": {"content-type": "text/csv"},
        "requestContext": {"http": {"method": "POST"}, "requestId": "req-1"},
        "body": body,
        "isBase64Encoded": False,
    }


def test_endpoint_names_come_from_the_deployment_records(ssm):
    resolved = combiner.resolve_endpoints({**ENV, "COMBINE_RULE": "min"})
    assert resolved["XGBOOST_ENDPOINT"] == "cars-xgboost"
    assert resolved["LINEAR_ENDPOINT"] == "cars-linear"
    assert resolved["COMBINE_RULE"] == "min"
    assert combiner.config(resolved) == ({"xgboost": "cars-xgboost", "linear": "cars-linear"}, "min")


def test_plain_endpoint_variables_still_work_without_ssm(ssm, calls):
    env = {"XGBOOST_ENDPOINT": "http://127.0.0.1:1", "LINEAR_ENDPOINT": "cars-linear"}
    assert combiner.resolve_endpoints(env) == env
    assert calls == []


def test_one_call_per_parameter_then_cached_until_the_ttl(ssm, calls, clock):
    for _ in range(3):
        combiner.resolve_endpoints(ENV)
    assert sorted(calls) == sorted([XGB, LIN])
    # A new deployment rewrites the record: seen once the cached entry expires, without touching the function.
    ssm.put_parameter(Name=XGB, Value=record("cars-xgboost-v2"), Type="String", Overwrite=True)
    clock[0] += combiner.DEPLOYMENT_TTL_S - 1
    assert combiner.resolve_endpoints(ENV)["XGBOOST_ENDPOINT"] == "cars-xgboost"
    clock[0] += 2
    assert combiner.resolve_endpoints(ENV)["XGBOOST_ENDPOINT"] == "cars-xgboost-v2"
    assert len(calls) == 4


def body_of(doc: dict) -> StreamingBody:
    raw = json.dumps(doc).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_handler_invokes_the_recorded_endpoints(ssm, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(combiner, "_clients", {})
    runtime = combiner._runtime_client(None)
    invoked: list[str] = []
    runtime.meta.events.register(
        "before-parameter-build.sagemaker-runtime.InvokeEndpoint",
        lambda params, **_: invoked.append(params["EndpointName"]),
    )
    with Stubber(runtime) as stub:
        for _ in range(2):
            stub.add_response("invoke_endpoint", {"Body": body_of({"predictions": [{"score": 7.0}]})})
        status, doc = answer(combiner.handler(event()))
    assert status == 200, doc
    assert sorted(invoked) == ["cars-linear", "cars-xgboost"]
    assert doc["predictions"] == [{"score": 7.0, "xgboost": 7.0, "linear": 7.0}]


# -- errors: one line, 5xx, naming the parameter ---------------------------------------------------------------------
def handle(monkeypatch, env: dict) -> tuple[int, dict]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return answer(combiner.handler(event()))


def test_missing_record_is_503_naming_the_parameter(ssm, monkeypatch):
    ssm.delete_parameter(Name=LIN)
    assert handle(monkeypatch, ENV) == (
        503, {"message": f"deployment parameter {LIN} not found: no model deployed yet"}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "shown"),
    [("not json", "'not json'"), ('{"ModelName": "m"}', '\'{"ModelName": "m"}\''), ('{"EndpointName": ""}', None)],
)
def test_record_without_an_endpoint_name_is_500(ssm, monkeypatch, value, shown):
    ssm.put_parameter(Name=XGB, Value=value, Type="String", Overwrite=True)
    status, doc = handle(monkeypatch, ENV)
    assert status == 500
    assert doc["message"].startswith(f"deployment parameter {XGB}: expected JSON with an EndpointName, found ")
    assert shown is None or doc["message"].endswith(shown)
    assert "\n" not in doc["message"]


@pytest.mark.parametrize(
    ("code", "status"), [("AccessDeniedException", 500), ("ThrottlingException", 502), ("InternalServerError", 502)]
)
def test_ssm_refusals(ssm, monkeypatch, code, status):
    with Stubber(combiner._ssm_client()) as stub:
        stub.add_client_error("get_parameter", service_error_code=code, service_message="no\nway", http_status_code=400)
        assert handle(monkeypatch, ENV) == (status, {"message": f"deployment parameter {XGB}: SSM {code}: no way"})


def test_both_ways_at_once_is_a_configuration_error(ssm, monkeypatch):
    status, doc = handle(monkeypatch, {**ENV, "LINEAR_ENDPOINT": "cars-linear"})
    assert (status, doc) == (
        500, {"message": "configuration: set LINEAR_ENDPOINT or LINEAR_DEPLOYMENT_PARAMETER, not both"}
    )  # fmt: skip


def test_failed_refresh_keeps_the_last_known_endpoint(ssm, clock, capsys):
    assert combiner.resolve_endpoints(ENV)["XGBOOST_ENDPOINT"] == "cars-xgboost"
    clock[0] += combiner.DEPLOYMENT_TTL_S + 1
    with Stubber(combiner._ssm_client()) as stub:
        stub.add_client_error("get_parameter", service_error_code="ThrottlingException", http_status_code=400)
        stub.add_response("get_parameter", {"Parameter": {"Name": LIN, "Value": record("cars-linear")}})
        resolved = combiner.resolve_endpoints(ENV)
        # kept for another TTL: no call per request while SSM is failing
        assert combiner.resolve_endpoints(ENV) == resolved
    assert resolved["XGBOOST_ENDPOINT"] == "cars-xgboost"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("combiner: keeping endpoint cars-xgboost for another 60 s: ")
    assert XGB in err[0]
