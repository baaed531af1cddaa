"""Route this process's boto3 ``sagemaker`` and ``sagemaker-runtime`` calls to a LocalSageMaker backend.

    with intercept.installed(backend):
        boto3.client("sagemaker").create_training_job(...)   # answered by the backend, not AWS or moto

How: botocore's ``before-call`` event may answer a call itself (``(http_response, parsed)``; botocore/client.py
``_make_api_call``): a status >= 300 then raises the modeled exception for the error code, as a real answer would.
The handlers sit in ``botocore.handlers.BUILTIN_HANDLERS``, so every session made after this module is imported
has them (moto registers its ``before-send`` stub the same way), including the clients moto's Step Functions
interpreter creates with ``parameter_validation=False``; ``install`` also adds them to boto3's default session if
it already exists. With no backend installed they do nothing.

``before-call`` sees the serialized request; the caller's own parameters are kept from ``provide-client-params``
in the request context.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
from botocore import handlers
from botocore.awsrequest import AWSResponse

from pipelines.local.sagemaker import LocalSageMaker, SageMakerError

SERVICES = ("sagemaker", "sagemaker-runtime")
_PARAMS_KEY = "local_sagemaker_params"
_lock = threading.Lock()
_backend: LocalSageMaker | None = None


def _remember(params: dict, model, context: dict, **_: Any) -> dict | None:
    """Keep the caller's parameters for the backend, and give botocore a copy without unknown members: a client
    without parameter validation (moto's Step Functions interpreter) would fail serializing them (KeyError) before
    ``before-call``. The backend validates the caller's own parameters and answers the ValidationException naming
    them, whatever the client's validation setting (which the event cannot see)."""
    if _backend is None:
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
    backend = _backend
    if backend is None:
        return None
    params = context.get(_PARAMS_KEY, {})
    request_id = str(uuid.uuid4())
    try:
        parsed = backend.handle(model.name, params)
        status = 200
    except SageMakerError as e:
        status = e.status
        parsed = {"Error": {"Code": e.code, "Message": e.message, **e.extra}, **e.extra}
    parsed["ResponseMetadata"] = {
        "RequestId": request_id,
        "HTTPStatusCode": status,
        "HTTPHeaders": {"x-amzn-requestid": request_id},
        "RetryAttempts": 0,
    }
    return AWSResponse("https://sagemaker.local", status, {"x-amzn-requestid": request_id}, None), parsed


_HANDLERS = [(f"{event}.{service}", fn) for service in SERVICES for event, fn in
             (("provide-client-params", _remember), ("before-call", _answer))]  # fmt: skip
for _spec in _HANDLERS:
    if _spec not in handlers.BUILTIN_HANDLERS:
        handlers.BUILTIN_HANDLERS.append(_spec)


def install(backend: LocalSageMaker) -> None:
    """From now on, every boto3 client in this process sends sagemaker / sagemaker-runtime calls to ``backend``."""
    global _backend
    with _lock:
        _backend = backend
        session = boto3.DEFAULT_SESSION
        if session is not None:  # made before this module was imported: it lacks the builtin handlers
            for event, fn in _HANDLERS:
                session._session.register(event, fn, unique_id=f"local-sagemaker-{event}")


def uninstall() -> None:
    global _backend
    with _lock:
        _backend = None


def installed_backend() -> LocalSageMaker | None:
    return _backend


@contextlib.contextmanager
def installed(backend: LocalSageMaker) -> Iterator[LocalSageMaker]:
    """``install`` for the block; the backend is closed when it ends (every exit path)."""
    install(backend)
    try:
        yield backend
    finally:
        uninstall()
        backend.close()
