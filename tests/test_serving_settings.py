"""Every serving setting is checked once, at start: a bad value stops `python -m serving.serve` with one line and
exit 1, before any worker starts, whichever setting it is."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.errors import ConfigurationError
from emulators.local_server import REPO, free_port
from serving import settings

BAD = [
    ("ALGORITHM", "forest", "received 'forest', expected one of xgboost, linear"),
    ("SAGEMAKER_BIND_TO_PORT", "http", "expected an integer, received 'http'"),
    ("SAGEMAKER_BIND_TO_PORT", "70000", "expected an integer in [0, 65535], received 70000"),
    ("SAGEMAKER_MODEL_SERVER_WORKERS", "0", "expected an integer >= 1, received 0"),
    ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "1.5", "expected an integer, received '1.5'"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "-6", "expected an integer >= 1, received -6"),
    ("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/html", "received 'text/html', expected one of text/csv, "
                                                          "application/json, application/jsonlines"),
    ("SERVING_UNKNOWN_CATEGORY", "ignore", "received 'ignore', expected one of error, missing"),
    ("SERVING_WORKER_CLASS", "eventlet", "received 'eventlet', expected one of async, gthread, sync, gevent"),
    ("SERVING_THREADS", "many", "expected an integer, received 'many'"),
    ("SERVING_MAX_REQUESTS_PER_CONNECTION", "0", "expected an integer >= 1, received 0"),
    ("SERVING_HEADER_TIMEOUT", "soon", "expected an integer, received 'soon'"),
    ("SERVING_BODY_TIMEOUT", "0", "expected an integer >= 1, received 0"),
    ("SERVING_ACCESS_LOG", "verbose", "expected 1 or 0 (true/false), received 'verbose'"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "value", "message"), BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_a_bad_setting_stops_the_server_at_start_with_one_line(trained, name, value, message):
    env = {
        **os.environ,
        "ALGORITHM": "xgboost",
        "SAGEMAKER_BASE_DIR": str(trained("xgboost").base_dir),  # a good model: the setting is the only problem
        "SAGEMAKER_BIND_TO_PORT": str(free_port()),
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        name: value,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.serve"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = proc.communicate(timeout=30)  # a server that started instead would run until killed
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert err.decode() == f"serving: environment variable {name}: {message}\n"
    assert out == b""


def test_the_copies_of_the_allowed_values_match_their_owners():
    from algorithms import registry
    from serving import codecs, records

    assert settings.ALGORITHMS == registry.NAMES
    assert settings.UNKNOWN_CATEGORY == records.UNKNOWN_POLICIES
    assert tuple(codecs.ENCODERS) == settings.ACCEPTS


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ALGORITHM": "linear"}, settings.ModelOptions("linear", "error", "text/csv")),
        (
            {"ALGORITHM": " xgboost ", "SERVING_UNKNOWN_CATEGORY": "missing",
             "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "Application/JSON; charset=utf-8"},
            settings.ModelOptions("xgboost", "missing", "application/json"),
        ),
        ({"ALGORITHM": "xgboost", "SERVING_UNKNOWN_CATEGORY": "", "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": " "},
         settings.ModelOptions("xgboost", "error", "text/csv")),
    ],
)  # fmt: skip
def test_good_values_and_defaults(env, expected):
    assert settings.model_options(env) == expected


def test_without_algorithm_the_setting_is_named():
    with pytest.raises(ConfigurationError, match=r"^environment variable ALGORITHM: received None, expected one of"):
        settings.model_options({})


@pytest.mark.parametrize(("raw", "expected"), [("", True), ("1", True), ("Yes", True), ("off", False), ("0", False)])
def test_switch_spellings(raw, expected):
    assert settings.switch({"SERVING_ACCESS_LOG": raw}, "SERVING_ACCESS_LOG", True) is expected
