"""The real server (`python -m serving.serve` under gunicorn, as a subprocess on a free port) serving models
trained by `python -m algorithms.train`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from algorithms import registry
from emulators.local_server import LocalServer

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow
FEATURES = ["mileage", "cylinder", "doors", "cruise", "sound", "leather", "make", "body_type"]
ACCEPTS = {
    "text/csv": lambda body: [float(x) for x in body.split("\n")],
    "application/json": lambda body: [p["score"] for p in json.loads(body)["predictions"]],
    "application/jsonlines": lambda body: [json.loads(line)["score"] for line in body.split("\n")],
}


@pytest.fixture(scope="module")
def records(car_splits):
    return car_splits["test"][FEATURES].head(7).reset_index(drop=True)


@pytest.fixture(
    scope="module",
    params=[("xgboost", "async"), ("linear", "async"), ("xgboost", "gthread")],
    ids=["xgboost", "linear", "xgboost-gthread"],
)
def server(request, trained):
    algorithm, front = request.param  # the default front for both models; the former one stays selectable
    result = trained(algorithm)
    with LocalServer(algorithm, result.base_dir, workers=2, env={"SERVING_WORKER_CLASS": front}) as s:
        s.algorithm = algorithm
        s.model = registry.get(algorithm).load(result.model_dir, threads=1)
        yield s


def expected(server, records) -> list[float]:
    return server.model.predict(server.model.schema.encode(records)).tolist()


def bodies(records) -> dict[str, str]:
    rows = records.to_dict(orient="records")
    lists = records.to_numpy().tolist()
    return {
        "text/csv": records.to_csv(header=False, index=False, lineterminator="\r\n"),
        "application/json": json.dumps({"instances": [{"features": r} for r in lists]}),
        "application/jsonlines": "\n".join(json.dumps(r) for r in rows) + "\n",
    }


def post(server, body, content_type="text/csv", accept=None, **kwargs) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    if accept:
        headers["Accept"] = accept
    return requests.post(server.url + "/invocations", data=body, headers=headers, timeout=30, **kwargs)


@pytest.mark.parametrize("content_type", ["text/csv", "application/json", "application/jsonlines"])
@pytest.mark.parametrize("accept", list(ACCEPTS))
def test_every_format_pair_gives_the_in_process_predictions(server, records, content_type, accept):
    r = post(server, bodies(records)[content_type], content_type, accept)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == accept
    assert ACCEPTS[accept](r.text) == expected(server, records)  # one per record, in order, exact


def test_single_record_and_default_accept(server, records):
    r = post(server, records.head(1).to_csv(header=False, index=False), "text/csv; charset=utf-8", "*/*")
    assert (r.status_code, r.headers["Content-Type"]) == (200, "text/csv")
    assert float(r.text) == expected(server, records.head(1))[0]


def test_large_batch_one_line_per_record(server, car_splits):
    frame = car_splits["train"][FEATURES]
    frame = frame.loc[frame.index.repeat(20)].reset_index(drop=True)  # ~11,000 records: the vectorised path
    r = post(server, frame.to_csv(header=False, index=False))
    assert r.status_code == 200, r.text
    assert [float(x) for x in r.text.split("\n")] == expected(server, frame)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("20105,6,4,1,0,0,Buick", "line 1: expected 8 features, received 7"),
        ("20105,6,4,1,0,0,Buick,sedan,0", "line 1: expected 8 features, received 9"),
        ("20105,6,4,1,0,0,Buick,sedan\r\n20105,6,4,1,0,0,Buick,sedan\r\n20105,6,4,1,0,0,Buick\r\n",
         "line 3: expected 8 features, received 7"),
    ],
)  # fmt: skip
def test_exact_feature_count(server, body, message):
    r = post(server, body)
    assert (r.status_code, r.text) == (400, message + "\n")


def test_execution_parameters(server):
    r = requests.get(server.url + "/execution-parameters", timeout=10)
    assert r.json() == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 6}


def test_access_log_is_compact_and_quiet_for_ping(server):
    for _ in range(3):
        assert requests.get(server.url + "/ping", timeout=10).status_code == 200
    marker = "99999,4,4,1,0,0,Saab,sedan"
    assert post(server, marker).status_code == 200
    log = server.log()
    assert '"POST /invocations" 200' in log
    assert "/ping" not in log


def test_form_encoded_body_like_curls_default_is_415(server):
    r = requests.post(server.url + "/invocations", data={"20105,6,4,1,0,0,Buick,sedan": ""}, timeout=10)
    assert r.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert r.status_code == 415
    assert r.text == (
        "unsupported Content-Type 'application/x-www-form-urlencoded'; "
        "expected one of text/csv, application/json, application/jsonlines\n"
    )


def test_payload_limit_with_content_length_and_chunked(server):
    big = b"1,2,3,4,5,6,Saab,wagon\n" * (6 * 1024 * 1024 // 23 + 1)
    r = post(server, big)
    assert r.status_code == 413
    assert r.text == f"payload of {len(big)} bytes exceeds SAGEMAKER_MAX_PAYLOAD_IN_MB=6 (6291456 bytes)\n"
    r = post(server, (big[i : i + 65536] for i in range(0, len(big), 65536)))  # chunked: no Content-Length
    assert (r.status_code, r.text) == (413, "payload exceeds SAGEMAKER_MAX_PAYLOAD_IN_MB=6 (6291456 bytes)\n")
    small = b"20105,6,4,1,0,0,Buick,sedan\n" * 3
    r = post(server, (small[i : i + 10] for i in range(0, len(small), 10)))
    assert r.status_code == 200 and len(r.text.split("\n")) == 3


def raw(server, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


JUNK = (
    b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nContent-Length: 100\r\nContent-Type: text/csv\r\n\r\n1,2",
    b"POST /invocations HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: text/csv\r\n\r\nzz\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello
)


def test_still_correct_after_a_burst_of_garbage(server, records):
    rng = np.random.default_rng(7)
    for _ in range(40):
        raw(server, rng.bytes(int(rng.integers(1, 3000))))
    for junk in JUNK:
        answer = raw(server, junk)
        assert not answer.startswith(b"HTTP/1.1 5"), answer
    for body, ctype in (
        (b"\x00\xff" * 50, "text/csv"),
        (b"[[[[", "application/json"),
        (b"{}", "application/jsonlines"),
    ):
        assert post(server, body, ctype).status_code == 400
    r = post(server, bodies(records)["text/csv"], accept="application/json")
    assert r.status_code == 200
    assert ACCEPTS["application/json"](r.text) == expected(server, records)
    assert server.process.poll() is None
    log = server.log()
    # The second worker may still be booting when a test runs first; a dead one is reaped with one of these lines.
    assert log.count("Booting worker") <= 2, "a worker died and was replaced"
    assert "exited with code" not in log and " was sent " not in log, "a worker died"
    assert "Traceback" not in log


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    content_type=st.sampled_from(["text/csv", "application/json", "application/jsonlines", "text/csv; charset=ascii"]),
)
def test_random_bodies_never_5xx_on_the_real_server(server, body, content_type):
    assert post(server, body, content_type).status_code < 500


# -- lifecycle --------------------------------------------------------------------------------------------
def workers_in_their_loop(arbiter: int) -> list[int]:
    """gunicorn's workers under ``arbiter`` that run their event loop (an epoll fd open), so past post_worker_init."""
    out = []
    children = Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text().split()
    for pid in map(int, children):
        with contextlib.suppress(FileNotFoundError):  # a worker that just exited
            fds = Path(f"/proc/{pid}/fd")
            if any(os.readlink(fd) == "anon_inode:[eventpoll]" for fd in fds.iterdir()):
                out.append(pid)
    return out


def test_missing_model_server_stays_up_ping_500_invocations_503(tmp_path):
    with LocalServer("xgboost", tmp_path, workers=2) as s:
        reason = f"model directory {tmp_path / 'model'} does not exist"
        r = requests.get(s.url + "/ping", timeout=10)
        assert (r.status_code, r.text) == (500, f"model not loaded: {reason}\n")
        r = post(s, "20105,6,4,1,0,0,Buick,sedan")
        assert (r.status_code, r.text) == (503, f"model not loaded: {reason}\n")
        assert s.process.poll() is None
        # The line comes from a worker's post-init hook: wait until both workers are past it (in their loop).
        deadline = time.monotonic() + 30
        while len(workers_in_their_loop(s.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers_in_their_loop(s.process.pid)) == 2, s.log()
        log = s.log()
        assert log.count("model not loaded") == 1, log  # one line for the server, not one per worker
        assert "Traceback" not in log


def test_unreadable_model_file_is_named(tmp_path, trained):
    model = tmp_path / "model"
    model.mkdir()
    for f in trained("xgboost").model_dir.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    (model / "xgboost-model.json").write_text("{not a model")
    with LocalServer("xgboost", tmp_path) as s:
        r = requests.get(s.url + "/ping", timeout=10)
        assert (r.status_code, r.text) == (
            500,
            f"model not loaded: model file {model / 'xgboost-model.json'}: not a readable XGBoost model "
            "(XGBoost's JSON format)\n",
        )


def test_invalid_setting_fails_fast_with_one_line(tmp_path):
    proc = subprocess.run(
        [*LocalServer("xgboost", tmp_path).command()],
        env={**LocalServer("xgboost", tmp_path).environment(), "SAGEMAKER_MODEL_SERVER_WORKERS": "many"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "serving: environment variable SAGEMAKER_MODEL_SERVER_WORKERS: expected an integer, received 'many'"
    )


def test_sigterm_drains_the_request_in_flight_then_exits_0(trained, records):
    result = trained("xgboost")
    body = records.to_csv(header=False, index=False).encode()
    server = LocalServer("xgboost", result.base_dir, workers=1)
    assert server.start() == 200
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        # gunicorn answers 100 Continue once a worker is handling the request: it is now in flight.
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        server.process.terminate()  # SIGTERM, while the worker waits for the body
        sock.sendall(body)
        head, payload = read_response(sock)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert [float(x) for x in payload.decode().split("\n")] == expected_for(result, records)
    assert server.stop() == 0
    assert "Handling signal: term" in server.log()


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, payload = data.split(b"\r\n\r\n", 1)
    length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")))
    while len(payload) < length:
        payload += sock.recv(65536)
    return head, payload


def expected_for(result, records) -> list[float]:
    model = registry.get("xgboost").load(result.model_dir, threads=1)
    return model.predict(model.schema.encode(records)).tolist()


# -- hardening (#14 items 6, 3, 2) ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
        (b"GET /ping HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
        (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", b"400"),
        (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n", b"400"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"400"),
    ],
)
def test_http_layer_errors_are_one_text_line(server, request_bytes, status):
    answer = raw(server, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status), answer[:300]
    assert b"\r\nContent-Type: text/plain; charset=utf-8" in head, head
    assert body.endswith(b"\n") and body.count(b"\n") == 1 and b"<" not in body, body
    assert body.startswith(status + b" "), body


ROW = b"20105,6,4,1,0,0,Buick,sedan\n"
REQUEST = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n%s" % (
    len(ROW),
    ROW,
)


@pytest.mark.parametrize("front", ["async", "gthread"])
def test_sigterm_refuses_new_connections_at_once_and_closes_kept_alive_ones_cleanly(trained, front):
    server = LocalServer("xgboost", trained("xgboost").base_dir, workers=2, env={"SERVING_WORKER_CLASS": front})
    assert server.start() == 200
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as kept:
            kept.sendall(REQUEST)
            head, _ = read_response(kept)
            assert b"Connection: keep-alive" in head, head
            server.process.terminate()
            # A connection made after the stop would be accepted by the kernel and reset at exit: it must be
            # refused instead, as soon as the workers have the signal (polled: a loaded machine delivers it late,
            # and the kept-alive connection below only lingers ~2 s).
            deadline = time.monotonic() + 1.5
            while True:
                try:
                    socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
                except ConnectionRefusedError:
                    break
                assert time.monotonic() < deadline, "new connections still accepted 1.5 s after SIGTERM"
                time.sleep(0.05)
            # The kept-alive connection's next request is answered, and told it is the last one.
            kept.sendall(REQUEST)
            head, _ = read_response(kept)
            assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head, head
            assert kept.recv(1) == b""  # then closed cleanly (FIN, not a reset)
    finally:
        assert server.stop() == 0


def _children(pid: int) -> set[int]:
    children: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children.update(int(c) for c in f.read().split())
    return children


def _connections(pid: int) -> int:
    """Sockets open in a worker, besides its listening socket."""
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return sum(link.startswith("socket:") for link in links) - 1


@pytest.mark.parametrize("front", ["async", "gthread"])
def test_a_restarted_worker_gets_keep_alive_traffic_within_seconds(trained, records, front):
    """kill -9 of a worker under keep-alive load: its replacement must take connections, not sit idle."""
    body = records.to_csv(header=False, index=False)
    stop = threading.Event()
    errors = []

    def client(url: str) -> None:
        with requests.Session() as session:
            for _ in range(20000):  # bounded; stopped by the event well before
                if stop.is_set():
                    return
                try:
                    session.post(url + "/invocations", data=body, headers={"Content-Type": "text/csv"}, timeout=10)
                except requests.RequestException as e:  # the killed worker's connections
                    errors.append(e)

    with LocalServer("xgboost", trained("xgboost").base_dir, workers=2, env={"SERVING_WORKER_CLASS": front}) as server:
        workers = _children(server.process.pid)
        assert len(workers) == 2
        threads = [threading.Thread(target=client, args=(server.url,)) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1)
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            new = set()
            while not new and time.monotonic() - killed < 20:
                time.sleep(0.05)
                new = _children(server.process.pid) - workers
            assert new, "no replacement worker"
            (replacement,) = new
            took_connections = None
            while time.monotonic() - killed < 10:
                if _connections(replacement) > 0:
                    took_connections = time.monotonic() - killed
                    break
                time.sleep(0.01)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    assert took_connections is not None, "the replacement worker took no connection within 10 s of the kill"
    assert len(errors) <= 4  # at most the requests in flight on the killed worker


@pytest.mark.parametrize("algorithm", ["xgboost", "linear"])
def test_single_records_never_import_pandas(trained, algorithm):
    """pandas costs a worker ~0.2-0.5 s of start-up: loading a model and answering single records (CSV, JSON)
    must not import it; only a large CSV body's vectorised parser does."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from serving import model\n"
        f"served = model.load({{'ALGORITHM': '{algorithm}'}}, directory=Path(sys.argv[1]))\n"
        "assert served.reason is None, served.reason\n"
        "answer = served.codecs.decoder('text/csv')(b'20105,6,4,1,0,0,Buick,sedan')\n"
        "served.codecs.decoder('application/json')(b'[20105,6,4,1,0,0,\"Buick\",\"sedan\"]')\n"
        "served.algorithm.predict(answer)\n"
        "print('pandas' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(trained(algorithm).model_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
