"""The system's real-time path: a Lambda behind API Gateway that asks the XGBoost and the linear endpoints for
predictions on the same records and combines them.

    handler(event, context)   # API Gateway proxy event, REST (v1) or HTTP API (v2) shape

Environment:
  XGBOOST_ENDPOINT, LINEAR_ENDPOINT  SageMaker endpoint names; or http://host:port of a locally served model
                                     (`python -m serving.serve`), which is then POSTed to directly
  XGBOOST_DEPLOYMENT_PARAMETER,      instead: the SSM parameters the training pipeline writes, whose JSON
  LINEAR_DEPLOYMENT_PARAMETER        "EndpointName" is read, cached for a minute (see resolve_endpoints)
  COMBINE_RULE                       max (default) | min | mean | xgboost | linear
  COMBINER_DEADLINE_S                seconds for the whole request, both calls and their retries included
                                     (default 25: API Gateway gives a Lambda integration 29 s)
  SAGEMAKER_RUNTIME_ENDPOINT_URL     optional endpoint_url for boto3's sagemaker-runtime client

The request body and its Content-Type go unchanged to both endpoints (every format serving.codecs takes), which
answer in JSON. The response (application/json)::

    {"rule": "max", "predictions": [{"score": 21950.3, "xgboost": 21950.3, "linear": 20236.5}, ...]}

one entry per record, in order, plus ``"inference_id"``: the id both endpoints received as ``InferenceId``, so that
data capture records it and ground truth can be merged on it later. It is the caller's ``X-Inference-Id`` header
when given (at most 64 printable characters), else API Gateway's request id.

Errors are ``{"message": "<one line>"}``: 4xx for the caller's request (an
endpoint's own 4xx is passed on, prefixed with its name: it is about the request, so 502 would misdirect the
caller and the alarms); 502 when an endpoint fails, cannot be reached or answers inconsistently (a truncated or
non-HTTP answer, a score that is not a finite JSON number); 504 naming the endpoint when the deadline passes
first; 500 when the function is misconfigured.

Only the standard library and boto3 (present in the Lambda runtime): the deployment package is this file.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

MODELS = ("xgboost", "linear")
RULES: dict[str, Callable[[float, float], float]] = {
    "max": max,
    "min": min,
    "mean": lambda x, lin: x / 2 + lin / 2,  # (x + lin) / 2 overflows for two finite scores near the maximum
    "xgboost": lambda x, lin: x,
    "linear": lambda x, lin: lin,
}
DEADLINE_S = 25.0  # API Gateway ends a Lambda integration at 29 s: answer before it does
MAX_DEADLINE_S = 29.0
INFERENCE_ID_HEADER = "x-inference-id"
LOCAL_INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"  # what the runtime sends the endpoint for InferenceId
# Module level: reused across warm invocations. Room for calls still running past an earlier deadline (each ends
# within its own timeouts) so that they never queue the next invocation's calls.
_pool = ThreadPoolExecutor(max_workers=4 * len(MODELS))
_clients: dict[tuple[str | None, float], Any] = {}
_call = threading.local()  # the deadline of the call running on this pool thread


class DeadlinePassed(Exception):
    """Raised before a boto3 retry that would start after the deadline."""


class CombinerError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(" ".join(str(message).split()))
        self.status = status


# -- configuration ---------------------------------------------------------------------------------------
def deadline_seconds(env: Mapping[str, str]) -> float:
    raw = env.get("COMBINER_DEADLINE_S", "").strip()
    if not raw:
        return DEADLINE_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < MAX_DEADLINE_S:
        raise CombinerError(
            500, f"configuration: COMBINER_DEADLINE_S={raw!r}; expected seconds in (0, {MAX_DEADLINE_S:g})"
        )
    return value


def config(env: Mapping[str, str]) -> tuple[dict[str, str], str]:
    endpoints = {}
    for model in MODELS:
        name = env.get(f"{model.upper()}_ENDPOINT", "").strip()
        if not name:
            raise CombinerError(500, f"configuration: environment variable {model.upper()}_ENDPOINT is not set")
        endpoints[model] = name
    rule = env.get("COMBINE_RULE", "max").strip().lower() or "max"
    if rule not in RULES:
        raise CombinerError(500, f"configuration: COMBINE_RULE={rule!r}; expected one of {', '.join(RULES)}")
    return endpoints, rule


# -- the API Gateway proxy event -----------------------------------------------------------------------------
def parse_event(event: Mapping[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """(method, lower-cased headers, body bytes) from a REST (v1) or HTTP API (v2) proxy event."""
    if not isinstance(event, Mapping):
        raise CombinerError(400, "expected an API Gateway proxy event")
    method = event.get("httpMethod") or event.get("requestContext", {}).get("http", {}).get("method") or ""
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise CombinerError(400, "the body is marked base64-encoded but is not valid base64") from None
    else:
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return method.upper(), headers, raw


def _wants_json(accept: str) -> bool:
    for part in accept.split(","):
        media, _, params = part.partition(";")
        q = 1.0
        for p in params.split(";"):
            key, _, value = p.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and media.strip().lower() in ("", "*/*", "application/*", "application/json"):
            return True
    return False


# -- calling one endpoint ------------------------------------------------------------------------------------
def _runtime_client(endpoint_url: str | None, deadline_s: float = DEADLINE_S):
    key = (endpoint_url, deadline_s)
    if key not in _clients:
        import boto3
        from botocore.config import Config

        # One attempt can take the whole budget; a retry that would start after the deadline is refused below.
        cfg = Config(
            read_timeout=deadline_s,
            connect_timeout=min(5.0, deadline_s),
            retries={"mode": "standard", "max_attempts": 3},
        )
        region = None if os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") else "us-east-1"
        client = boto3.client("sagemaker-runtime", endpoint_url=endpoint_url, region_name=region, config=cfg)
        client.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", _refuse_after_deadline)
        _clients[key] = client
    return _clients[key]


def _refuse_after_deadline(**_: Any) -> None:
    deadline = getattr(_call, "deadline", None)
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlinePassed()


def _remaining() -> float:
    deadline = getattr(_call, "deadline", None)
    return DEADLINE_S if deadline is None else max(0.05, deadline - time.monotonic())


def _invoke_sagemaker(endpoint: str, body: bytes, content_type: str, client: Any, inference_id: str | None) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

    extra = {"InferenceId": inference_id} if inference_id else {}
    try:
        response = client.invoke_endpoint(
            EndpointName=endpoint, Body=body, ContentType=content_type, Accept="application/json", **extra
        )
        return response["Body"].read()
    except ClientError as e:
        error = e.response.get("Error", {})
        status = e.response.get("OriginalStatusCode")
        message = e.response.get("OriginalMessage") or error.get("Message") or str(e)
        if error.get("Code") == "ModelError" and status is not None:
            raise _endpoint_error(endpoint, int(status), message) from None
        raise CombinerError(502, f"endpoint {endpoint}: {error.get('Code', 'error')}: {message}") from None
    except (DeadlinePassed, ReadTimeoutError):
        raise _timed_out(endpoint) from None
    except BotoCoreError as e:
        raise CombinerError(502, f"endpoint {endpoint}: unreachable: {e}") from None


def _invoke_url(url: str, body: bytes, content_type: str, inference_id: str | None) -> bytes:
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if inference_id:
        headers[LOCAL_INFERENCE_ID_HEADER] = inference_id
    request = urllib.request.Request(url.rstrip("/") + "/invocations", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=_remaining()) as response:
            return response.read()
    except urllib.error.HTTPError as e:
        try:
            detail = e.read().decode("utf-8", "replace")
        except (http.client.HTTPException, OSError):
            detail = e.reason
        raise _endpoint_error(url, e.code, detail) from None
    except TimeoutError:
        raise _timed_out(url) from None
    except http.client.HTTPException as e:  # a truncated body, a status line that is not HTTP
        raise CombinerError(502, f"endpoint {url}: invalid HTTP answer: {type(e).__name__}") from None
    except (urllib.error.URLError, OSError) as e:
        if isinstance(getattr(e, "reason", None), TimeoutError):
            raise _timed_out(url) from None
        raise CombinerError(502, f"endpoint {url}: unreachable: {getattr(e, 'reason', e)}") from None


def _timed_out(endpoint: str) -> CombinerError:
    return CombinerError(504, f"endpoint {endpoint}: no answer before the combiner's deadline")


def _endpoint_error(endpoint: str, status: int, message: str) -> CombinerError:
    message = " ".join(message.split())[:500]
    if 400 <= status < 500:  # about the request: the caller's to fix, so pass it on
        return CombinerError(status, f"endpoint {endpoint}: {message}")
    return CombinerError(502, f"endpoint {endpoint} answered {status}: {message}")


def _is_url(endpoint: str) -> bool:
    return endpoint.startswith(("http://", "https://"))


def predict(
    endpoint: str,
    body: bytes,
    content_type: str,
    client: Any = None,
    inference_id: str | None = None,
    deadline: float | None = None,
) -> list[float]:
    """One endpoint's predictions: a local server's URL is POSTed to; a name goes through ``client``.

    ``deadline`` (time.monotonic()) bounds the socket timeouts and boto3's retries of this call.
    """
    _call.deadline = deadline
    try:
        if _is_url(endpoint):
            answer = _invoke_url(endpoint, body, content_type, inference_id)
        else:
            answer = _invoke_sagemaker(endpoint, body, content_type, client, inference_id)
    finally:
        _call.deadline = None
    return scores(endpoint, answer)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def scores(endpoint: str, answer: bytes) -> list[float]:
    """The scores of ``{"predictions": [{"score": x}, ...]}``: JSON numbers only, finite (no NaN, no 1e999)."""
    try:
        predictions = json.loads(answer, parse_constant=_no_constant)["predictions"]
        if not isinstance(predictions, list):
            raise TypeError("predictions is not a list")
        out = []
        for i, p in enumerate(predictions):
            v = p["score"]
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
                raise ValueError(f"record {i + 1}: score {str(v)[:20]} is not a finite number")
            out.append(float(v))
        return out
    except (ValueError, KeyError, TypeError, OverflowError) as e:
        raise CombinerError(502, f"endpoint {endpoint}: unexpected answer: {e}: {answer[:100]!r}") from None


# -- the handler ---------------------------------------------------------------------------------------------
def _response(status: int, doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(doc, allow_nan=False),
        "isBase64Encoded": False,
    }


def combine(event: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    endpoints, rule = config(env)
    method, headers, body = parse_event(event)
    if method != "POST":
        raise CombinerError(405, f"method {method or '(none)'} not allowed; use POST")
    content_type = headers.get("content-type", "").strip()
    if not content_type:
        raise CombinerError(415, "missing Content-Type; expected text/csv, application/json or application/jsonlines")
    if not _wants_json(headers.get("accept", "")):
        raise CombinerError(406, f"unsupported Accept {headers['accept'][:60]!r}; this API answers application/json")
    inference_id = _inference_id(event, headers)
    budget = deadline_seconds(env)
    deadline = time.monotonic() + budget
    client = None
    if not all(_is_url(e) for e in endpoints.values()):  # created here: creating boto3 clients isn't thread-safe
        client = _runtime_client(env.get("SAGEMAKER_RUNTIME_ENDPOINT_URL") or None, budget)
    futures = {
        m: _pool.submit(predict, endpoints[m], body, content_type, client, inference_id, deadline) for m in MODELS
    }
    wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
    errors = []
    results = {}
    for model, future in futures.items():
        if not future.done():
            errors.append(_timed_out(endpoints[model]))
            continue
        try:
            results[model] = future.result()
        except CombinerError as e:
            errors.append(e)
    if errors:
        # Both endpoints usually reject a bad request the same way: report the first; a 5xx outranks a 4xx.
        raise max(errors, key=lambda e: e.status >= 500)
    xgb, lin = results["xgboost"], results["linear"]
    if len(xgb) != len(lin):
        raise CombinerError(502, f"endpoints disagree on the number of records: xgboost {len(xgb)}, linear {len(lin)}")
    combined = RULES[rule]
    predictions = [{"score": combined(x, b), "xgboost": x, "linear": b} for x, b in zip(xgb, lin, strict=True)]
    return _response(200, {"rule": rule, "inference_id": inference_id, "predictions": predictions})


def _inference_id(event: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
    given = headers.get(INFERENCE_ID_HEADER)
    if given is not None:
        # InvokeEndpoint's limits for InferenceId: 1-64 characters, printable, not starting with a space.
        if not (0 < len(given) <= 64 and given.isprintable() and not given[0].isspace()):
            raise CombinerError(400, f"header X-Inference-Id: expected 1-64 printable characters, received {given!r}")
        return given
    request_id = (event.get("requestContext") or {}).get("requestId")
    return str(request_id)[:64] if request_id else None


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    try:
        return combine(event, resolve_endpoints(os.environ))
    except CombinerError as e:
        return _response(e.status, {"message": str(e)})
    except Exception as e:  # our bug: still a proper proxy response, one line; the traceback goes to the log
        import traceback

        traceback.print_exc()
        return _response(500, {"message": f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]}"})


# -- endpoint names from the training pipeline's SSM deployment records --------------------------------------------
# Kept apart from the rest: <MODEL>_DEPLOYMENT_PARAMETER names the JSON String parameter the training pipeline
# writes (/<NamePrefix>/<model>/deployment, "Deployment record"); its EndpointName becomes <MODEL>_ENDPOINT for
# config(). Cached per parameter for DEPLOYMENT_TTL_S, so a new deployment needs no redeploy of the function and a
# cold start costs one GetParameter per parameter. When a refresh fails, the last known name is kept (one line
# to the log) rather than failing requests that the endpoint could still answer.
ENVIRONMENT = (  # every variable this module reads; the SAM template's wiring test holds the template to it
    "XGBOOST_ENDPOINT",
    "LINEAR_ENDPOINT",
    "XGBOOST_DEPLOYMENT_PARAMETER",
    "LINEAR_DEPLOYMENT_PARAMETER",
    "COMBINE_RULE",
    "COMBINER_DEADLINE_S",
    "SAGEMAKER_RUNTIME_ENDPOINT_URL",
)
DEPLOYMENT_TTL_S = 60.0
_deployments: dict[str, tuple[float, str]] = {}  # parameter name -> (monotonic expiry, endpoint name)
_ssm: list[Any] = []


def resolve_endpoints(env: Mapping[str, str]) -> Mapping[str, str]:
    """``env`` with <MODEL>_ENDPOINT filled in from <MODEL>_DEPLOYMENT_PARAMETER where that is set instead."""
    resolved = dict(env)
    for model in MODELS:
        parameter = env.get(f"{model.upper()}_DEPLOYMENT_PARAMETER", "").strip()
        if not parameter:
            continue
        if env.get(f"{model.upper()}_ENDPOINT", "").strip():
            raise CombinerError(
                500,
                f"configuration: set {model.upper()}_ENDPOINT or {model.upper()}_DEPLOYMENT_PARAMETER, not both",
            )
        resolved[f"{model.upper()}_ENDPOINT"] = _deployed_endpoint(parameter)
    return resolved


def _deployed_endpoint(parameter: str) -> str:
    import time

    now = time.monotonic()
    cached = _deployments.get(parameter)
    if cached and cached[0] > now:
        return cached[1]
    try:
        name = _read_deployment(parameter)
    except CombinerError as e:
        if not cached:
            raise
        import sys

        print(f"combiner: keeping endpoint {cached[1]} for another {DEPLOYMENT_TTL_S:g} s: {e}", file=sys.stderr)
        name = cached[1]
    _deployments[parameter] = (now + DEPLOYMENT_TTL_S, name)
    return name


def _read_deployment(parameter: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        value = _ssm_client().get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "error")
        message = e.response.get("Error", {}).get("Message") or str(e)
        if code == "ParameterNotFound":
            raise CombinerError(503, f"deployment parameter {parameter} not found: no model deployed yet") from None
        status = 500 if code in ("AccessDeniedException", "AccessDenied") else 502
        raise CombinerError(status, f"deployment parameter {parameter}: SSM {code}: {message}") from None
    except BotoCoreError as e:
        raise CombinerError(502, f"deployment parameter {parameter}: SSM unreachable: {e}") from None
    try:
        name = json.loads(value)["EndpointName"]
    except (ValueError, KeyError, TypeError):
        name = None
    if not isinstance(name, str) or not name.strip():
        raise CombinerError(
            500, f"deployment parameter {parameter}: expected JSON with an EndpointName, found {value[:100]!r}"
        )
    return name.strip()


def _ssm_client():
    if not _ssm:
        import boto3
        from botocore.config import Config

        cfg = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})
        region = None if os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") else "us-east-1"
        _ssm.append(boto3.client("ssm", region_name=region, config=cfg))
    return _ssm[0]
