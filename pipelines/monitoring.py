"""The monitoring pipeline: on a schedule, monitor what arrived since the last run (real-time data capture and
batch scoring outputs) against the deployed models' baselines, evaluate the drift, and optionally start
retraining.

``Find new data`` (a Lambda; its bookmark in SSM is the stand-in for Glue job bookmarks) lists the new data per
deployed model; with nothing new the run ends at once. Each new source is one processing job on our monitor
image: data quality always, model quality too when ground truth exists (a Choice on what the listing found).
With ``MonitorInstanceCount`` > 1 that job runs on several instances (capture objects ShardedByS3Key), each
writing its sketches under ``hosts/<host>/``, and a one-instance ``merge`` job writes the run's outputs.
The evaluate-drift Lambda (``monitoring.evaluate``) publishes the violations to SNS. The bookmark advances only
when every source was monitored. With ``Retrain.Enabled`` and drift found, the training state machine is
started once per listed input, named after this run (so a retried run cannot start it twice); the training
machine's own single-run guard keeps drift from running more than one training at a time.
"""

from __future__ import annotations

from typing import Any

from pipelines import asl, training

TOPIC = training.TOPIC
ROLE = training.ROLE
FIND_NEW_DATA = "${FindNewDataFunctionArn}"
EVALUATE = "${EvaluateDriftFunctionArn}"
TRAINING_MACHINE = "${TrainingStateMachineArn}"
SUBSTITUTIONS = (
    "NotificationTopicArn",
    "SageMakerRoleArn",
    "FindNewDataFunctionArn",
    "EvaluateDriftFunctionArn",
    "TrainingStateMachineArn",
)
PROCESSING = training.PROCESSING

EXAMPLE_INPUT: dict[str, Any] = {
    "NamePrefix": "cars",
    "ArtifactsUri": "s3://byoc-artifacts-123456789012/pipelines",
    "ProcessingImage": training.EXAMPLE_INPUT["ProcessingImage"],
    "ProcessingInstanceType": "ml.m5.large",
    "Algorithms": ["xgboost", "linear"],
    "MaxRuntimeSeconds": 3600,
    "MonitorInstanceCount": 1,  # > 1: each monitor job on that many instances (ShardedByS3Key), then a merge job
    "AlertAfterConsecutive": 1,
    "Retrain": {"Enabled": False, "Inputs": []},  # Inputs: training pipeline inputs (training.EXAMPLE_INPUT)
}

NAMES = "Name the run"
FIND = "Find new data"
ANYTHING_NEW = "Anything new?"
NOTHING_NEW = "Nothing new"
MONITOR_EACH = "Monitor each source"
GROUND_TRUTH = "Ground truth?"
DATA_AND_QUALITY = "Monitor data and model quality"
DATA_ONLY = "Monitor data quality"
SEVERAL_HOSTS = "Several instances?"
MERGE_QUALITY = "Merge the hosts' data and model quality"
MERGE_DATA = "Merge the hosts' data quality"
EVALUATE_STATE = "Evaluate drift"
SUMMARY = "Summarise"
ADVANCE = "Advance bookmark"
APPEND = "Append drift results"
DRIFTED = "Drift found"
RETRAIN_WANTED = "Retrain?"
RETRAIN = "Start retraining"
START_TRAINING = "Start training"
NOTIFY_RETRAINING = "Notify retraining"
DONE = "Monitored"
NOTIFY_FAILURE = "Notify failure"
FAILED = "Pipeline failed"


def _environment(ground_truth: bool) -> str:
    environment = "States.JsonMerge($.Environment, $.Run.Environment, false)"
    if ground_truth:
        environment = f"States.JsonMerge({environment}, $.QualityEnvironment, false)"
    return environment


def _monitor_job(ground_truth: bool, next_state: str) -> dict[str, Any]:
    """Our monitor image's ``monitor`` on one source (``$`` is a Map item: the listing's run plus context). The
    listing gives what depends on the kind of source (format, endpoint or batch job name, window, id column).
    On several instances the capture objects are sharded between them and each host writes only its state under
    ``hosts/<host>/`` (every instance uploads to the same prefix); the merge job then writes the run's outputs."""
    inputs = {"dataset": "$.Run.DataUri", "baseline": "$.Run.DataBaselineUri", "schema": "$.Run.SchemaUri"}
    if ground_truth:
        inputs |= {"groundtruth": "$.Run.GroundTruthUri", "quality": "$.Run.QualityBaselineUri"}
    job = training.processing_job("$.JobName", ["monitor"], inputs, "resultdata", "$.OutputUri")
    cluster = job["ProcessingResources"]["ClusterConfig"]
    del cluster["InstanceCount"]
    cluster["InstanceCount.$"] = "$.MonitorInstanceCount"
    job["ProcessingInputs"][0]["S3Input"]["S3DataDistributionType"] = "ShardedByS3Key"
    job["Environment.$"] = _environment(ground_truth)
    state = asl.sagemaker(
        "createProcessingJob", job, sync=True, on_error=NOTIFY_FAILURE, next_state=next_state, result_path=None
    )
    del state["Catch"]  # the Map state's Catch notifies
    return state


def _merge_job(ground_truth: bool) -> dict[str, Any]:
    """``merge`` over the hosts' states (one instance): the run's outputs, as a one-instance monitor writes them."""
    inputs = {"shards": "States.Format('{}/hosts', $.OutputUri)", "baseline": "$.Run.DataBaselineUri"}
    if ground_truth:
        inputs["quality"] = "$.Run.QualityBaselineUri"
    args = ["merge", "--states", f"{PROCESSING}/input/shards"]
    job = training.processing_job("$.MergeJobName", args, inputs, "resultdata", "$.OutputUri")
    job["Environment.$"] = _environment(ground_truth)
    state = asl.sagemaker(
        "createProcessingJob", job, sync=True, on_error=NOTIFY_FAILURE, next_state=EVALUATE_STATE, result_path=None
    )
    del state["Catch"]
    return state


ENVIRONMENT = {
    "dataset_source": f"{PROCESSING}/input/dataset",
    "baseline_statistics": f"{PROCESSING}/input/baseline/statistics.json",
    "baseline_constraints": f"{PROCESSING}/input/baseline/constraints.json",
    "schema_path": f"{PROCESSING}/input/schema/schema.json",
    "output_path": f"{PROCESSING}/resultdata",
    "publish_cloudwatch_metrics": "Enabled",
    "fail_on_no_data": "Disabled",  # the listing found files; the window may still hold no record of them
}
QUALITY_ENVIRONMENT = {
    "ground_truth_source": f"{PROCESSING}/input/groundtruth",
    "model_quality_constraints": f"{PROCESSING}/input/quality/constraints.json",
}


def _iteration() -> dict[str, Any]:
    states: dict[str, Any] = {
        GROUND_TRUTH: {
            "Type": "Choice",
            "Choices": [{"Variable": "$.Run.HasGroundTruth", "BooleanEquals": True, "Next": DATA_AND_QUALITY}],
            "Default": DATA_ONLY,
        },
        DATA_AND_QUALITY: _monitor_job(True, SEVERAL_HOSTS),
        DATA_ONLY: _monitor_job(False, SEVERAL_HOSTS),
        SEVERAL_HOSTS: {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {"Variable": "$.MonitorInstanceCount", "NumericGreaterThan": 1},
                        {"Variable": "$.Run.HasGroundTruth", "BooleanEquals": True},
                    ],
                    "Next": MERGE_QUALITY,
                },
                {"Variable": "$.MonitorInstanceCount", "NumericGreaterThan": 1, "Next": MERGE_DATA},
            ],
            "Default": EVALUATE_STATE,
        },
        MERGE_QUALITY: _merge_job(True),
        MERGE_DATA: _merge_job(False),
    }
    evaluate = asl.invoke(
        EVALUATE,
        {
            "output_uri.$": "$.OutputUri",
            "topic_arn": TOPIC,
            "consecutive.$": "$.AlertAfterConsecutive",
            "state_uri.$": "States.Format('{}/monitoring/state/{}.json', $.ArtifactsUri, $.Run.Name)",
        },
        on_error=NOTIFY_FAILURE,
        next_state=SUMMARY,
        result_selector={
            "Drift.$": "$.Payload.drift_detected",
            "Violations.$": "$.Payload.violations",
            "Features.$": "$.Payload.features",
            "Alerted.$": "$.Payload.alerted",
        },
        result_path="$.Evaluation",
        comment="Enriches the violations and publishes them to SNS (after N consecutive violating runs)",
    )
    del evaluate["Catch"]
    states[EVALUATE_STATE] = evaluate
    states[SUMMARY] = {
        "Type": "Pass",
        "Parameters": {
            "Name.$": "$.Run.Name",
            "Target.$": "$.Run.Target",
            "ModelQuality.$": "$.Run.HasGroundTruth",
            "OutputUri.$": "$.OutputUri",
            "Drift.$": "$.Evaluation.Drift",
            "Violations.$": "$.Evaluation.Violations",
            "Features.$": "$.Evaluation.Features",
            "Alerted.$": "$.Evaluation.Alerted",
        },
        "End": True,
    }
    return {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": GROUND_TRUTH, "States": states}


def definition() -> dict[str, Any]:
    err = NOTIFY_FAILURE
    states: dict[str, Any] = {}
    states[NAMES] = {
        "Type": "Pass",
        "Parameters": {
            "BookmarkParameter.$": "States.Format('/{}/monitoring/bookmark', $.NamePrefix)",
            "OutputUri.$": "States.Format('{}/monitoring/{}', $.ArtifactsUri, $$.Execution.Name)",
        },
        "ResultPath": "$.Names",
        "Next": FIND,
    }
    states[FIND] = asl.invoke(
        FIND_NEW_DATA,
        {
            "NamePrefix.$": "$.NamePrefix",
            "ArtifactsUri.$": "$.ArtifactsUri",
            "Algorithms.$": "$.Algorithms",
            "BookmarkParameter.$": "$.Names.BookmarkParameter",
            "Now.$": "$$.Execution.StartTime",
        },
        on_error=err,
        next_state=ANYTHING_NEW,
        result_selector={"HasData.$": "$.Payload.HasData", "Runs.$": "$.Payload.Runs",
                         "Bookmark.$": "$.Payload.Bookmark"},
        result_path="$.Found",
    )  # fmt: skip
    states[ANYTHING_NEW] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.Found.HasData", "BooleanEquals": True, "Next": MONITOR_EACH}],
        "Default": NOTHING_NEW,
    }
    states[NOTHING_NEW] = asl.succeed("Nothing arrived since the last run")
    states[MONITOR_EACH] = {
        "Type": "Map",
        "ItemsPath": "$.Found.Runs",
        "MaxConcurrency": 2,
        "ItemSelector": {
            "Run.$": "$$.Map.Item.Value",
            "JobName.$": "States.Format('{}-mon-{}-{}', $.NamePrefix, $$.Map.Item.Index, $$.Execution.Name)",
            "MergeJobName.$": "States.Format('{}-mrg-{}-{}', $.NamePrefix, $$.Map.Item.Index, $$.Execution.Name)",
            "OutputUri.$": "States.Format('{}/{}', $.Names.OutputUri, $$.Map.Item.Value.Name)",
            "Environment": {
                **ENVIRONMENT,
                "sagemaker_monitoring_schedule_name.$": "States.Format('{}-monitoring', $.NamePrefix)",
            },
            "QualityEnvironment": QUALITY_ENVIRONMENT,
            "NamePrefix.$": "$.NamePrefix",
            "ArtifactsUri.$": "$.ArtifactsUri",
            "ProcessingImage.$": "$.ProcessingImage",
            "ProcessingInstanceType.$": "$.ProcessingInstanceType",
            "MaxRuntimeSeconds.$": "$.MaxRuntimeSeconds",
            "MonitorInstanceCount.$": "$.MonitorInstanceCount",
            "AlertAfterConsecutive.$": "$.AlertAfterConsecutive",
        },
        "ItemProcessor": _iteration(),
        "ResultPath": "$.Results",
        "Catch": asl.catch(err),
        "Next": APPEND,
    }
    states[APPEND] = asl.sagemaker(
        "createProcessingJob",
        training.processing_job(
            "States.Format('{}-tables-{}', $.NamePrefix, $$.Execution.Name)",
            ["tables", "monitoring", "--input", f"{PROCESSING}/input/monitoring", "--tables", f"{PROCESSING}/tables"],
            {"monitoring": "$.Names.OutputUri"},
            "tables",
            "States.Format('{}/analytics', $.ArtifactsUri)",
        ),
        sync=True,
        on_error=err,
        next_state=ADVANCE,
        result_path=None,
        comment="Per-feature drift and model-quality metrics of every run into the analytics tables",
    )
    states[ADVANCE] = asl.aws_sdk(
        "ssm",
        "putParameter",
        {
            "Name.$": "$.Names.BookmarkParameter",
            "Value.$": "States.JsonToString($.Found.Bookmark)",
            "Type": "String",
            "Overwrite": True,
        },
        on_error=err,
        next_state=DRIFTED,
        result_path=None,
        comment="Only after every source was monitored: a failed run is monitored again next time",
    )
    states[DRIFTED] = {
        "Type": "Pass",
        "Parameters": {"Any.$": "States.ArrayContains($.Results[*].Drift, true)"},
        "ResultPath": "$.Drift",
        "Next": RETRAIN_WANTED,
    }
    states[RETRAIN_WANTED] = {
        "Type": "Choice",
        "Choices": [
            {
                "And": [
                    {"Variable": "$.Drift.Any", "BooleanEquals": True},
                    {"Variable": "$.Retrain.Enabled", "BooleanEquals": True},
                ],
                "Next": RETRAIN,
            }
        ],
        "Default": DONE,
    }
    start = asl.task(
        "arn:aws:states:::states:startExecution",
        {
            "StateMachineArn": TRAINING_MACHINE,
            "Name.$": "States.Format('r{}-{}', $.Index, $.ExecutionName)",
            "Input.$": "$.Input",
        },
        retry_kind="states",
        next_state=None,
        on_error=err,
        result_selector={"ExecutionArn.$": "$.ExecutionArn"},
        result_path="$.Started",
        comment="Named after this run: a retried run cannot start the same retraining twice",
    )
    del start["Catch"]
    states[RETRAIN] = {
        "Type": "Map",
        "ItemsPath": "$.Retrain.Inputs",
        "ItemSelector": {
            "Input.$": "$$.Map.Item.Value",
            "Index.$": "$$.Map.Item.Index",
            "ExecutionName.$": "$$.Execution.Name",
        },
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": START_TRAINING,
                          "States": {START_TRAINING: start}},
        "ResultSelector": {"Executions.$": "$[*].Started.ExecutionArn"},
        "ResultPath": "$.Retraining",
        "Catch": asl.catch(err),
        "Next": NOTIFY_RETRAINING,
    }  # fmt: skip
    states[NOTIFY_RETRAINING] = asl.publish(
        TOPIC,
        "States.Format('{} monitoring: drift, retraining started', $.NamePrefix)",
        "States.Format('Monitoring run {} found drift ({}) and started the training pipeline: {}', "
        "$$.Execution.Name, States.JsonToString($.Results), States.JsonToString($.Retraining.Executions))",
        next_state=DONE,
        on_error=FAILED,
    )
    states[DONE] = {"Type": "Pass", "Parameters": {"Results.$": "$.Results", "Drift.$": "$.Drift.Any"}, "End": True}
    states |= asl.failure(
        TOPIC,
        "States.Format('{} monitoring pipeline failed', $.NamePrefix)",
        "States.Format('Monitoring run {} failed. Error: {}. Cause: {}', $$.Execution.Name, $.Error.Error, "
        "$.Error.Cause)",
        NOTIFY_FAILURE,
        FAILED,
    )
    return asl.machine(
        "Monitor new captures and batch outputs against the baselines; evaluate drift; optionally retrain",
        NAMES,
        states,
    )
