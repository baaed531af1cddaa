"""An event-driven HTTP/1.1 front for /ping and /invocations: a gunicorn worker class (``SERVING_FRONT=async``).

Why: a gthread worker gives each open connection one of its few threads, so a handful of slow or idle clients
starve /ping (issue #14). Here one asyncio loop per worker owns every connection; a connection costs a little
memory, not a thread. Headers must arrive within SERVING_HEADER_TIMEOUT and a body within SERVING_BODY_TIMEOUT
(408 and close otherwise). Decode, predict and encode run on one thread per worker, off the loop, so /ping is
answered while a 6 MB batch is being scored. gunicorn's arbiter stays: one accept queue shared by the workers,
restarts, SIGTERM.

The HTTP subset is what SageMaker sends: Content-Length or chunked bodies, keep-alive, pipelining, Expect:
100-continue, HEAD. Everything else is a one-line text error, as everywhere in this server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gunicorn.workers.base import Worker

from serving.app import _STATUS, _TEXT
from serving.errors import RequestError
from serving.multimodel import Action

MAX_HEAD = 64 * 1024  # request line + headers
MAX_REQUEST_LINE = 8190
IDLE_TIMEOUT = 5.0  # a kept-alive connection with no request (gunicorn's keepalive setting here)
STOP_LINGER = 2.0  # after SIGTERM, an idle kept-alive connection stays open this long for a request in transit
SWEEP_INTERVAL = 0.25  # how often connection deadlines are checked
INLINE_BYTES = 4096  # bodies up to this size are scored on the loop (see _dispatch)
# A Content-Length body with more than this still to come is kept as the pieces the socket gives and joined once:
# appending 256 KiB reads to one bytearray regrows and copies it ~25 times for 6 MB (~10 ms, measured).
PIECES_BYTES = 1024 * 1024
_REASONS = {
    100: "Continue",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    **{int(k): v.split(" ", 1)[1] for k, v in _STATUS.items()},
    404: "Not Found",
}
_HEAD, _BODY, _BUSY, _CLOSED = range(4)


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _reply(status: int, content_type: str | None, body: bytes, keep_alive: bool, head_only: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def _text(status: int, message: str) -> tuple[int, str, bytes]:
    return status, _TEXT, (" ".join(message.split()) + "\n").encode("utf-8", "replace")


class Connection(asyncio.Protocol):
    """One client connection: parse a request, answer it, then the next (in order)."""

    def __init__(self, worker: AsyncWorker):
        self.worker = worker
        self.loop = worker.loop
        self.transport: Any = None
        self.buffer = bytearray()
        self.pieces: list[bytes] | None = None  # a large body's pieces so far (see PIECES_BYTES)
        self.pieces_size = 0
        self.state = _HEAD
        # One deadline per connection, checked by the worker's sweep: no timer handle per request.
        self.deadline = 0.0
        self.on_deadline: Any = None
        self.served = 0
        self.writing = True
        self.request: dict[str, Any] = {}

    # -- asyncio callbacks ---------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) and peer else "-"
        self.worker.connections.add(self)
        self._idle()

    def connection_lost(self, exc) -> None:
        self.state = _CLOSED
        self._cancel_timer()
        self.worker.connections.discard(self)

    def pause_writing(self) -> None:
        # A client that does not read its answers: stop reading its requests too, so nothing piles up.
        self.writing = False
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing = True
        if self.state in (_HEAD, _BODY):
            self.transport.resume_reading()
            if self.buffer:
                self._process()

    def data_received(self, data: bytes) -> None:
        if self.pieces is not None:
            self.pieces.append(data)
            self.pieces_size += len(data)
            need = self.request["length"]
            if self.pieces_size < need:
                return
            whole = b"".join(self.pieces)  # the one copy of the body
            self.pieces = None
            self.request["body"] = whole if len(whole) == need else whole[:need]
            self.request["ready"] = True
            data = whole[need:]  # the start of a pipelined request, if any
        self.buffer += data
        if self.state in (_HEAD, _BODY):
            self._process()

    # -- timers -------------------------------------------------------------------------------------------
    def _cancel_timer(self) -> None:
        self.on_deadline = None

    def _arm(self, seconds: float, callback) -> None:
        self.deadline = time.monotonic() + seconds
        self.on_deadline = callback

    def _idle(self) -> None:
        linger = STOP_LINGER if not self.worker.alive else IDLE_TIMEOUT
        self._arm(linger, self._close)

    def _expired(self) -> None:
        which = "headers" if self.state == _HEAD else "body"
        limit = self.worker.header_timeout if self.state == _HEAD else self.worker.body_timeout
        self._error(408, f"request {which} not received within {limit:g} s")

    def _close(self) -> None:
        self.state = _CLOSED
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    # -- parsing ------------------------------------------------------------------------------------------
    def _process(self) -> None:
        try:
            while self.state in (_HEAD, _BODY) and self.writing:
                if self.state == _HEAD and not self._parse_head():
                    return
                if not self._read_body():
                    return
                self._dispatch()
        except HttpError as e:
            self._error(e.status, str(e))

    def _parse_head(self) -> bool:
        buf = self.buffer
        if not buf:
            return False
        if "started" not in self.request:
            # First byte of a request: from now on the headers must arrive within the header deadline.
            self.request = {"started": time.monotonic()}
            self._arm(self.worker.header_timeout, self._expired)
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            line_end = buf.find(b"\r\n")
            if (line_end < 0 and len(buf) > MAX_REQUEST_LINE) or line_end > MAX_REQUEST_LINE:
                raise HttpError(414, f"request line longer than {MAX_REQUEST_LINE} bytes")
            if len(buf) > MAX_HEAD:
                raise HttpError(431, f"request headers longer than {MAX_HEAD} bytes")
            return False
        if end > MAX_HEAD:
            raise HttpError(431, f"request headers longer than {MAX_HEAD} bytes")
        head = bytes(buf[:end]).decode("latin-1")
        del buf[: end + 4]
        request_line, *header_lines = head.split("\r\n")
        if len(request_line) > MAX_REQUEST_LINE:
            raise HttpError(414, f"request line longer than {MAX_REQUEST_LINE} bytes")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith(("/", "*")):
            raise HttpError(400, f"invalid request line {request_line[:60]!r}")
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise HttpError(400, f"unsupported HTTP version {version[:20]!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or " " in name:
                raise HttpError(400, f"invalid header line {line[:60]!r}")
            key = name.lower()
            value = value.strip()
            if key in headers:
                if key in ("content-length", "transfer-encoding", "content-type"):
                    if headers[key] != value:
                        raise HttpError(400, f"conflicting {name} headers")
                    continue
                value = headers[key] + ", " + value
            headers[key] = value
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        length, chunked = 0, False
        if "transfer-encoding" in headers:
            if headers["transfer-encoding"].lower() != "chunked":
                raise HttpError(501, f"unsupported Transfer-Encoding {headers['transfer-encoding'][:40]!r}")
            if "content-length" in headers:
                raise HttpError(400, "both Content-Length and Transfer-Encoding")
            chunked = True
        elif "content-length" in headers:
            raw = headers["content-length"]
            if not raw.isdigit() or not raw.isascii():
                raise HttpError(400, f"invalid Content-Length {raw[:40]!r}")
            length = int(raw)
        path, _, query = target.partition("?")
        self.request = {
            "started": self.request.get("started", time.monotonic()),
            "method": method,
            "path": path,
            "query": query,
            "headers": headers,
            "keep_alive": keep_alive,
            "length": length,
            "chunked": chunked,
            "body": bytearray(),
            "chunk_left": -1,
        }
        endpoints = self.worker.endpoints
        if (chunked or length) and length > endpoints.limit:
            # Never read it: the rest of the stream is not a request, so the connection closes after the 413.
            message = f"payload of {length} bytes exceeds SAGEMAKER_MAX_PAYLOAD_IN_MB={endpoints.max_payload_mb} "
            raise HttpError(413, message + f"({endpoints.limit} bytes)")
        if (chunked or length) and headers.get("expect", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.state = _BODY
        self._arm(self.worker.body_timeout, self._expired)
        return True

    def _read_body(self) -> bool:
        req = self.request
        buf = self.buffer
        if not req["chunked"]:
            if req.get("ready"):
                return True
            need = req["length"]
            if len(buf) < need:
                if need - len(buf) > PIECES_BYTES:
                    self.pieces, self.pieces_size = [bytes(buf)], len(buf)
                    buf.clear()
                return False
            with memoryview(buf) as view:
                req["body"] = view[:need].tobytes()
            del buf[:need]
            return True
        body = req["body"]
        limit = self.worker.endpoints.limit
        while True:
            if req["chunk_left"] < 0:  # at a chunk-size line
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 1024:
                        raise HttpError(400, "invalid chunked body: chunk-size line too long")
                    return False
                size = bytes(buf[:end]).split(b";", 1)[0].strip()
                try:
                    if not size or not all(c in b"0123456789abcdefABCDEF" for c in size):
                        raise ValueError
                    n = int(size, 16)
                except ValueError:
                    raise HttpError(400, f"invalid chunked body: chunk size {size[:20]!r}") from None
                if n == 0:  # the last chunk: skip trailers up to the empty line
                    trailer_end = buf.find(b"\r\n\r\n", end)
                    if buf[end : end + 4] == b"\r\n\r\n" or trailer_end == end:
                        del buf[: end + 4]
                    elif trailer_end >= 0:
                        del buf[: trailer_end + 4]
                    else:
                        return False
                    req["body"] = bytes(body)
                    return True
                if len(body) + n > limit:
                    endpoints = self.worker.endpoints
                    raise HttpError(
                        413,
                        f"payload exceeds SAGEMAKER_MAX_PAYLOAD_IN_MB={endpoints.max_payload_mb} ({limit} bytes)",
                    )
                del buf[: end + 2]
                req["chunk_left"] = n
            n = req["chunk_left"]
            if len(buf) < n + 2:
                return False
            if buf[n : n + 2] != b"\r\n":
                raise HttpError(400, "invalid chunked body: chunk not followed by CRLF")
            body += buf[:n]
            del buf[: n + 2]
            req["chunk_left"] = -1

    # -- answering ------------------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        req = self.request
        method, path = req["method"], req["path"]
        self._cancel_timer()
        self.state = _BUSY
        endpoints = self.worker.endpoints
        multimodel = self.worker.multimodel
        if multimodel is not None and (path in ("/invocations", "/models") or path.startswith("/models/")):
            self._multimodel(multimodel, method, path)
        elif path == "/invocations":
            if method != "POST":
                self._respond(*_text(405, f"405 Method Not Allowed: {method} {path}; use POST"))
                return
            headers = req["headers"]
            if len(req["body"]) <= INLINE_BYTES:
                # A few records: scoring them costs less than handing them to the thread and back (~100 us of
                # CPU, measured), and holds the loop for well under a millisecond.
                self._respond(*endpoints.answer(req["body"], headers.get("content-type"), headers.get("accept")))
                return
            self._offload(endpoints.answer, req["body"], headers.get("content-type"), headers.get("accept"))
        elif path == "/ping" and method in ("GET", "HEAD"):
            status, content_type, body = endpoints.ping()
            self._respond(status, content_type, body, head_only=method == "HEAD")
        elif path == "/execution-parameters":
            if method in ("GET", "HEAD"):
                self._respond(200, "application/json", self.worker.execution_parameters, head_only=method == "HEAD")
            else:
                self._respond(*_text(405, f"405 Method Not Allowed: {method} {path}"))
        else:
            self._respond(*_text(404, f"404 Not Found: {method} {path}"))

    def _offload(self, function, *args, bounded: bool = True) -> None:
        """Run ``function(*args)`` on the worker's scoring thread and answer with its result (504 past the
        request's deadline when ``bounded``); the connection reads nothing more meanwhile."""
        endpoints = self.worker.endpoints
        self.transport.pause_reading()
        work = self.loop.run_in_executor(self.worker.predictor, function, *args)
        remaining = None
        if bounded and endpoints.timeout:
            remaining = endpoints.timeout - (time.monotonic() - self.request["started"])
        task = self.loop.create_task(self._invoke(work, remaining))
        self.worker.tasks.add(task)
        task.add_done_callback(self.worker.tasks.discard)

    def _multimodel(self, multimodel, method: str, path: str) -> None:
        """/models and /models/{name}[/invoke] (serving.multimodel). Loads run off the loop; an invocation of a
        model this worker holds is answered as /invocations is (small bodies on the loop)."""
        req = self.request
        action = multimodel.handle(method, path, req.get("query", ""))
        if not isinstance(action, Action):
            self._respond(*action)
            return
        if action.kind == "load":
            self._offload(multimodel.load_request, req["body"], bounded=False)
            return
        headers = req["headers"]
        content_type, accept = headers.get("content-type"), headers.get("accept")
        try:
            served = multimodel.cached(action.name)
        except RequestError as e:
            self._respond(*_text(e.status, e.message))
            return
        if served is not None and len(req["body"]) <= INLINE_BYTES:
            self._respond(*self.worker.endpoints.answer(req["body"], content_type, accept, served=served))
            return
        endpoints = self.worker.endpoints
        self._offload(multimodel.invoke, endpoints, action.name, req["body"], content_type, accept)

    async def _invoke(self, work: asyncio.Future, remaining: float | None) -> None:
        try:
            status, content_type, body = await asyncio.wait_for(asyncio.shield(work), remaining)
        except TimeoutError:
            status, content_type, body = _text(504, self.worker.endpoints.timed_out().message)
        if self.state == _CLOSED:
            return
        self._respond(status, content_type, body)
        if self.state != _CLOSED and self.writing:
            self.transport.resume_reading()
            self._process()

    def _respond(self, status: int, content_type: str | None, body: bytes, head_only: bool = False) -> None:
        req = self.request
        self.served += 1
        keep_alive = (
            req.get("keep_alive", False)
            and self.worker.alive
            and self.served < self.worker.max_requests_per_connection
            and status != 413
        )
        self.transport.write(_reply(status, content_type, body, keep_alive, head_only))
        self.worker.access(self.peer, req, status, len(body))
        self.request = {}
        if keep_alive:
            self.state = _HEAD
            self._idle()
        else:
            self._close_after_write()

    def _error(self, status: int, message: str) -> None:
        if self.state == _CLOSED:
            return
        reason = _REASONS.get(status, "Error")
        self.request["keep_alive"] = False
        self.transport.resume_reading()
        # 413 is the app's own message (as from the gthread front); the HTTP layer's name their status first.
        self._respond(*_text(status, message if status == 413 else f"{status} {reason}: {message}"))

    def _close_after_write(self) -> None:
        self.state = _CLOSED
        self._cancel_timer()
        self.transport.close()  # asyncio flushes the buffered response, then closes (FIN)


class AsyncWorker(Worker):
    """A gunicorn worker running one asyncio loop over its connections."""

    alive: bool  # gunicorn's Worker sets it (untyped here); False once told to stop
    max_requests_per_connection = 100
    header_timeout = 10.0
    body_timeout = 60.0

    def run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task] = set()
        self.predictor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        app = self.wsgi
        self.endpoints = app.wsgi_app  # serving.app.Endpoints (create_app installs it)
        self.multimodel = self.endpoints.multimodel  # serving.multimodel.MultiModel, or None
        self.execution_parameters = app.config["EXECUTION_PARAMETERS"].encode()
        self.stopped = self.loop.create_future()
        # The model and the libraries are loaded: keep the collector from walking them again and again.
        gc.collect()
        gc.freeze()
        self.loop.add_signal_handler(signal.SIGTERM, self._stop)
        for sig in (signal.SIGQUIT, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._quit)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.predictor.shutdown(wait=False, cancel_futures=True)
            self.loop.close()

    def _sweep(self) -> None:
        if self.multimodel is not None:
            self.multimodel.reconcile()  # free the models another worker unloaded
        now = time.monotonic()
        for conn in list(self.connections):
            if conn.on_deadline is not None and conn.deadline <= now:
                callback, conn.on_deadline = conn.on_deadline, None
                callback()
        self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    async def _serve(self) -> None:
        self._sweep()
        servers = [
            await self.loop.create_server(lambda: Connection(self), sock=listener.sock, backlog=self.cfg.backlog)
            for listener in self.sockets
        ]
        self.servers = servers
        beat = max(0.5, min(self.timeout / 2, 2.0))
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                self.alive = False
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.stopped), beat)
        await self._drain()

    def _stop(self) -> None:
        """SIGTERM: stop accepting at once; answer what is in flight, each last answer with Connection: close."""
        if not self.alive:
            return
        self.alive = False
        for server in getattr(self, "servers", ()):
            server.close()
        for listener in self.sockets:
            listener.close()
        for conn in list(self.connections):
            if conn.state == _HEAD and not conn.buffer:
                conn._idle()  # lingers STOP_LINGER for a request already on its way, then closes
        if not self.stopped.done():
            self.stopped.set_result(None)

    def _quit(self) -> None:
        self.alive = False
        raise SystemExit(0)  # gunicorn's SIGQUIT/SIGINT: exit now

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while self.connections and time.monotonic() < deadline:
            self.notify()
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn._close()

    def access(self, peer: str, req: dict, status: int, size: int) -> None:
        """The access line serving.serve.QuietPingLogger writes for gthread, none for /ping."""
        path = req.get("path")
        if path == "/ping" or path is None or not self.log.access_log_enabled:
            return
        ms = (time.monotonic() - req["started"]) * 1000
        self.log.access_log.info('%s "%s %s" %s %sB %.1fms', peer, req.get("method"), path, status, size, ms)
