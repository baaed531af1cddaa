"""Every AWS request a definition can send, checked against botocore's service models.

asl-validator checks the language and cfn-lint the template; neither knows that ``CreateTrainingJob`` has no
``HyperParameter`` member. Here each Task's ``Parameters`` are walked together with the operation's input
shape: an unknown member is named with its state and path, a literal of the wrong type or outside its enum is
named, and a request built from the literals plus a typed placeholder for each dynamic (``.$``) value must pass
``botocore.validate.validate_parameters`` (which also finds missing required members).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.exceptions import ParamValidationError
from botocore.model import OperationModel, Shape
from botocore.validate import validate_parameters

# Resource ARN -> (botocore service, operation)
_OPTIMIZED = {
    "arn:aws:states:::sns:publish": ("sns", "Publish"),
    "arn:aws:states:::lambda:invoke": ("lambda", "Invoke"),
    "arn:aws:states:::states:startExecution": ("stepfunctions", "StartExecution"),
}
_BOTO_NAMES = {"applicationautoscaling": "application-autoscaling", "sfn": "stepfunctions"}
_SAGEMAKER = re.compile(r"^arn:aws:states:::sagemaker:([a-zA-Z]+)(\.sync|\.waitForTaskToken)?$")
_AWS_SDK = re.compile(r"^arn:aws:states:::aws-sdk:([a-z0-9]+):([a-zA-Z0-9]+)$")
_session = botocore.session.get_session()


@dataclass(frozen=True)
class Request:
    state: str  # "Create baselines/Data-quality baseline" for states inside branches
    service: str
    operation: str
    parameters: dict[str, Any]


def _operation(service: str, action: str) -> str:
    return action[0].upper() + action[1:]


def requests(definition: dict[str, Any], prefix: str = "") -> Iterator[Request]:
    """The Tasks' requests, Parallel branches and Map iterators included."""
    for name, state in definition.get("States", {}).items():
        where = f"{prefix}{name}"
        kind = state.get("Type")
        if kind == "Parallel":
            for branch in state.get("Branches", []):
                yield from requests(branch, f"{where}/")
        elif kind == "Map":
            inner = state.get("ItemProcessor") or state.get("Iterator") or {}
            yield from requests(inner, f"{where}/")
        elif kind == "Task":
            resource = state.get("Resource", "")
            if resource in _OPTIMIZED:
                service, operation = _OPTIMIZED[resource]
            elif m := _SAGEMAKER.match(resource):
                service, operation = "sagemaker", _operation("sagemaker", m.group(1))
            elif m := _AWS_SDK.match(resource):
                service, operation = _BOTO_NAMES.get(m.group(1), m.group(1)), _operation(m.group(1), m.group(2))
            else:
                continue
            yield Request(where, service, operation, state.get("Parameters", {}))


def _placeholder(shape: Shape) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return {m: _placeholder(shape.members[m]) for m in shape.required_members}
    if kind == "list":
        return [_placeholder(shape.member)]
    if kind == "map":
        return {"key": _placeholder(shape.value)}
    if kind in ("integer", "long"):
        return max(1, int(shape.metadata.get("min", 1)))
    if kind in ("float", "double"):
        return 1.0
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    if kind == "blob":
        return b"x"
    return "x" * max(1, int(shape.metadata.get("min", 1)))


def _instantiate(value: Any, shape: Shape, path: str, problems: list[str]) -> Any:
    """A request from a Parameters template: literals kept, dynamic values replaced by typed placeholders."""
    if shape.type_name == "structure" and isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = key[:-2] if key.endswith(".$") else key
            # Step Functions writes every API's parameters in PascalCase, also camelCase APIs (stepfunctions)
            name = name if name in shape.members else name[:1].lower() + name[1:]
            if name not in shape.members:
                problems.append(
                    f"{path}: unknown parameter {key.removesuffix('.$')!r} (expected one of {', '.join(shape.members)})"
                )
                continue
            member = shape.members[name]
            out[name] = (
                _placeholder(member) if key.endswith(".$") else _instantiate(item, member, f"{path}.{name}", problems)
            )
        return out
    if shape.type_name == "list" and isinstance(value, list):
        return [_instantiate(item, shape.member, f"{path}[{i}]", problems) for i, item in enumerate(value)]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _instantiate(v, shape.value, f"{path}.{k}", problems) for k, v in value.items()}
    if isinstance(value, str) and "${" in value:
        return _placeholder(shape)  # a DefinitionSubstitution: its value comes with the deployment
    if shape.type_name == "string" and shape.enum and isinstance(value, str) and value not in shape.enum:
        problems.append(f"{path}: {value!r} is not one of {', '.join(shape.enum)}")
    return value


def check_request(request: Request) -> list[str]:
    model = _session.get_service_model(request.service)
    operation: OperationModel = model.operation_model(request.operation)
    params = dict(request.parameters)
    where = f"state {request.state!r} ({request.service} {request.operation})"
    problems: list[str] = []
    if request.service == "lambda" and request.operation == "Invoke":
        params.pop("Payload", None)  # Step Functions serialises a JSON payload itself
    sample = _instantiate(params, operation.input_shape, where, problems)
    try:
        validate_parameters(sample, operation.input_shape)
    except ParamValidationError as e:
        problems += [f"{where}: {line.strip()}" for line in str(e).splitlines()[1:] if line.strip()]
    return problems


def check(definition: dict[str, Any]) -> list[str]:
    """Every problem in every request of the definition (empty: all requests fit botocore's models)."""
    problems: list[str] = []
    for request in requests(definition):
        problems += check_request(request)
    return problems
