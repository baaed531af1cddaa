"""gunicorn's gthread worker with what SageMaker's front end needs from it (issue #14).

- Error pages gunicorn writes itself (400 malformed request, 414, 431, bad Content-Length) are one text/plain
  line, like every other error of this server, not gunicorn's HTML.
- SIGTERM closes the listening socket at once: a connection made afterwards is refused, instead of being taken
  into the kernel's queue and reset when the worker exits. Requests in flight finish; each answers
  ``Connection: close`` (gunicorn's own behaviour once stopping).
- A connection is closed after ``max_requests_per_connection`` requests (``Connection: close`` on the last
  answer): the client reconnects to whichever worker accepts first, so a restarted worker gets its share of
  keep-alive traffic within seconds rather than never.
"""

from __future__ import annotations

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

MAX_REQUESTS_PER_CONNECTION = 100


def write_text_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's signature, answering one text line instead of an HTML page."""
    detail = " ".join(str(mesg).split())[:200]
    body = (f"{status_int} {reason}: {detail}\n" if detail else f"{status_int} {reason}\n").encode("utf-8", "replace")
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1", "replace")
    util.write_nonblock(sock, head + body)


class Worker(ThreadWorker):
    max_requests_per_connection = MAX_REQUESTS_PER_CONNECTION

    def init_process(self) -> None:
        # gunicorn's base worker answers malformed requests through util.write_error: make that our format.
        util.write_error = write_text_error
        super().init_process()

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        self.method_queue.defer(self._stop_listening)

    def _stop_listening(self) -> None:
        # On the worker's own loop thread (the poller is not thread-safe). The arbiter closed its copy already.
        self.set_accept_enabled(False)
        for listener in self.sockets:
            listener.close()

    def handle_request(self, req, conn):
        served = getattr(conn, "requests_served", 0) + 1
        conn.requests_served = served
        if served >= self.max_requests_per_connection:
            req.must_close = True  # the answer says Connection: close; the client's next request reconnects
        return super().handle_request(req, conn)
