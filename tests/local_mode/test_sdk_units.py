"""harness.sdk_local_mode without Docker: the no-AWS-call guards, refusing what local mode ignores, metrics, tars."""

from __future__ import annotations

import socket
from pathlib import Path

import boto3
import pytest

from algorithms.metric_definitions import definitions
from harness import sdk_local_mode as sdk


@pytest.fixture
def guard():
    g = sdk.LoopbackGuard()
    yield g
    g.uninstall()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_botocore_hook_refuses_and_records_an_aws_request(guard, monkeypatch):
    for key, value in sdk.offline_environ().items():
        monkeypatch.setenv(key, value)
    session = boto3.Session(region_name="eu-west-1")
    guard.watch(session)
    with pytest.raises(sdk.AwsCallAttempted, match=r"sts\.eu-west-1\.amazonaws\.com"):
        session.client("sts").get_caller_identity()
    assert len(guard.attempts) == 1
    assert guard.attempts[0].startswith("POST https://sts.eu-west-1.amazonaws.com")


def test_botocore_hook_lets_loopback_through(guard, monkeypatch):
    for key, value in sdk.offline_environ().items():
        monkeypatch.setenv(key, value)
    session = boto3.Session(region_name="eu-west-1")
    guard.watch(session)
    client = session.client("sts", endpoint_url=f"http://127.0.0.1:{closed_port()}")
    client.meta.config.retries = {"max_attempts": 0}
    # Reaches the socket (nothing listens there): a connection error, not the guard.
    with pytest.raises(Exception) as caught:
        client.get_caller_identity()
    assert not isinstance(caught.value, sdk.AwsCallAttempted)
    assert guard.attempts == []


def test_socket_guard_refuses_lookups_and_connects_off_this_machine(guard):
    before = (socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex)
    guard.install()
    with pytest.raises(sdk.AwsCallAttempted, match=r"name lookup of sts\.amazonaws\.com"):
        socket.getaddrinfo("sts.amazonaws.com", 443)
    with pytest.raises(sdk.AwsCallAttempted, match=r"name lookup of 192\.0\.2\.1"):  # create_connection resolves
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with socket.socket() as s, pytest.raises(sdk.AwsCallAttempted, match=r"reach 192\.0\.2\.1:443"):
        s.connect(("192.0.2.1", 443))  # TEST-NET-1: documentation addresses, never routed anyway
    with socket.socket() as s, pytest.raises(sdk.AwsCallAttempted, match=r"reach 169\.254\.169\.254:80"):
        s.connect_ex(("169.254.169.254", 80))  # the EC2 instance-metadata service
    with pytest.raises(ConnectionRefusedError):  # loopback passes the guard and reaches the (closed) port
        socket.create_connection(("127.0.0.1", closed_port()), timeout=1)
    assert guard.attempts == [
        "name lookup of sts.amazonaws.com",
        "name lookup of 192.0.2.1",
        "192.0.2.1:443",
        "169.254.169.254:80",
    ]
    guard.uninstall()
    assert (socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex) == before


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", True), ("10.0.0.1", False), ("169.254.169.254", False), ("sts.amazonaws.com", False),
     ("localhost.amazonaws.com", False), ("", False), (None, False)],
)  # fmt: skip
def test_is_loopback(host, expected):
    assert sdk.is_loopback(host) is expected


@pytest.mark.parametrize(
    ("option", "value"), [("input_filter", "$[1:]"), ("join_source", "Input"), ("output_filter", "$[0,-1]")]
)
def test_transform_refuses_what_local_mode_would_silently_ignore(option, value, tmp_path):
    with pytest.raises(sdk.LocalModeError, match=rf"local mode ignores {option}.*python -m emulators\.transform"):
        sdk.transform(None, "byoc-xgboost", "file:///m.tar.gz", tmp_path, tmp_path / "out", **{option: value})
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_the_defaults_of_the_ignored_options_are_accepted():
    sdk.refuse_ignored_options({"input_filter": "$", "join_source": "None", "output_filter": "$"})
    sdk.refuse_ignored_options({"input_filter": None, "join_source": ""})


def test_transform_rejects_unknown_options(tmp_path):
    with pytest.raises(TypeError, match="unexpected keyword arguments: joins"):
        sdk.transform(None, "i", "file:///m", tmp_path, tmp_path / "out", joins="Input")


def test_parse_metrics_takes_the_last_value_of_each_definition():
    log = (
        "algo-1 | #metrics iteration=0 validation:rmse=5000.5 validation:mae=4000\n"
        "algo-1 | #metrics iteration=1 validation:rmse=2500.25 validation:mae=2000\n"
        "algo-1 | #metrics final train:rmse=1e3 train:r2=0.95\n"
        "algo-1 | validation:rmse=1 (no prefix: not a metric line)\n"
    )
    found = sdk.parse_metrics(log, definitions("xgboost"))
    assert found == {"validation:rmse": 2500.25, "validation:mae": 2000.0, "train:rmse": 1000.0, "train:r2": 0.95}


def test_failure_reason_reads_the_first_line_of_the_failure_file(tmp_path):
    import io
    import tarfile

    def make(name: str, members: dict[str, bytes]) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w:gz") as tar:
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    assert sdk.failure_reason(make("a.tar.gz", {"failure": b"num_round: expected >= 1, received 0\nmore"})) == (
        "num_round: expected >= 1, received 0"
    )
    assert sdk.failure_reason(make("b.tar.gz", {"data/evaluation.json": b"{}"})) is None
    assert sdk.failure_reason(tmp_path / "missing.tar.gz") is None


def test_check_model_data_fails_fast_on_what_would_make_the_sdk_poll_ping_for_120_s(tmp_path):
    import tarfile

    empty = tmp_path / "failed-job" / "model.tar.gz"
    empty.parent.mkdir()
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(sdk.LocalModeError, match="holds no files"):
        sdk.check_model_data(f"file://{empty}")
    with pytest.raises(sdk.LocalModeError, match=r"must be a file:// URI.*s3://bucket/model\.tar\.gz"):
        sdk.check_model_data("s3://bucket/model.tar.gz")
    with pytest.raises(sdk.LocalModeError, match="does not exist"):
        sdk.check_model_data(f"file://{tmp_path}/missing.tar.gz")
    (tmp_path / "text.tar.gz").write_text("not an archive")
    with pytest.raises(sdk.LocalModeError, match=r"not a readable \.tar\.gz"):
        sdk.check_model_data(f"file://{tmp_path}/text.tar.gz")


def test_supervised_gives_up_after_the_timeout_and_says_so():
    import threading
    import types
    import uuid

    release = threading.Event()
    lm = types.SimpleNamespace(run_id=f"unit-{uuid.uuid4().hex}")  # no container carries this label
    try:
        with pytest.raises(sdk.LocalModeError, match=r"^deploy did not finish within 1 s$"):
            sdk.supervised(lm, "deploy", lambda: release.wait(60), timeout=1, grace=0)
    finally:
        release.set()


def test_supervised_names_the_step_and_the_cause_of_a_failure():
    import types
    import uuid

    lm = types.SimpleNamespace(run_id=f"unit-{uuid.uuid4().hex}")

    def fail():
        raise RuntimeError("Failed to run: docker-compose up. Process exited with code: 1")

    with pytest.raises(sdk.LocalModeError, match=r"^training linear failed: RuntimeError: Failed to run: docker"):
        sdk.supervised(lm, "training linear", fail, timeout=30)
    assert sdk.supervised(lm, "ok", lambda: 42, timeout=30) == 42


def _serving_run(monkeypatch, exit_code: str, pings: bool):
    """A fake run whose one container has exited with ``exit_code``; ``pings``: its port answered /ping before."""
    import subprocess
    import types
    import uuid

    lm = types.SimpleNamespace(run_id=f"unit-{uuid.uuid4().hex}", serving_port=1)
    monkeypatch.setattr(sdk, "run_containers", lambda run_id, only_exited=False: ["c1"])
    monkeypatch.setattr(sdk, "container_logs", lambda container, lines=30: "worker crashed")
    monkeypatch.setattr(sdk, "remove_containers", lambda run_id: ["c1"])
    monkeypatch.setattr(sdk, "_pings", lambda lm: pings)

    def docker(*args, **kwargs):
        assert args[:1] == ("inspect",)
        return subprocess.CompletedProcess(args, 0, exit_code + "\n", "")

    monkeypatch.setattr(sdk, "docker", docker)
    return lm


def test_supervised_serving_fails_fast_when_the_container_crashes_before_ping(monkeypatch):
    import threading

    release = threading.Event()
    lm = _serving_run(monkeypatch, "1", pings=False)
    try:
        with pytest.raises(sdk.LocalModeError, match=r"^deploy the serving container exited before it answered /ping"):
            sdk.supervised(lm, "deploy", lambda: release.wait(60), timeout=30, serving=True, grace=0)
    finally:
        release.set()


def test_supervised_serving_accepts_a_container_the_sdk_stopped_after_it_answered(monkeypatch):
    import time

    def transform():
        time.sleep(1.5)  # the SDK is still cleaning up while the stopped container shows as exited
        return "done"

    lm = _serving_run(monkeypatch, "0", pings=True)
    assert sdk.supervised(lm, "batch transform", transform, timeout=30, serving=True) == "done"
    lm = _serving_run(monkeypatch, "0", pings=False)  # stopped (exit 0) before a ping was seen: not a crash either
    assert sdk.supervised(lm, "batch transform", transform, timeout=30, serving=True) == "done"
