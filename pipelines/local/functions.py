"""Lambda functions bound to our handlers in this process: ``lambda:Invoke`` of a bound name runs the handler.

The state machine's ``lambda:invoke`` tasks (and any boto3 Lambda client) call ``Invoke`` as on AWS; a bound
function answers as the Lambda service does: ``StatusCode`` 200 and the handler's JSON result as ``Payload``, or
``FunctionError: Unhandled`` with ``{"errorMessage", "errorType", "stackTrace"}`` when the handler raises, which
Step Functions turns into an error named after the exception class. Unbound names fall through to moto.
"""

from __future__ import annotations

import io
import json
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.response import StreamingBody

from pipelines.local import botohook

Handler = Callable[[dict[str, Any], Any], Any]
_bound: dict[str, Handler] = {}
_lock = threading.Lock()


class Context:
    """The fields of Lambda's context object our handlers may read."""

    def __init__(self, name: str):
        self.function_name = name
        self.aws_request_id = str(uuid.uuid4())
        self.memory_limit_in_mb = 128

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000


def _name(function: str) -> str:
    """``name``, ``name:qualifier``, or ``arn:aws:lambda:region:account:function:name[:qualifier]`` -> name."""
    if function.startswith("arn:"):
        return function.split(":")[6]
    return function.split(":")[0]


def _reply(payload: bytes, function_error: str | None) -> tuple[int, dict[str, Any]]:
    parsed: dict[str, Any] = {
        "StatusCode": 200,
        "ExecutedVersion": "$LATEST",
        "Payload": StreamingBody(io.BytesIO(payload), len(payload)),
    }
    if function_error:
        parsed["FunctionError"] = function_error
    return 200, parsed


def _invoke(operation: str, api: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    if operation != "Invoke":
        return None
    handler = _bound.get(_name(api["FunctionName"]))
    if handler is None:
        return None
    raw = api.get("Payload") or b"{}"
    event = json.loads(raw.read() if hasattr(raw, "read") else raw)
    try:
        result = handler(event, Context(_name(api["FunctionName"])))
    except Exception as e:  # reported as Lambda reports an unhandled error
        body = {
            "errorMessage": str(e),
            "errorType": type(e).__name__,
            "stackTrace": traceback.format_tb(e.__traceback__),
        }
        return _reply(json.dumps(body).encode(), "Unhandled")
    return _reply(json.dumps(result).encode(), None)


@contextmanager
def bound(functions: dict[str, Handler]) -> Iterator[None]:
    """Bind function names to handlers: ``Invoke`` of those names runs them in this process (``botohook``)."""
    with _lock:
        clash = set(functions) & set(_bound)
        if clash:
            raise RuntimeError(f"Lambda functions already bound: {', '.join(sorted(clash))}")
        _bound.update(functions)
        botohook.route("lambda", _invoke)
    try:
        yield
    finally:
        with _lock:
            for name in functions:
                _bound.pop(name, None)
            if not _bound:
                botohook.unroute("lambda")
