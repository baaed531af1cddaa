"""emulators.capture: the capturing reverse proxy, against a stub model server whose answers the tests control."""

from __future__ import annotations

import base64
import json
import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import requests

from emulators.capture import INFERENCE_ID_HEADER, CaptureProxy, main

EPOCH = datetime(2024, 3, 5, 7, 59, 59, 250000, tzinfo=UTC)


class _Stub(BaseHTTPRequestHandler):
    """POST /invocations: 200 with ``out:<body>``; the body ``fail <status>`` is answered with that status.
    The response Content-Type is the request's ``X-Answer-Type`` (default text/csv)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    seen: ClassVar[list[dict]] = []

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._send(200, b"", "text/plain")
        else:
            self._send(404, b"no such route", "text/plain")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Stub.seen.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
        if body.startswith(b"fail "):
            status = int(body.split()[1])
            self._send(status, f"line 1: rejected with {status}".encode(), "text/plain; charset=utf-8")
            return
        ctype = self.headers.get("X-Answer-Type", "text/csv")
        self._send(200, b"out:" + body, ctype, {"X-Model-Header": "kept"})


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self, *times: datetime):
        self.times = list(times)

    def __call__(self) -> datetime:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def capture_lines(root: Path) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(root.rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            out.append((path, json.loads(line)))
    return out


def proxy_for(upstream: str, tmp_path: Path, **kwargs) -> CaptureProxy:
    kwargs.setdefault("clock", Clock(EPOCH))
    return CaptureProxy(upstream, tmp_path / "capture", "car-prices", **kwargs)


def test_forwards_unchanged_and_writes_one_line_in_the_hour_folder(upstream, tmp_path):
    with proxy_for(upstream, tmp_path) as proxy:
        r = requests.post(
            proxy.url + "/invocations",
            data=b"8221,6,4,1,1,1,Buick,sedan",
            headers={"Content-Type": "text/csv", "Accept": "text/csv", "X-Custom": "passed"},
        )
        direct = requests.post(
            upstream + "/invocations",
            data=b"8221,6,4,1,1,1,Buick,sedan",
            headers={"Content-Type": "text/csv", "Accept": "text/csv"},
        )
    assert (r.status_code, r.content, r.headers["Content-Type"]) == (
        200,
        direct.content,
        direct.headers["Content-Type"],
    )
    assert r.headers["X-Model-Header"] == "kept"
    assert _Stub.seen[-2]["headers"]["X-Custom"] == "passed"  # request headers reach the model server
    lines = capture_lines(tmp_path / "capture")
    assert len(lines) == 1
    path, rec = lines[0]
    assert path.parent == tmp_path / "capture" / "car-prices" / "AllTraffic" / "2024" / "03" / "05" / "07"
    assert path.name.startswith("59-59-250-") and path.suffix == ".jsonl"
    assert rec == {
        "captureData": {
            "endpointInput": {
                "observedContentType": "text/csv",
                "mode": "INPUT",
                "data": "8221,6,4,1,1,1,Buick,sedan",
                "encoding": "CSV",
            },
            "endpointOutput": {
                "observedContentType": "text/csv",
                "mode": "OUTPUT",
                "data": "out:8221,6,4,1,1,1,Buick,sedan",
                "encoding": "CSV",
            },
        },
        "eventMetadata": {"eventId": rec["eventMetadata"]["eventId"], "inferenceTime": "2024-03-05T07:59:59Z"},
        "eventVersion": "0",
    }
    assert uuid.UUID(rec["eventMetadata"]["eventId"]).version == 4
    assert proxy.stats["captured"] == 1


def test_json_and_inference_id(upstream, tmp_path):
    body = json.dumps([{"mileage": 8221, "make": "Buick"}]).encode()
    with proxy_for(upstream, tmp_path) as proxy:
        r = requests.post(
            proxy.url + "/invocations",
            data=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "X-Answer-Type": "application/json",
                INFERENCE_ID_HEADER: "car-0007",
            },
        )
    assert r.status_code == 200
    [(_, rec)] = capture_lines(tmp_path / "capture")
    assert rec["eventMetadata"]["inferenceId"] == "car-0007"
    inp, out = rec["captureData"]["endpointInput"], rec["captureData"]["endpointOutput"]
    # observedContentType as sent; the media type (parameters ignored) decides the encoding
    assert (inp["observedContentType"], inp["encoding"], inp["data"]) == (
        "application/json; charset=utf-8",
        "JSON",
        body.decode(),
    )
    assert (out["observedContentType"], out["encoding"]) == ("application/json", "JSON")


def test_unlisted_content_types_are_base64(upstream, tmp_path):
    body = b'{"mileage": 8221}\n{"mileage": 9000}\n'
    with proxy_for(upstream, tmp_path) as proxy:
        requests.post(
            proxy.url + "/invocations",
            data=body,
            headers={"Content-Type": "application/jsonlines", "X-Answer-Type": "application/jsonlines"},
        )
    [(_, rec)] = capture_lines(tmp_path / "capture")
    inp, out = rec["captureData"]["endpointInput"], rec["captureData"]["endpointOutput"]
    assert inp["encoding"] == out["encoding"] == "BASE64"
    assert base64.b64decode(inp["data"]) == body
    assert base64.b64decode(out["data"]) == b"out:" + body


def test_listed_type_that_is_not_utf8_is_base64(upstream, tmp_path):
    body = b"caf\xe9,1"
    with proxy_for(upstream, tmp_path) as proxy:
        requests.post(proxy.url + "/invocations", data=body, headers={"Content-Type": "text/csv"})
    [(_, rec)] = capture_lines(tmp_path / "capture")
    assert rec["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert base64.b64decode(rec["captureData"]["endpointInput"]["data"]) == body


def test_empty_type_lists_base64_everything(upstream, tmp_path):
    with proxy_for(upstream, tmp_path, csv_content_types=(), json_content_types=()) as proxy:
        requests.post(proxy.url + "/invocations", data=b"1,2", headers={"Content-Type": "text/csv"})
    [(_, rec)] = capture_lines(tmp_path / "capture")
    assert rec["captureData"]["endpointInput"]["encoding"] == "BASE64"


@pytest.mark.parametrize("status", [400, 415, 500])
def test_errors_pass_through_unchanged_and_are_not_captured(upstream, tmp_path, status):
    with proxy_for(upstream, tmp_path) as proxy:
        r = requests.post(
            proxy.url + "/invocations", data=f"fail {status}".encode(), headers={"Content-Type": "text/csv"}
        )
        ok = requests.post(proxy.url + "/invocations", data=b"1,2", headers={"Content-Type": "text/csv"})
    assert (r.status_code, r.text, r.headers["Content-Type"]) == (
        status,
        f"line 1: rejected with {status}",
        "text/plain; charset=utf-8",
    )
    assert ok.status_code == 200  # the connection and the proxy survive an error answer
    lines = capture_lines(tmp_path / "capture")
    assert [rec["captureData"]["endpointInput"]["data"] for _, rec in lines] == ["1,2"]
    assert proxy.stats["errors_not_captured"] == 1 and proxy.stats["captured"] == 1


def test_ping_is_forwarded_and_never_captured(upstream, tmp_path):
    with proxy_for(upstream, tmp_path) as proxy:
        r = requests.get(proxy.url + "/ping")
    assert r.status_code == 200 and r.content == b""
    assert capture_lines(tmp_path / "capture") == []


def test_other_routes_are_404_and_not_forwarded(upstream, tmp_path):
    before = len(_Stub.seen)
    with proxy_for(upstream, tmp_path) as proxy:
        r = requests.post(proxy.url + "/execution-parameters", data=b"x")
        g = requests.get(proxy.url + "/invocations")
    assert r.status_code == 404 and "not an endpoint route" in r.text
    assert g.status_code == 404
    assert len(_Stub.seen) == before
    assert capture_lines(tmp_path / "capture") == []


def test_unreachable_model_server_is_502_with_reason(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with proxy_for(dead, tmp_path) as proxy:
        r = requests.post(proxy.url + "/invocations", data=b"1", headers={"Content-Type": "text/csv"})
    assert r.status_code == 502
    assert r.text.startswith(f"capture proxy: model server {dead} unreachable:") and r.text.count("\n") == 1
    assert capture_lines(tmp_path / "capture") == []


def test_files_rotate_per_hour(upstream, tmp_path):
    t1 = EPOCH
    t2 = datetime(2024, 3, 5, 8, 0, 1, tzinfo=UTC)
    with proxy_for(upstream, tmp_path, clock=Clock(t1, t1, t2)) as proxy:
        for _ in range(3):
            requests.post(proxy.url + "/invocations", data=b"1,2", headers={"Content-Type": "text/csv"})
    lines = capture_lines(tmp_path / "capture")
    hours = [p.parent.relative_to(tmp_path / "capture" / "car-prices" / "AllTraffic").as_posix() for p, _ in lines]
    assert hours == ["2024/03/05/07", "2024/03/05/07", "2024/03/05/08"]
    assert len({p for p, _ in lines}) == 2  # one file per hour
    assert [rec["eventMetadata"]["inferenceTime"] for _, rec in lines] == [
        "2024-03-05T07:59:59Z",
        "2024-03-05T07:59:59Z",
        "2024-03-05T08:00:01Z",
    ]


def test_concurrent_requests_each_write_one_intact_line(upstream, tmp_path):
    n = 200
    with proxy_for(upstream, tmp_path) as proxy:

        def send(i: int) -> int:
            with requests.Session() as s:
                r = s.post(
                    proxy.url + "/invocations",
                    data=f"{i},x".encode(),
                    headers={"Content-Type": "text/csv", INFERENCE_ID_HEADER: f"id-{i}"},
                )
                assert r.text == f"out:{i},x"
                return r.status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(send, range(n))) == {200}
    lines = capture_lines(tmp_path / "capture")
    assert len(lines) == n
    by_id = {rec["eventMetadata"]["inferenceId"]: rec for _, rec in lines}
    assert set(by_id) == {f"id-{i}" for i in range(n)}
    for i in range(n):  # input and output of one request stay together
        data = by_id[f"id-{i}"]["captureData"]
        assert data["endpointInput"]["data"] == f"{i},x" and data["endpointOutput"]["data"] == f"out:{i},x"
    assert len({rec["eventMetadata"]["eventId"] for _, rec in lines}) == n


def test_sampling_percentage(upstream, tmp_path):
    with proxy_for(upstream, tmp_path, sampling_percentage=30, rng=random.Random(1)) as proxy:
        for _ in range(100):
            assert requests.post(proxy.url + "/invocations", data=b"1", headers={"Content-Type": "text/csv"}).ok
    draws = random.Random(1)
    expected = sum(draws.random() * 100 < 30 for _ in range(100))
    assert len(capture_lines(tmp_path / "capture")) == expected == proxy.stats["captured"]
    assert proxy.stats["sampled_out"] == 100 - expected
    with proxy_for(upstream, tmp_path / "none", sampling_percentage=0) as proxy:
        requests.post(proxy.url + "/invocations", data=b"1", headers={"Content-Type": "text/csv"})
    assert capture_lines(tmp_path / "none" / "capture") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "ftp://x"}, "expected http://host:port"),
        ({"sampling_percentage": 101}, "expected a number in [0, 100]"),
        ({"endpoint": "a/b"}, "without '/'"),
    ],
)
def test_invalid_configuration(tmp_path, kwargs, message):
    args = {"target": "http://127.0.0.1:1", "dest": tmp_path, "endpoint": "e", **kwargs}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        CaptureProxy(**args)


def test_cli_rejects_bad_target(capsys, tmp_path):
    assert main(["--target", "nope", "--dest", str(tmp_path), "--endpoint", "e"]) == 2
    assert "expected http://host:port" in capsys.readouterr().err


def test_captures_are_what_the_monitor_reads(upstream, tmp_path):
    """The capture reader of monitoring decodes what the proxy writes (CSV, JSON and BASE64)."""
    from monitoring.datacapture import decode_payload

    with proxy_for(upstream, tmp_path) as proxy:
        requests.post(proxy.url + "/invocations", data=b"8221,Buick", headers={"Content-Type": "text/csv"})
        requests.post(
            proxy.url + "/invocations",
            data=b'{"mileage": 8221, "make": "Buick"}\n',
            headers={"Content-Type": "application/jsonlines"},
        )
    # by content type: the two lines may sit in two files whose names do not follow the requests' order
    recs = {
        rec["captureData"]["endpointInput"]["observedContentType"]: rec["captureData"]["endpointInput"]
        for _, rec in capture_lines(tmp_path / "capture")
    }
    assert decode_payload(recs["text/csv"]) == [["8221", "Buick"]]
    assert decode_payload(recs["application/jsonlines"]) == [{"mileage": 8221, "make": "Buick"}]
