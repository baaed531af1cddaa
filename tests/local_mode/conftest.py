"""Fixtures for the SageMaker SDK local-mode tests: one LocalSession per package, the channels, trained models.

The tests marked ``container`` need a Docker engine, Docker Compose and the images byoc-xgboost / byoc-linear.
Without them they are skipped with the reason, except in CI (CI=true), where that is a failure: the same rule
as tests/container (its ``unavailable`` helper is reused).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import sdk_local_mode as sdk
from tests.container.conftest import IMAGES as ALL_IMAGES
from tests.container.conftest import REPO, unavailable

IMAGES = {name: ALL_IMAGES[name] for name in ("xgboost", "linear")}
# Few rounds: these tests check the local-mode plumbing; model quality is tests/test_train_contract.py's job.
FAST = {"xgboost": {"num_round": "30", "max_depth": "3"}, "linear": {"epochs": "5"}}


@pytest.fixture(scope="session")
def local_mode_ready() -> None:
    if importlib.util.find_spec("sagemaker") is None:  # not imported here: open_local_mode sets its environment first
        unavailable("the SageMaker Python SDK is not installed (pip install -r requirements/dev.txt)")
    problem = sdk.preflight(list(IMAGES.values()))
    if problem:
        unavailable(f"SageMaker local mode cannot run: {problem}")


@pytest.fixture(scope="package")
def lm(local_mode_ready, tmp_path_factory):
    """One guarded LocalSession for the package; the process environment is restored afterwards."""
    saved = {key: os.environ.get(key) for key in sdk.offline_environ()}
    mode = sdk.open_local_mode(tmp_path_factory.mktemp("local-mode"))
    try:
        yield mode
    finally:
        mode.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="package")
def channels(tmp_path_factory) -> Path:
    """train / validation / test channels of the real data, made by the preprocessing entry point."""
    out = tmp_path_factory.mktemp("channels")
    subprocess.run(
        [sys.executable, "-m", "processing.preprocess", "--input", str(REPO / "cardata" / "car_prices.csv"),
         "--output", str(out)],
        cwd=REPO, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return out


@pytest.fixture(scope="package")
def test_rows(channels) -> tuple[list[list[str]], list[float]]:
    """The test channel split into feature rows (CSV strings) and labels."""
    with next((channels / "test").glob("*.csv")).open(newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    return [row[1:] for row in rows], [float(row[0]) for row in rows]


@pytest.fixture(scope="package")
def price_range() -> tuple[float, float]:
    with (REPO / "cardata" / "car_prices.csv").open(newline="") as f:
        prices = [float(row["price"]) for row in csv.DictReader(f)]
    return min(prices), max(prices)


@pytest.fixture(scope="package")
def local_trained(lm, channels):
    """One local-mode training job per algorithm, on demand."""
    done: dict[str, sdk.Trained] = {}

    def get(algorithm: str) -> sdk.Trained:
        if algorithm not in done:
            done[algorithm] = sdk.train(lm, algorithm, IMAGES[algorithm], channels, FAST[algorithm], echo=False)
        return done[algorithm]

    return get
