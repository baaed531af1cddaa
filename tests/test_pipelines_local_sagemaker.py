"""The local SageMaker backend (pipelines/local/sagemaker.py) through boto3, with S3 in moto and the local-process
runner: real preprocessing, training, endpoints, capture and batch transform on the bundled car data."""

from __future__ import annotations

import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from algorithms.metric_definitions import definitions
from pipelines.local import intercept
from pipelines.local.runners import DockerRunner, LocalRunner, docker_status
from pipelines.local.sagemaker import LocalSageMaker, SageMakerError

REPO = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
BUCKET = "pipeline-bucket"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
XGBOOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com/byoc-xgboost:latest"
MONITOR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/byoc-monitor:latest"
FAST = {"num_round": "20", "eta": "0.3", "max_depth": "3", "seed": "0"}


def sm(**config):
    return boto3.client("sagemaker", region_name=REGION, config=Config(**config) if config else None)


def s3():
    return boto3.client("s3", region_name=REGION)


def keys(prefix: str) -> list[str]:
    return [o["Key"] for o in s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def training_request(name: str, hyperparameters: dict | None = None, **extra) -> dict:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": XGBOOST,
            "TrainingInputMode": "File",
            "MetricDefinitions": definitions("xgboost"),
        },
        "HyperParameters": hyperparameters or FAST,
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": c,
                "ContentType": "text/csv",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/splits/{c}"}},
            }
            for c in ("train", "validation", "test")
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        **extra,
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[dict]:
    """One moto account for the module: the car data in S3, the splits from a real processing job, one trained
    model, and the backend answering every boto3 sagemaker call."""
    with mock_aws():
        s3().create_bucket(Bucket=BUCKET)
        s3().upload_file(str(REPO / "cardata" / "car_prices.csv"), BUCKET, "raw/car_prices.csv")
        runner = LocalRunner("tests")
        backend = LocalSageMaker(tmp_path_factory.mktemp("local-sagemaker"), runner, REGION)
        with intercept.installed(backend):
            t0 = time.perf_counter()
            sm().create_processing_job(
                ProcessingJobName="preprocess-1",
                RoleArn=ROLE,
                AppSpecification={"ImageUri": MONITOR, "ContainerArguments": ["preprocess", "--seed", "7"]},
                ProcessingResources={
                    "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}
                },
                ProcessingInputs=[
                    {
                        "InputName": "raw",
                        "S3Input": {
                            "S3Uri": f"s3://{BUCKET}/raw",
                            "LocalPath": "/opt/ml/processing/input",
                            "S3DataType": "S3Prefix",
                            "S3InputMode": "File",
                        },
                    }
                ],
                ProcessingOutputConfig={
                    "Outputs": [
                        {
                            "OutputName": "splits",
                            "S3Output": {
                                "S3Uri": f"s3://{BUCKET}/splits",
                                "LocalPath": "/opt/ml/processing/output",
                                "S3UploadMode": "EndOfJob",
                            },
                        }
                    ]
                },
            )
            processing = backend.wait("processing", "preprocess-1", 120)
            sm().create_training_job(**training_request("train-1"))
            training = backend.wait("training", "train-1", 120)
            yield {
                "backend": backend,
                "runner": runner,
                "processing": processing,
                "training": training,
                "setup_seconds": time.perf_counter() - t0,
            }


@pytest.fixture(scope="module")
def served(env) -> dict:
    """model + endpoint config with data capture + endpoint, InService."""
    client = sm()
    model_url = env["training"]["ModelArtifacts"]["S3ModelArtifacts"]
    client.create_model(
        ModelName="xgb-1", PrimaryContainer={"Image": XGBOOST, "ModelDataUrl": model_url}, ExecutionRoleArn=ROLE
    )
    client.create_endpoint_config(
        EndpointConfigName="cfg-1",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "xgb-1",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        DataCaptureConfig={
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": f"s3://{BUCKET}/capture",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
        },
    )
    answer = client.create_endpoint(EndpointName="cars", EndpointConfigName="cfg-1")
    assert client.describe_endpoint(EndpointName="cars")["EndpointStatus"] == "Creating"  # asynchronous, as AWS
    described = env["backend"].wait("endpoint", "cars", 120)
    return {"arn": answer["EndpointArn"], "described": described, "model_url": model_url}


def test_processing_job_writes_the_splits_to_s3(env):
    d = env["processing"]
    assert d["ProcessingJobStatus"] == "Completed", d.get("FailureReason")
    assert d["ProcessingEndTime"] >= d["ProcessingStartTime"]
    assert "ExitMessage" in d  # preprocess writes its summary to /opt/ml/output/message
    for split in ("train", "validation", "test"):
        assert f"splits/{split}/{split}.csv" in keys("splits/")
        assert f"splits/{split}/schema.json" in keys("splits/")


def test_training_job_reports_final_metrics_from_its_log_and_uploads_the_model(env, tmp_path):
    d = env["training"]
    assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
    assert d["SecondaryStatus"] == "Completed"
    assert d["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/models/train-1/output/model.tar.gz"
    assert d["BillableTimeInSeconds"] >= 1
    metrics = {m["MetricName"]: m["Value"] for m in d["FinalMetricDataList"]}
    s3().download_file(BUCKET, "models/train-1/output/output.tar.gz", str(tmp_path / "output.tar.gz"))
    with tarfile.open(tmp_path / "output.tar.gz") as tar:
        evaluation = json.load(tar.extractfile("evaluation.json"))
    assert metrics["test:rmse"] == pytest.approx(evaluation["regression_metrics"]["rmse"]["value"], rel=1e-6)
    s3().download_file(BUCKET, "models/train-1/output/model.tar.gz", str(tmp_path / "model.tar.gz"))
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        assert {"xgboost-model.json", "schema.json", "metadata.json"} <= set(tar.getnames())  # at the root
    job_dir = env["backend"].workdir / "jobs" / "training" / "train-1"
    assert json.loads((job_dir / "input" / "config" / "hyperparameters.json").read_text()) == FAST
    assert json.loads((job_dir / "input" / "config" / "inputdataconfig.json").read_text())["train"] == {
        "TrainingInputMode": "File",
        "S3DistributionType": "FullyReplicated",
        "RecordWrapperType": "None",
        "ContentType": "text/csv",
    }


def test_bad_hyperparameter_fails_with_the_reason_first(env):
    sm().create_training_job(**training_request("train-bad-eta", {**FAST, "eta": "2"}))
    d = env["backend"].wait("training", "train-bad-eta", 60)
    assert d["TrainingJobStatus"] == "Failed"
    assert d["FailureReason"].startswith("hyperparameter 'eta'")
    assert "ModelArtifacts" not in d or not d["ModelArtifacts"]["S3ModelArtifacts"]
    assert not keys("models/train-bad-eta/")


def test_max_runtime_stops_the_job(env):
    endless = {**FAST, "num_round": "100000", "eta": "0.01", "early_stopping_rounds": "0"}
    sm().create_training_job(**training_request("train-slow", endless, StoppingCondition={"MaxRuntimeInSeconds": 1}))
    d = env["backend"].wait("training", "train-slow", 60)
    assert (d["TrainingJobStatus"], d["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert not keys("models/train-slow/")


def test_spot_training_needs_max_wait_at_least_max_runtime(env):
    with pytest.raises(ClientError) as e:
        sm().create_training_job(
            **training_request(
                "train-spot",
                EnableManagedSpotTraining=True,
                StoppingCondition={"MaxRuntimeInSeconds": 600, "MaxWaitTimeInSeconds": 300},
            )
        )
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "MaxWaitTimeInSeconds" in e.value.response["Error"]["Message"]


def test_duplicate_training_job_name_is_resource_in_use(env):
    client = sm()
    with pytest.raises(client.exceptions.ResourceInUse) as e:
        client.create_training_job(**training_request("train-1"))
    assert "a training job with this name already exists" in e.value.response["Error"]["Message"]
    assert "training-job/train-1" in e.value.response["Error"]["Message"]


def test_unknown_job_is_resource_not_found(env):
    client = sm()
    with pytest.raises(client.exceptions.ResourceNotFound, match=r"Requested resource not found\."):
        client.describe_training_job(TrainingJobName="nope")


def test_unknown_parameter_is_a_validation_exception_naming_it(env):
    client = sm(parameter_validation=False)  # as moto's Step Functions interpreter creates its clients
    request = training_request("train-typo")
    request["HyperParameter"] = request.pop("HyperParameters")
    with pytest.raises(ClientError) as e:
        client.create_training_job(**request)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert '"HyperParameter"' in e.value.response["Error"]["Message"]
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(SageMakerError, match=r"ValidationException.*at 'trainingJobName'"):
        env["backend"].handle("CreateTrainingJob", training_request("bad_name"))


def test_unknown_endpoint_messages_are_aws_own(env):
    client = sm()
    with pytest.raises(ClientError) as e:
        client.describe_endpoint(EndpointName="missing")
    assert e.value.response["Error"] == {"Code": "ValidationException", "Message": 'Could not find endpoint "missing".'}
    with pytest.raises(ClientError, match=r'Could not find model "missing"\.'):
        client.describe_model(ModelName="missing")
    with pytest.raises(ClientError, match=r'Could not find endpoint configuration "missing"\.'):
        client.describe_endpoint_config(EndpointConfigName="missing")
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    with pytest.raises(ClientError, match=r"Endpoint missing of account 123456789012 not found\."):
        runtime.invoke_endpoint(EndpointName="missing", Body=b"1", ContentType="text/csv")


def test_endpoint_serves_and_captures(env, served):
    d = served["described"]
    assert d["EndpointStatus"] == "InService", d.get("FailureReason")
    assert d["EndpointConfigName"] == "cfg-1"
    assert d["ProductionVariants"][0]["VariantName"] == "AllTraffic"
    assert d["DataCaptureConfig"]["CurrentSamplingPercentage"] == 100
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    answer = runtime.invoke_endpoint(
        EndpointName="cars",
        Body=b"8221,6,4,1,1,1,Buick,sedan",
        ContentType="text/csv",
        Accept="text/csv",
        InferenceId="car-0001",
    )
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert answer["ContentType"].startswith("text/csv")
    assert float(answer["Body"].read()) > 0
    with pytest.raises(runtime.exceptions.ModelError) as e:
        runtime.invoke_endpoint(EndpointName="cars", Body=b"1,2", ContentType="text/csv")
    assert e.value.response["OriginalStatusCode"] == 400
    assert "expected 8 features" in e.value.response["OriginalMessage"]
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    uploaded = env["backend"].flush_capture()
    [uri] = uploaded
    assert uri.startswith(f"s3://{BUCKET}/capture/cars/AllTraffic/") and uri.endswith(".jsonl")
    key = uri.split("/", 3)[3]
    assert len(key.split("/")) == 8  # capture/cars/AllTraffic/yyyy/mm/dd/hh/file
    [line] = s3().get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()  # the 400 is not captured
    record = json.loads(line)
    assert record["eventMetadata"]["inferenceId"] == "car-0001"
    assert record["captureData"]["endpointInput"] == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": "8221,6,4,1,1,1,Buick,sedan",
        "encoding": "CSV",
    }
    assert env["backend"].endpoint_url("cars").startswith("http://127.0.0.1:")


def test_update_endpoint_switches_and_a_failed_update_keeps_the_old_config(env, served):
    client, backend = sm(), env["backend"]
    variant = {"VariantName": "Green", "ModelName": "xgb-1", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    client.create_endpoint_config(EndpointConfigName="cfg-green", ProductionVariants=[variant])
    client.create_endpoint_config(
        EndpointConfigName="cfg-blue",
        ProductionVariants=[{**variant, "VariantName": "Blue", "InitialInstanceCount": 2}],
    )
    client.create_endpoint(EndpointName="upd", EndpointConfigName="cfg-green")
    assert backend.wait("endpoint", "upd", 120)["EndpointStatus"] == "InService"
    old_url = backend.endpoint_url("upd")
    client.update_endpoint(EndpointName="upd", EndpointConfigName="cfg-blue")
    assert client.describe_endpoint(EndpointName="upd")["EndpointStatus"] == "Updating"
    d = backend.wait("endpoint", "upd", 120)
    assert (d["EndpointStatus"], d["EndpointConfigName"]) == ("InService", "cfg-blue")
    assert d["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert backend.endpoint_url("upd") != old_url
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    answer = runtime.invoke_endpoint(EndpointName="upd", Body=b"8221,6,4,1,1,1,Buick,sedan", ContentType="text/csv")
    assert answer["InvokedProductionVariant"] == "Blue"

    broken = f"s3://{BUCKET}/broken/model.tar.gz"
    s3().put_object(Bucket=BUCKET, Key="broken/model.tar.gz", Body=b"this is not a tar archive")
    client.create_model(ModelName="xgb-broken", PrimaryContainer={"Image": XGBOOST, "ModelDataUrl": broken})
    client.create_endpoint_config(
        EndpointConfigName="cfg-broken",
        ProductionVariants=[{"VariantName": "Bad", "ModelName": "xgb-broken", "InstanceType": "ml.m5.large"}],
    )
    client.update_endpoint(EndpointName="upd", EndpointConfigName="cfg-broken")
    d = backend.wait("endpoint", "upd", 120)
    assert (d["EndpointStatus"], d["EndpointConfigName"]) == ("InService", "cfg-blue")  # rolled back, as AWS
    assert "Failed to extract model data archive" in d["FailureReason"]
    assert runtime.invoke_endpoint(EndpointName="upd", Body=b"8221,6,4,1,1,1,Buick,sedan", ContentType="text/csv")

    client.create_endpoint(EndpointName="broken", EndpointConfigName="cfg-broken")
    d = backend.wait("endpoint", "broken", 60)
    assert d["EndpointStatus"] == "Failed"
    assert d["FailureReason"].startswith('ClientError: Failed to extract model data archive from URL "s3://')
    assert "\n" not in d["FailureReason"]
    client.delete_endpoint(EndpointName="upd")
    with pytest.raises(ClientError, match='Could not find endpoint "upd"'):
        client.describe_endpoint(EndpointName="upd")


def test_transform_job_honours_data_processing(env, served):
    client = sm()
    scoring = "id-1,8221,6,4,1,1,1,Buick,sedan\nid-2,20105,6,4,1,0,0,Buick,sedan\n"
    s3().put_object(Bucket=BUCKET, Key="batch/in/scoring.csv", Body=scoring.encode())
    request = {
        "TransformJobName": "batch-1",
        "ModelName": "xgb-1",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/batch/in"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/batch/out", "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "DataProcessing": {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
    }
    client.create_transform_job(**request)
    d = env["backend"].wait("transform", "batch-1", 120)
    assert d["TransformJobStatus"] == "Completed", d.get("FailureReason")
    out = s3().get_object(Bucket=BUCKET, Key="batch/out/scoring.csv.out")["Body"].read().decode().splitlines()
    assert [line.split(",")[0] for line in out] == ["id-1", "id-2"]
    assert all(float(line.split(",")[1]) > 0 for line in out)

    s3().put_object(Bucket=BUCKET, Key="batch/bad/a.csv", Body=b"id-1,8221,6,4,1,1,1,Buick,sedan\n")
    s3().put_object(Bucket=BUCKET, Key="batch/bad/b.csv", Body=b"id-9,1,2\n")
    bad = {**request, "TransformJobName": "batch-bad"}
    bad["TransformInput"] = {**request["TransformInput"], "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/batch/bad"}}}  # fmt: skip
    bad["TransformOutput"] = {**request["TransformOutput"], "S3OutputPath": f"s3://{BUCKET}/batch/bad-out"}
    client.create_transform_job(**bad)
    d = env["backend"].wait("transform", "batch-bad", 120)
    assert d["TransformJobStatus"] == "Failed"
    assert "b.csv" in d["FailureReason"] and "expected 8 features" in d["FailureReason"]
    assert not keys("batch/bad-out/")  # no partial output


def test_close_stops_every_server_and_job(env, served, tmp_path):
    """A second backend on the same S3: an endpoint in service, one starting, a training job running; close()."""
    runner = LocalRunner("tests")
    backend = LocalSageMaker(tmp_path, runner, REGION)
    config = {
        "EndpointConfigName": "cfg-close",
        "ProductionVariants": [{"VariantName": "V", "ModelName": "m", "InstanceType": "ml.m5.large"}],
    }
    backend.handle(
        "CreateModel", {"ModelName": "m", "PrimaryContainer": {"Image": XGBOOST, "ModelDataUrl": served["model_url"]}}
    )
    backend.handle("CreateEndpointConfig", config)
    backend.handle("CreateEndpoint", {"EndpointName": "up", "EndpointConfigName": "cfg-close"})
    assert backend.wait("endpoint", "up", 120)["EndpointStatus"] == "InService"
    url = backend.endpoint_url("up")
    backend.handle("CreateTrainingJob", training_request("long", {**FAST, "num_round": "100000", "eta": "0.01",
                                                                   "early_stopping_rounds": "0"}))  # fmt: skip
    backend.handle("CreateEndpoint", {"EndpointName": "starting", "EndpointConfigName": "cfg-close"})
    deadline = time.monotonic() + 30
    while not runner._procs and time.monotonic() < deadline:
        time.sleep(0.05)
    procs = list(runner._procs.values()) + [s.process for s in runner._servers]
    assert procs
    backend.close()
    backend.close()  # idempotent
    assert not runner._servers and not runner._procs
    assert all(p.poll() is not None for p in procs)
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/ping", timeout=2)
    with pytest.raises(SageMakerError, match="closed"):
        backend.handle("DescribeEndpoint", {"EndpointName": "up"})
    assert [j.status for j in backend.jobs() if j.name == "long"] == ["Stopped"]


def test_handle_without_boto3_answers_errors(tmp_path):
    backend = LocalSageMaker(tmp_path, LocalRunner("tests"))
    with pytest.raises(SageMakerError) as e:
        backend.handle("ListTrainingJobs", {})
    assert e.value.code == "UnknownOperationException"
    with pytest.raises(SageMakerError) as e:
        backend.handle("DescribeTrainingJob", {"TrainingJobName": 3})
    assert e.value.code == "ValidationException" and "TrainingJobName" in e.value.message
    backend.close()


def test_intercept_is_inert_without_a_backend():
    saved = intercept.installed_backend()
    intercept.uninstall()
    try:
        with mock_aws():
            assert sm().list_training_jobs()["TrainingJobSummaries"] == []  # moto answers
    finally:
        if saved is not None:
            intercept.install(saved)


@pytest.mark.container
def test_training_job_through_the_docker_runner(env, tmp_path):
    """The ECR URI build_push.sh prints resolves to the locally built image; the job runs in its container."""
    usable, found = docker_status()
    if not usable:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{found} (CI=true: container tests must run, not skip)", pytrace=False)
        pytest.skip(found)
    runner = DockerRunner(found)
    with LocalSageMaker(tmp_path, runner, REGION) as backend:
        backend.handle("CreateTrainingJob", training_request("docker-train"))
        d = backend.wait("training", "docker-train", 300)
        assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
        assert {m["MetricName"] for m in d["FinalMetricDataList"]} >= {"train:rmse", "test:rmse"}
        assert "models/docker-train/output/model.tar.gz" in keys("models/docker-train/")
        request = training_request("docker-missing-image")
        request["AlgorithmSpecification"]["TrainingImage"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/nope:1"
        backend.handle("CreateTrainingJob", request)
        d = backend.wait("training", "docker-missing-image", 60)
        assert d["TrainingJobStatus"] == "Failed"
        assert d["FailureReason"].startswith("ClientError: image 123456789012.dkr.ecr.us-east-1.amazonaws.com/nope:1")
    assert not runner.names  # every container removed
