"""A local stand-in for SageMaker real-time endpoint data capture: a capturing reverse proxy.

    with CaptureProxy("http://127.0.0.1:8080", dest, endpoint="car-prices") as proxy:
        requests.post(proxy.url + "/invocations", data=b"8221,6,4,1,1,1,Buick,sedan",
                      headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": "car-0001"})

or ``python -m emulators.capture --target URL --dest DIR --endpoint NAME [--port 0]`` (until Ctrl-C).

It listens on 127.0.0.1 only, forwards ``GET /ping`` and ``POST /invocations`` to the model server unchanged
(status, body, Content-Type and the other end-to-end headers in both directions) and writes one capture line per
captured invocation where SageMaker's DataCaptureConfig would put it:
``<dest>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<uuid>.jsonl`` (UTC hour of the inference; a new file
per hour and per proxy start), in the layout Model Monitor reads (written by ``monitoring.datacapture``)::

    {"captureData": {"endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",  "data": "...",
                                        "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "...",
                                        "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid4>", "inferenceId": "<X-Amzn-SageMaker-Inference-Id>",
                       "inferenceTime": "2024-03-05T07:59:59Z"},
     "eventVersion": "0"}

Rules, as SageMaker documents them (CaptureContentTypeHeader, InitialSamplingPercentage, CaptureOptions):

- ``encoding`` is ``CSV`` when the payload's media type (parameters such as ``charset`` ignored, case-insensitive)
  is in ``csv_content_types``, ``JSON`` when in ``json_content_types``, otherwise ``BASE64`` (a payload that is
  not valid UTF-8 is also stored as BASE64). The defaults are the SageMaker Python SDK's (``text/csv`` and
  ``application/json``); pass empty lists for the API's own default, which base64-encodes everything.
- ``observedContentType`` is the Content-Type header exactly as sent (request) or answered (response).
- ``sampling_percentage`` decides per request whether it is captured (100: all; 0: none).
- ``eventMetadata.inferenceId`` only when the caller sent ``X-Amzn-SageMaker-Inference-Id`` (the header
  InvokeEndpoint's ``InferenceId`` becomes); Model Monitor merges ground truth on it.
- Only invocations the model server answered with 2xx are captured. An error answer (4xx/5xx) is passed through to
  the caller unchanged and not captured: on SageMaker the caller gets a ModelError and no record is delivered for
  it (our reading of the service's behaviour; the developer guide does not state it). An unreachable model server
  is a 502 with a one-line reason, also not captured. ``stats`` counts every outcome.

Lines are appended under a lock and flushed per request, so a monitor can read the files while traffic flows.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import random
import sys
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# The capture line format is monitoring.datacapture's alone; these names stay importable from here.
from monitoring.datacapture import (
    DEFAULT_CSV_TYPES,
    DEFAULT_JSON_TYPES,
    CaptureWriter,
    capture_record,
    media_type,
    payload,
)

__all__ = [
    "DEFAULT_CSV_TYPES",
    "DEFAULT_JSON_TYPES",
    "INFERENCE_ID_HEADER",
    "CaptureProxy",
    "CaptureWriter",
    "capture_record",
    "main",
    "media_type",
    "payload",
]

INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
DEFAULT_VARIANT = "AllTraffic"
UPSTREAM_TIMEOUT_S = 65  # SageMaker gives an invocation 60 s
# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection and are never forwarded; lengths are recomputed.
HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length")
)  # fmt: skip
ROUTES = {"/ping": "GET", "/invocations": "POST"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as SageMaker's front end talks to the container
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no delayed-ACK stalls
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the caller prints what matters
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers up to the blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        proxy = self.server.proxy
        path = urllib.parse.urlsplit(self.path).path
        try:
            body = self._read_body()
        except ValueError:
            self._reply(400, b"capture proxy: malformed chunked request body\n", [("Content-Type", "text/plain")])
            self.close_connection = True
            return
        if ROUTES.get(path) != self.command:
            proxy.count("not_forwarded")
            message = f"capture proxy: {self.command} {path} is not an endpoint route (GET /ping, POST /invocations)"
            self._reply(404, (message + "\n").encode(), [("Content-Type", "text/plain")])
            return
        when = proxy.clock()
        forward = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        try:
            status, answer, answer_headers = proxy.forward(self.command, self.path, body, forward)
        except OSError as e:
            proxy.count("upstream_unreachable")
            message = f"capture proxy: model server {proxy.target} unreachable: {' '.join(str(e).split())}"
            self._reply(502, (message + "\n").encode(), [("Content-Type", "text/plain")])
            return
        self._reply(status, answer, answer_headers)
        if path == "/invocations":
            proxy.record(status, body, self.headers, answer, dict((k.lower(), v) for k, v in answer_headers), when)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: CaptureProxy


class CaptureProxy:
    """A capturing reverse proxy in front of one model server (one endpoint variant)."""

    def __init__(
        self,
        target: str,
        dest: str | Path,
        endpoint: str,
        variant: str = DEFAULT_VARIANT,
        *,
        sampling_percentage: float = 100.0,
        csv_content_types: Iterable[str] = DEFAULT_CSV_TYPES,
        json_content_types: Iterable[str] = DEFAULT_JSON_TYPES,
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
        timeout: float = UPSTREAM_TIMEOUT_S,
    ):
        parts = urllib.parse.urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"target {target!r}: expected http://host:port of a model server")
        if not 0 <= sampling_percentage <= 100:
            raise ValueError(f"sampling_percentage {sampling_percentage}: expected a number in [0, 100]")
        for name in (endpoint, variant):
            if not name or "/" in name or name in (".", ".."):
                raise ValueError(f"endpoint and variant names must be non-empty without '/', received {name!r}")
        self.target = target.rstrip("/")
        self._host, self._port = parts.hostname, parts.port or 80
        self.root = Path(dest) / endpoint / variant
        self.sampling_percentage = float(sampling_percentage)
        self.csv_types = frozenset(media_type(t) for t in csv_content_types)
        self.json_types = frozenset(media_type(t) for t in json_content_types)
        self.clock = clock or (lambda: datetime.now(UTC))
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self.timeout = timeout
        self.writer = CaptureWriter(self.root)
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.proxy = self
        self._thread: threading.Thread | None = None
        self._local = threading.local()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def count(self, what: str) -> None:
        with self._stats_lock:
            self.stats[what] += 1

    def forward(self, method: str, path: str, body: bytes, headers: list[tuple[str, str]]):
        """(status, body, headers to pass back) from the model server; one keep-alive connection per thread."""
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            try:
                conn.request(method, path, body=body if method == "POST" else None, headers=dict(headers))
                response = conn.getresponse()
                answer = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                self._local.conn = None
                if attempt == 2:  # a kept-alive connection the server closed: retry once on a fresh one
                    raise
                continue
            except OSError:
                conn.close()
                self._local.conn = None
                raise
            back = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"date", "server"}]
            if response.will_close:
                conn.close()
                self._local.conn = None
            return response.status, answer, back
        raise AssertionError("unreachable")

    def record(self, status: int, body: bytes, headers: Any, answer: bytes, answer_headers: dict, when: datetime):
        if not 200 <= status < 300:
            self.count("errors_not_captured")
            return
        with self._rng_lock:
            sampled = self._rng.random() * 100 < self.sampling_percentage
        if not sampled:
            self.count("sampled_out")
            return
        rec = capture_record(
            body,
            headers.get("Content-Type"),
            answer,
            answer_headers.get("content-type"),
            when,
            inference_id=headers.get(INFERENCE_ID_HEADER),
            csv_types=self.csv_types,
            json_types=self.json_types,
        )
        self.writer.write(rec, when)
        self.count("captured")

    def start(self) -> CaptureProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"capture-{self.url}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self.writer.close()

    def __enter__(self) -> CaptureProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emulators.capture", description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="model server URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--dest", type=Path, required=True, help="capture destination (DestinationS3Uri's stand-in)")
    p.add_argument("--endpoint", required=True, help="endpoint name (first folder under --dest)")
    p.add_argument("--variant", default=DEFAULT_VARIANT)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--sampling-percentage", type=float, default=100.0)
    p.add_argument("--csv-content-types", default=",".join(DEFAULT_CSV_TYPES), help="comma-separated")
    p.add_argument("--json-content-types", default=",".join(DEFAULT_JSON_TYPES), help="comma-separated")
    args = p.parse_args(argv)
    split = lambda s: [t for t in s.split(",") if t.strip()]  # noqa: E731
    try:
        proxy = CaptureProxy(
            args.target,
            args.dest,
            args.endpoint,
            args.variant,
            sampling_percentage=args.sampling_percentage,
            csv_content_types=split(args.csv_content_types),
            json_content_types=split(args.json_content_types),
            port=args.port,
        )
    except (ValueError, OSError) as e:
        print(f"capture proxy: {e}", file=sys.stderr)
        return 2
    with proxy:
        print(f"capturing {proxy.url} -> {proxy.target} into {proxy.root} (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    print(f"stopped: {dict(proxy.stats)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
