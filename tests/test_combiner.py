"""serving.combiner: the Lambda handler against two locally served models (real servers), plus the boto3 path
against botocore's Stubber (no network)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import socket
import threading
import time

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from algorithms import registry
from emulators.capture import CaptureProxy
from emulators.local_server import LocalServer, free_port
from serving import combiner
from serving.combiner import MODELS

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


@pytest.fixture
def per_endpoint(stubbed, monkeypatch):
    """One stubbed sagemaker-runtime client per endpoint name, so each endpoint gets its own answer whatever the
    order of the two concurrent calls; a call to any other EndpointName fails the test (KeyError)."""
    import boto3

    stubs = {"cars-xgboost": stubbed}
    clients = {"cars-xgboost": stubbed.client}
    with Stubber(boto3.client("sagemaker-runtime", region_name="eu-west-1")) as linear:
        stubs["cars-linear"], clients["cars-linear"] = linear, linear.client

        class ByEndpoint:
            def invoke_endpoint(self, **params):
                return clients[params["EndpointName"]].invoke_endpoint(**params)

        monkeypatch.setattr(combiner, "_runtime_client", lambda *_: ByEndpoint())
        yield stubs
        for stub in stubs.values():
            stub.assert_no_pending_responses()


def test_sagemaker_runtime_calls_both_endpoints(per_endpoint):
    for endpoint, scores in {"cars-xgboost": [10.0, 30.0], "cars-linear": [20.0, 5.0]}.items():
        per_endpoint[endpoint].add_response(
            "invoke_endpoint",
            {"Body": body_of({"predictions": [{"score": s} for s in scores]}), "ContentType": "application/json"},
            expected_params={
                "EndpointName": endpoint,
                "Body": b"1,2\n3,4",
                "ContentType": "text/csv",
                "Accept": "application/json",
            },
        )
    status, doc = answer(combiner.handler(rest_event("1,2\n3,4", {"Content-Type": "text/csv"})))
    assert status == 200
    assert doc["predictions"] == [
        {"score": 20.0, "xgboost": 10.0, "linear": 20.0},
        {"score": 30.0, "xgboost": 30.0, "linear": 5.0},
    ]


def ok_answer(stub: Stubber) -> None:
    stub.add_response(
        "invoke_endpoint", {"Body": body_of({"predictions": [{"score": 1.0}]}), "ContentType": "application/json"}
    )


@pytest.mark.parametrize("failing", ["cars-xgboost", "cars-linear"])
def test_sagemaker_model_error_4xx_is_passed_on_naming_that_endpoint(per_endpoint, failing):
    for endpoint, stub in per_endpoint.items():
        if endpoint != failing:
            ok_answer(stub)
            continue
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ModelError",
            service_message="Received client error (400) from primary with message ...",
            http_status_code=424,
            modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": "line 1: expected 8 features, received 1\n"},
        )
    status, doc = answer(combiner.handler(rest_event("1", {"Content-Type": "text/csv"})))
    assert (status, doc["message"]) == (400, f"endpoint {failing}: line 1: expected 8 features, received 1")


@pytest.mark.parametrize("failing", ["cars-xgboost", "cars-linear"])
def test_sagemaker_missing_endpoint_is_502_naming_that_endpoint(per_endpoint, failing):
    for endpoint, stub in per_endpoint.items():
        if endpoint != failing:
            ok_answer(stub)
            continue
        stub.add_client_error(
            "invoke_endpoint", service_error_code="ValidationError", service_message=f"Endpoint {failing} not found."
        )
    status, doc = answer(combiner.handler(rest_event("1", {"Content-Type": "text/csv"})))
    assert (status, doc["message"]) == (502, f"endpoint {failing}: ValidationError: Endpoint {failing} not found.")


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


def test_sagemaker_runtime_gets_the_inference_id(per_endpoint):
    for endpoint, stub in per_endpoint.items():
        stub.add_response(
            "invoke_endpoint",
            {"Body": body_of({"predictions": [{"score": 1.0}]}), "ContentType": "application/json"},
            expected_params={
                "EndpointName": endpoint,
                "Body": b"1,2",
                "ContentType": "text/csv",
                "Accept": "application/json",
                "InferenceId": "order-7",
            },
        )
    status, _ = answer(combiner.handler(rest_event("1,2", {"Content-Type": "text/csv", "X-Inference-Id": "order-7"})))
    assert status == 200


# -- hostile or broken endpoints (#14 item 14) ---------------------------------------------------------------
class RawEndpoint:
    """A socket on 127.0.0.1 that reads one request and answers ``raw`` bytes after ``delay`` seconds, then closes."""

    def __init__(self, raw: bytes, delay: float = 0.0):
        self.raw, self.delay, self.connections = raw, delay, 0
        self.answered = threading.Event()  # set once an answer has been sent
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            # The whole body too: closing with request bytes unread makes the kernel reset the connection, and the
            # client then sees "connection reset" instead of the answer under test.
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
            while length and len(body) < int(length.group(1)):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            if self.stop.wait(self.delay):
                return
            with contextlib.suppress(OSError):
                conn.sendall(self.raw)
                self.answered.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def http_answer(body: bytes, length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (n, body)


@pytest.fixture
def broken(env, endpoints):
    """Point LINEAR_ENDPOINT at a RawEndpoint answering the given bytes; the xgboost endpoint stays real."""
    made = []

    def point(raw: bytes, delay: float = 0.0) -> RawEndpoint:
        server = RawEndpoint(raw, delay)
        made.append(server)
        env.setenv("LINEAR_ENDPOINT", server.url)
        return server

    yield point
    for server in made:
        server.close()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (http_answer(b'{"predictions": [{"score": NaN}]}'), "NaN is not a JSON number"),
        (http_answer(b'{"predictions": [{"score": 1e999}]}'), "record 1: score inf is not a finite number"),
        (http_answer(b'{"predictions": [{"score": -Infinity}]}'), "-Infinity is not a JSON number"),
        (http_answer(b'{"predictions": [{"score": true}]}'), "record 1: score True is not a finite number"),
        (http_answer(b'{"predictions": [{"score": "12"}]}'), "record 1: score 12 is not a finite number"),
        (http_answer(b'{"predictions": [{"score": 1.0}]}', length=400), "invalid HTTP answer: IncompleteRead"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "invalid HTTP answer"),
    ],
)
def test_a_broken_answer_is_502_naming_the_endpoint(broken, raw, fragment):
    server = broken(raw)
    response = combiner.handler(rest_event("20105,6,4,1,0,0,Buick,sedan", {"Content-Type": "text/csv"}))
    status, doc = answer(response)
    assert status == 502, doc
    assert doc["message"].startswith(f"endpoint {server.url}: "), doc
    assert fragment in doc["message"], doc
    json.loads(response["body"], parse_constant=lambda name: pytest.fail(f"{name} in the body"))


def test_a_slow_endpoint_is_504_at_the_deadline(broken, env):
    server = broken(http_answer(b'{"predictions": [{"score": 1.0}]}'), delay=5)
    env.setenv("COMBINER_DEADLINE_S", "1")
    status, doc = answer(combiner.handler(rest_event("20105,6,4,1,0,0,Buick,sedan", {"Content-Type": "text/csv"})))
    assert (status, doc) == (504, {"message": f"endpoint {server.url}: no answer before the combiner's deadline"})
    assert not server.answered.is_set()  # answered at the deadline, not after waiting for the endpoint


def test_boto3_retries_stop_at_the_deadline(stubbed, monkeypatch):
    """Through sagemaker-runtime: one slow attempt uses the budget; no retry starts after the deadline."""
    server = RawEndpoint(http_answer(b'{"predictions": [{"score": 1.0}]}'), delay=5)
    try:
        monkeypatch.setenv("SAGEMAKER_RUNTIME_ENDPOINT_URL", server.url)
        monkeypatch.setenv("COMBINER_DEADLINE_S", "1")
        status, doc = answer(combiner.handler(rest_event("1", {"Content-Type": "text/csv"})))
        assert status == 504, doc
        assert doc["message"] in {f"endpoint cars-{m}: no answer before the combiner's deadline" for m in MODELS}
        assert not server.answered.is_set()  # the 5 s endpoint has not answered yet
        time.sleep(1.5)  # let the calls' own read timeouts pass: a retry would now connect again
        assert server.connections == 2  # one attempt per endpoint
    finally:
        server.close()


@pytest.mark.parametrize("value", ["0", "29", "30", "soon", "nan"])
def test_deadline_setting_is_checked(env, value):
    env.setenv("COMBINER_DEADLINE_S", value)
    status, doc = answer(combiner.handler(rest_event("1", {"Content-Type": "text/csv"})))
    assert (status, doc) == (
        500,
        {"message": f"configuration: COMBINER_DEADLINE_S={value!r}; expected seconds in (0, 29)"},
    )


def test_mean_of_two_huge_finite_scores_is_finite():
    assert combiner.RULES["mean"](1.7e308, 1.7e308) == 1.7e308
