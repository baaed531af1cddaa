"""What moto's ASL interpreter lacks to run our definitions unchanged: SageMaker's optimized integrations.

moto ships LocalStack's ASL interpreter, whose SageMaker integration refuses every ``.sync`` task. This module
plugs a SageMaker integration into the interpreter's one seam for it
(``state_task_factory.state_task_service_for``; moto is pinned exactly because that module is internal):

- request-response (``arn:aws:states:::sagemaker:createModel``): one SageMaker API call;
- ``.sync`` (``createTrainingJob.sync``, ``createProcessingJob.sync``, ``createTransformJob.sync``): the call, then
  ``Describe*Job`` until the job ends; the task's result is the last description, as on AWS; a Failed or Stopped
  job raises ``States.TaskFailed`` whose cause is that description (its FailureReason included);
- API errors raise ``SageMaker.AmazonSageMakerException`` with AWS's cause format.

It also gives ``states:startExecution`` Step Functions' PascalCase parameters and results, and names AWS SDK
integration errors as Step Functions does (``SageMaker.SageMakerException``,
``Ssm.ParameterNotFoundException``, ...) where moto keeps the lower-case service name.
The SageMaker calls themselves go through boto3, so whatever answers boto3 (our local backend) runs the jobs.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
from botocore.exceptions import ClientError
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
    StateTaskServiceAwsSdk,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

# .sync actions -> (describe operation, name parameter, status field); terminal states as AWS documents them.
SYNC_JOBS = {
    "create_training_job": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
    "create_processing_job": ("describe_processing_job", "ProcessingJobName", "ProcessingJobStatus"),
    "create_transform_job": ("describe_transform_job", "TransformJobName", "TransformJobStatus"),
}
SUCCEEDED = {"Completed"}
ENDED_BADLY = {"Failed", "Stopped"}
# Step Functions' spelling of service names in AWS SDK integration error names.
SDK_ERROR_SERVICE = {
    "sagemaker": "SageMaker",
    "ssm": "Ssm",
    "sns": "Sns",
    "s3": "S3",
    "applicationautoscaling": "ApplicationAutoScaling",
    "lambda": "Lambda",
    "sfn": "Sfn",
    "dynamodb": "DynamoDb",
}
SDK_BOTO_SERVICE = {"applicationautoscaling": "application-autoscaling"}


class SageMakerTask(StateTaskServiceCallback):
    """``arn:aws:states:::sagemaker:<action>[.sync]``."""

    def __init__(self) -> None:
        # WaitForTaskToken is listed only because moto's callback plumbing expects a callback endpoint.
        super().__init__(
            # moto declares set[ResourceCondition] but its constants are plain str class attributes
            supported_integration_patterns={ResourceCondition.Sync, ResourceCondition.WaitForTaskToken}  # type: ignore[arg-type]
        )

    def _get_supported_parameters(self) -> set[str] | None:
        return None  # every parameter goes to SageMaker, which validates it (as AWS does)

    def _validate_service_integration_is_supported(self) -> None:
        action = self._get_boto_service_action()
        if self.resource.condition == ResourceCondition.Sync and action not in SYNC_JOBS:
            raise ValueError(f"sagemaker:{self.resource.api_action}.sync is not an AWS integration")

    def _client(self, resource_runtime_part, state_credentials):
        return boto_client_for(
            service="sagemaker", region=resource_runtime_part.region, state_credentials=state_credentials
        )

    def _from_error(self, env, ex: Exception) -> FailureEvent:
        if isinstance(ex, ClientError):
            meta = ex.response.get("ResponseMetadata", {})
            error = ex.response.get("Error", {})
            cause = (
                f"{error.get('Message', '')} (Service: AmazonSageMaker; Status Code: {meta.get('HTTPStatusCode')}; "
                f"Error Code: {error.get('Code')}; Request ID: {meta.get('RequestId', '')}; Proxy: null)"
            )
            name = "SageMaker.AmazonSageMakerException"
            return FailureEvent(
                env=env,
                error_name=CustomErrorName(name),
                event_type=HistoryEventType.TaskFailed,
                # moto's EventDetails TypedDict is total; an event carries only its own kind of details
                event_details=EventDetails(  # type: ignore[typeddict-item]
                    taskFailedEventDetails=TaskFailedEventDetails(
                        error=name,
                        cause=cause,
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                    )
                ),
            )
        return super()._from_error(env=env, ex=ex)

    def _eval_service_task(self, env, resource_runtime_part, normalised_parameters, state_credentials) -> None:
        client = self._client(resource_runtime_part, state_credentials)
        response = getattr(client, self._get_boto_service_action())(**normalised_parameters) or {}
        response.pop("ResponseMetadata", None)
        env.stack.append(response)

    def _build_sync_resolver(
        self, env, resource_runtime_part, normalised_parameters, state_credentials
    ) -> Callable[[], Any]:
        describe, name_key, status_key = SYNC_JOBS[self._get_boto_service_action()]
        env.stack.pop()  # the Create* answer; the task's result is the final description
        client = self._client(resource_runtime_part, state_credentials)
        name = normalised_parameters[name_key]

        def resolve() -> Any:
            description = getattr(client, describe)(**{name_key: name})
            description.pop("ResponseMetadata", None)
            status = description.get(status_key)
            if status in SUCCEEDED:
                return json.loads(to_json_str(description))  # timestamps as ISO strings, as Step Functions has them
            if status in ENDED_BADLY:
                cause = to_json_str(description)
                raise FailureEventException(
                    FailureEvent(
                        env=env,
                        error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                        event_type=HistoryEventType.TaskFailed,
                        event_details=EventDetails(  # type: ignore[typeddict-item]  # total in moto, as above
                            taskFailedEventDetails=TaskFailedEventDetails(
                                resource=self._get_sfn_resource(),
                                resourceType=self._get_sfn_resource_type(),
                                error=StatesErrorNameType.StatesTaskFailed.to_name(),
                                cause=cause,
                            )
                        ),
                    )
                )
            return None

        return resolve


class AwsSdkTask(StateTaskServiceAwsSdk):
    """moto's AWS SDK integration with Step Functions' error names and boto3's service names."""

    @staticmethod
    def _normalise_service_error_name(service_name: str) -> str:
        return SDK_ERROR_SERVICE.get(service_name.lower(), service_name)

    def _get_boto_service_name(self, boto_service_name: str | None = None) -> str:
        name = super()._get_boto_service_name(boto_service_name)
        return SDK_BOTO_SERVICE.get(name, name)

    def _eval_service_task(self, env, resource_runtime_part, normalised_parameters, state_credentials) -> None:
        super()._eval_service_task(env, resource_runtime_part, normalised_parameters, state_credentials)
        # botocore gives datetimes; Step Functions hands JSON on (ISO strings)
        env.stack.append(json.loads(to_json_str(env.stack.pop())))


class StatesTask(StateTaskServiceSfn):
    """moto's Step Functions integration (``states:startExecution``) with Step Functions' casing: parameters are
    written in PascalCase (``StateMachineArn``) and results come back so (``ExecutionArn``), while the API itself
    is camelCase; moto passes them through unchanged, which botocore cannot serialize."""

    def _operation(self):
        action = self._get_boto_service_action().split(".")[0]
        name = "".join(part.capitalize() for part in action.split("_"))
        return botocore.session.get_session().get_service_model("stepfunctions").operation_model(name)

    def _normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None) -> None:
        super()._normalise_parameters(parameters, boto_service_name, service_action_name)
        self._to_boto_request(parameters, self._operation().input_shape)

    def _normalise_response(self, response, boto_service_name=None, service_action_name=None) -> None:
        self._from_boto_response(response, self._operation().output_shape)
        if isinstance(response, dict):
            response.update(json.loads(to_json_str(response)))  # timestamps as ISO strings


_lock = threading.Lock()
_installed = 0
_original = state_task_factory.state_task_service_for


def _service_for(service_name: str):
    if service_name == "sagemaker":
        return SageMakerTask()
    if service_name == "aws-sdk":
        return AwsSdkTask()
    if service_name == "states":
        return StatesTask()
    return _original(service_name)


@contextlib.contextmanager
def integrations() -> Iterator[None]:
    """Our integrations in moto's interpreter while the block runs (nestable, thread-safe)."""
    global _installed
    with _lock:
        _installed += 1
        state_task_factory.state_task_service_for = _service_for
    try:
        yield
    finally:
        with _lock:
            _installed -= 1
            if _installed == 0:
                state_task_factory.state_task_service_for = _original
