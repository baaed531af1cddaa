"""A Model Monitor statistics/constraints pair (tests/data/model_monitor, adapted; see its README) through our
monitor: the verdicts real Model Monitor executions record for the same situations."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import capturegen
from monitoring import monitor
from tests.test_monitoring_support import CAPTURE_FORMAT, START, read, run, violations

DATA = Path(__file__).parent / "data" / "model_monitor"
N = 1977


def _current(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Account Length": rng.integers(1, 240, N).astype(object),
            "Day Mins": np.round(rng.normal(180, 50, N), 1),
            "Int'l Plan": rng.choice(["no", "yes"], N, p=[0.9, 0.1]),
        }
    )


def _monitor(tmp: Path, mp: pytest.MonkeyPatch, frame: pd.DataFrame, name: str) -> Path:
    src = tmp / f"cap-{name}"
    capturegen.write_captures(src, frame, np.zeros(N), START, spacing=timedelta(seconds=1))
    base = tmp / "baseline"
    if not base.exists():
        shutil.copytree(DATA, base)
    out = tmp / name
    argv = [
        "--dataset-source", str(src), "--output-path", str(out), "--dataset-format", CAPTURE_FORMAT,
        "--baseline-statistics", str(base / "statistics.json"),
        "--baseline-constraints", str(base / "constraints.json"),
        "--start-time", "2024-01-01T10:00:00Z", "--end-time", "2024-01-01T14:00:00Z", "--report", "Disabled",
    ]  # fmt: skip
    assert run(monitor.main, argv, mp, tmp) == 0
    return out


def test_same_population_has_no_violations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _monitor(tmp_path, monkeypatch, _current(1), "same")
    assert violations(out) == []
    assert [f["name"] for f in read(out / "statistics.json")["features"]] == [
        "Account Length",
        "Day Mins",
        "Int'l Plan",
    ]


def test_seven_stray_values_in_1977_read_as_model_monitor_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = _current(2)
    frame.loc[:6, "Account Length"] = 12.5
    assert violations(_monitor(tmp_path, monkeypatch, frame, "stray")) == [
        {
            "feature_name": "Account Length",
            "constraint_check_type": "data_type_check",
            "description": "Data type match requirement is not met. Expected data type: Integral, Expected match: "
            "100.0%. Observed: Only 99.64592817400101% of data is Integral.",
        }
    ]


def test_drift_reads_as_model_monitor_writes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _current(3)
    frame["Day Mins"] = frame["Day Mins"] + 150
    v = violations(_monitor(tmp_path, monkeypatch, frame, "drift"))
    assert [(x["feature_name"], x["constraint_check_type"]) for x in v] == [("Day Mins", "baseline_drift_check")]
    m = re.fullmatch(r"Baseline drift distance: (.+) exceeds threshold: (.+)", v[0]["description"])
    assert m and float(m.group(1)) > 0.5 and float(m.group(2)) == 0.1
