"""The batch scoring pipeline: a new file under the scoring prefix is preprocessed as training data was, scored by
every deployed model with a batch transform that keeps the record ids, and announced on SNS.

Started by an EventBridge rule on S3 ``Object Created`` (``pipelines/events.py``); the rule's input transformer
gives ``Bucket`` and ``Key``, the deployment gives the rest (see ``EXAMPLE_INPUT``). Where each model's output
goes, ``<ArtifactsUri>/scored/<algorithm>/<execution>/<file>.out`` (id, features, prediction, headerless CSV), is
where the monitoring pipeline looks for batch outputs. The models are the deployed ones, read from the training
pipeline's deployment records in SSM, so a new deployment needs no change here.
"""

from __future__ import annotations

from typing import Any

from pipelines import asl, training

TOPIC = training.TOPIC
ROLE = training.ROLE
SUBSTITUTIONS = ("NotificationTopicArn", "SageMakerRoleArn")
PROCESSING = training.PROCESSING
CSV = training.CSV

EXAMPLE_INPUT: dict[str, Any] = {
    "Bucket": "byoc-artifacts-123456789012",
    "Key": "data/scoring/2024-01-01.csv",
    "NamePrefix": "cars",
    "ArtifactsUri": "s3://byoc-artifacts-123456789012/pipelines",
    "ProcessingImage": training.EXAMPLE_INPUT["ProcessingImage"],
    "ProcessingInstanceType": "ml.m5.large",
    "TransformInstanceType": "ml.m5.large",
    "IdColumn": "id",
    "MaxRuntimeSeconds": 3600,
}

NAMES = "Name the run"
READ_MODELS = "Read deployed models"
ANY_MODEL = "Any model deployed?"
NOTIFY_NO_MODEL = "Notify no model"
NO_MODEL = "No model"
FIRST_RECORD = "Training schema"
PREPROCESS = "Preprocess scoring file"
SCORE = "Score with each model"
TRANSFORM = "Batch transform"
APPEND = "Append scored records"
NOTIFY_SCORED = "Notify scored"
SCORED = "Scored"
NOTIFY_FAILURE = "Notify failure"
FAILED = "Pipeline failed"


def _name(kind: str) -> str:
    return f"States.Format('{{}}-{kind}-{{}}', $.NamePrefix, $$.Execution.Name)"


def definition() -> dict[str, Any]:
    err = NOTIFY_FAILURE
    states: dict[str, Any] = {}
    states[NAMES] = {
        "Type": "Pass",
        "Parameters": {
            "ProcessingJob.$": _name("score-prep"),
            "InputUri.$": "States.Format('s3://{}/{}', $.Bucket, $.Key)",
            "PreparedUri.$": "States.Format('{}/scoring/{}/prepared', $.ArtifactsUri, $$.Execution.Name)",
            "Parameters.$": "States.Array(States.Format('/{}/xgboost/deployment', $.NamePrefix), "
            "States.Format('/{}/linear/deployment', $.NamePrefix))",
        },
        "ResultPath": "$.Names",
        "Next": READ_MODELS,
    }
    states[READ_MODELS] = asl.aws_sdk(
        "ssm",
        "getParameters",
        {"Names.$": "$.Names.Parameters"},
        on_error=err,
        next_state=ANY_MODEL,
        result_selector={"Records.$": "$.Parameters"},
        result_path="$.Deployed",
        comment="The training pipeline's deployment records; an algorithm never deployed is simply absent",
    )
    states[ANY_MODEL] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.Deployed.Records[0]", "IsPresent": True, "Next": FIRST_RECORD}],
        "Default": NOTIFY_NO_MODEL,
    }
    states[NOTIFY_NO_MODEL] = asl.publish(
        TOPIC,
        "States.Format('{} scoring: no deployed model', $.NamePrefix)",
        "States.Format('Scoring run {} could not score {}: no model is deployed (run the training pipeline "
        "first).', $$.Execution.Name, $.Names.InputUri)",
        next_state=NO_MODEL,
        on_error=FAILED,
    )
    states[NO_MODEL] = asl.fail("NoDeployedModel", "No deployment record in SSM")
    states[FIRST_RECORD] = {
        "Type": "Pass",
        "Comment": "Both algorithms were trained on the same preprocessing: any record's schema describes the data",
        "Parameters": {
            "Record.$": "States.StringToJson(States.ArrayGetItem($.Deployed.Records[*].Value, 0))",
        },
        "ResultPath": "$.Schema",
        "Next": PREPROCESS,
    }
    states[PREPROCESS] = asl.sagemaker(
        "createProcessingJob",
        {
            **training.processing_job(
                "$.Names.ProcessingJob",
                f"States.Array('preprocess', '--input', '{PROCESSING}/input/data', '--output', "
                f"'{PROCESSING}/output', '--schema', '{PROCESSING}/input/schema/schema.json', '--id-column', "
                "$.IdColumn)",
                {"data": "$.Names.InputUri", "schema": "$.Schema.Record.SchemaUri"},
                "output",
                "$.Names.PreparedUri",
            ),
        },
        sync=True,
        on_error=err,
        next_state=SCORE,
        result_selector={"Summary.$": "$.ExitMessage"},
        result_path="$.Prepared",
        comment="The training transformation (names, types, known levels) on the new file, record ids kept; a bad "
        "file fails here, naming its line and column, before any model sees it",
    )
    transform = asl.sagemaker(
        "createTransformJob",
        {
            "TransformJobName.$": "States.Format('{}-{}-score-{}', $.NamePrefix, $.Record.Algorithm, $.ExecutionName)",
            "ModelName.$": "$.Record.ModelName",
            # BatchStrategy and MaxPayloadInMB left out: SageMaker takes them from the container's
            # /execution-parameters
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": "$.PreparedUri"}},
                "ContentType": CSV,
                "SplitType": "Line",
            },
            "TransformOutput": {
                "S3OutputPath.$": "States.Format('{}/scored/{}/{}', $.ArtifactsUri, $.Record.Algorithm, "
                "$.ExecutionName)",
                "Accept": CSV,
                "AssembleWith": "Line",
            },
            "TransformResources": {"InstanceCount": 1, "InstanceType.$": "$.TransformInstanceType"},
            # id first: send the features, keep the whole record (id, features) next to the prediction
            "DataProcessing": {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$"},
        },
        sync=True,
        on_error=err,
        next_state=APPEND,
        result_selector={
            "TransformJobName.$": "$.TransformJobName",
            "OutputUri.$": "$.TransformOutput.S3OutputPath",
        },
        result_path="$.Scored",
    )
    append = asl.sagemaker(
        "createProcessingJob",
        training.processing_job(
            "States.Format('{}-{}-tables-{}', $.NamePrefix, $.Record.Algorithm, $.ExecutionName)",
            f"States.Array('tables', 'scoring', '--run-id', $.ExecutionName, '--model', $.Record.Algorithm, "
            # --target: the transform job, the batch job the monitoring pipeline names, so drift rows join these
            "'--target', $.Scored.TransformJobName, '--scored-at', "
            f"$.ScoredAt, '--input', '{PROCESSING}/input/scoring', '--schema', '{PROCESSING}/input/model', "
            f"'--tables', '{PROCESSING}/tables')",
            {"scoring": "$.Scored.OutputUri", "model": "$.Record.SchemaUri"},
            "tables",
            "States.Format('{}/analytics', $.ArtifactsUri)",
        ),
        sync=True,
        on_error=err,
        result_path=None,
        comment="The scored records, with their features, into the analytics tables (Parquet, by day)",
    )
    for state in (transform, append):
        del state["Catch"]  # the Map state's Catch notifies
    states[SCORE] = {
        "Type": "Map",
        "Comment": "One batch transform per deployed model",
        "ItemsPath": "$.Deployed.Records",
        "ItemSelector": {
            "Record.$": "States.StringToJson($$.Map.Item.Value.Value)",
            "NamePrefix.$": "$.NamePrefix",
            "ArtifactsUri.$": "$.ArtifactsUri",
            "PreparedUri.$": "$.Names.PreparedUri",
            "TransformInstanceType.$": "$.TransformInstanceType",
            "ProcessingImage.$": "$.ProcessingImage",
            "ProcessingInstanceType.$": "$.ProcessingInstanceType",
            "MaxRuntimeSeconds.$": "$.MaxRuntimeSeconds",
            "ExecutionName.$": "$$.Execution.Name",
            "ScoredAt.$": "$$.State.EnteredTime",  # a string in every engine (moto's Execution.StartTime is not)
        },
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": TRANSFORM,
            "States": {TRANSFORM: transform, APPEND: append},
        },
        "ResultSelector": {"Outputs.$": "$[*].Scored"},
        "ResultPath": "$.Scored",
        "Catch": asl.catch(err),
        "Next": NOTIFY_SCORED,
    }
    states[NOTIFY_SCORED] = asl.publish(
        TOPIC,
        "States.Format('{} scoring: {} scored', $.NamePrefix, $.Key)",
        "States.Format('Scoring run {} scored {} with {} model(s). {}. Outputs: {}', $$.Execution.Name, "
        "$.Names.InputUri, States.ArrayLength($.Scored.Outputs), $.Prepared.Summary, "
        "States.JsonToString($.Scored.Outputs))",
        next_state=SCORED,
        on_error=FAILED,
    )
    states[SCORED] = {"Type": "Pass", "InputPath": "$.Scored", "End": True}
    states |= asl.failure(
        TOPIC,
        "States.Format('{} scoring pipeline failed', $.NamePrefix)",
        "States.Format('Scoring run {} failed on {}. Error: {}. Cause: {}', $$.Execution.Name, $.Names.InputUri, "
        "$.Error.Error, $.Error.Cause)",
        NOTIFY_FAILURE,
        FAILED,
    )
    return asl.machine(
        "Score a new file with every deployed model (batch transform, record ids kept); notify SNS", NAMES, states
    )
