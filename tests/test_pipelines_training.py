"""Every path of the training state machine, executed unchanged in moto's ASL interpreter with our SageMaker
backend running the real entry points (local-process runner; the Docker runner is exercised in
tests/container/test_pipelines.py): first model (create), a new model (update), RMSE rejected, worse than the
best (kept), a failing training job, a failing endpoint (create and update), and a failed endpoint replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.local import runners
from pipelines.local.execute import PREFIX, LocalAws
from pipelines.local.runners import RunnerError

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "cardata" / "car_prices.csv"
FAST = {"num_round": "40", "eta": "0.3", "max_depth": "3", "early_stopping_rounds": "0", "seed": "0"}
pytestmark = pytest.mark.slow


class FailingEndpoints(runners.LocalRunner):
    """The local runner, whose model servers for endpoints do not come up while ``failing`` is set."""

    failing = False

    def serve(self, *args, **kwargs):
        folder = Path(args[1] if len(args) > 1 else kwargs["version_dir"])
        if self.failing and "endpoints" in folder.parts:
            raise RunnerError("the xgboost container exited (1) before answering /ping")
        return super().serve(*args, **kwargs)


class Aws(LocalAws):
    data_uri = ""  # the training data, uploaded once per test


@pytest.fixture
def aws(tmp_path):
    local = Aws(tmp_path / "work", FailingEndpoints())
    with local:
        local.data_uri = local.upload(DATA, f"data/training/{DATA.name}")
        yield local


def run(aws: Aws, name: str, **overrides):
    payload = aws.training_input("xgboost", aws.data_uri, **{"HyperParameters": FAST, **overrides})
    return aws.execute("training", payload, name)


def deployment(aws: LocalAws) -> dict | None:
    value = aws.parameter(f"/{PREFIX}/xgboost/deployment")
    return None if value is None else json.loads(value)


def endpoint(aws: LocalAws) -> dict:
    return aws.client("sagemaker").describe_endpoint(EndpointName=f"{PREFIX}-xgboost")


def predict(aws: LocalAws, body: str) -> str:
    answer = aws.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=f"{PREFIX}-xgboost", Body=body.encode(), ContentType="text/csv", Accept="text/csv"
    )
    return answer["Body"].read().decode()


def test_first_model_creates_the_endpoint_and_the_next_one_updates_it(aws):
    first = run(aws, "first")
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    visited = first.visited()
    expected = ["Preprocess data", "Train model", "Data-quality baseline", "Model-quality baseline", "Create endpoint",
                "Register auto scaling", "Put scaling policy", "Export deployment", "Notify deployed"]  # fmt: skip
    assert [s for s in visited if s in expected] == expected
    assert "Update endpoint" not in visited
    record = deployment(aws)
    assert record["EndpointName"] == f"{PREFIX}-xgboost" and record["ExecutionName"] == "first"
    assert record["Rmse"] == first.output["Rmse"] and 0 < record["Rmse"] < 4000
    assert record["Metrics"]["test:rmse"] == record["Rmse"]
    assert aws.parameter(f"/{PREFIX}/xgboost/latest-model") == record["ModelName"]
    assert [m["Subject"] for m in first.messages] == [f"{PREFIX} xgboost model deployed"]
    assert "no deployed model yet" in first.messages[0]["Message"]
    s3 = aws.client("s3")
    for uri in (record["DataQualityBaselineUri"], record["ModelQualityBaselineUri"]):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        keys = {o["Key"].rsplit("/", 1)[1] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
        assert {"statistics.json", "constraints.json"} <= keys, uri
    described = endpoint(aws)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == record["EndpointConfigName"]
    scaling = aws.client("application-autoscaling").describe_scaling_policies(ServiceNamespace="sagemaker")
    (policy,) = scaling["ScalingPolicies"]
    assert policy["ResourceId"] == f"endpoint/{PREFIX}-xgboost/variant/AllTraffic"
    metric = policy["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
    assert metric["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"

    second = run(aws, "second")  # same data, same seed: an equal RMSE is not worse, so it is deployed
    assert second.status == "SUCCEEDED", (second.error, second.cause)
    assert "Update endpoint" in second.visited() and "Create endpoint" not in second.visited()
    updated = deployment(aws)
    assert updated["ExecutionName"] == "second" and updated["EndpointConfigName"] != record["EndpointConfigName"]
    assert endpoint(aws)["EndpointConfigName"] == updated["EndpointConfigName"]
    assert f"new model RMSE {second.output['Rmse']}" in second.messages[0]["Message"]
    policies = aws.client("application-autoscaling").describe_scaling_policies(ServiceNamespace="sagemaker")
    assert len(policies["ScalingPolicies"]) == 1  # the update kept the one policy


def test_rmse_above_the_threshold_is_rejected_and_the_endpoint_untouched(aws):
    result = run(aws, "strict", RmseThreshold=1)
    assert result.status == "FAILED" and result.error == "RmseAboveThreshold"
    assert result.visited()[-2:] == ["Notify rejected", "Rejected"]
    (message,) = result.messages
    assert message["Subject"] == f"{PREFIX} xgboost model rejected: RMSE above threshold"
    assert "is above the threshold 1" in message["Message"] and "test:rmse" in message["Message"]
    assert deployment(aws) is None
    with pytest.raises(aws.client("sagemaker").exceptions.ClientError, match="Could not find endpoint"):
        endpoint(aws)
    # the trained model is still recorded as the latest one
    assert aws.parameter(f"/{PREFIX}/xgboost/latest-model") == f"{PREFIX}-xgboost-model-strict"


def test_worse_than_the_deployed_model_keeps_it(aws):
    best = {"EndpointName": f"{PREFIX}-xgboost", "Rmse": 1.5, "ModelName": "the-best"}
    aws.client("ssm").put_parameter(Name=f"/{PREFIX}/xgboost/deployment", Value=json.dumps(best), Type="String")
    result = run(aws, "worse")
    assert result.status == "SUCCEEDED"
    assert result.visited()[-2:] == ["Notify kept", "Kept current model"]
    assert "Create baselines" not in result.visited()
    (message,) = result.messages
    assert message["Subject"] == f"{PREFIX} xgboost: kept the current model"
    assert "1.5" in message["Message"]
    assert deployment(aws) == best


def test_a_failing_training_job_sends_its_failure_reason(aws):
    result = run(aws, "bad-eta", HyperParameters={**FAST, "eta": "2"})
    assert result.status == "FAILED" and result.error == "PipelineFailed"
    assert result.visited()[-3:] == ["Train model", "Notify failure", "Pipeline failed"]
    (message,) = result.messages
    assert message["Subject"] == f"{PREFIX} xgboost training pipeline failed"
    assert "States.TaskFailed" in message["Message"]
    assert "hyperparameter 'eta': received '2', expected a number in (0, 1]" in message["Message"]


def test_a_request_sagemaker_refuses_is_caught_and_named(aws):
    result = run(aws, "bad-type", TrainingInstanceCount="one")
    assert result.status == "FAILED"
    (message,) = result.messages
    assert "SageMaker.AmazonSageMakerException" in message["Message"] and "InstanceCount" in message["Message"]


def test_an_endpoint_that_fails_is_reported_then_replaced_by_the_next_run(aws):
    aws.runner.failing = True
    broken = run(aws, "broken")
    assert broken.status == "FAILED" and broken.error == "EndpointFailed"
    assert broken.visited()[-3:] == ["Read endpoint failure", "Notify endpoint failure", "Endpoint failed"]
    (message,) = broken.messages
    assert message["Subject"] == f"{PREFIX} xgboost: endpoint deployment failed"
    assert "Failed: " in message["Message"] and "before answering /ping" in message["Message"]
    assert endpoint(aws)["EndpointStatus"] == "Failed"
    assert deployment(aws) is None

    aws.runner.failing = False
    fixed = run(aws, "fixed")
    assert fixed.status == "SUCCEEDED", (fixed.error, fixed.cause)
    assert "Delete failed endpoint" in fixed.visited() and "Create endpoint" in fixed.visited()
    assert endpoint(aws)["EndpointStatus"] == "InService"
    assert predict(aws, "8221,6,4,1,1,1,Buick,sedan").strip()


def test_an_update_that_fails_rolls_back_and_is_reported(aws):
    first = run(aws, "good")
    assert first.status == "SUCCEEDED"
    aws.runner.failing = True
    second = run(aws, "bad-update")
    assert second.status == "FAILED" and second.error == "EndpointFailed"
    assert "Update endpoint" in second.visited() and "Serves new config?" in second.visited()
    assert second.messages[0]["Message"].count("InService: ") == 1  # rolled back, still serving the old model
    assert endpoint(aws)["EndpointConfigName"] == deployment(aws)["EndpointConfigName"]
    assert deployment(aws)["ExecutionName"] == "good"
