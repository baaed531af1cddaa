"""The training pipeline: one state machine that preprocesses, trains, gates and deploys either algorithm.

The execution input names everything a run varies (see ``EXAMPLE_INPUT``); the deployment fixes four things
through DefinitionSubstitutions: ``${NotificationTopicArn}``, ``${QueryMetricsFunctionArn}``,
``${CompareBestFunctionArn}`` and ``${SageMakerRoleArn}`` (the jobs' and models' role: a fixed role, not an input,
so that ``iam:PassRole`` can name exactly one role). Names of jobs, model and endpoint config end with the
execution name, so one execution's resources are found by that name; the endpoint is
``<NamePrefix>-<Algorithm>`` and survives runs.
SSM parameters written: ``/<NamePrefix>/<Algorithm>/latest-model`` (every trained model) and
``/<NamePrefix>/<Algorithm>/deployment`` (JSON: what the endpoint serves now, its RMSE and baselines).
"""

from __future__ import annotations

from typing import Any

from algorithms import metrics
from pipelines import asl

TOPIC = "${NotificationTopicArn}"
QUERY_METRICS = "${QueryMetricsFunctionArn}"
COMPARE_BEST = "${CompareBestFunctionArn}"
SINGLE_RUN = "${SingleRunFunctionArn}"
# The deployment's SageMaker execution role: the only role the state machine may pass (iam:PassRole).
ROLE = "${SageMakerRoleArn}"
SUBSTITUTIONS = (
    "NotificationTopicArn",
    "QueryMetricsFunctionArn",
    "CompareBestFunctionArn",
    "SingleRunFunctionArn",
    "SageMakerRoleArn",
)

VARIANT = "AllTraffic"
PROCESSING = "/opt/ml/processing"
CSV = "text/csv"

# Hyperparameters of the examples and local runs (strings, as CreateTrainingJob takes them).
HYPERPARAMETERS = {
    "xgboost": {"num_round": "500", "eta": "0.05", "max_depth": "4", "early_stopping_rounds": "30", "seed": "0"},
    "linear": {"predictor_type": "regressor", "epochs": "30"},
}

# What an execution is started with; the README documents each field from this example.
EXAMPLE_INPUT: dict[str, Any] = {
    "Algorithm": "xgboost",
    "NamePrefix": "cars",
    "DataUri": "s3://byoc-artifacts-123456789012/data/training/",
    "ArtifactsUri": "s3://byoc-artifacts-123456789012/pipelines",
    "TrainingImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/byoc-xgboost@sha256:<digest>",
    "ProcessingImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/byoc-monitor@sha256:<digest>",
    "ProcessingInstanceType": "ml.m5.large",
    "TrainingInstanceType": "ml.m5.large",
    "TrainingInstanceCount": 1,
    "HyperParameters": HYPERPARAMETERS["xgboost"],
    "UseSpotInstances": False,
    "MaxRuntimeSeconds": 3600,
    "MaxWaitSeconds": 7200,
    "RmseThreshold": 4000,
    "EndpointInstanceType": "ml.m5.large",
    "MinInstances": 1,
    "MaxInstances": 2,
    "TargetInvocationsPerInstance": 1000,
    "CaptureSamplingPercentage": 100,
    "PollSeconds": 30,
}

# State names, in flow order (also the diagram's labels).
NAMES = "Name the run"
GUARD = "Another run in progress?"
PROCEED = "Proceed?"
NOTIFY_SKIPPED = "Notify skipped"
SKIPPED = "Skipped"
PREPROCESS = "Preprocess data"
CHOOSE_STOPPING = "Spot training?"
SPOT = "Spot stopping condition"
ON_DEMAND = "On-demand stopping condition"
TRAIN = "Train model"
SAVE_MODEL = "Save model"
RECORD_LATEST = "Record latest model"
QUERY_METRICS_STATE = "Query training metrics"
RMSE_GATE = "RMSE under threshold?"
NOTIFY_REJECTED = "Notify rejected"
REJECTED = "Rejected"
COMPARE = "Compare with best"
BETTER = "Better than best?"
NOTIFY_KEPT = "Notify kept"
KEPT = "Kept current model"
BASELINES = "Create baselines"
DATA_BASELINE = "Data-quality baseline"
VALIDATION_PREDICTIONS = "Predict validation split"
QUALITY_BASELINE = "Model-quality baseline"
ENDPOINT_CONFIG = "Create endpoint config"
DESCRIBE_EXISTING = "Describe endpoint"
ABSENT = "Endpoint absent?"
EXISTING_STATE = "Endpoint state?"
DELETE_FAILED = "Delete failed endpoint"
WAIT_DELETED = "Wait for deletion"
CHECK_DELETED = "Check deletion"
CREATE_ENDPOINT = "Create endpoint"
UPDATE_ENDPOINT = "Update endpoint"
WAIT_ENDPOINT = "Wait for endpoint"
DESCRIBE_ENDPOINT = "Check endpoint"
ENDPOINT_READY = "Endpoint in service?"
SERVES_NEW = "Serves new config?"
REGISTER_SCALING = "Register auto scaling"
SCALING_POLICY = "Put scaling policy"
DEPLOYMENT_RECORD = "Deployment record"
EXPORT = "Export deployment"
NOTIFY_DEPLOYED = "Notify deployed"
DEPLOYED = "Deployed"
NOTIFY_ENDPOINT_FAILED = "Read endpoint failure"
NOTIFY_ENDPOINT_FAILURE = "Notify endpoint failure"
ENDPOINT_FAILED = "Endpoint failed"
NOTIFY_FAILURE = "Notify failure"
FAILED = "Pipeline failed"


def _run_path(*parts: str) -> str:
    """An S3 URI under this run's folder: ``<ArtifactsUri>/<Algorithm>/<execution>/<parts>``."""
    return f"States.Format('{{}}/{{}}/{{}}/{'/'.join(parts)}', $.ArtifactsUri, $.Algorithm, $$.Execution.Name)"


def _name(kind: str) -> str:
    return f"States.Format('{{}}-{{}}-{kind}-{{}}', $.NamePrefix, $.Algorithm, $$.Execution.Name)"


def processing_job(
    name_path: str,
    arguments: list[str] | str,
    inputs: dict[str, str],
    output_name: str,
    output_uri_path: str,
    **kw: Any,
) -> dict[str, Any]:
    """CreateProcessingJob on our processing image: ``inputs`` maps input names to JSONPaths of S3 URIs;
    ``arguments`` a list, or an intrinsic expression (``States.Array(...)``) when one of them is dynamic."""
    params: dict[str, Any] = {
        "ProcessingJobName.$": name_path,
        "RoleArn": ROLE,
        "AppSpecification": {
            "ImageUri.$": "$.ProcessingImage",
            ("ContainerArguments.$" if isinstance(arguments, str) else "ContainerArguments"): arguments,
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType.$": "$.ProcessingInstanceType",
                "VolumeSizeInGB": 30,
            }
        },
        "ProcessingInputs": [
            {
                "InputName": input_name,
                "S3Input": {
                    "S3Uri.$": uri_path,
                    "LocalPath": f"{PROCESSING}/input/{input_name}",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
            for input_name, uri_path in inputs.items()
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": output_name,
                    "S3Output": {
                        "S3Uri.$": output_uri_path,
                        "LocalPath": f"{PROCESSING}/{output_name}",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "StoppingCondition": {"MaxRuntimeInSeconds.$": "$.MaxRuntimeSeconds"},
    }
    return params


def _baseline_environment(model_quality: bool) -> dict[str, Any]:
    env = {
        "dataset_source": f"{PROCESSING}/input/baseline_dataset",
        "dataset_format": '{"csv": {"header": false}}',
        "output_path": f"{PROCESSING}/baseline",
    }
    if model_quality:
        env["analysis_type"] = "MODEL_QUALITY"
    return env


def _baseline_job(name_path: str, dataset_path: str, output_path: str, *, model_quality: bool, **kw: Any):
    """Our monitor image's ``baseline`` as a processing job (data quality, or model quality from predictions)."""
    return asl.sagemaker(
        "createProcessingJob",
        {
            **processing_job(
                name_path,
                ["baseline", "--model-quality"] if model_quality else ["baseline"],
                {"baseline_dataset": dataset_path},
                "baseline",
                output_path,
            ),
            "Environment": _baseline_environment(model_quality),
        },
        sync=True,
        result_path=None,
        **kw,
    )


def _baselines(on_error: str) -> dict[str, Any]:
    """Data quality on the train split, and model quality on the new model's validation predictions."""
    data_quality = _baseline_job(
        "$.Names.DataBaselineJob",
        "$.Splits.Train",
        "$.Names.DataBaselineUri",
        model_quality=False,
        on_error=on_error,
        comment="statistics.json and constraints.json of the training data (our monitor image, `baseline`)",
    )
    predictions = asl.sagemaker(
        "createTransformJob",
        {
            "TransformJobName.$": "$.Names.ValidationTransformJob",
            "ModelName.$": "$.Names.Model",
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": 6,
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": "$.Splits.ValidationFile"}},
                "ContentType": CSV,
                "SplitType": "Line",
            },
            "TransformOutput": {"S3OutputPath.$": "$.Names.ValidationPredictionsUri", "Accept": CSV,
                                "AssembleWith": "Line"},
            "TransformResources": {"InstanceCount": 1, "InstanceType.$": "$.EndpointInstanceType"},
            # label-first validation rows: send the features, keep (label, prediction) for the quality baseline
            "DataProcessing": {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
        },
        sync=True,
        on_error=on_error,
        next_state=QUALITY_BASELINE,
        result_path=None,
        comment="The new model's predictions on the validation split, each next to its label",
    )  # fmt: skip
    model_quality = _baseline_job(
        "$.Names.QualityBaselineJob",
        "$.Names.ValidationPredictionsUri",
        "$.Names.QualityBaselineUri",
        model_quality=True,
        on_error=on_error,
        comment="regression metrics and constraints from (label, prediction) pairs",
    )
    # Branch errors surface as the Parallel state's error, which the Parallel's own Catch notifies.
    for state in (data_quality, predictions, model_quality):
        del state["Catch"]
    return {
        "Type": "Parallel",
        "Comment": "Both baselines at once; the endpoint is only touched when both exist",
        "Branches": [
            {"StartAt": DATA_BASELINE, "States": {DATA_BASELINE: data_quality}},
            {
                "StartAt": VALIDATION_PREDICTIONS,
                "States": {VALIDATION_PREDICTIONS: predictions, QUALITY_BASELINE: model_quality},
            },
        ],
        "ResultPath": None,  # where the baselines are is known from the run's names
        "Catch": asl.catch(on_error),
        "Next": ENDPOINT_CONFIG,
    }


def definition() -> dict[str, Any]:
    err = NOTIFY_FAILURE
    states: dict[str, Any] = {}

    states[NAMES] = {
        "Type": "Pass",
        "Comment": "Every name and S3 location of this run, derived once from the input and the execution name",
        "Parameters": {
            "ProcessingJob.$": _name("prep"),
            "TrainingJob.$": _name("train"),
            "Model.$": _name("model"),
            "DataBaselineJob.$": _name("dq"),
            "ValidationTransformJob.$": _name("val"),
            "QualityBaselineJob.$": _name("mq"),
            "EndpointConfig.$": _name("config"),
            "Endpoint.$": "States.Format('{}-{}', $.NamePrefix, $.Algorithm)",
            "ScalingResourceId.$": f"States.Format('endpoint/{{}}-{{}}/variant/{VARIANT}', $.NamePrefix, $.Algorithm)",
            "ScalingPolicy.$": "States.Format('{}-{}-invocations', $.NamePrefix, $.Algorithm)",
            "LatestModelParameter.$": "States.Format('/{}/{}/latest-model', $.NamePrefix, $.Algorithm)",
            "DeploymentParameter.$": "States.Format('/{}/{}/deployment', $.NamePrefix, $.Algorithm)",
            "PreprocessedUri.$": _run_path("preprocessed"),
            "TrainingOutputUri.$": _run_path("training"),
            "CheckpointUri.$": _run_path("checkpoints"),
            "DataBaselineUri.$": _run_path("baselines", "data-quality"),
            "ValidationPredictionsUri.$": _run_path("validation-predictions"),
            "QualityBaselineUri.$": _run_path("baselines", "model-quality"),
            "CaptureUri.$": "States.Format('{}/datacapture', $.ArtifactsUri)",
        },
        "ResultPath": "$.Names",
        "Next": GUARD,
    }
    states[GUARD] = asl.invoke(
        SINGLE_RUN,
        {
            "StateMachineArn.$": "$$.StateMachine.Id",
            "ExecutionArn.$": "$$.Execution.Id",
            "StartTime.$": "$$.Execution.StartTime",
            "KeyField": "Algorithm",
            "Key.$": "$.Algorithm",
        },
        on_error=err,
        next_state=PROCEED,
        result_path="$.Guard",
        result_selector={"Proceed.$": "$.Payload.Proceed", "Reason.$": "$.Payload.Reason"},
        comment="One training run per algorithm at a time, whoever starts it: new data, the retraining loop, a person",
    )
    states[PROCEED] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.Guard.Proceed", "BooleanEquals": True, "Next": PREPROCESS}],
        "Default": NOTIFY_SKIPPED,
    }
    states[NOTIFY_SKIPPED] = asl.publish(
        TOPIC,
        "States.Format('{} {}: training run skipped', $.NamePrefix, $.Algorithm)",
        "States.Format('Training run {} did not start: {}. Its data: {}', $$.Execution.Name, $.Guard.Reason, "
        "$.DataUri)",
        next_state=SKIPPED,
        on_error=FAILED,
    )
    states[SKIPPED] = asl.succeed("Another training run was in progress; this one did nothing")
    states[PREPROCESS] = asl.sagemaker(
        "createProcessingJob",
        processing_job(
            "$.Names.ProcessingJob",
            ["preprocess", "--input", f"{PROCESSING}/input/data", "--output", f"{PROCESSING}/output"],
            {"data": "$.DataUri"},
            "output",
            "$.Names.PreprocessedUri",
        ),
        sync=True,
        on_error=err,
        next_state=CHOOSE_STOPPING,
        comment="Feature preparation and the train/validation/test split (our processing image, `preprocess`)",
        result_selector={
            "Train.$": "States.Format('{}/train/', $.ProcessingOutputConfig.Outputs[0].S3Output.S3Uri)",
            "Validation.$": "States.Format('{}/validation/', $.ProcessingOutputConfig.Outputs[0].S3Output.S3Uri)",
            "ValidationFile.$": "States.Format('{}/validation/validation.csv', "
            "$.ProcessingOutputConfig.Outputs[0].S3Output.S3Uri)",
            "Test.$": "States.Format('{}/test/', $.ProcessingOutputConfig.Outputs[0].S3Output.S3Uri)",
        },
        result_path="$.Splits",
    )
    states[CHOOSE_STOPPING] = {
        "Type": "Choice",
        "Comment": "Managed spot training needs a wait limit; on-demand training must not have one",
        "Choices": [{"Variable": "$.UseSpotInstances", "BooleanEquals": True, "Next": SPOT}],
        "Default": ON_DEMAND,
    }
    states[SPOT] = {
        "Type": "Pass",
        "Parameters": {"MaxRuntimeInSeconds.$": "$.MaxRuntimeSeconds", "MaxWaitTimeInSeconds.$": "$.MaxWaitSeconds"},
        "ResultPath": "$.StoppingCondition",
        "Next": TRAIN,
    }
    states[ON_DEMAND] = {
        "Type": "Pass",
        "Parameters": {"MaxRuntimeInSeconds.$": "$.MaxRuntimeSeconds"},
        "ResultPath": "$.StoppingCondition",
        "Next": TRAIN,
    }
    channel = {"ContentType": CSV, "CompressionType": "None", "RecordWrapperType": "None", "InputMode": "File"}
    states[TRAIN] = asl.sagemaker(
        "createTrainingJob",
        {
            "TrainingJobName.$": "$.Names.TrainingJob",
            "RoleArn": ROLE,
            "AlgorithmSpecification": {
                "TrainingImage.$": "$.TrainingImage",
                "TrainingInputMode": "File",
                "MetricDefinitions": metrics.metric_definitions(),
            },
            "HyperParameters.$": "$.HyperParameters",
            "InputDataConfig": [
                {
                    "ChannelName": split,
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri.$": f"$.Splits.{split.capitalize()}",
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                    **channel,
                }
                for split in ("train", "validation", "test")
            ],
            "OutputDataConfig": {"S3OutputPath.$": "$.Names.TrainingOutputUri"},
            "ResourceConfig": {
                "InstanceCount.$": "$.TrainingInstanceCount",
                "InstanceType.$": "$.TrainingInstanceType",
                "VolumeSizeInGB": 30,
            },
            "StoppingCondition.$": "$.StoppingCondition",
            "EnableManagedSpotTraining.$": "$.UseSpotInstances",
            "CheckpointConfig": {"S3Uri.$": "$.Names.CheckpointUri", "LocalPath": "/opt/ml/checkpoints"},
        },
        sync=True,
        on_error=err,
        next_state=SAVE_MODEL,
        comment="Our training image; MetricDefinitions turn its #metrics log lines into FinalMetricDataList",
        result_selector={
            "TrainingJobName.$": "$.TrainingJobName",
            "ModelArtifacts.$": "$.ModelArtifacts.S3ModelArtifacts",
        },
        result_path="$.Training",
    )
    states[SAVE_MODEL] = asl.sagemaker(
        "createModel",
        {
            "ModelName.$": "$.Names.Model",
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {"Image.$": "$.TrainingImage", "ModelDataUrl.$": "$.Training.ModelArtifacts"},
        },
        on_error=err,
        next_state=RECORD_LATEST,
        result_path=None,
    )
    states[RECORD_LATEST] = asl.aws_sdk(
        "ssm",
        "putParameter",
        {"Name.$": "$.Names.LatestModelParameter", "Value.$": "$.Names.Model", "Type": "String", "Overwrite": True},
        on_error=err,
        next_state=QUERY_METRICS_STATE,
        result_path=None,
        comment="Every trained model is recorded, deployed or not",
    )
    states[QUERY_METRICS_STATE] = asl.invoke(
        QUERY_METRICS,
        {"TrainingJobName.$": "$.Training.TrainingJobName", "MetricName": "test:rmse"},
        on_error=err,
        next_state=RMSE_GATE,
        result_path="$.Evaluation",
        result_selector={"Rmse.$": "$.Payload.Rmse", "Metrics.$": "$.Payload.Metrics", "Source.$": "$.Payload.Source"},
        comment="Test RMSE from FinalMetricDataList, else from evaluation.json in the job's output",
    )
    states[RMSE_GATE] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.Evaluation.Rmse", "NumericLessThanEqualsPath": "$.RmseThreshold", "Next": COMPARE}],
        "Default": NOTIFY_REJECTED,
    }
    states[NOTIFY_REJECTED] = asl.publish(
        TOPIC,
        "States.Format('{} {} model rejected: RMSE above threshold', $.NamePrefix, $.Algorithm)",
        "States.Format('Training run {} rejected the {} model {}: test RMSE {} is above the threshold {}. "
        "The endpoint was not touched. Metrics: {}', $$.Execution.Name, $.Algorithm, $.Names.Model, "
        "$.Evaluation.Rmse, $.RmseThreshold, States.JsonToString($.Evaluation.Metrics))",
        next_state=REJECTED,
        on_error=FAILED,
    )
    states[REJECTED] = asl.fail("RmseAboveThreshold", "The model's test RMSE is above the threshold")
    states[COMPARE] = asl.invoke(
        COMPARE_BEST,
        {"ParameterName.$": "$.Names.DeploymentParameter", "Rmse.$": "$.Evaluation.Rmse"},
        on_error=err,
        next_state=BETTER,
        result_path="$.Comparison",
        result_selector={"IsBetter.$": "$.Payload.IsBetter", "Reason.$": "$.Payload.Reason"},
        comment="The deployed model's RMSE, from the deployment record in SSM",
    )
    states[BETTER] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.Comparison.IsBetter", "BooleanEquals": True, "Next": BASELINES}],
        "Default": NOTIFY_KEPT,
    }
    states[NOTIFY_KEPT] = asl.publish(
        TOPIC,
        "States.Format('{} {}: kept the current model', $.NamePrefix, $.Algorithm)",
        "States.Format('Training run {} kept the current {} model: {} The new model {} was not deployed.', "
        "$$.Execution.Name, $.Algorithm, $.Comparison.Reason, $.Names.Model)",
        next_state=KEPT,
        on_error=FAILED,
    )
    states[KEPT] = asl.succeed("The deployed model is at least as good; the endpoint was not touched")
    states[BASELINES] = _baselines(err)
    states[ENDPOINT_CONFIG] = asl.sagemaker(
        "createEndpointConfig",
        {
            "EndpointConfigName.$": "$.Names.EndpointConfig",
            "ProductionVariants": [
                {
                    "VariantName": VARIANT,
                    "ModelName.$": "$.Names.Model",
                    "InstanceType.$": "$.EndpointInstanceType",
                    "InitialInstanceCount.$": "$.MinInstances",
                }
            ],
            "DataCaptureConfig": {
                "EnableCapture": True,
                "InitialSamplingPercentage.$": "$.CaptureSamplingPercentage",
                "DestinationS3Uri.$": "$.Names.CaptureUri",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {
                    "CsvContentTypes": [CSV],
                    "JsonContentTypes": ["application/json", "application/jsonlines"],
                },
            },
        },
        on_error=err,
        next_state=DESCRIBE_EXISTING,
        result_path=None,
    )
    states[DESCRIBE_EXISTING] = asl.aws_sdk(
        "sagemaker",
        "describeEndpoint",
        {"EndpointName.$": "$.Names.Endpoint"},
        on_error=err,
        next_state=EXISTING_STATE,
        result_selector={"Status.$": "$.EndpointStatus"},
        result_path="$.Existing",
        # DescribeEndpoint answers an absent endpoint with an unmodeled ValidationException
        extra_catch=asl.catch(ABSENT, ["SageMaker.SageMakerException"], "$.DescribeError"),
    )
    states[ABSENT] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.DescribeError.Cause", "StringMatches": "*Could not find endpoint*",
                     "Next": CREATE_ENDPOINT}],
        "Default": NOTIFY_FAILURE,
    }  # fmt: skip
    states[EXISTING_STATE] = {
        "Type": "Choice",
        "Comment": "A failed endpoint cannot be updated: delete it and create it again",
        "Choices": [{"Variable": "$.Existing.Status", "StringEquals": "Failed", "Next": DELETE_FAILED}],
        "Default": UPDATE_ENDPOINT,
    }
    states[DELETE_FAILED] = asl.sagemaker(
        "deleteEndpoint",
        {"EndpointName.$": "$.Names.Endpoint"},
        on_error=err,
        next_state=WAIT_DELETED,
        result_path=None,
    )
    states[WAIT_DELETED] = asl.wait("$.PollSeconds", CHECK_DELETED)
    states[CHECK_DELETED] = asl.aws_sdk(
        "sagemaker",
        "describeEndpoint",
        {"EndpointName.$": "$.Names.Endpoint"},
        on_error=err,
        next_state=WAIT_DELETED,
        result_path=None,
        extra_catch=asl.catch(ABSENT, ["SageMaker.SageMakerException"], "$.DescribeError"),
    )
    states[CREATE_ENDPOINT] = asl.sagemaker(
        "createEndpoint",
        {"EndpointName.$": "$.Names.Endpoint", "EndpointConfigName.$": "$.Names.EndpointConfig"},
        on_error=err,
        next_state=WAIT_ENDPOINT,
        result_path=None,
    )
    states[UPDATE_ENDPOINT] = asl.sagemaker(
        "updateEndpoint",
        {"EndpointName.$": "$.Names.Endpoint", "EndpointConfigName.$": "$.Names.EndpointConfig"},
        on_error=err,
        next_state=WAIT_ENDPOINT,
        result_path=None,
        comment="Same variant name and instance type, so the auto-scaling target and policy stay valid",
    )
    states[WAIT_ENDPOINT] = asl.wait("$.PollSeconds", DESCRIBE_ENDPOINT)
    states[DESCRIBE_ENDPOINT] = asl.aws_sdk(
        "sagemaker",
        "describeEndpoint",
        {"EndpointName.$": "$.Names.Endpoint"},
        on_error=err,
        next_state=ENDPOINT_READY,
        result_selector={
            "Status.$": "$.EndpointStatus",
            "EndpointConfigName.$": "$.EndpointConfigName",
            "EndpointArn.$": "$.EndpointArn",
        },
        result_path="$.Endpoint",
    )
    states[ENDPOINT_READY] = {
        "Type": "Choice",
        "Choices": [
            {"Variable": "$.Endpoint.Status", "StringEquals": "InService", "Next": SERVES_NEW},
            {"Variable": "$.Endpoint.Status", "StringEquals": "Failed", "Next": NOTIFY_ENDPOINT_FAILED},
        ],
        "Default": WAIT_ENDPOINT,
    }
    states[SERVES_NEW] = {
        "Type": "Choice",
        "Comment": "A failed update rolls back: the endpoint is InService with the old config",
        "Choices": [
            {"Variable": "$.Endpoint.EndpointConfigName", "StringEqualsPath": "$.Names.EndpointConfig",
             "Next": REGISTER_SCALING}
        ],
        "Default": NOTIFY_ENDPOINT_FAILED,
    }  # fmt: skip
    states[REGISTER_SCALING] = asl.aws_sdk(
        "applicationautoscaling",
        "registerScalableTarget",
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId.$": "$.Names.ScalingResourceId",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "MinCapacity.$": "$.MinInstances",
            "MaxCapacity.$": "$.MaxInstances",
        },
        on_error=err,
        next_state=SCALING_POLICY,
        result_path=None,
        comment="Idempotent: on an update it sets the same target again",
    )
    states[SCALING_POLICY] = asl.aws_sdk(
        "applicationautoscaling",
        "putScalingPolicy",
        {
            "PolicyName.$": "$.Names.ScalingPolicy",
            "ServiceNamespace": "sagemaker",
            "ResourceId.$": "$.Names.ScalingResourceId",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue.$": "$.TargetInvocationsPerInstance",
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        },
        on_error=err,
        next_state=DEPLOYMENT_RECORD,
        result_path=None,
    )
    states[DEPLOYMENT_RECORD] = {
        "Type": "Pass",
        "Parameters": {
            "Algorithm.$": "$.Algorithm",
            "EndpointName.$": "$.Names.Endpoint",
            "EndpointConfigName.$": "$.Names.EndpointConfig",
            "ModelName.$": "$.Names.Model",
            "TrainingJobName.$": "$.Training.TrainingJobName",
            "ModelArtifacts.$": "$.Training.ModelArtifacts",
            "Rmse.$": "$.Evaluation.Rmse",
            "Metrics.$": "$.Evaluation.Metrics",
            "DataQualityBaselineUri.$": "$.Names.DataBaselineUri",
            "ModelQualityBaselineUri.$": "$.Names.QualityBaselineUri",
            "CaptureUri.$": "$.Names.CaptureUri",
            "SchemaUri.$": "States.Format('{}schema.json', $.Splits.Train)",
            "ExecutionName.$": "$$.Execution.Name",
            "DeployedAt.$": "$$.State.EnteredTime",
        },
        "ResultPath": "$.Deployment",
        "Next": EXPORT,
    }
    states[EXPORT] = asl.aws_sdk(
        "ssm",
        "putParameter",
        {
            "Name.$": "$.Names.DeploymentParameter",
            "Value.$": "States.JsonToString($.Deployment)",
            "Type": "String",
            "Overwrite": True,
        },
        on_error=err,
        next_state=NOTIFY_DEPLOYED,
        result_path=None,
        comment="One parameter, one write: readers never see half a deployment",
    )
    states[NOTIFY_DEPLOYED] = asl.publish(
        TOPIC,
        "States.Format('{} {} model deployed', $.NamePrefix, $.Algorithm)",
        "States.Format('Training run {} deployed the {} model {} to endpoint {} (test RMSE {}; {}). Record: {}', "
        "$$.Execution.Name, $.Algorithm, $.Names.Model, $.Names.Endpoint, $.Evaluation.Rmse, $.Comparison.Reason, "
        "States.JsonToString($.Deployment))",
        next_state=DEPLOYED,
        on_error=FAILED,
    )
    states[DEPLOYED] = {"Type": "Pass", "InputPath": "$.Deployment", "End": True}
    states[NOTIFY_ENDPOINT_FAILED] = {
        "Type": "Task",
        "Comment": "The endpoint's own reason (DescribeEndpoint FailureReason)",
        "Resource": asl.AWS_SDK + "sagemaker:describeEndpoint",
        "Parameters": {"EndpointName.$": "$.Names.Endpoint"},
        "ResultSelector": {"Reason.$": "States.Format('{}: {}', $.EndpointStatus, $.FailureReason)"},
        "ResultPath": "$.EndpointFailure",
        "Retry": asl.retry("aws-sdk:sagemaker"),
        "Catch": asl.catch(NOTIFY_FAILURE),
        "Next": NOTIFY_ENDPOINT_FAILURE,
    }
    states[NOTIFY_ENDPOINT_FAILURE] = asl.publish(
        TOPIC,
        "States.Format('{} {}: endpoint deployment failed', $.NamePrefix, $.Algorithm)",
        "States.Format('Training run {} could not deploy {} to endpoint {} with config {}: {}', "
        "$$.Execution.Name, $.Names.Model, $.Names.Endpoint, $.Names.EndpointConfig, $.EndpointFailure.Reason)",
        next_state=ENDPOINT_FAILED,
        on_error=FAILED,
    )
    states[ENDPOINT_FAILED] = asl.fail("EndpointFailed", "The endpoint did not come into service with the new model")
    states |= asl.failure(
        TOPIC,
        "States.Format('{} {} training pipeline failed', $.NamePrefix, $.Algorithm)",
        "States.Format('Training run {} failed. Error: {}. Cause: {}', $$.Execution.Name, $.Error.Error, "
        "$.Error.Cause)",
        NOTIFY_FAILURE,
        FAILED,
    )
    return asl.machine(
        "Preprocess, train, gate and deploy one algorithm with the BYOC images; notify SNS on every outcome",
        NAMES,
        states,
    )
