"""The training pipeline's Lambdas (pipelines/lambdas) against moto in-process, and a stubbed SageMaker client
where moto falls short (its DescribeTrainingJob has no real FinalMetricDataList and is always Completed)."""

from __future__ import annotations

import io
import json
import re
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from pipelines.lambdas import compare_best, query_metrics

REGION = "eu-west-1"
BUCKET = "artifacts"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/byoc-xgboost@sha256:" + "0" * 64


@pytest.fixture
def aws(monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        yield


# -- query_metrics -------------------------------------------------------------------------------------------------
def create_job(name: str = "cars-xgboost-1") -> None:
    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    boto3.client("sagemaker", region_name=REGION).create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/jobs/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )


def tar_gz(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


def evaluation(rmse, mae=2100.0, mse=None, r2=0.9) -> bytes:
    mse = rmse * rmse if mse is None and isinstance(rmse, float) else mse
    metrics = {"rmse": rmse, "mae": mae, "mse": mse, "r2": r2}
    return json.dumps(
        {"regression_metrics": {k: {"value": v, "standard_deviation": 1.0} for k, v in metrics.items()}}
    ).encode()


def put_output(body: bytes, name: str = "cars-xgboost-1") -> None:
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=f"jobs/{name}/output/output.tar.gz", Body=body)


def stubbed_sagemaker(monkeypatch, response: dict) -> None:
    """boto3.client("sagemaker") answers DescribeTrainingJob with ``response`` (once); other services are moto's."""
    real = boto3.client
    client = real("sagemaker", region_name=REGION)
    stubber = Stubber(client)
    base = {
        "TrainingJobName": "cars-xgboost-1",
        "TrainingJobArn": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/cars-xgboost-1",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/jobs/cars-xgboost-1/output/model.tar.gz"},
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/jobs/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": datetime(2024, 1, 1, tzinfo=UTC),
    }
    stubber.add_response("describe_training_job", {**base, **response}, {"TrainingJobName": "cars-xgboost-1"})
    stubber.activate()
    monkeypatch.setattr(
        boto3, "client", lambda service, *a, **kw: client if service == "sagemaker" else real(service, *a, **kw)
    )


def final_metrics(**values: float) -> list[dict]:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return [{"MetricName": k.replace("_", ":"), "Value": v, "Timestamp": now} for k, v in values.items()]


def test_metric_from_final_metric_data_list(aws, monkeypatch):
    stubbed_sagemaker(monkeypatch, {"FinalMetricDataList": final_metrics(test_rmse=3012.5, test_mae=2100.0)})
    out = query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)
    assert out == {
        "TrainingJobName": "cars-xgboost-1",
        "MetricName": "test:rmse",
        "Rmse": 3012.5,
        "Metrics": {"test:rmse": 3012.5, "test:mae": 2100.0},
        "Source": "FinalMetricDataList",
    }
    json.dumps(out, allow_nan=False)  # the state machine gets it as JSON


def test_metric_name_chooses_the_metric(aws, monkeypatch):
    stubbed_sagemaker(monkeypatch, {"FinalMetricDataList": final_metrics(test_rmse=3012.5, validation_rmse=2900.0)})
    out = query_metrics.handler({"TrainingJobName": "cars-xgboost-1", "MetricName": "validation:rmse"}, None)
    assert (out["Rmse"], out["MetricName"]) == (2900.0, "validation:rmse")


def test_fallback_to_evaluation_json(aws):
    create_job()  # moto's FinalMetricDataList holds only train:progress
    put_output(tar_gz({"./evaluation.json": evaluation(3012.5)}))
    out = query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)
    assert out["Source"] == "evaluation.json"
    assert out["Rmse"] == 3012.5
    assert out["Metrics"] == {"test:rmse": 3012.5, "test:mae": 2100.0, "test:mse": 3012.5**2, "test:r2": 0.9}


def test_evaluation_json_written_by_train(aws, trained):
    """The real file algorithms/train.py writes, as SageMaker archives /opt/ml/output/data."""
    data = trained("linear").base_dir.joinpath("output", "data", "evaluation.json").read_bytes()
    create_job()
    put_output(tar_gz({"evaluation.json": data}))
    out = query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)
    assert out["Rmse"] == json.loads(data)["regression_metrics"]["rmse"]["value"]


def test_missing_metric(aws):
    create_job()
    put_output(tar_gz({"other.txt": b"x"}))
    with pytest.raises(
        query_metrics.MetricsNotFound, match=r"cars-xgboost-1: no test:rmse .* holds no evaluation.json"
    ):
        query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)


def test_missing_archive(aws):
    create_job()
    with pytest.raises(query_metrics.MetricsNotFound, match="no output archive at s3://artifacts/jobs/cars-xgboost-1/"):
        query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)


def test_metric_evaluation_json_cannot_have(aws):
    create_job()
    with pytest.raises(query_metrics.MetricsNotFound, match="no validation:rmse in FinalMetricDataList"):
        query_metrics.handler({"TrainingJobName": "cars-xgboost-1", "MetricName": "validation:rmse"}, None)


@pytest.mark.parametrize(
    "members",
    [
        {"evaluation.json": b"{not json"},
        {"evaluation.json": json.dumps({"binary_classification_metrics": {}}).encode()},
    ],
    ids=["not-json", "no-regression-metrics"],
)
def test_bad_evaluation_json(aws, members):
    create_job()
    put_output(tar_gz(members))
    with pytest.raises(query_metrics.MetricsNotFound, match=r"evaluation\.json"):
        query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)


def test_evaluation_json_must_be_a_regular_file(aws):
    create_job()
    put_output(tar_gz({}, symlink="evaluation.json"))
    with pytest.raises(query_metrics.MetricsNotFound, match=r"evaluation\.json is not a regular file"):
        query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)


def test_not_a_tar(aws):
    create_job()
    put_output(b"not a tar at all")
    with pytest.raises(query_metrics.MetricsNotFound, match=r"not a readable tar\.gz"):
        query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)


def test_archive_bound(aws, monkeypatch):
    monkeypatch.setattr(query_metrics, "MAX_SCANNED_BYTES", 10)
    create_job()
    put_output(tar_gz({"big.bin": b"x" * 100, "evaluation.json": evaluation(3012.5)}))
    with pytest.raises(query_metrics.MetricsNotFound, match="not in the first bytes"):
        query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)


def test_non_finite_final_metric(aws, monkeypatch):
    stubbed_sagemaker(monkeypatch, {"FinalMetricDataList": final_metrics(test_rmse=float("nan"))})
    with pytest.raises(query_metrics.MetricNotFinite, match=r"test:rmse is nan in FinalMetricDataList"):
        query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)


def test_non_finite_evaluation_json(aws):
    create_job()
    put_output(tar_gz({"evaluation.json": evaluation(None, mse=None)}))  # NaN is written as null
    with pytest.raises(query_metrics.MetricNotFinite, match=r"test:rmse is None in evaluation.json"):
        query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)


@pytest.mark.parametrize("status", ["InProgress", "Failed", "Stopped"])
def test_job_not_completed(aws, monkeypatch, status):
    stubbed_sagemaker(
        monkeypatch, {"TrainingJobStatus": status, "FailureReason": "AlgorithmError: hyperparameter\n'eta'"}
    )
    with pytest.raises(
        query_metrics.TrainingJobNotCompleted,
        match=f"is {status}, not Completed: AlgorithmError: hyperparameter 'eta'$",
    ):
        query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)


def test_job_not_found(aws):
    with pytest.raises(query_metrics.TrainingJobNotFound, match="training job nope not found"):
        query_metrics.handler({"TrainingJobName": "nope"}, None)


@pytest.mark.parametrize("event", [None, {}, {"TrainingJobName": ""}, {"TrainingJobName": "j", "MetricName": 3}])
def test_query_invalid_event(aws, event):
    with pytest.raises(query_metrics.InvalidEvent):
        query_metrics.handler(event, None)


# -- compare_best --------------------------------------------------------------------------------------------------
PARAM = "/cars/xgboost/deployment"


def put_deployment(value: str) -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(Name=PARAM, Value=value, Type="String", Overwrite=True)


def test_first_model(aws):
    out = compare_best.handler({"ParameterName": PARAM, "Rmse": 3012.5}, None)
    assert out["IsBetter"] is True
    assert out["BestRmse"] is None
    assert out["Reason"] == "no deployed model yet"


@pytest.mark.parametrize(
    ("rmse", "better", "words"),
    [(3000, True, "is better than"), (3100.25, True, "equals"), (3200.5, False, "is worse than")],
    ids=["better", "equal", "worse"],
)
def test_compare(aws, rmse, better, words):
    put_deployment(json.dumps({"EndpointName": "cars-xgboost", "ModelName": "m", "Rmse": 3100.25}))
    out = compare_best.handler({"ParameterName": PARAM, "Rmse": rmse}, None)
    assert out["IsBetter"] is better
    assert out["BestRmse"] == 3100.25
    assert words in out["Reason"] and str(rmse) in out["Reason"] and "3100.25" in out["Reason"]
    assert "\n" not in out["Reason"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json {", "is not a JSON document"),
        (json.dumps({"EndpointName": "e"}), r"has no finite Rmse \(found None\)"),
        (json.dumps({"Rmse": "3000"}), "has no finite Rmse"),
        ('{"Rmse": NaN}', "has no finite Rmse"),
        (json.dumps([1, 2]), "has no finite Rmse"),
    ],
    ids=["not-json", "no-rmse", "string-rmse", "nan-rmse", "not-an-object"],
)
def test_corrupt_parameter(aws, value, message):
    put_deployment(value)
    with pytest.raises(compare_best.CorruptDeploymentParameter, match=f"parameter {PARAM} {message}"):
        compare_best.handler({"ParameterName": PARAM, "Rmse": 3000.0}, None)


@pytest.mark.parametrize(
    "event", [[], {"Rmse": 1.0}, {"ParameterName": PARAM}, {"ParameterName": PARAM, "Rmse": float("inf")}]
)
def test_compare_invalid_event(aws, event):
    with pytest.raises(compare_best.InvalidEvent):
        compare_best.handler(event, None)


def test_region_from_environment(aws, monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    put_deployment(json.dumps({"Rmse": 1.0}))  # in REGION: found only if the handler's client is there too
    assert compare_best.handler({"ParameterName": PARAM, "Rmse": 2.0}, None)["BestRmse"] == 1.0


def test_archive_access_denied(aws, monkeypatch):
    """Without s3:ListBucket S3 answers a missing key with AccessDenied: still MetricsNotFound, naming the code."""
    create_job()
    real = boto3.client
    s3 = real("s3", region_name=REGION)
    stubber = Stubber(s3)
    stubber.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
    stubber.activate()
    monkeypatch.setattr(boto3, "client", lambda service, *a, **kw: s3 if service == "s3" else real(service, *a, **kw))
    with pytest.raises(query_metrics.MetricsNotFound, match=r"output\.tar\.gz cannot be read: AccessDenied"):
        query_metrics.handler({"TrainingJobName": "cars-xgboost-1"}, None)


# -- the SAM template that deploys them ----------------------------------------------------------------------------
PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"


def test_template_wires_handlers_and_definition():
    decode = pytest.importorskip("cfnlint.decode").decode
    template, errors = decode(str(PIPELINES / "template.yaml"))
    assert not errors
    resources = template["Resources"]
    for logical_id, module in (("QueryMetricsFunction", query_metrics), ("CompareBestFunction", compare_best)):
        props = resources[logical_id]["Properties"]
        name, _, attr = props["Handler"].partition(".")
        assert (PIPELINES / props["CodeUri"] / f"{name}.py").samefile(module.__file__)
        assert callable(getattr(module, attr))
    machine = resources["TrainingStateMachine"]["Properties"]
    definition = PIPELINES / machine["DefinitionUri"]
    if not definition.exists():
        pytest.skip(f"{definition} not generated yet")
    placeholders = set(re.findall(r"\$\{(\w+)\}", definition.read_text()))
    assert placeholders == set(machine["DefinitionSubstitutions"])
