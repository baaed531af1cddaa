"""What a worker serves: the model, its schema and the codecs, loaded once at worker start.

Loading never raises: a missing or unreadable model yields a not-ready state carrying a one-line reason; /ping
then answers 500 and /invocations 503 with that reason, and the server keeps running (a crash loop would only
hide the reason). A bad setting is refused earlier, by `python -m serving.serve` (serving/settings.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algorithms import registry
from algorithms.base import Algorithm, linked_files
from core.errors import UserError
from core.schema import FILENAME
from serving.codecs import Codecs
from serving.records import RecordParser
from serving.settings import model_options

log = logging.getLogger("serving")
DEFAULT_BASE_DIR = "/opt/ml"
# One prediction at a time per worker: the worker has one numeric thread, and concurrent XGBoost calls in one
# process halved throughput (measured). A thread of its own, so that a request can stop waiting for it at its
# deadline (SAGEMAKER_MODEL_SERVER_TIMEOUT) while the worker's other threads stay free for /ping and parsing.
_PREDICTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")


def model_dir(env: Mapping[str, str] = os.environ) -> Path:
    """/opt/ml/model, relocated by SAGEMAKER_BASE_DIR like sagemaker-training does (base + "/model")."""
    return Path(env.get("SAGEMAKER_BASE_DIR") or DEFAULT_BASE_DIR) / "model"


@dataclass(frozen=True)
class Served:
    """A loaded model, or the reason there is none."""

    algorithm: Algorithm | None = None
    codecs: Codecs | None = None
    reason: str | None = None
    internal: bool = False  # the reason is our bug or an unreadable file, not the model's owner's to fix

    @property
    def ready(self) -> bool:
        return self.algorithm is not None

    def predict(self, X: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """Predictions; TimeoutError when not done within ``timeout`` seconds (the prediction then still finishes,
        or is dropped if it had not started)."""
        future = _PREDICTOR.submit(self.algorithm.predict, X)  # type: ignore[union-attr]
        try:
            return future.result(timeout)
        except FuturesTimeout:
            future.cancel()
            raise TimeoutError from None


def settings_problem(env: Mapping[str, str] = os.environ) -> str | None:
    """Why the serving settings make every model unservable, or None (serving.settings holds the rules)."""
    try:
        model_options(env)
    except UserError as e:
        return str(e)
    return None


def load(env: Mapping[str, str] = os.environ, *, threads: int | None = None, directory: Path | None = None) -> Served:
    """The model in ``directory`` (default: /opt/ml/model; the multi-model server passes each model's own)."""
    directory = model_dir(env) if directory is None else Path(directory)
    try:
        options = model_options(env)
        plugin = registry.get(options.algorithm)
        if not directory.is_dir():
            return Served(reason=f"model directory {directory} does not exist")
        # A link may point anywhere (/etc/passwd): read only files that stay inside the model directory.
        inside = directory.resolve()
        for link in linked_files(directory, [*plugin.MODEL_FILES, FILENAME]):
            if not link.resolve().is_relative_to(inside):
                return Served(reason=f"model file {link} is a symbolic link out of {directory}: refused")
        algorithm = plugin.load(directory, threads=threads)
        codecs = Codecs(RecordParser(algorithm.schema, options.unknown_category), options.default_accept)
        return Served(algorithm, codecs)
    except UserError as e:
        return Served(reason=str(e))
    except Exception as e:  # a plug-in bug or an unreadable file: say what, in one line, in the log only
        log.exception("cannot load the model from %s", directory)
        return Served(
            reason=f"cannot load the model from {directory}: {type(e).__name__} (details in the log)", internal=True
        )
