"""Small builders for Amazon States Language (JSONPath) documents: the shapes every pipeline repeats.

Each Task gets a Retry for the transient errors of its service and a Catch that hands the error to the
pipeline's failure notification. Error names are the ones Step Functions raises for each integration:
optimized SageMaker integrations raise ``SageMaker.AmazonSageMakerException``; AWS SDK integrations raise
``<Service>.<Exception>`` (``SageMaker.SageMakerException`` for the unmodeled ones, such as the
``ValidationException`` DescribeEndpoint answers for an absent endpoint); Lambda its own four service errors.
"""

from __future__ import annotations

from typing import Any

State = dict[str, Any]

SAGEMAKER = "arn:aws:states:::sagemaker:"
AWS_SDK = "arn:aws:states:::aws-sdk:"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
SNS_PUBLISH = "arn:aws:states:::sns:publish"

# Transient errors per integration: throttling, service-side failures. A failed job (States.TaskFailed from a
# .sync task) is not retried: the same job on the same data fails the same way.
RETRYABLE = {
    "sagemaker": ["SageMaker.AmazonSageMakerException"],
    "aws-sdk:sagemaker": ["SageMaker.ThrottlingException", "SageMaker.InternalFailure"],
    "aws-sdk:ssm": ["Ssm.TooManyUpdatesException", "Ssm.InternalServerErrorException", "Ssm.ThrottlingException"],
    "aws-sdk:applicationautoscaling": [
        "ApplicationAutoScaling.ConcurrentUpdateException",
        "ApplicationAutoScaling.InternalServiceException",
        # right after an endpoint turns InService, auto scaling may not see it yet
        "ApplicationAutoScaling.FailedResourceAccessException",
    ],
    "lambda": [
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
    ],
    "sns": ["States.TaskFailed"],
    "states": [
        "StepFunctions.ExecutionLimitExceededException",
        "StepFunctions.SdkClientException",
    ],  # a notification is worth three tries whatever went wrong
}
ERROR_PATH = "$.Error"


def retry(kind: str) -> list[dict[str, Any]]:
    return [{"ErrorEquals": RETRYABLE[kind], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 2.0}]


def catch(on_error: str, errors: list[str] | None = None, result_path: str = ERROR_PATH) -> list[dict[str, Any]]:
    return [{"ErrorEquals": errors or ["States.ALL"], "ResultPath": result_path, "Next": on_error}]


def task(
    resource: str,
    parameters: dict[str, Any],
    *,
    retry_kind: str,
    on_error: str,
    next_state: str | None = None,
    result_path: str | None = None,
    result_selector: dict[str, Any] | None = None,
    comment: str | None = None,
    extra_catch: list[dict[str, Any]] | None = None,
) -> State:
    """A Task with Retry and Catch; ``next_state`` None ends the branch."""
    state: State = {"Type": "Task"}
    if comment:
        state["Comment"] = comment
    state["Resource"] = resource
    state["Parameters"] = parameters
    if result_selector is not None:
        state["ResultSelector"] = result_selector
    state["ResultPath"] = result_path
    state["Retry"] = retry(retry_kind)
    state["Catch"] = (extra_catch or []) + catch(on_error)
    if next_state is None:
        state["End"] = True
    else:
        state["Next"] = next_state
    return state


def sagemaker(action: str, parameters: dict[str, Any], *, sync: bool = False, **kw: Any) -> State:
    return task(f"{SAGEMAKER}{action}{'.sync' if sync else ''}", parameters, retry_kind="sagemaker", **kw)


def aws_sdk(service: str, action: str, parameters: dict[str, Any], **kw: Any) -> State:
    return task(f"{AWS_SDK}{service}:{action}", parameters, retry_kind=f"aws-sdk:{service}", **kw)


def invoke(function: str, payload: dict[str, Any], **kw: Any) -> State:
    """A Lambda invocation whose result is the function's own answer (``$.Payload``), not the invoke envelope."""
    kw.setdefault("result_selector", {"Result.$": "$.Payload"})
    return task(LAMBDA_INVOKE, {"FunctionName": function, "Payload": payload}, retry_kind="lambda", **kw)


def publish(topic: str, subject: str, message: str, *, next_state: str, on_error: str) -> State:
    """An SNS message; ``subject`` and ``message`` are intrinsic expressions (``States.Format(...)``) or literals."""
    params: dict[str, Any] = {"TopicArn": topic}
    params["Subject.$" if subject.startswith("States.") else "Subject"] = subject
    params["Message.$" if message.startswith("States.") else "Message"] = message
    return task(SNS_PUBLISH, params, retry_kind="sns", on_error=on_error, next_state=next_state, result_path=None)


def wait(seconds_path: str, next_state: str) -> State:
    return {"Type": "Wait", "SecondsPath": seconds_path, "Next": next_state}


def fail(error: str, cause: str) -> State:
    return {"Type": "Fail", "Error": error, "Cause": cause}


def succeed(comment: str) -> State:
    return {"Type": "Succeed", "Comment": comment}


def failure(topic: str, subject: str, message: str, notify: str, failed: str) -> dict[str, State]:
    """The states every Catch leads to: the SNS message with the error and its cause, then ``PipelineFailed``."""
    return {
        notify: publish(topic, subject, message, next_state=failed, on_error=failed),
        failed: fail("PipelineFailed", "A step failed; the SNS message carries its error and cause"),
    }


def machine(comment: str, start: str, states: dict[str, State]) -> dict[str, Any]:
    return {"Comment": comment, "QueryLanguage": "JSONPath", "StartAt": start, "States": states}
