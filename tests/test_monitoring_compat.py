"""Model Monitor compatibility (issue #11): feature names as written, the run folder's constraints.json,
feature_data metrics, CSV with a header, the SDK's older format spelling, output_columns_position, user scripts."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import capturegen
from monitoring import baseline, monitor
from tests.test_monitoring_support import (
    CAPTURE_FORMAT,
    START,
    WINDOW,
    by_check,
    cars,
    features,
    make_baseline,
    monitor_args,
    predictions,
    read,
    run,
)


def _churn(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Account Length": rng.integers(1, 240, n) + int(shift),
            "Min.Price": np.round(rng.normal(17.0, 8.0, n) + shift / 10, 2),
            "Int'l Plan": rng.choice(["yes", "no"], n),
            "Churn?": rng.choice(["True.", "False."], n),
        }
    )


def test_feature_names_as_written_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train = tmp_path / "train"
    train.mkdir()
    _churn(600, 0).to_csv(train / "train.csv", index=False)
    base = tmp_path / "baseline"
    argv = ["--dataset-source", str(train), "--output-path", str(base), "--target", "Churn?"]
    assert run(baseline.main, argv, monkeypatch, tmp_path) == 0
    names = ["Account Length", "Min.Price", "Int'l Plan"]
    assert [f["name"] for f in read(base / "statistics.json")["features"]] == names
    assert [f["name"] for f in read(base / "constraints.json")["features"]] == names

    current = _churn(600, 1, shift=120.0).drop(columns="Churn?")
    src = tmp_path / "cap"
    capturegen.write_captures(src, current, np.ones(len(current)), START, spacing=timedelta(seconds=10))
    out = tmp_path / "out"
    argv = [
        "--dataset-source", str(src), "--output-path", str(out), "--dataset-format", CAPTURE_FORMAT,
        "--baseline-statistics", str(base / "statistics.json"),
        "--baseline-constraints", str(base / "constraints.json"),
        "--report", "Disabled", "--publish-cloudwatch-metrics", "Enabled", *WINDOW,
    ]  # fmt: skip
    assert run(monitor.main, argv, monkeypatch, tmp_path) == 0
    assert [f["name"] for f in read(out / "statistics.json")["features"]] == names
    assert by_check(out, "missing_column_check") == {} and by_check(out, "extra_column_check") == {}
    assert "Account Length" in by_check(out, "baseline_drift_check")
    metrics = {
        json.loads(line)["MetricName"]
        for line in (tmp_path / "output/metrics/cloudwatch/data-metrics.jsonl").read_text().splitlines()
    }
    assert {"feature_baseline_drift_Account Length", "feature_non_null_Min.Price"} <= metrics
    assert "feature_data_Account Length" in metrics
    # the run folder holds the constraints it was checked against, as Model Monitor's does
    assert read(out / "constraints.json") == read(base / "constraints.json")


def test_sdk_older_capture_format_spelling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = make_baseline(tmp_path, monkeypatch)
    frame = cars().head(100)
    src = tmp_path / "cap"
    capturegen.write_captures(src, features(frame), predictions(frame), START)
    out = tmp_path / "out"
    fmt = '{"sagemaker_capture_json": {"captureIndexNames": ["endpointInput", "endpointOutput"]}}'
    argv = monitor_args(tmp_path, src, base, out, *WINDOW, "--dataset-format", fmt)
    assert run(monitor.main, argv, monkeypatch, tmp_path) == 0
    assert read(out / "monitoring_report.json")["records"] == 100


def test_output_columns_position_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = make_baseline(tmp_path, monkeypatch)
    frame = cars()
    joined = features(frame).copy()
    joined.insert(0, "prediction", predictions(frame))
    d = tmp_path / "batch"
    d.mkdir()
    (d / "input.csv.out").write_text(joined.to_csv(header=False, index=False))
    out = tmp_path / "out"
    argv = monitor_args(tmp_path, d, base, out, "--dataset-format", '{"csv": {"header": "false"}}')
    assert run(monitor.main, [*argv, "--output-columns-position", "START"], monkeypatch, tmp_path) == 0
    s = read(out / "monitoring_report.json")
    assert s["records"] == len(frame) and s["violations"] == []
    assert s["predictions"]["mean"] == pytest.approx(float(np.mean(predictions(frame))))
    argv2 = monitor_args(tmp_path, d, base, tmp_path / "o2", "--output-columns-position", "MIDDLE")
    assert run(monitor.main, argv2, monkeypatch, tmp_path) == 1
    assert "output_columns_position" in (tmp_path / "output" / "failure").read_text()


def test_csv_with_a_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the SDK's DatasetFormat.csv() defaults to header=True: columns are then matched by name, in any order
    base = make_baseline(tmp_path, monkeypatch)
    frame = cars()
    table = features(frame)[list(reversed(features(frame).columns))].copy()
    table["prediction"] = predictions(frame)
    d = tmp_path / "batch"
    d.mkdir()
    table.to_csv(d / "part-0.csv", index=False)
    out = tmp_path / "out"
    argv = monitor_args(tmp_path, d, base, out, "--dataset-format", '{"csv": {"header": true}}')
    assert run(monitor.main, argv, monkeypatch, tmp_path) == 0
    s = read(out / "monitoring_report.json")
    assert s["records"] == len(frame) and s["violations"] == []
    assert s["predictions"]["count"] == len(frame)


@pytest.mark.parametrize("name", ["record_preprocessor_script", "post_analytics_processor_script"])
def test_user_scripts_are_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    base = make_baseline(tmp_path, monkeypatch)
    argv = monitor_args(tmp_path, tmp_path, base, tmp_path / "out", f"--{name.replace('_', '-')}", "/opt/x.py")
    assert run(monitor.main, argv, monkeypatch, tmp_path) == 1
    first = (tmp_path / "output" / "failure").read_text().splitlines()[0]
    assert first.startswith(f"{name}: not supported: this monitor runs no user code")


def test_one_module_writes_capture_lines() -> None:
    from datetime import UTC, datetime

    from emulators import capture as proxy
    from monitoring import datacapture

    when = datetime(2024, 3, 5, 7, 59, 59, 250_000, tzinfo=UTC)
    line = capturegen.capture_line([8221, "Buick"], 2.0, when, "e1")
    rec = proxy.capture_record(b"8221,Buick", "text/csv", b"2", "text/csv", when, event_id="e1")
    assert json.loads(line) == rec
    assert rec["eventMetadata"]["inferenceTime"] == "2024-03-05T07:59:59Z"
    assert proxy.CaptureWriter is datacapture.CaptureWriter and proxy.payload is datacapture.payload
    records = datacapture.decode_payload(json.loads(line)["captureData"]["endpointInput"])
    assert records == [["8221", "Buick"]]
