"""serving.combiner: the Lambda handler against two locally served models (real servers), plus the boto3 path
against botocore's Stubber (no network)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from algorithms import registry
from local_mode.capture import CaptureProxy
from serving import combiner
from serving.local import LocalServer, free_port

pytestmark = pytest.mark.slow
FEATURES = ["mileage", "cylinder", "doors", "cruise", "sound", "leather", "make", "body_type"]


@pytest.fixture(scope="module")
def endpoints(trained):
    servers = {m: LocalServer(m, trained(m).base_dir) for m in ("xgboost", "linear")}
    try:
        for s in servers.values():
            assert s.start() == 200, s.log()
        yield {m: s.url for m, s in servers.items()}
    finally:
        for s in servers.values():
            s.stop()


@pytest.fixture(scope="module")
def records(car_splits):
    return car_splits["test"][FEATURES].head(5).reset_index(drop=True)


@pytest.fixture(scope="module")
def truth(trained, records):
    out = {}
    for m in ("xgboost", "linear"):
        model = registry.get(m).load(trained(m).model_dir, threads=1)
        out[m] = model.predict(model.schema.encode(records)).tolist()
    return out


@pytest.fixture
def env(monkeypatch, endpoints):
    monkeypatch.setenv("XGBOOST_ENDPOINT", endpoints["xgboost"])
    monkeypatch.setenv("LINEAR_ENDPOINT", endpoints["linear"])
    monkeypatch.delenv("COMBINE_RULE", raising=False)
    return monkeypatch


def rest_event(body: str | bytes, headers: dict | None = None, method: str = "POST", b64: bool = False) -> dict:
    if b64:
        body = base64.b64encode(body if isinstance(body, bytes) else body.encode()).decode()
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in (headers or {}).items()},
        "queryStringParameters": None,
        "requestContext": {"httpMethod": method, "stage": "prod"},
        "body": body,
        "isBase64Encoded": b64,
    }


def http_api_event(body: str, headers: dict, method: str = "POST", b64: bool = False) -> dict:
    if b64:
        body = base64.b64encode(body.encode()).decode()
    return {
        "version": "2.0",
        "routeKey": "POST /predict",
        "rawPath": "/predict",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": method, "path": "/predict"}},
        "body": body,
        "isBase64Encoded": b64,
    }


def answer(response: dict) -> tuple[int, dict]:
    assert response["headers"] == {"Content-Type": "application/json"}
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.parametrize("shape", ["rest", "http-api", "http-api-base64", "rest-base64"])
@pytest.mark.parametrize("content_type", ["text/csv", "application/json", "application/jsonlines"])
def test_both_predictions_and_the_larger_one_per_record(env, records, truth, shape, content_type):
    body = {
        "text/csv": records.to_csv(header=False, index=False),
        "application/json": json.dumps({"instances": records.to_numpy().tolist()}),
        "application/jsonlines": "\n".join(json.dumps(r) for r in records.to_dict(orient="records")),
    }[content_type]
    headers = {"CONTENT-TYPE": content_type, "accept": "application/json"}
    if shape.startswith("rest"):
        event = rest_event(body, headers, b64=shape.endswith("base64"))
    else:
        event = http_api_event(body, headers, b64=shape.endswith("base64"))
    status, doc = answer(combiner.handler(event, None))
    assert status == 200, doc
    assert doc["rule"] == "max"
    assert [p["xgboost"] for p in doc["predictions"]] == truth["xgboost"]
    assert [p["linear"] for p in doc["predictions"]] == truth["linear"]
    assert [p["score"] for p in doc["predictions"]] == [max(a, b) for a, b in zip(*truth.values(), strict=True)]


@pytest.mark.parametrize(
    ("rule", "expect"),
    [
        ("min", min),
        ("mean", lambda a, b: (a + b) / 2),
        ("xgboost", lambda a, b: a),
        ("LINEAR", lambda a, b: b),
    ],
)
def test_rules(env, records, truth, rule, expect):
    env.setenv("COMBINE_RULE", rule)
    status, doc = answer(
        combiner.handler(rest_event(records.to_csv(header=False, index=False), {"Content-Type": "text/csv"}))
    )
    assert status == 200 and doc["rule"] == rule.lower()
    assert [p["score"] for p in doc["predictions"]] == [expect(a, b) for a, b in zip(*truth.values(), strict=True)]


def test_endpoint_rejection_is_passed_on_with_the_endpoint_named(env, endpoints):
    status, doc = answer(combiner.handler(rest_event("20105,6,4,1,0,0,Buick", {"Content-Type": "text/csv"})))
    assert status == 400
    assert doc == {"message": f"endpoint {endpoints['xgboost']}: line 1: expected 8 features, received 7"}


def test_unreachable_endpoint_is_502(env, endpoints):
    dead = f"http://127.0.0.1:{free_port()}"
    env.setenv("LINEAR_ENDPOINT", dead)
    status, doc = answer(combiner.handler(rest_event("20105,6,4,1,0,0,Buick,sedan", {"Content-Type": "text/csv"})))
    assert status == 502
    assert doc["message"].startswith(f"endpoint {dead}: unreachable: ")


@pytest.mark.parametrize(
    ("event", "status", "message"),
    [
        (rest_event("1", {"Content-Type": "text/csv"}, method="GET"), 405, "method GET not allowed; use POST"),
        (rest_event("1", None), 415,
         "missing Content-Type; expected text/csv, application/json or application/jsonlines"),
        (rest_event("1", {"Content-Type": "text/csv", "Accept": "text/csv"}), 406,
         "unsupported Accept 'text/csv'; this API answers application/json"),
        ({**rest_event("1", {"Content-Type": "text/csv"}), "isBase64Encoded": True, "body": "%%%"}, 400,
         "the body is marked base64-encoded but is not valid base64"),
        ("not an event", 400, "expected an API Gateway proxy event"),
    ],
)  # fmt: skip
def test_request_errors(env, event, status, message):
    assert answer(combiner.handler(event)) == (status, {"message": message})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("COMBINE_RULE", "median",
         "configuration: COMBINE_RULE='median'; expected one of max, min, mean, xgboost, linear"),
        ("XGBOOST_ENDPOINT", "", "configuration: environment variable XGBOOST_ENDPOINT is not set"),
    ],
)  # fmt: skip
def test_configuration_errors_are_500(env, name, value, message):
    env.setenv(name, value)
    assert answer(combiner.handler(rest_event("1", {"Content-Type": "text/csv"}))) == (500, {"message": message})


# -- the boto3 sagemaker-runtime path, stubbed -------------------------------------------------------------
@pytest.fixture
def stubbed(monkeypatch):
    monkeypatch.setenv("XGBOOST_ENDPOINT", "cars-xgboost")
    monkeypatch.setenv("LINEAR_ENDPOINT", "cars-linear")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("SAGEMAKER_RUNTIME_ENDPOINT_URL", raising=False)
    monkeypatch.setattr(combiner, "_clients", {})
    client = combiner._runtime_client(None)
    with Stubber(client) as stub:
        yield stub


def body_of(doc: dict) -> StreamingBody:
    raw = json.dumps(doc).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_sagemaker_runtime_calls_both_endpoints(stubbed):
    # The two calls run concurrently; the stub answers in its queue's order, so both answers are the same.
    for _ in range(2):
        stubbed.add_response(
            "invoke_endpoint",
            {"Body": body_of({"predictions": [{"score": 10.0}, {"score": 30.0}]}), "ContentType": "application/json"},
        )
    status, doc = answer(combiner.handler(rest_event("1,2\n3,4", {"Content-Type": "text/csv"})))
    assert status == 200
    assert doc["predictions"] == [
        {"score": 10.0, "xgboost": 10.0, "linear": 10.0},
        {"score": 30.0, "xgboost": 30.0, "linear": 30.0},
    ]


def test_sagemaker_model_error_4xx_is_passed_on(stubbed):
    for _ in range(2):
        stubbed.add_client_error(
            "invoke_endpoint",
            service_error_code="ModelError",
            service_message="Received client error (400) from primary with message ...",
            http_status_code=424,
            modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": "line 1: expected 8 features, received 1\n"},
        )
    status, doc = answer(combiner.handler(rest_event("1", {"Content-Type": "text/csv"})))
    assert status == 400
    assert doc["message"] in {
        f"endpoint cars-{m}: line 1: expected 8 features, received 1" for m in ("xgboost", "linear")
    }


def test_sagemaker_missing_endpoint_is_502(stubbed):
    for _ in range(2):
        stubbed.add_client_error(
            "invoke_endpoint", service_error_code="ValidationError", service_message="Endpoint cars-x not found."
        )
    status, doc = answer(combiner.handler(rest_event("1", {"Content-Type": "text/csv"})))
    assert status == 502
    assert doc["message"] in {
        f"endpoint cars-{m}: ValidationError: Endpoint cars-x not found." for m in ("xgboost", "linear")
    }


def test_model_error_mapping():
    assert combiner._endpoint_error("cars-linear", 415, "unsupported\nContent-Type").status == 415
    err = combiner._endpoint_error("cars-linear", 500, "internal error: boom")
    assert (err.status, str(err)) == (502, "endpoint cars-linear answered 500: internal error: boom")


def test_inference_id_reaches_both_endpoints_and_their_data_capture(endpoints, monkeypatch, tmp_path, records):
    with (
        CaptureProxy(endpoints["xgboost"], tmp_path, endpoint="cars-xgboost") as xgb,
        CaptureProxy(endpoints["linear"], tmp_path, endpoint="cars-linear") as lin,
    ):
        monkeypatch.setenv("XGBOOST_ENDPOINT", xgb.url)
        monkeypatch.setenv("LINEAR_ENDPOINT", lin.url)
        body = records.head(2).to_csv(header=False, index=False)
        headers = {"Content-Type": "text/csv", "X-Inference-Id": "order-42"}
        status, doc = answer(combiner.handler(rest_event(body, headers)))
    assert status == 200 and doc["inference_id"] == "order-42"
    lines = [json.loads(line) for f in sorted(tmp_path.rglob("*.jsonl")) for line in f.read_text().splitlines()]
    assert sorted(f.parts[len(tmp_path.parts)] for f in tmp_path.rglob("*.jsonl")) == ["cars-linear", "cars-xgboost"]
    assert [line["eventMetadata"]["inferenceId"] for line in lines] == ["order-42", "order-42"]


def test_without_the_header_api_gateways_request_id_is_the_inference_id(env, records):
    event = rest_event(records.head(1).to_csv(header=False, index=False), {"Content-Type": "text/csv"})
    event["requestContext"]["requestId"] = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    status, doc = answer(combiner.handler(event))
    assert (status, doc["inference_id"]) == (200, "c6af9ac6-7b61-11e6-9a41-93e8deadbeef")


def test_bad_inference_id_is_400(env):
    status, doc = answer(combiner.handler(rest_event("1", {"Content-Type": "text/csv", "X-Inference-Id": "x" * 65})))
    assert status == 400 and doc["message"].startswith("header X-Inference-Id: expected 1-64 printable characters")


def test_sagemaker_runtime_gets_the_inference_id(stubbed):
    for _ in range(2):
        stubbed.add_response(
            "invoke_endpoint",
            {"Body": body_of({"predictions": [{"score": 1.0}]}), "ContentType": "application/json"},
            expected_params={
                "EndpointName": ANY,
                "Body": b"1,2",
                "ContentType": "text/csv",
                "Accept": "application/json",
                "InferenceId": "order-7",
            },
        )
    status, _ = answer(combiner.handler(rest_event("1,2", {"Content-Type": "text/csv", "X-Inference-Id": "order-7"})))
    assert status == 200
    stubbed.assert_no_pending_responses()
