"""The WSGI app in-process (Flask's test client) on a stand-in model: every route, status and format pair."""

from __future__ import annotations

import json
import logging
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.app import create_app
from serving.model import Served
from tests.serving_helpers import served

CSV_ROWS = "20105,6,4,1,0,0,Buick,sedan\n13457,6,2,1,1,0,Chevy,coupe\n"
# SumModel: the sum of the encoded features (Buick=0, Chevy=2, sedan=3, coupe=1).
EXPECTED = [20119.0, 13470.0]
BODIES = {
    "text/csv": CSV_ROWS,
    "application/json": json.dumps(
        {
            "instances": [
                {"features": [20105, 6, 4, 1, 0, 0, "Buick", "sedan"]},
                [13457, 6, 2, 1, 1, 0, "Chevy", "coupe"],
            ]
        }
    ),
    "application/jsonlines": '{"features": [20105, 6, 4, 1, 0, 0, "Buick", "sedan"]}\n'
    '{"mileage": 13457, "cylinder": 6, "doors": 2, "cruise": 1, "sound": 1, "leather": 0, "make": "Chevy", '
    '"body_type": "coupe"}\n',
}
ENCODED = {
    "text/csv": b"20119.0\n13470.0",
    "application/json": b'{"predictions": [{"score": 20119.0}, {"score": 13470.0}]}',
    "application/jsonlines": b'{"score": 20119.0}\n{"score": 13470.0}',
}


@pytest.fixture(scope="module")
def client():
    return create_app(served(), workers=3, max_payload_mb=1).test_client()


def invoke(client, body, content_type="text/csv", accept=None, **headers):
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    return client.post("/invocations", data=body, headers=headers)


@pytest.mark.parametrize("content_type", list(BODIES))
@pytest.mark.parametrize("accept", list(ENCODED))
def test_every_content_type_and_accept_pair(client, content_type, accept):
    r = invoke(client, BODIES[content_type], content_type, accept)
    assert r.status_code == 200, r.data
    assert r.headers["Content-Type"] == accept  # exact: data capture keys on it
    assert r.data == ENCODED[accept]


@pytest.mark.parametrize("accept", [None, "", "*/*"])
def test_default_accept_is_csv(client, accept):
    r = invoke(client, CSV_ROWS, accept=accept)
    assert (r.status_code, r.headers["Content-Type"], r.data) == (200, "text/csv", ENCODED["text/csv"])


def test_default_accept_from_the_environment_setting():
    app = create_app(served(default_accept="application/jsonlines"))
    r = invoke(app.test_client(), CSV_ROWS, accept="*/*")
    assert (r.headers["Content-Type"], r.data) == ("application/jsonlines", ENCODED["application/jsonlines"])


def test_one_answer_per_record_in_order_for_many_records(client):
    rng = np.random.default_rng(0)
    mileage = rng.integers(0, 50_000, 500)
    body = "\r\n".join(f"{m},4,2,0,0,0,Saab,wagon" for m in mileage) + "\r\n"
    r = invoke(client, body)
    lines = r.data.decode().split("\n")
    assert len(lines) == 500
    assert [float(x) for x in lines] == (mileage + 4 + 2 + 4 + 4).astype(float).tolist()


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "message"),
    [
        ("a=b&c=d", "application/x-www-form-urlencoded", None, 415, "unsupported Content-Type "
         "'application/x-www-form-urlencoded'; expected one of text/csv, application/json, application/jsonlines"),
        ("20105,6,4,1,0,0,Buick,sedan", None, None, 415,
         "missing Content-Type; expected one of text/csv, application/json, application/jsonlines"),
        ("20105,6,4,1,0,0,Buick,sedan", "text/csv", "application/xml", 406,
         "unsupported Accept 'application/xml'; expected one of text/csv, application/json, application/jsonlines"),
        ("20105,6,4,1,0,0,Buick", "text/csv", None, 400, "line 1: expected 8 features, received 7"),
        ("20105,6,4,1,0,0,Buick,sedan,1", "text/csv", None, 400, "line 1: expected 8 features, received 9"),
        ("20105,6,4,1,0,0,Buick,sedan\n20105,6,4,1,0,0,Buick", "text/csv", None, 400,
         "line 2: expected 8 features, received 7"),
        ("20105,6,4,1,0,0,Opel,sedan", "text/csv", None, 400, "line 1, column 7 (make): unknown level 'Opel' for "
         "categorical feature 'make'; expected one of ['Buick', 'Cadillac', 'Chevy', 'Pontiac', 'Saab', 'Saturn']"),
        ("20105,inf,4,1,0,0,Buick,sedan", "text/csv", None, 400, "line 1, column 2 (cylinder): expected a finite "
         "number, received 'inf' (send an empty value for a missing one)"),
        ("", "text/csv", None, 400, "the body holds no records"),
        ("{", "application/json", None, 400,
         "body is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2"),
        ("20105,6,4,1,0,0,Buick,sedan", "text/csv; label_size=1", None, 415,
         "text/csv with label_size=1 is not supported: send the features only (label_size=0)"),
    ],
)  # fmt: skip
def test_errors_have_status_and_one_line_message(client, body, content_type, accept, status, message):
    r = invoke(client, body, content_type, accept)
    assert r.status_code == status
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.data.decode() == message + "\n"


def test_payload_over_the_limit_is_413_before_reading(client):
    r = invoke(client, b"1" * (1024 * 1024 + 1))
    assert r.status_code == 413
    assert r.data == b"payload of 1048577 bytes exceeds SAGEMAKER_MAX_PAYLOAD_IN_MB=1 (1048576 bytes)\n"
    assert r.headers["Connection"] == "close"


def test_payload_at_the_limit_is_read(client):
    row = b"1,2,3,4,5,6,Saab,wagon\n"
    body = row * (1024 * 1024 // len(row))
    r = invoke(client, body)
    assert r.status_code == 200 and r.data.count(b"\n") + 1 == len(body) // len(row)


def test_ping_and_execution_parameters(client):
    r = client.get("/ping")
    assert (r.status_code, r.data) == (200, b"")
    r = client.get("/execution-parameters")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.get_json() == {"MaxConcurrentTransforms": 3, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 1}


@pytest.mark.parametrize(("workers", "mb", "concurrent"), [(2, 6, 2), (2, 100, 1), (4, 30, 3), (8, 50, 2)])
def test_execution_parameters_respect_the_100_mb_product(workers, mb, concurrent):
    doc = create_app(served(), workers=workers, max_payload_mb=mb).test_client().get("/execution-parameters").get_json()
    assert doc == {"MaxConcurrentTransforms": concurrent, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": mb}


def test_unknown_routes_and_methods(client):
    assert (client.get("/nope").status_code, client.get("/nope").data) == (404, b"404 Not Found: GET /nope\n")
    r = client.get("/invocations")
    assert (r.status_code, r.data) == (405, b"405 Method Not Allowed: GET /invocations; use POST\n")


def test_missing_model_ping_500_invocations_503():
    client = create_app(Served(reason="model directory /x/model does not exist")).test_client()
    r = client.get("/ping")
    assert (r.status_code, r.data) == (500, b"model not loaded: model directory /x/model does not exist\n")
    r = invoke(client, CSV_ROWS)
    assert (r.status_code, r.data) == (503, b"model not loaded: model directory /x/model does not exist\n")


class Exploding:
    def predict(self, X):
        raise MemoryError("out of\nmemory")


def test_unexpected_errors_are_500_with_one_line_and_one_traceback(caplog):
    ok = served()
    client = create_app(Served(Exploding(), ok.codecs)).test_client()
    with caplog.at_level(logging.ERROR, logger="serving"):
        r = invoke(client, CSV_ROWS)
    assert (r.status_code, r.data) == (500, b"internal error: MemoryError: out of memory\n")
    assert [rec.exc_info is not None for rec in caplog.records] == [True]


# -- property: no input makes the server fail (5xx) ------------------------------------------------------
CONTENT_TYPES = [
    *BODIES,
    "text/csv; charset=latin-1",
    "application/json; charset=utf-16",
    "text/csv; charset=punycode",  # a codec with its own failure modes
    "application/jsonlines; charset=base64",  # not a text encoding
    "text/plain",
    "",
    None,
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=9) | st.dictionaries(st.text(max_size=10), children, max_size=9),
    max_leaves=40,
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(body=st.binary(max_size=300), content_type=st.sampled_from(CONTENT_TYPES), accept=st.sampled_from(
    [None, "*/*", "text/csv", "application/json", "application/jsonlines", "image/png"]))  # fmt: skip
def test_random_bytes_never_5xx(client, body, content_type, accept):
    r = invoke(client, body, content_type, accept)
    assert r.status_code < 500, r.data
    assert r.data.count(b"\n") <= 1 or r.status_code == 200


@PROPERTY
@given(doc=json_values, content_type=st.sampled_from([*BODIES, "application/json; charset=utf-8"]))
def test_random_json_never_5xx(client, doc, content_type):
    text = json.dumps(doc)
    for body in (text, text + "\n" + text):
        r = invoke(client, body, content_type)
        assert r.status_code < 500, r.data


@PROPERTY
@given(
    rows=st.lists(
        st.lists(
            st.sampled_from(["", "1", "-2.5e3", "nan", "Buick", "sedan", '"x"', " 7 ", "1e400", "\t"]), max_size=10
        ),
        min_size=1,
        max_size=5,
    )
)
def test_random_csv_cells_never_5xx(client, rows):
    lines = [",".join(cells) for cells in rows]
    r = invoke(client, "\n".join(lines))
    assert r.status_code < 500, r.data
    while lines and not lines[-1].strip():  # trailing blank lines are not records
        lines.pop()
    if r.status_code == 200:
        assert len(r.data.split(b"\n")) == len(lines)


# -- serving.model.load: every reason not to serve is one line -------------------------------------------
@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"ALGORITHM": "forest"}, "environment variable ALGORITHM: received 'forest', expected one of xgboost, linear"),
        ({"ALGORITHM": "xgboost"}, "model directory {base}/model does not exist"),
        ({"ALGORITHM": "xgboost", "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/html"},
         "environment variable SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT: received 'text/html', expected one of text/csv, "
         "application/json, application/jsonlines"),
        ({"ALGORITHM": "xgboost", "SERVING_UNKNOWN_CATEGORY": "ignore"},
         "environment variable SERVING_UNKNOWN_CATEGORY: received 'ignore', expected one of error, missing"),
    ],
)  # fmt: skip
def test_load_reasons(tmp_path, env, reason):
    from serving import model

    state = model.load({**env, "SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert not state.ready
    assert state.reason == reason.format(base=tmp_path)


def test_model_dir_follows_sagemaker_base_dir():
    from serving.model import model_dir

    assert str(model_dir({})) == "/opt/ml/model"
    assert str(model_dir({"SAGEMAKER_BASE_DIR": "/tmp/x/opt_ml"})) == "/tmp/x/opt_ml/model"


# -- finite input never gives a 500 (#14 item 5) -----------------------------------------------------------
class Overflowing:
    def predict(self, X):
        with np.errstate(over="ignore"):
            return np.exp(X[:, 0])


def test_a_prediction_that_overflows_is_400_naming_the_record():
    client = create_app(Served(Overflowing(), served().codecs)).test_client()
    r = invoke(client, "1,6,4,1,0,0,Buick,sedan\n20105,6,4,1,0,0,Buick,sedan\n")
    assert (r.status_code, r.data) == (
        400,
        b"record 2: the prediction is not a finite number; the record's values are out of the model's range\n",
    )


@pytest.mark.parametrize("algorithm", ["linear", "xgboost"])
def test_huge_finite_input_is_400_naming_the_field(trained, algorithm):
    from serving import model

    state = model.load({"ALGORITHM": algorithm, "SAGEMAKER_BASE_DIR": str(trained(algorithm).base_dir)})
    client = create_app(state).test_client()
    r = invoke(client, "24960,1e308,2,1,1,1,Pontiac,coupe")
    assert r.status_code == 400, r.data
    assert (
        r.data
        == b"line 1, column 2 (cylinder): expected a number of magnitude at most 3.402823e+38, received '1e308'\n"
    )


# -- links in the model directory (#14 item 12) ------------------------------------------------------------
@pytest.mark.parametrize("name", ["xgboost-model.json", "schema.json"])
def test_a_link_out_of_the_model_dir_is_refused_without_echoing_it(trained, tmp_path, name):
    from serving import model

    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    model_dir = tmp_path / "opt_ml" / "model"
    model_dir.mkdir(parents=True)
    for f in trained("xgboost").model_dir.iterdir():
        (model_dir / f.name).write_bytes(f.read_bytes())
    (model_dir / name).unlink()
    (model_dir / name).symlink_to(secret)
    state = model.load({"ALGORITHM": "xgboost", "SAGEMAKER_BASE_DIR": str(tmp_path / "opt_ml")})
    r = create_app(state).test_client().get("/ping")
    assert (r.status_code, r.data) == (
        500,
        f"model not loaded: model file {model_dir / name} is a symbolic link out of {model_dir}: refused\n".encode(),
    )


def test_an_unreadable_model_file_is_never_echoed(trained, tmp_path):
    from serving import model

    model_dir = tmp_path / "opt_ml" / "model"
    model_dir.mkdir(parents=True)
    for f in trained("xgboost").model_dir.iterdir():
        (model_dir / f.name).write_bytes(f.read_bytes())
    (model_dir / "xgboost-model.json").write_text("root:x:0:0:root:/root:/bin/bash\n")
    state = model.load({"ALGORITHM": "xgboost", "SAGEMAKER_BASE_DIR": str(tmp_path / "opt_ml")})
    r = create_app(state).test_client().get("/ping")
    assert r.status_code == 500
    assert b"x:0:0" not in r.data and b"(r vs" not in r.data, r.data


# -- SAGEMAKER_MODEL_SERVER_TIMEOUT bounds a request (#14 item 4) --------------------------------------------
class Slow:
    def __init__(self):
        self.finished = threading.Event()

    def predict(self, X):
        time.sleep(1.5)
        self.finished.set()
        return np.zeros(len(X))


def test_the_timeout_bounds_a_request_and_the_worker_stays_up():
    codecs = served().codecs
    model = Slow()
    slow = create_app(Served(model, codecs), timeout=0.2).test_client()
    r = invoke(slow, CSV_ROWS)
    pending = not model.finished.is_set()
    assert (r.status_code, r.data) == (
        504,
        b"the request took longer than SAGEMAKER_MODEL_SERVER_TIMEOUT=0.2 s; "
        b"send fewer records per request or raise the timeout\n",
    )
    assert pending  # answered at its deadline, while the 1.5 s prediction still runs
    # The worker is fine: the next request is answered once the abandoned prediction is done.
    r = invoke(create_app(served(), timeout=10).test_client(), CSV_ROWS)
    assert (r.status_code, r.data) == (200, ENCODED["text/csv"])
