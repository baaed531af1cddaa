"""The monitoring job end to end on the real car data: drift both ways, every check type on a case built for it,
capture encodings, batch output formats, ground truth, bookmark, empty windows, failures, CloudWatch files."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import capturegen
from monitoring import baseline, merge, monitor
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
    violations,
)

DRIFT_RE = re.compile(r"distance: (.+) exceeds threshold: (.+)")


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_baseline(tmp_path, monkeypatch)


def _capture(tmp: Path, frame: pd.DataFrame, name: str = "cap", **kw) -> Path:
    root = tmp / name
    capturegen.write_captures(root, features(frame), predictions(frame), START, spacing=timedelta(seconds=10), **kw)
    return root


def _monitor(tmp: Path, mp: pytest.MonkeyPatch, base: Path, source: Path, out: str = "out", *extra: str) -> Path:
    o = tmp / out
    assert run(monitor.main, monitor_args(tmp, source, base, o, *WINDOW, *extra), mp, tmp) == 0
    return o


def _drifted(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Older cars: mileage doubled plus 15,000 miles (the synthetic generator's drift)."""
    d = frame.sample(frac=1.0, replace=True, random_state=seed).reset_index(drop=True)
    d["mileage"] = d["mileage"] * 2 + 15_000
    return d


def test_unchanged_data_raises_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    frame = cars().sample(frac=1.0, replace=True, random_state=1).reset_index(drop=True)
    out = _monitor(tmp_path, monkeypatch, base, _capture(tmp_path, frame))
    assert violations(out) == []
    summary = read(out / "monitoring_report.json")
    assert summary["records"] == len(frame) and summary["status"] == "Completed"
    stats = read(out / "statistics.json")
    assert stats["dataset"]["item_count"] == len(frame)
    assert {f["name"] for f in stats["features"]} == set(features(frame).columns)


def test_drift_is_flagged_in_both_directions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    frame = cars()
    out = _monitor(tmp_path, monkeypatch, base, _capture(tmp_path, _drifted(frame)))
    drift = by_check(out, "baseline_drift_check")
    assert set(drift) == {"mileage"}  # only the shifted feature
    found = DRIFT_RE.search(drift["mileage"]["description"])
    assert found, drift["mileage"]["description"]
    distance, threshold = map(float, found.groups())
    assert drift["mileage"]["description"].startswith("Baseline drift distance: ")
    assert distance > threshold == 0.1
    # the other way round: baseline from the drifted data, current = the original
    tmp2 = tmp_path / "rev"
    base2 = make_baseline(tmp2, monkeypatch, _drifted(frame))
    out2 = _monitor(tmp2, monkeypatch, base2, _capture(tmp2, frame))
    assert set(by_check(out2, "baseline_drift_check")) == {"mileage"}


def test_robust_threshold_and_overrides_in_every_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path
) -> None:
    frame = cars()
    mild = frame.copy()
    mild["mileage"] = mild["mileage"] * 1.12  # a small shift: KS ~0.1
    src = _capture(tmp_path, mild)
    out = _monitor(tmp_path, monkeypatch, base, src, "o1")
    summary = {f["name"]: f for f in read(out / "monitoring_report.json")["features"]}
    d = summary["mileage"]["drift"]
    assert d["method"] == "Robust" and not d["drifted"]  # Robust subtracts 1.8*sqrt((n+m)/nm) ~ 0.09
    cons = read(base / "constraints.json")
    for spelling in ({"comparison_method": "Simple"}, {"comparion_method": "linf_simple"}):
        c = json.loads(json.dumps(cons))
        c["monitoring_config"]["distribution_constraints"].pop("comparison_method")
        c["monitoring_config"]["distribution_constraints"].update(spelling)
        c["monitoring_config"]["distribution_constraints"]["comparison_threshold"] = 0.05
        (tmp_path / "c.json").write_text(json.dumps(c))
        out = tmp_path / "o2"
        argv = monitor_args(tmp_path, src, base, out, *WINDOW, "--bookmark", "Disabled")
        argv[argv.index("--baseline-constraints") + 1] = str(tmp_path / "c.json")
        assert run(monitor.main, argv, monkeypatch, tmp_path) == 0
        assert set(by_check(out, "baseline_drift_check")) == {"mileage"}
    # a per-feature override silences it again
    c["features"][0]["monitoringConfigOverrides"] = {"comparison_threshold": 0.5}
    (tmp_path / "c.json").write_text(json.dumps(c))
    assert run(monitor.main, argv, monkeypatch, tmp_path) == 0
    assert by_check(out, "baseline_drift_check") == {}


def test_categorical_drift_and_unknown_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    frame = cars()
    chevy = frame[frame.make == "Chevy"]
    skewed = pd.concat([frame, chevy, chevy, chevy]).reset_index(drop=True)
    out = _monitor(tmp_path, monkeypatch, base, _capture(tmp_path, skewed))
    assert "make" in by_check(out, "baseline_drift_check")
    assert by_check(out, "categorical_values_check") == {}
    unknown = frame.copy()
    unknown.loc[: len(frame) // 5, "make"] = "Tesla"
    out2 = _monitor(tmp_path, monkeypatch, base, _capture(tmp_path, unknown, "cap2"), "out2")
    v = by_check(out2, "categorical_values_check")
    assert set(v) == {"make"} and "'Tesla'" in v["make"]["description"]


def test_data_type_and_completeness_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    frame = cars().astype({"cylinder": object, "doors": float})
    frame.loc[:200, "cylinder"] = "six"  # 25 % not a number
    frame.loc[:100, "doors"] = np.nan  # 12.6 % missing
    out = _monitor(tmp_path, monkeypatch, base, _capture(tmp_path, frame))
    assert set(by_check(out, "data_type_check")) == {"cylinder"}
    assert "Expected data type: Integral" in by_check(out, "data_type_check")["cylinder"]["description"]
    assert set(by_check(out, "completeness_check")) == {"doors"}
    assert by_check(out, "missing_column_check") == {} and by_check(out, "extra_column_check") == {}
    # the threshold is the share that must match (Model Monitor's semantics): 1.0, the generated value, tolerates
    # no mismatch; 0.9 tolerates a few non-numbers (21 of 804)
    few = cars().astype({"cylinder": object})
    few.loc[:20, "cylinder"] = "six"
    cap2 = _capture(tmp_path, few, "cap2")
    out2 = _monitor(tmp_path, monkeypatch, base, cap2, "out2")
    assert set(by_check(out2, "data_type_check")) == {"cylinder"}
    cons = read(base / "constraints.json")
    cons["monitoring_config"]["datatype_check_threshold"] = 0.9
    (tmp_path / "c.json").write_text(json.dumps(cons))
    argv = monitor_args(tmp_path, cap2, base, tmp_path / "out3", *WINDOW)
    argv[argv.index("--baseline-constraints") + 1] = str(tmp_path / "c.json")
    assert run(monitor.main, argv, monkeypatch, tmp_path) == 0
    assert by_check(tmp_path / "out3", "data_type_check") == {}


def test_missing_and_extra_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    frame = cars()
    fewer = frame.drop(columns="body_type")
    out = _monitor(tmp_path, monkeypatch, base, _capture(tmp_path, fewer))
    assert set(by_check(out, "missing_column_check")) == {"body_type"}
    assert by_check(out, "extra_column_check") == {}
    more = frame.assign(colour="red")
    out2 = _monitor(tmp_path, monkeypatch, base, _capture(tmp_path, more, "cap2"), "out2")
    assert set(by_check(out2, "extra_column_check")) == {"_c8"}
    assert by_check(out2, "missing_column_check") == {}


def _lines(root: Path) -> list[Path]:
    return sorted(root.rglob("*.jsonl"))


def test_malformed_lines_are_counted_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path
) -> None:
    frame = cars().head(300)
    src = _capture(tmp_path, frame)
    path = _lines(src)[0]
    lines = path.read_text().splitlines()
    lines[4] = lines[4][:40]  # truncated JSON
    lines[9] = json.dumps({"eventMetadata": {"inferenceTime": "2024-01-01T10:00:00Z"}})  # no captureData
    path.write_text("\n".join(lines) + "\n")
    out = _monitor(tmp_path, monkeypatch, base, src)
    summary = read(out / "monitoring_report.json")
    assert summary["records"] == 298
    bad = summary["malformed"]
    assert bad["count"] == 2
    assert [(e["file"], e["line"]) for e in bad["examples"]] == [(str(path), 5), (str(path), 10)]
    assert "captureData" in bad["examples"][1]["reason"]


def test_encodings_json_base64_and_multi_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    frame = cars().head(240)
    ref = _monitor(tmp_path, monkeypatch, base, _capture(tmp_path, frame), "ref")
    expected = read(ref / "statistics.json")
    for enc in ("JSON", "BASE64"):
        out = _monitor(tmp_path, monkeypatch, base, _capture(tmp_path, frame, f"cap_{enc}", encoding=enc), enc)
        assert read(out / "statistics.json") == expected, enc
    # several CSV records per request, and JSON records by feature name, in one file
    root = tmp_path / "multi" / "ep" / "v" / "2024" / "01" / "01" / "10"
    root.mkdir(parents=True)
    feats = features(frame)
    preds = predictions(frame)
    with open(root / "a.jsonl", "w") as f:
        for i in range(0, 120, 4):
            rows = [list(r) for r in feats.iloc[i : i + 4].itertuples(index=False)]
            f.write(capturegen.capture_line(rows, list(preds[i : i + 4]), START, f"e{i}") + "\n")
        for i in range(120, 240):
            rec = feats.iloc[i].to_dict()
            line = capturegen.capture_line([rec], float(preds[i]), START, f"e{i}", encoding="JSON")
            f.write(line + "\n")
    out = _monitor(tmp_path, monkeypatch, base, tmp_path / "multi", "multi_out")
    assert read(out / "statistics.json") == expected
    assert read(out / "monitoring_report.json")["predictions"]["count"] == 240


def test_ground_truth_drives_model_quality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    frame = cars()
    src = _capture(tmp_path, frame)
    gt = tmp_path / "gt" / "2024" / "01" / "01" / "15"
    gt.mkdir(parents=True)
    # labels 30 % off: the model looks much worse than in its baseline
    lines = [capturegen.ground_truth_line(str(uuid.UUID(int=i)), y * 1.3) for i, y in enumerate(frame.price)]
    (gt / "labels.jsonl").write_text("\n".join(lines) + "\n")
    mq = tmp_path / "mqb"
    pd.DataFrame({"price": frame.price, "prediction": predictions(frame)}).to_csv(tmp_path / "p.csv", index=False)
    argv = [
        "--model-quality",
        "--dataset-source",
        str(tmp_path / "p.csv"),
        "--output-path",
        str(mq),
        "--target",
        "price",
    ]
    assert run(baseline.main, argv, monkeypatch, tmp_path) == 0
    out = _monitor(
        tmp_path,
        monkeypatch,
        base,
        src,
        "out",
        "--ground-truth-source",
        str(tmp_path / "gt"),
        "--model-quality-constraints",
        str(mq / "constraints.json"),
    )
    stats = read(out / "model_quality" / "statistics.json")
    assert stats["dataset"]["item_count"] == len(frame)
    y, p = frame.price * 1.3, predictions(frame)
    assert stats["regression_metrics"]["mae"]["value"] == pytest.approx(np.abs(y - p).mean())
    got = {v["metric_name"]: v for v in read(out / "model_quality" / "constraint_violations.json")["violations"]}
    assert set(got) == {"mae", "mse", "rmse", "r2"}
    assert got["r2"]["constraint_check_type"] == "LessThanThreshold"
    assert got["rmse"]["description"].startswith("Metric rmse with ")
    # without ground truth there is no model-quality branch at all
    out2 = _monitor(tmp_path, monkeypatch, base, _capture(tmp_path, frame, "cap2"), "out2")
    assert not (out2 / "model_quality").exists()


def test_bookmark_reads_only_new_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    frame = cars().head(200)
    src = _capture(tmp_path, frame)
    bm = ["--bookmark-path", str(tmp_path / "bookmark.json")]
    out1 = _monitor(tmp_path, monkeypatch, base, src, "r1", *bm)
    assert read(out1 / "monitoring_report.json")["records"] == 200
    out2 = _monitor(tmp_path, monkeypatch, base, src, "r2", *bm, "--fail-on-no-data", "Disabled")
    s2 = read(out2 / "monitoring_report.json")
    assert s2["status"] == "NoNewData" and "No new data" in s2["message"]
    assert not (out2 / "statistics.json").exists() and not (out2 / "constraint_violations.json").exists()
    # appended lines are read from where the last run stopped; a new file is read whole
    path = _lines(src)[0]
    extra = cars().iloc[200:250]
    with open(path, "a") as f:
        for i, row in enumerate(features(extra).itertuples(index=False)):
            f.write(capturegen.capture_line(list(row), 1.0, START + timedelta(minutes=50), f"x{i}") + "\n")
    out3 = _monitor(tmp_path, monkeypatch, base, src, "r3", *bm)
    assert read(out3 / "monitoring_report.json")["records"] == 50


def test_empty_window_says_so_and_exits_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    src = _capture(tmp_path, cars().head(50))
    out = tmp_path / "out"
    window = ["--start-time", "2025-01-01T00:00:00Z", "--end-time", "2025-01-01T01:00:00Z"]
    argv = monitor_args(tmp_path, src, base, out, *window, "--fail-on-no-data", "Disabled")
    assert run(monitor.main, argv, monkeypatch, tmp_path) == 0
    s = read(out / "monitoring_report.json")
    assert s["status"] == "NoNewData" and s["records_outside_window"] == 50
    assert not (out / "constraint_violations.json").exists()


def test_a_run_without_data_fails_as_model_monitors_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path
) -> None:
    src = _capture(tmp_path, cars().head(50))
    out = tmp_path / "out"
    window = ["--start-time", "2025-01-01T00:00:00Z", "--end-time", "2025-01-01T01:00:00Z"]
    assert run(monitor.main, monitor_args(tmp_path, src, base, out, *window), monkeypatch, tmp_path) == 1
    first = (tmp_path / "output" / "failure").read_text().splitlines()[0]
    assert first.startswith("Job inputs had no data") and "50 records outside the time window" in first
    s = read(out / "monitoring_report.json")
    assert s["status"] == "Failed" and s["records_outside_window"] == 50
    assert not (out / "constraint_violations.json").exists()


def test_missing_baseline_is_a_clear_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    src = _capture(tmp_path, cars().head(10))
    argv = monitor_args(tmp_path, src, base, tmp_path / "out", *WINDOW)
    argv[argv.index("--baseline-statistics") + 1] = str(tmp_path / "nope" / "statistics.json")
    assert run(monitor.main, argv, monkeypatch, tmp_path) == 1
    first = (tmp_path / "output" / "failure").read_text().splitlines()[0]
    assert first == f"file {tmp_path / 'nope' / 'statistics.json'}: baseline_statistics file not found"


@pytest.mark.parametrize(
    ("flag", "value", "culprit"),
    [
        ("--start-time", "yesterday", "start_time"),
        ("--publish-cloudwatch-metrics", "maybe", "publish_cloudwatch_metrics"),
        ("--dataset-format", '{"avro": {}}', "dataset_format"),
        ("--kll-k", "two", "kll_k"),
    ],
)
def test_bad_settings_name_the_culprit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path, flag: str, value: str, culprit: str
) -> None:
    src = _capture(tmp_path, cars().head(10))
    argv = [a for a in monitor_args(tmp_path, src, base, tmp_path / "out") if a]
    assert run(monitor.main, [*argv, flag, value], monkeypatch, tmp_path) == 1
    first = (tmp_path / "output" / "failure").read_text().splitlines()[0]
    assert first.startswith(culprit) and repr(value) in first


def test_cloudwatch_metric_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    src = _capture(tmp_path, _drifted(cars()))
    _monitor(
        tmp_path,
        monkeypatch,
        base,
        src,
        "out",
        "--publish-cloudwatch-metrics",
        "Enabled",
        "--sagemaker-endpoint-name",
        "car-prices",
        "--sagemaker-monitoring-schedule-name",
        "hourly",
    )
    lines = [
        json.loads(x) for x in (tmp_path / "output/metrics/cloudwatch/data-metrics.jsonl").read_text().splitlines()
    ]
    m = {x["MetricName"]: x for x in lines}
    assert m["feature_baseline_drift_mileage"]["Value"] > 0.1
    assert m["feature_non_null_make"]["Value"] == 1.0
    assert m["feature_baseline_drift_mileage"]["Dimensions"] == [
        {"Name": "Endpoint", "Value": "car-prices"},
        {"Name": "MonitoringSchedule", "Value": "hourly"},
    ]
    assert set(lines[0]) == {"MetricName", "Timestamp", "Dimensions", "Value", "Unit"}
    # feature_data_{name}: a statistic set (Min, Max, Sum, SampleCount; CloudWatch derives the Average)
    frame = _drifted(cars())
    data = m["feature_data_mileage"]
    assert set(data) == {"MetricName", "Timestamp", "Dimensions", "StatisticValues", "Unit"}
    assert data["StatisticValues"] == {
        "SampleCount": float(len(frame)),
        "Sum": pytest.approx(float(frame["mileage"].sum())),
        "Minimum": float(frame["mileage"].min()),
        "Maximum": float(frame["mileage"].max()),
    }
    assert "feature_data_make" not in m  # numeric features only
    summary = read(tmp_path / "out" / "monitoring_report.json")
    assert "/aws/sagemaker/Endpoints/data-metrics" in summary["cloudwatch"]["namespaces"]


# -- batch transform output ----------------------------------------------------------------------------------
def test_batch_joined_csv_with_id_and_inference_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    frame = _drifted(cars())
    d = tmp_path / "batch"
    d.mkdir()
    joined = features(frame).copy()
    joined.insert(0, "id", range(len(frame)))
    joined["prediction"] = predictions(frame)
    joined["inference_id"] = [f"i{i}" for i in range(len(frame))]
    joined["time"] = "2024-01-01T10:00:00Z"
    text = joined.to_csv(header=False, index=False).splitlines()
    text[3] = "1,2,3"  # a ragged row
    (d / "input.csv.out").write_text("\n".join(text) + "\n")
    out = tmp_path / "out"
    argv = monitor_args(tmp_path, d, base, out, "--dataset-format", '{"csv": {"header": false}}', "--id-columns", "1")
    assert run(monitor.main, argv, monkeypatch, tmp_path) == 0
    s = read(out / "monitoring_report.json")
    assert s["records"] == len(frame) - 1
    assert s["malformed"]["count"] == 1 and s["malformed"]["examples"][0]["line"] == 4
    assert set(by_check(out, "baseline_drift_check")) == {"mileage"}
    assert s["predictions"]["count"] == len(frame) - 1


def test_batch_jsonl_and_manifests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    frame = cars().head(300)
    preds = predictions(frame)
    d = tmp_path / "jsonl"
    d.mkdir()
    with open(d / "in.jsonl.out", "w") as f:
        for rec, p in zip(features(frame).to_dict("records"), preds, strict=True):
            f.write(json.dumps({**rec, "SageMakerOutput": {"score": float(p)}}) + "\n")
    ref_out = tmp_path / "ref"
    assert (
        run(
            monitor.main,
            monitor_args(tmp_path, _capture(tmp_path, frame), base, ref_out, *WINDOW),
            monkeypatch,
            tmp_path,
        )
        == 0
    )
    out = tmp_path / "out"
    argv = monitor_args(tmp_path, d, base, out, "--dataset-format", '{"json": {"line": true}}')
    assert run(monitor.main, argv, monkeypatch, tmp_path) == 0
    assert read(out / "statistics.json") == read(ref_out / "statistics.json")
    # batch data capture: manifests under input/ and output/ pointing at S3, mapped to local folders
    data = tmp_path / "s3" / "in"
    data.mkdir(parents=True)
    features(frame).to_csv(data / "part-0.csv", header=False, index=False)
    outs = tmp_path / "s3" / "out"
    outs.mkdir(parents=True)
    (outs / "part-0.csv.out").write_text("\n".join(map(str, preds)) + "\n")
    cap = tmp_path / "capture"
    for side, prefix, name in (("input", "s3://b/in/", "part-0.csv"), ("output", "s3://b/out/", "part-0.csv.out")):
        m = cap / side / "2024" / "01" / "01" / "10"
        m.mkdir(parents=True)
        (m / "manifest.json").write_text(json.dumps([{"prefix": prefix}, name]))
    out2 = tmp_path / "out2"
    pmap = json.dumps({"s3://b/in/": str(data), "s3://b/out/": str(outs)})
    argv = monitor_args(
        tmp_path, cap, base, out2, "--dataset-format", '{"csv": {"header": false}}', "--s3-prefix-map", pmap
    )
    assert run(monitor.main, argv, monkeypatch, tmp_path) == 0
    assert read(out2 / "statistics.json") == read(ref_out / "statistics.json")
    assert read(out2 / "monitoring_report.json")["predictions"]["count"] == 300


def test_sharded_runs_merge_into_the_single_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    frame = _drifted(cars())
    src = _capture(tmp_path, frame, lines_per_file=300)
    files = sorted(src.rglob("*.jsonl"))
    assert len(files) >= 3
    shards = []
    for i, group in enumerate((files[:1], files[1:])):
        shard = tmp_path / f"shard{i}"
        for f in group:
            dest = shard / f.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(f.read_bytes())
        shards.append(_monitor(tmp_path, monkeypatch, base, shard, f"s{i}"))
    whole = _monitor(tmp_path, monkeypatch, base, src, "whole")
    merged = tmp_path / "merged"
    argv = [
        "--states",
        *[str(s / "profile_state.json") for s in shards],
        "--output-path",
        str(merged),
        "--baseline-statistics",
        str(base / "statistics.json"),
        "--baseline-constraints",
        str(base / "constraints.json"),
        "--report",
        "Disabled",
    ]
    assert run(merge.main, argv, monkeypatch, tmp_path) == 0
    assert violations(merged) == violations(whole)
    assert read(merged / "statistics.json")["dataset"] == read(whole / "statistics.json")["dataset"]
    assert read(merged / "constraints.json") == read(whole / "constraints.json") == read(base / "constraints.json")


def test_base64_payload_decodes(tmp_path: Path) -> None:
    from monitoring.datacapture import decode_payload

    data = base64.b64encode(b"1,2\n3,4").decode()
    assert decode_payload({"data": data, "encoding": "BASE64", "observedContentType": "text/csv"}) == [
        ["1", "2"],
        ["3", "4"],
    ]
    js = base64.b64encode(json.dumps({"instances": [{"a": 1}]}).encode()).decode()
    assert decode_payload({"data": js, "encoding": "BASE64", "observedContentType": "application/json"}) == [{"a": 1}]


def test_driven_by_the_documented_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    src = _capture(tmp_path, _drifted(cars()))
    for name in monitor.ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    env = {
        "dataset_format": CAPTURE_FORMAT,
        "dataset_source": str(src),
        "output_path": str(tmp_path / "result"),
        "start_time": "2024-01-01T10:00:00Z",
        "end_time": "2024-01-01T14:00:00Z",
        "publish_cloudwatch_metrics": "Disabled",
        "sagemaker_endpoint_name": "car-prices",
        "sagemaker_monitoring_schedule_name": "hourly",
        "baseline_constraints": str(base / "constraints.json"),
        "baseline_statistics": str(base / "statistics.json"),
        "schema_path": str(tmp_path / "train" / "schema.json"),
        "report": "Disabled",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    from monitoring import jobenv

    assert jobenv.run_job(lambda: monitor.main([])) == 0
    assert set(by_check(tmp_path / "result", "baseline_drift_check")) == {"mileage"}
    assert not (tmp_path / "output" / "metrics").exists()  # publishing disabled
    assert read(tmp_path / "result" / "monitoring_report.json")["monitoring_schedule"] == "hourly"


def test_jsonlines_payloads_and_inference_id_join(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    frame = cars().head(100)
    feats, preds = features(frame), predictions(frame)
    d = tmp_path / "jl" / "ep" / "v" / "2024" / "01" / "01" / "10"
    d.mkdir(parents=True)
    gt_lines = []
    with open(d / "a.jsonl", "w") as f:
        for i in range(0, 100, 2):
            recs = feats.iloc[i : i + 2].to_dict("records")
            payload = {
                "observedContentType": "application/jsonlines",
                "mode": "INPUT",
                "data": "\n".join(json.dumps(r) for r in recs),
                "encoding": "JSON",
            }
            answer = {
                "observedContentType": "application/jsonlines",
                "mode": "OUTPUT",
                "data": "\n".join(json.dumps({"score": float(p)}) for p in preds[i : i + 2]),
                "encoding": "JSON",
            }
            meta = {"eventId": f"e{i}", "inferenceId": f"inf{i}", "inferenceTime": "2024-01-01T10:30:00Z"}
            f.write(
                json.dumps({"captureData": {"endpointInput": payload, "endpointOutput": answer}, "eventMetadata": meta})
            )
            f.write("\n")
            labels = "\n".join(str(y) for y in frame.price.iloc[i : i + 2])
            gt_lines.append(
                json.dumps(
                    {"groundTruthData": {"data": labels, "encoding": "CSV"}, "eventMetadata": {"eventId": f"inf{i}"}}
                )
            )
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "g.jsonl").write_text("\n".join(gt_lines) + "\n")
    out = _monitor(tmp_path, monkeypatch, base, tmp_path / "jl", "out", "--ground-truth-source", str(gt))
    s = read(out / "monitoring_report.json")
    assert s["records"] == 100 and s["labelled_records"] == 100
    mae = read(out / "model_quality" / "statistics.json")["regression_metrics"]["mae"]["value"]
    assert mae == pytest.approx(np.abs(frame.price.to_numpy() - preds).mean())
