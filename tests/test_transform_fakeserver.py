"""A tiny stand-in for a serving container, for the batch transform runner's tests (127.0.0.1 only).

/ping, /execution-parameters (a configurable answer, or 404) and /invocations answering one deterministic score
per line: for CSV the sum of the cells, for JSON the sum of the numbers in the value (or of its "features").
A record containing FAIL gets a 400 naming the payload's line, as a real container's validation does.
Every request is recorded, so the tests can count requests and look at what was sent.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


def score(value) -> float:
    if isinstance(value, dict):
        value = value.get("features", list(value.values()))
    if isinstance(value, list):
        return float(sum(score(v) for v in value))
    return float(value)


class FakeModelServer:
    def __init__(
        self,
        execution_parameters: dict | None = None,
        *,
        fail_status: int = 400,
        extra_output_line: bool = False,
        hold: int = 0,
    ):
        self.execution_parameters = execution_parameters
        self.fail_status = fail_status
        self.extra_output_line = extra_output_line
        # hold=N: the first N /invocations wait until N are in flight, then answer in REVERSE order of arrival.
        self.hold = hold
        self.requests: list[dict] = []
        self.completed: list[int] = []  # arrival numbers, in the order the answers were sent
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.barrier = threading.Barrier(hold) if hold else None
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> FakeModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.barrier is not None:
            self.barrier.abort()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def invocations(self) -> list[dict]:
        return [r for r in self.requests if r["path"] == "/invocations"]

    # -- the model --------------------------------------------------------------------------------------
    def answer(self, body: bytes, content_type: str, accept: str) -> tuple[int, bytes, str]:
        lines = [ln for ln in body.decode().split("\n") if ln.strip()]
        out = []
        for k, line in enumerate(lines, start=1):
            if "FAIL" in line:
                return self.fail_status, f"line {k}: the record is marked FAIL".encode(), "text/plain"
            if content_type.startswith("text/csv"):
                cells = next(csv.reader(io.StringIO(line)))
                value = sum(float(c) for c in cells)
            else:
                value = score(json.loads(line))
            out.append(str(value) if accept == "text/csv" else json.dumps({"score": value}))
        if self.extra_output_line:
            out.append(out[-1])
        return 200, ("\n".join(out) + "\n").encode(), accept or "text/csv"

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                with server.lock:
                    server.requests.append({"path": self.path})
                if self.path == "/ping":
                    self.send(200, b"")
                elif self.path == "/execution-parameters" and server.execution_parameters is not None:
                    self.send(200, json.dumps(server.execution_parameters).encode(), "application/json")
                else:
                    self.send(404, b"not found")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                content_type = self.headers.get("Content-Type", "")
                accept = self.headers.get("Accept", "")
                with server.lock:
                    arrival = len(server.invocations)
                    server.requests.append(
                        {"path": self.path, "body": body, "content_type": content_type, "accept": accept}
                    )
                held = arrival < server.hold
                if held:
                    server.barrier.wait(timeout=30)  # all N requests are in flight at once
                    with server.cond:
                        # Later arrivals answer first: a runner that does not restore order would be caught.
                        server.cond.wait_for(
                            lambda: all(a in server.completed for a in range(arrival + 1, server.hold))
                        )
                status, out, out_type = server.answer(body, content_type, accept)
                self.send(status, out, out_type)
                with server.cond:
                    server.completed.append(arrival)
                    server.cond.notify_all()

        return Handler


# -- the stand-in itself -----------------------------------------------------------------------------------
def test_fake_server_scores_csv_and_json_lines_one_line_per_record():
    with FakeModelServer() as fake:
        r = requests.post(
            f"{fake.url}/invocations", data=b"1,2\n3,4\n", headers={"Content-Type": "text/csv", "Accept": "text/csv"}
        )
        assert r.status_code == 200 and r.content == b"3.0\n7.0\n"
        r = requests.post(
            f"{fake.url}/invocations",
            data=b'{"features":[1,2]}\n[5]\n',
            headers={"Content-Type": "application/jsonlines", "Accept": "application/jsonlines"},
        )
        assert r.content == b'{"score": 3.0}\n{"score": 5.0}\n'
        r = requests.post(f"{fake.url}/invocations", data=b"1\nFAIL\n", headers={"Content-Type": "text/csv"})
        assert (r.status_code, r.text) == (400, "line 2: the record is marked FAIL")
        assert requests.get(f"{fake.url}/execution-parameters").status_code == 404
