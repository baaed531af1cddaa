"""Shared helpers for the monitoring tests (no tests here): the real car data, its baseline, job runners."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cardata import REAL_CSV
from core.schema import Schema
from monitoring import baseline, jobenv, monitor
from monitoring.sketches import rank_error

START = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
# the monitoring window of the tests: the hours around START
WINDOW = ["--start-time", "2024-01-01T10:00:00Z", "--end-time", "2024-01-01T14:00:00Z"]
CAPTURE_FORMAT = '{"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}}'
# The monitor job's environment as a SageMaker Processing job gets it (inputs under /opt/ml/processing).
PROCESSING = "/opt/ml/processing"
PROCESSING_ENV = {
    "dataset_source": f"{PROCESSING}/input/dataset",
    "dataset_format": CAPTURE_FORMAT,
    "baseline_statistics": f"{PROCESSING}/input/baseline/statistics.json",
    "baseline_constraints": f"{PROCESSING}/input/baseline/constraints.json",
    "schema_path": f"{PROCESSING}/input/baseline/schema.json",
    "output_path": f"{PROCESSING}/resultdata",
    "start_time": "2024-01-01T10:00:00Z",
    "end_time": "2024-01-01T14:00:00Z",
    "report": "Disabled",
}


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


DISTANCE = re.compile(r"distance: (.+) exceeds threshold")


def sketch_quantile(numerical: dict, q: float) -> float:
    """The q-quantile of a statistics.json KLL sketch (``data``: one list per level, each item weighing 2**level)."""
    data = numerical["distribution"]["kll"]["sketch"]["data"]
    items = np.concatenate([np.asarray(level, dtype=float) for level in data])
    weights = np.concatenate([np.full(len(level), 2.0**lv) for lv, level in enumerate(data)])
    order = np.argsort(items, kind="stable")
    cum = np.cumsum(weights[order]) / weights.sum()
    return float(items[order][min(int(np.searchsorted(cum, q)), len(cum) - 1)])


def assert_quantiles_within(numerical: dict, exact: np.ndarray, eps: float) -> None:
    """Every decile of the sketch is a value whose true rank in ``exact`` is within ``eps`` of it (the KLL
    guarantee: normalized rank error)."""
    exact = np.sort(np.asarray(exact, dtype=float))
    for q in np.linspace(0.05, 0.95, 19):
        v = sketch_quantile(numerical, q)
        lo = np.searchsorted(exact, v, "left") / len(exact)
        hi = np.searchsorted(exact, v, "right") / len(exact)
        assert lo - eps <= q <= hi + eps, f"quantile {q:.2f}: {v} has true rank [{lo:.4f}, {hi:.4f}], eps {eps:.4f}"


def assert_same_result(merged: Path, single: Path, exact: pd.DataFrame | None = None) -> None:
    """Counts, categorical statistics and moments equal; drift distances and quantiles within the KLL bound."""
    assert read(merged / "statistics.json")["dataset"] == read(single / "statistics.json")["dataset"]
    mv, sv = violations(merged), violations(single)
    assert mv and [(v["feature_name"], v["constraint_check_type"]) for v in mv] == [
        (v["feature_name"], v["constraint_check_type"]) for v in sv
    ]
    ms = {f["name"]: f for f in read(merged / "statistics.json")["features"]}
    ss = {f["name"]: f for f in read(single / "statistics.json")["features"]}
    assert ms.keys() == ss.keys()
    k = None
    for name, f in ms.items():
        if "string_statistics" in f:
            assert f["string_statistics"] == ss[name]["string_statistics"]
            continue
        m, s = f["numerical_statistics"], ss[name]["numerical_statistics"]
        assert m["common"] == s["common"] and (m["min"], m["max"]) == (s["min"], s["max"])
        for key in ("mean", "sum", "std_dev"):
            assert m[key] == pytest.approx(s[key], rel=1e-12)
        k = int(m["distribution"]["kll"]["sketch"]["parameters"]["k"])
        if exact is not None:
            for doc in (m, s):
                assert_quantiles_within(doc, exact[name].to_numpy(), rank_error(k))
    # each sketch's CDF is within eps of the exact one, so two runs' KS distances differ by at most 2 eps
    assert k is not None
    for a, b in zip(mv, sv, strict=True):
        if a["constraint_check_type"] == "baseline_drift_check":
            ma, mb = DISTANCE.search(a["description"]), DISTANCE.search(b["description"])
            assert ma and mb, (a, b)
            da, db = float(ma[1]), float(mb[1])
            assert abs(da - db) <= 2 * rank_error(k)
        else:
            assert a == b
