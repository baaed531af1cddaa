"""The training pipeline's "compare with the previous best" step: is the new model at least as good as the one
deployed?

Event::

    {"ParameterName": "/cars/xgboost/deployment", "Rmse": 3012.5}

The parameter is the deployment document the pipeline writes after a deployment (a JSON object with at least
``Rmse``). Result::

    {"IsBetter": true, "BestRmse": 3100.2, "Rmse": 3012.5, "ParameterName": "...",
     "Reason": "new model RMSE 3012.5 is better than the deployed model's 3100.2"}

No parameter yet: ``{"IsBetter": true, "BestRmse": null, "Reason": "no deployed model yet"}``. An equal RMSE is
not worse, so IsBetter is true (a retrained model on fresher data replaces an equally good one).

Errors (the class name is the Step Functions error name), each with a one-line message:
``InvalidEvent``, ``CorruptDeploymentParameter`` (not JSON, or no finite Rmse; the message names the parameter).

Standard library and boto3 only (present in the Lambda runtime): the deployment package is this file.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, TypeGuard


class InvalidEvent(Exception):
    pass


class CorruptDeploymentParameter(Exception):
    pass


def _region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def _client(service: str):
    # Created per call, so that tests and local runs can intercept boto3.client.
    import boto3

    return boto3.client(service, region_name=_region())


def _finite(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: float) -> str:
    return f"{value:.10g}"  # enough digits that two different figures never print the same


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidEvent(f"expected a JSON object with ParameterName and Rmse, received {type(event).__name__}")
    name, rmse = event.get("ParameterName"), event.get("Rmse")
    if not isinstance(name, str) or not name.strip():
        raise InvalidEvent(f"ParameterName: expected a non-empty string, received {name!r}")
    if not _finite(rmse):
        raise InvalidEvent(f"Rmse: expected a finite number, received {rmse!r}")
    rmse = float(rmse)

    ssm = _client("ssm")
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return {
            "IsBetter": True,
            "BestRmse": None,
            "Rmse": rmse,
            "ParameterName": name,
            "Reason": "no deployed model yet",
        }

    try:
        doc = json.loads(value)
    except ValueError as e:
        raise CorruptDeploymentParameter(f"parameter {name} is not a JSON document: {' '.join(str(e).split())}") from e
    best = doc.get("Rmse") if isinstance(doc, dict) else None
    if not _finite(best):
        raise CorruptDeploymentParameter(f"parameter {name} has no finite Rmse (found {best!r})")
    best = float(best)

    better = rmse <= best
    if rmse < best:
        reason = f"new model RMSE {_fmt(rmse)} is better than the deployed model's {_fmt(best)}"
    elif rmse == best:
        reason = f"new model RMSE {_fmt(rmse)} equals the deployed model's {_fmt(best)}; equal is not worse"
    else:
        reason = (
            f"new model RMSE {_fmt(rmse)} is worse than the deployed model's {_fmt(best)}; keeping the deployed model"
        )
    return {"IsBetter": better, "BestRmse": best, "Rmse": rmse, "ParameterName": name, "Reason": reason}
