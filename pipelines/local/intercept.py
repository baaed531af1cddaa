"""Route this process's boto3 ``sagemaker`` and ``sagemaker-runtime`` calls to a LocalSageMaker backend.

    with intercept.installed(backend):
        boto3.client("sagemaker").create_training_job(...)   # answered by the backend, not AWS or moto

The mechanism is ``botohook``'s; with no backend installed the calls pass through (to moto, under ``mock_aws``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from pipelines.local import botohook
from pipelines.local.sagemaker import LocalSageMaker, SageMakerError

SERVICES = ("sagemaker", "sagemaker-runtime")
_lock = threading.Lock()
_backend: LocalSageMaker | None = None


def _answer(operation: str, params: dict) -> tuple[int, dict] | None:
    backend = _backend
    if backend is None:
        return None
    try:
        return 200, backend.handle(operation, params)
    except SageMakerError as e:
        return e.status, {"Error": {"Code": e.code, "Message": e.message, **e.extra}, **e.extra}


def install(backend: LocalSageMaker) -> None:
    """From now on, every boto3 client in this process sends sagemaker / sagemaker-runtime calls to ``backend``."""
    global _backend
    with _lock:
        _backend = backend
        for service in SERVICES:
            botohook.route(service, _answer)


def uninstall() -> None:
    global _backend
    with _lock:
        _backend = None
        for service in SERVICES:
            botohook.unroute(service)


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
