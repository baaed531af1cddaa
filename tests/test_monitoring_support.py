"""Shared helpers for the monitoring tests (no tests here): the real car data, its baseline, job runners."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cardata import REAL_CSV
from core.schema import Schema
from monitoring import baseline, jobenv, monitor

START = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
# the monitoring window of the tests: the hours around START
WINDOW = ["--start-time", "2024-01-01T10:00:00Z", "--end-time", "2024-01-01T14:00:00Z"]
CAPTURE_FORMAT = '{"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}}'


def cars() -> pd.DataFrame:
    return pd.read_csv(REAL_CSV)


def features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="price")


def write_training(dirpath: Path, frame: pd.DataFrame | None = None) -> Path:
    """Headerless label-first CSV with schema.json beside it, as preprocessing writes it."""
    frame = cars() if frame is None else frame
    dirpath.mkdir(parents=True, exist_ok=True)
    Schema.infer(frame, "price").save(dirpath / "schema.json")
    frame.to_csv(dirpath / "train.csv", header=False, index=False)
    return dirpath


def run(main: Any, argv: list[str], monkeypatch: pytest.MonkeyPatch, base: Path) -> int:
    for name in monitor.ENV_NAMES + baseline.SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    return jobenv.run_job(lambda: main(argv))


def make_baseline(tmp: Path, monkeypatch: pytest.MonkeyPatch, frame: pd.DataFrame | None = None) -> Path:
    train = write_training(tmp / "train", frame)
    out = tmp / "baseline"
    assert run(baseline.main, ["--dataset-source", str(train), "--output-path", str(out)], monkeypatch, tmp) == 0
    return out


def monitor_args(tmp: Path, source: Path, base: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--dataset-source",
        str(source),
        "--output-path",
        str(out),
        "--baseline-statistics",
        str(base / "statistics.json"),
        "--baseline-constraints",
        str(base / "constraints.json"),
        "--schema-path",
        str(tmp / "train" / "schema.json"),
        "--report",
        "Disabled",
        *extra,
    ]


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def violations(out: Path) -> list[dict[str, str]]:
    return read(out / "constraint_violations.json")["violations"]


def by_check(out: Path, check: str) -> dict[str, dict[str, str]]:
    return {v["feature_name"]: v for v in violations(out) if v["constraint_check_type"] == check}


def predictions(frame: pd.DataFrame, seed: int = 0) -> np.ndarray:
    return frame["price"].to_numpy() * np.random.default_rng(seed).normal(1.0, 0.1, len(frame))
