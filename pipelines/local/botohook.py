"""Answer this process's boto3 calls to a service in-process: the one mechanism behind the local SageMaker and the
local Lambda functions.

botocore's ``before-call`` event may answer a call itself (``(http_response, parsed)``; botocore/client.py
``_make_api_call``): a status >= 300 then raises the modeled exception for the error code, as a real answer would.
``before-call`` sees only the serialized request, so the caller's own parameters are kept from
``provide-client-params`` in the request context. The handlers sit in ``botocore.handlers.BUILTIN_HANDLERS``, so
every session made after this module is imported has them (moto registers its ``before-send`` stub the same way),
including the clients moto's Step Functions interpreter creates with ``parameter_validation=False``; ``route`` also
adds them to boto3's default session if it already exists. Services without a route pass through untouched.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import boto3
from botocore import handlers
from botocore.awsrequest import AWSResponse

# (operation name, the caller's parameters) -> (HTTP status, parsed answer), or None to let the call through.
Answer = Callable[[str, dict], tuple[int, dict] | None]

_PARAMS_KEY = "byoc_local_params"
_lock = threading.Lock()
_routes: dict[str, Answer] = {}


def _service(model) -> str:
    return model.service_model.service_id.hyphenize()


def _remember(params: dict, model, context: dict, **_: Any) -> dict | None:
    """Keep the caller's parameters for the answer, and give botocore a copy without unknown members: a client
    without parameter validation would fail serializing them (KeyError) before ``before-call``; the answer
    validates the caller's own parameters and names what is wrong."""
    if _service(model) not in _routes:
        return None
    context[_PARAMS_KEY] = params
    return _known(params, model.input_shape)


def _known(value: Any, shape) -> Any:
    """``value`` with the members ``shape`` does not declare left out, at every depth."""
    if shape is None:
        return value
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _known(v, shape.members[k]) for k, v in value.items() if k in shape.members}
    if shape.type_name == "list" and isinstance(value, list):
        return [_known(v, shape.member) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _known(v, shape.value) for k, v in value.items()}
    return value


def _answer(model, context: dict, **_: Any):
    answer = _routes.get(_service(model))
    if answer is None or _PARAMS_KEY not in context:
        return None
    result = answer(model.name, context[_PARAMS_KEY])
    if result is None:
        return None
    status, parsed = result
    request_id = str(uuid.uuid4())
    parsed["ResponseMetadata"] = {
        "RequestId": request_id,
        "HTTPStatusCode": status,
        "HTTPHeaders": {"x-amzn-requestid": request_id},
        "RetryAttempts": 0,
    }
    return AWSResponse(f"https://{_service(model)}.local", status, {"x-amzn-requestid": request_id}, None), parsed


_HANDLERS = [("provide-client-params", _remember), ("before-call", _answer)]
for _spec in _HANDLERS:
    if _spec not in handlers.BUILTIN_HANDLERS:
        handlers.BUILTIN_HANDLERS.append(_spec)


def route(service: str, answer: Answer) -> None:
    """From now on, ``answer`` sees every call to ``service`` (botocore's hyphenated service id) in this process,
    instead of any earlier answer for it."""
    with _lock:
        _routes[service] = answer
        session = boto3.DEFAULT_SESSION
        if session is not None:  # made before this module was imported: it lacks the builtin handlers
            for event, fn in _HANDLERS:
                session._session.register(event, fn, unique_id=f"byoc-local-{event}")


def unroute(service: str) -> None:
    with _lock:
        _routes.pop(service, None)
