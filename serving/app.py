"""The WSGI app: /ping, /invocations, /execution-parameters. Formats come from serving.codecs, never from here.

/ping and /invocations are answered by a small WSGI layer in front of Flask (installed as Flask's
``wsgi_app`` middleware): Flask's per-request machinery (request context, URL map, response object) cost about
four times the decode + predict + encode of a single record, which is the hot path. Everything else
(/execution-parameters, 404/405 for unknown routes) goes through Flask.

Every error response is text/plain with a one-line message; the worker survives all of them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable

import numpy as np
from flask import Flask, Response, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import HTTPException

from serving.errors import BadRequest, PayloadTooLarge, RequestError
from serving.model import Served
from serving.records import show

log = logging.getLogger("serving")
_READ_CHUNK = 1 << 20
_TEXT = "text/plain; charset=utf-8"
_STATUS = {
    200: "200 OK",
    400: "400 Bad Request",
    405: "405 Method Not Allowed",
    404: "404 Not Found",
    406: "406 Not Acceptable",
    409: "409 Conflict",
    413: "413 Payload Too Large",
    415: "415 Unsupported Media Type",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
    504: "504 Gateway Timeout",
    507: "507 Insufficient Storage",
}


def read_body(stream, limit: int) -> bytes | None:
    """At most ``limit`` bytes of the body, or None when there are more (chunked bodies have no Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_READ_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None


class Endpoints:
    """WSGI middleware answering /ping and /invocations; anything else goes to the wrapped (Flask) app."""

    def __init__(
        self, fallback: Callable, served: Served, max_payload_mb: int, timeout: float | None = None, multimodel=None
    ):
        self.fallback = fallback
        self.served = served
        self.multimodel = multimodel  # serving.multimodel.MultiModel when SAGEMAKER_MULTI_MODEL=true
        self.max_payload_mb = max_payload_mb
        self.limit = max_payload_mb * 1024 * 1024
        self.timeout = timeout  # SAGEMAKER_MODEL_SERVER_TIMEOUT: seconds from the start of the request

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO") or "", environ.get("REQUEST_METHOD")
        if self.multimodel is not None and (path == "/invocations" or path == "/models" or path.startswith("/models/")):
            status, content_type, body = self.multimodel.wsgi(environ, self)
        elif path == "/invocations":
            if method == "POST":
                status, content_type, body = self.invocations(environ)
            else:
                status, content_type, body = 405, _TEXT, f"405 Method Not Allowed: {method} {path}; use POST\n".encode()
        elif path == "/ping" and method in ("GET", "HEAD"):
            status, content_type, body = self.ping()
        else:
            return self.fallback(environ, start_response)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if status == 413:  # the rest of the body was never read: don't parse it as the next request
            headers.append(("Connection", "close"))
        start_response(_STATUS[status], headers)
        return [body] if method != "HEAD" else []

    def ping(self) -> tuple[int, str, bytes]:
        if self.multimodel is not None:
            return self.multimodel.ping()
        if self.served.ready:
            return 200, "text/plain", b""
        return 500, _TEXT, f"model not loaded: {self.served.reason}\n".encode()

    def invocations(self, environ: dict, served: Served | None = None) -> tuple[int, str, bytes]:
        try:
            return self._invoke(environ, time.monotonic(), served)
        except RequestError as e:
            return e.status, _TEXT, (e.message + "\n").encode()
        except Exception as e:
            log.exception("unexpected error in POST /invocations")
            return 500, _TEXT, f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]}\n".encode()

    def _invoke(self, environ: dict, started: float, served: Served | None = None) -> tuple[int, str, bytes]:
        served = served or self.served
        if not served.ready:
            raise RequestError(f"model not loaded: {served.reason}", 503)
        too_large = f"exceeds SAGEMAKER_MAX_PAYLOAD_IN_MB={self.max_payload_mb} ({self.limit} bytes)"
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                n = int(length)
            except ValueError:
                raise RequestError(f"invalid Content-Length {length[:40]!r}") from None
            if n > self.limit:
                raise PayloadTooLarge(f"payload of {n} bytes {too_large}")
        codecs = served.codecs
        decode = codecs.decoder(environ.get("CONTENT_TYPE"))  # type: ignore[union-attr]
        encoder = codecs.encoder(environ.get("HTTP_ACCEPT"))  # type: ignore[union-attr]
        # Raw bytes, never form parsing: a form-encoded body must reach the decoder lookup (415), not vanish.
        try:
            body = read_body(environ["wsgi.input"], self.limit) if length or _chunked(environ) else b""
        except (OSError, ParseException) as e:  # a malformed chunked body; a client hanging up
            raise RequestError(f"cannot read the request body: {show(str(e), 100)[1:-1]}") from None
        if body is None:
            raise PayloadTooLarge(f"payload {too_large}")
        X = decode(body)
        remaining = None if self.timeout is None else self.timeout - (time.monotonic() - started)
        try:
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            predictions = served.predict(X, remaining)
        except TimeoutError:
            raise self.timed_out() from None
        return 200, encoder.content_type, self._encode(X, predictions, encoder)

    def timed_out(self) -> RequestError:
        return RequestError(
            f"the request took longer than SAGEMAKER_MODEL_SERVER_TIMEOUT={self.timeout:g} s; "
            "send fewer records per request or raise the timeout",
            504,
        )

    def answer(
        self, body: bytes, content_type: str | None, accept: str | None, served: Served | None = None
    ) -> tuple[int, str, bytes]:
        """Decode, predict and encode a whole body (the event-driven front runs this off its loop)."""
        try:
            served = served or self.served
            if not served.ready:
                raise RequestError(f"model not loaded: {served.reason}", 503)
            decode = served.codecs.decoder(content_type)  # type: ignore[union-attr]
            encoder = served.codecs.encoder(accept)  # type: ignore[union-attr]
            X = decode(body)
            predictions = served.algorithm.predict(X)  # type: ignore[union-attr]
            return 200, encoder.content_type, self._encode(X, predictions, encoder)
        except RequestError as e:
            return e.status, _TEXT, (e.message + "\n").encode()
        except Exception as e:
            log.exception("unexpected error in POST /invocations")
            return 500, _TEXT, f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]}\n".encode()

    @staticmethod
    def _encode(X: np.ndarray, predictions, encoder) -> bytes:
        predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
        if predictions.shape[0] != X.shape[0]:
            raise RuntimeError(f"the model returned {predictions.shape[0]} predictions for {X.shape[0]} records")
        overflowed = np.flatnonzero(~np.isfinite(predictions))
        if len(overflowed):  # the input is out of the model's range: the client's to change, never a 500
            raise BadRequest(
                f"record {int(overflowed[0]) + 1}: the prediction is not a finite number; "
                "the record's values are out of the model's range"
            )
        return encoder.encode(predictions)


def _chunked(environ: dict) -> bool:
    # gunicorn marks bodies whose end it delimits itself (chunked transfer encoding) as terminated.
    return bool(environ.get("wsgi.input_terminated")) or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def create_app(
    served: Served, *, workers: int = 1, max_payload_mb: int = 6, timeout: float | None = None, multimodel=None
) -> Flask:
    app = Flask("serving")
    # SageMaker requires MaxConcurrentTransforms x MaxPayloadInMB <= 100.
    concurrent = max(1, min(workers, 100 // max(max_payload_mb, 1)))
    execution_parameters = json.dumps(
        {"MaxConcurrentTransforms": concurrent, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": max_payload_mb}
    )

    app.config["EXECUTION_PARAMETERS"] = execution_parameters  # the event-driven front answers it too

    @app.get("/execution-parameters")
    def parameters() -> Response:
        return Response(execution_parameters, content_type="application/json")

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        return Response(
            f"{e.code} {e.name}: {request.method} {request.path}\n", status=e.code or 500, content_type=_TEXT
        )

    @app.errorhandler(Exception)
    def server_error(e: Exception) -> Response:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return Response(f"internal error: {type(e).__name__}\n", status=500, content_type=_TEXT)

    app.wsgi_app = Endpoints(app.wsgi_app, served, max_payload_mb, timeout, multimodel)  # type: ignore[method-assign]
    return app
