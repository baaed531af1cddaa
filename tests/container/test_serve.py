"""`docker run IMAGE serve` with the model mounted read-only and a published port, as a SageMaker endpoint runs it."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import requests

from tests import opt_ml as om
from tests.container.conftest import ALGORITHMS, READY_TIMEOUT, docker, host_port, logs, state, wait_ready

pytestmark = pytest.mark.container


def serving(containers, image: str, model_dir, *, port: int = 8080, env: dict[str, str] | None = None):
    name = containers.start(
        image,
        ["serve"],
        volumes=[(model_dir, "/opt/ml/model", "ro")],
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1", **(env or {})},
        ports=[str(port)],
    )
    url = f"http://127.0.0.1:{host_port(name, port)}"
    wait_ready(name, f"{url}/ping")
    return name, url


@pytest.fixture(scope="module", params=ALGORITHMS)
def endpoint(request, images, session_containers, trained_in_container):
    algorithm = request.param
    training = trained_in_container(algorithm)
    assert training.run.returncode == 0, training.run.output
    name, url = serving(session_containers, images[algorithm], training.model_dir)
    return algorithm, name, url


@pytest.fixture(scope="module")
def test_rows(car_splits):
    """The held-out rows as the endpoint receives them: features only, schema order, categorical strings."""
    frame = car_splits["test"]
    features = frame.drop(columns=[om.TARGET])
    return features, frame[om.TARGET].to_numpy(dtype=float)


def test_ping(endpoint):
    _, _, url = endpoint
    response = requests.get(f"{url}/ping", timeout=5)
    assert response.status_code == 200
    assert response.content == b""


def test_csv_invocations_predict_the_held_out_prices(endpoint, test_rows):
    _, _, url = endpoint
    features, prices = test_rows
    body = features.to_csv(index=False, header=False)
    response = requests.post(
        f"{url}/invocations", data=body, headers={"Content-Type": "text/csv", "Accept": "text/csv"}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    predictions = np.array([float(line) for line in response.text.splitlines()])
    assert len(predictions) == len(features)
    # A model that learned something: well under the spread of the prices (R^2 of a sane model is > 0.8).
    rmse = math.sqrt(float(np.mean((predictions - prices) ** 2)))
    assert rmse < 0.45 * float(np.std(prices)), f"rmse {rmse:.0f} vs price std {np.std(prices):.0f}"


def test_json_invocations_agree_with_csv(endpoint, test_rows):
    _, _, url = endpoint
    features, _ = test_rows
    rows = features.head(20)
    csv_answer = requests.post(
        f"{url}/invocations",
        data=rows.to_csv(index=False, header=False),
        headers={"Content-Type": "text/csv; charset=utf-8", "Accept": "text/csv"},
        timeout=30,
    )
    instances = [{"features": list(record)} for record in rows.itertuples(index=False)]
    json_answer = requests.post(
        f"{url}/invocations",
        data=json.dumps({"instances": instances}, default=lambda v: v.item()),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        timeout=30,
    )
    assert csv_answer.status_code == 200, csv_answer.text
    assert json_answer.status_code == 200, json_answer.text
    scores = [p["score"] for p in json_answer.json()["predictions"]]
    assert scores == pytest.approx([float(line) for line in csv_answer.text.splitlines()], rel=1e-6)


def test_jsonlines_invocations(endpoint, test_rows):
    _, _, url = endpoint
    features, _ = test_rows
    rows = features.head(5)
    body = "\n".join(json.dumps(list(r), default=lambda v: v.item()) for r in rows.itertuples(index=False))
    response = requests.post(
        f"{url}/invocations",
        data=body,
        headers={"Content-Type": "application/jsonlines", "Accept": "application/jsonlines"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert [set(json.loads(line)) for line in response.text.splitlines()] == [{"score"}] * len(rows)


def test_wrong_feature_count_is_a_400(endpoint, test_rows):
    _, _, url = endpoint
    features, _ = test_rows
    short_row = features.iloc[:1, :-1].to_csv(index=False, header=False)
    response = requests.post(f"{url}/invocations", data=short_row, headers={"Content-Type": "text/csv"}, timeout=30)
    assert response.status_code == 400, response.text


def test_bind_to_port_moves_the_server(images, containers, trained_in_container):
    training = trained_in_container("linear")
    name = containers.start(
        images["linear"],
        ["serve"],
        volumes=[(training.model_dir, "/opt/ml/model", "ro")],
        env={"SAGEMAKER_BIND_TO_PORT": "9090", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        ports=["9090", "8080"],
    )
    wait_ready(name, f"http://127.0.0.1:{host_port(name, 9090)}/ping")
    # Nothing listens on 8080 inside: the engine's proxy accepts, then drops the connection.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{host_port(name, 8080)}/ping", timeout=5)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_docker_stop_is_graceful(images, containers, trained_in_container, algorithm):
    """SIGTERM (docker stop) ends the server cleanly, well inside the 30 s before SageMaker's SIGKILL.

    Exit code 0 proves it: a server that ignored SIGTERM would be killed after the grace period (137).
    """
    training = trained_in_container(algorithm)
    name, _ = serving(containers, images[algorithm], training.model_dir)
    docker("stop", "--time", "30", name, timeout=60)
    final = state(name)
    assert final["ExitCode"] == 0, f"exit {final['ExitCode']} (OOMKilled={final['OOMKilled']}):\n{logs(name)}"


def test_without_a_model_ping_is_unhealthy_and_the_log_says_why(images, containers, tmp_path):
    """SageMaker then marks the endpoint unhealthy; the reason is in the container's log (CloudWatch)."""
    empty = tmp_path / "model"
    empty.mkdir()
    name = containers.start(images["xgboost"], ["serve"], volumes=[(empty, "/opt/ml/model", "ro")], ports=["8080"])
    url = f"http://127.0.0.1:{host_port(name, 8080)}/ping"
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        assert state(name)["Running"], logs(name)
        try:
            status = requests.get(url, timeout=2).status_code
            break
        except requests.RequestException:
            assert time.monotonic() < deadline, f"no answer from {url}:\n{logs(name)}"
            time.sleep(0.2)
    assert status == 500, logs(name)
    # The engine copies the log asynchronously: wait for the line rather than assume it is there already.
    while "/opt/ml/model/" not in logs(name):
        assert time.monotonic() < deadline, f"the log does not name the missing model file:\n{logs(name)}"
        time.sleep(0.2)
