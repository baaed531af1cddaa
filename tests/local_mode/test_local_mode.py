"""SageMaker Python SDK local mode with the built images: train, deploy + invoke, batch transform, no AWS call.

One LocalSession for the module (conftest ``lm``); every test also checks that no container of the run is left.
The test that checks no AWS request was attempted runs last and covers everything before it.
"""

from __future__ import annotations

import json
import math
import tarfile

import pytest

from harness import sdk_local_mode as sdk
from tests.local_mode.conftest import FAST, IMAGES

pytestmark = pytest.mark.container

MODEL_FILES = {"xgboost": "xgboost-model.json", "linear": "linear-model.json"}


def rmse(predictions: list[float], labels: list[float]) -> float:
    return math.sqrt(sum((p - y) ** 2 for p, y in zip(predictions, labels, strict=True)) / len(labels))


def spread(labels: list[float]) -> float:
    mean = sum(labels) / len(labels)
    return math.sqrt(sum((y - mean) ** 2 for y in labels) / len(labels))


@pytest.mark.parametrize("algorithm", ["xgboost", "linear"])
def test_train_produces_the_model_archive_with_hyperparameters_and_metrics(algorithm, lm, local_trained):
    trained = local_trained(algorithm)

    assert trained.model_data.startswith("file://") and trained.model_path.is_file()
    assert sdk.model_files(trained.model_path) == sorted([MODEL_FILES[algorithm], "schema.json", "metadata.json"])
    with tarfile.open(trained.model_path) as tar:
        metadata = json.load(tar.extractfile("metadata.json"))
    assert metadata["algorithm"] == algorithm
    for name, value in FAST[algorithm].items():  # the Estimator's hyperparameters reached the container
        assert str(metadata["hyperparameters"][name]) == value
    # The metric_definitions regexes, applied to the streamed log, give what the job recorded.
    for split in ("train", "validation"):
        for metric in ("rmse", "mae", "r2"):
            assert trained.metrics[f"{split}:{metric}"] == pytest.approx(metadata["metrics"][split][metric], rel=1e-6)
    assert sdk.run_containers(lm.run_id) == []


@pytest.mark.parametrize("algorithm", ["xgboost", "linear"])
def test_two_instances_train_one_model_over_both(algorithm, lm, channels, local_trained):
    """instance_count=2: two containers (algo-1, algo-2) train together; the archive holds one model whose
    metrics are the one-instance job's (the SDK mounts every channel FullyReplicated in local mode)."""
    two = sdk.train(lm, algorithm, IMAGES[algorithm], channels, FAST[algorithm], echo=False, instance_count=2)
    assert sdk.model_files(two.model_path) == sorted([MODEL_FILES[algorithm], "schema.json", "metadata.json"])
    one = local_trained(algorithm)
    metadata = {}
    for name, trained in (("one", one), ("two", two)):
        with tarfile.open(trained.model_path) as tar:
            metadata[name] = json.load(tar.extractfile("metadata.json"))
    for split in ("train", "validation"):
        assert metadata["two"]["metrics"][split] == pytest.approx(metadata["one"]["metrics"][split], rel=1e-6)
    assert sdk.run_containers(lm.run_id) == []


def test_a_failing_training_job_says_why_and_leaves_no_container(lm, channels):
    with pytest.raises(sdk.LocalModeError, match=r"^training xgboost failed: .*num_round.*received '0'") as caught:
        sdk.train(lm, "xgboost", IMAGES["xgboost"], channels, {"num_round": "0"}, echo=False)
    assert "\n" not in str(caught.value)
    assert sdk.run_containers(lm.run_id) == []


def test_deploy_invoke_with_csv_and_json_then_delete(lm, local_trained, test_rows, price_range):
    rows, labels = test_rows
    trained = local_trained("xgboost")
    with sdk.endpoint(lm, IMAGES["xgboost"], trained.model_data) as ep:
        status = lm.session.sagemaker_client.describe_endpoint(EndpointName=ep.name)["EndpointStatus"]
        by_csv = [float(answer[0]) for answer in ep.csv.predict("\n".join(",".join(row) for row in rows))]
        instances = [[float(v) for v in row[:6]] + row[6:] for row in rows]  # numbers as numbers, categories as text
        by_json = [p["score"] for p in ep.json.predict({"instances": instances})["predictions"]]
        by_name = ep.json.predict(dict(zip(FEATURES, instances[0], strict=True)))["predictions"][0]["score"]
        with pytest.raises(sdk.InvocationFailed, match=r"answered 400: .*mileage.*'abc'") as bad:
            ep.csv.predict("abc,6,4,1,1,1,Buick,sedan")
        assert len(sdk.run_containers(lm.run_id)) == 1  # the endpoint's container, still serving
    assert status == "InService"
    assert bad.value.status == 400
    assert len(by_csv) == len(rows)
    assert by_json == pytest.approx(by_csv, rel=1e-6)
    assert by_name == pytest.approx(by_csv[0], rel=1e-6)
    low, high = price_range
    assert all(low <= p <= high for p in by_csv), (min(by_csv), max(by_csv))
    assert rmse(by_csv, labels) < spread(labels) / 2  # a model, not a constant
    assert sdk.run_containers(lm.run_id) == []  # deleting the endpoint removed its container


FEATURES = ("mileage", "cylinder", "doors", "cruise", "sound", "leather", "make", "body_type")


def test_batch_transform_writes_one_line_per_record(lm, local_trained, test_rows, price_range, tmp_path):
    rows, labels = test_rows
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "scoring.csv").write_text("".join(",".join(row) + "\n" for row in rows))
    trained = local_trained("linear")

    done = sdk.transform(lm, IMAGES["linear"], trained.model_data, inputs, tmp_path / "out")

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scoring.csv.out"]
    lines = (tmp_path / "out" / "scoring.csv.out").read_text().split("\n")
    assert lines[-1] == ""  # AssembleWith=Line ends every request's answer with a newline
    predictions = [float(line) for line in lines[:-1]]
    assert len(predictions) == len(rows)
    assert done.description["TransformJobStatus"] == "Completed"
    assert done.description["BatchStrategy"] == "MultiRecord"  # from /execution-parameters (the SDK's spelling)
    low, high = price_range
    assert all(low <= p <= high for p in predictions), (min(predictions), max(predictions))
    assert rmse(predictions, labels) < spread(labels) / 2
    assert sdk.run_containers(lm.run_id) == []


def test_a_failing_batch_transform_raises_and_leaves_no_container_or_output(lm, local_trained, test_rows, tmp_path):
    rows, _ = test_rows
    inputs = tmp_path / "in"
    inputs.mkdir()
    bad = [",".join(row) for row in rows[:3]] + ["abc,6,4,1,1,1,Buick,sedan"]
    (inputs / "bad.csv").write_text("\n".join(bad) + "\n")
    trained = local_trained("xgboost")

    # The SDK alone would write the 400 body into bad.csv.out as a prediction and leave the container running.
    with pytest.raises(sdk.LocalModeError, match=r"^batch transform failed: /invocations answered 400: .*'abc'"):
        sdk.transform(lm, IMAGES["xgboost"], trained.model_data, inputs, tmp_path / "out")
    assert sdk.run_containers(lm.run_id) == []
    assert list((tmp_path / "out").iterdir()) == []


def test_zz_no_aws_request_was_attempted(lm):
    """Runs last in the module: nothing above tried to reach anything but this machine."""
    assert lm.guard.attempts == []
    # The guard was live all along: an AWS call from this session's boto3 session is refused...
    with pytest.raises(sdk.AwsCallAttempted):
        lm.session.boto_session.client("sts").get_caller_identity()
    # ... and so is any socket off this machine (the SDK's telemetry would use requests, not botocore).
    import requests

    with pytest.raises(sdk.AwsCallAttempted):
        requests.get("https://sm-pysdk-t-us-east-1.s3.us-east-1.amazonaws.com/telemetry", timeout=1)
    assert len(lm.guard.attempts) == 2
    lm.guard.attempts.clear()
