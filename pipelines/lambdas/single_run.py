"""A state machine's "another run in progress?" step: at most one execution per key goes on at a time.

Event (from the context object, and the key: the training pipeline's is the algorithm)::

    {"StateMachineArn.$": "$$.StateMachine.Id", "ExecutionArn.$": "$$.Execution.Id",
     "StartTime.$": "$$.Execution.StartTime", "KeyField": "Algorithm", "Key.$": "$.Algorithm"}

Result: ``{"Proceed": bool, "Running": [names of the earlier running executions], "Reason": "..."}``.
An execution proceeds when no other RUNNING execution of the same state machine with the same key (the field
``KeyField`` of its input) started before it (the same start time: the smaller ARN is first), so of several
started at once exactly one per key proceeds, whoever starts them: new training data landing, the monitoring
pipeline's retraining, a person. Without ``KeyField`` every execution shares one key.

Errors (the class name is the Step Functions error name): ``InvalidEvent``.
Standard library and boto3 only (present in the Lambda runtime): the deployment package is this file.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any


class InvalidEvent(Exception):
    pass


def _client(service: str):
    import boto3  # created per call, so that tests and local runs can intercept boto3.client

    return boto3.client(service, region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    if not isinstance(event, dict) or not all(
        isinstance(event.get(k), str) for k in ("StateMachineArn", "ExecutionArn", "StartTime")
    ):
        raise InvalidEvent("expected StateMachineArn, ExecutionArn and StartTime (strings) from the context object")
    try:
        mine = (_time(event["StartTime"]), event["ExecutionArn"])
    except ValueError:
        raise InvalidEvent(f"StartTime: expected an ISO 8601 time, received {event['StartTime']!r}") from None
    sfn = _client("stepfunctions")
    earlier = []
    for page in sfn.get_paginator("list_executions").paginate(
        stateMachineArn=event["StateMachineArn"], statusFilter="RUNNING"
    ):
        for execution in page["executions"]:
            other = (_time(execution["startDate"]), execution["executionArn"])
            if other[1] == mine[1] or other > mine:
                continue
            if event.get("KeyField"):
                described = sfn.describe_execution(executionArn=execution["executionArn"])
                try:
                    key = json.loads(described.get("input") or "{}").get(event["KeyField"])
                except (json.JSONDecodeError, AttributeError):
                    key = None
                if key != event.get("Key"):
                    continue
            earlier.append(execution["name"])
    if earlier:
        reason = f"execution {earlier[0]} is still running" + (f" (and {len(earlier) - 1} more)" if len(earlier) > 1
                                                                 else "")  # fmt: skip
    else:
        reason = "no other execution is running"
    return {"Proceed": not earlier, "Running": earlier, "Reason": reason}
