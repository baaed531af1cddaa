"""The baselining job: Model Monitor's statistics/constraints layout from headerless+schema CSV, header CSV and
parquet; the model-quality baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring import baseline
from tests.test_monitoring_support import cars, make_baseline, read, run, write_training


def test_layout_from_headerless_label_first_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = make_baseline(tmp_path, monkeypatch)
    stats, cons = read(out / "statistics.json"), read(out / "constraints.json")
    frame = cars()
    assert stats["version"] == 0.0 and stats["dataset"] == {"item_count": len(frame)}
    feats = {f["name"]: f for f in stats["features"]}
    assert "price" not in feats  # the label is not a feature
    assert list(feats) == [c for c in frame.columns if c != "price"]
    mileage = feats["mileage"]
    assert mileage["inferred_type"] == "Integral"
    num = mileage["numerical_statistics"]
    assert num["common"] == {"num_present": len(frame), "num_missing": 0}
    assert num["mean"] == pytest.approx(frame.mileage.mean())
    assert num["sum"] == pytest.approx(frame.mileage.sum())
    assert num["std_dev"] == pytest.approx(frame.mileage.std(ddof=0))
    assert (num["min"], num["max"]) == (frame.mileage.min(), frame.mileage.max())
    kll = num["distribution"]["kll"]
    assert len(kll["buckets"]) == 10
    assert sum(b["count"] for b in kll["buckets"]) == pytest.approx(len(frame))
    assert kll["buckets"][0]["lower_bound"] == frame.mileage.min()
    assert kll["buckets"][-1]["upper_bound"] == frame.mileage.max()
    assert kll["sketch"]["parameters"] == {"c": 0.64, "k": 2048.0}
    assert sorted(kll["sketch"]["data"][0]) == sorted(frame.mileage.astype(float))  # exact below k
    make = feats["make"]
    assert make["inferred_type"] == "String"
    s = make["string_statistics"]
    assert s["distinct_count"] == float(frame.make.nunique())
    buckets = {b["value"]: b["count"] for b in s["distribution"]["categorical"]["buckets"]}
    assert buckets == frame.make.value_counts().to_dict()

    cfeats = {f["name"]: f for f in cons["features"]}
    assert cfeats["mileage"] == {
        "name": "mileage",
        "inferred_type": "Integral",
        "completeness": 1.0,
        "num_constraints": {"is_non_negative": True},
    }
    assert cfeats["make"]["string_constraints"]["domains"] == sorted(frame.make.unique())
    assert cons["monitoring_config"] == {
        "evaluate_constraints": "Enabled",
        "emit_metrics": "Enabled",
        # Model Monitor's generated values: the share of values that must match
        "datatype_check_threshold": 1.0,
        "domain_content_threshold": 1.0,
        "distribution_constraints": {
            "perform_comparison": "Enabled",
            "comparison_threshold": 0.1,
            "comparison_method": "Robust",
            "categorical_comparison_threshold": 0.1,
            "categorical_drift_method": "LInfinity",
        },
    }


def test_fractional_missing_and_negative_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = cars().head(100).copy()
    frame["mileage"] = frame["mileage"].astype(float) * 1.5 - 5000  # fractional, some negative
    frame.loc[:9, "make"] = None
    out = make_baseline(tmp_path, monkeypatch, frame)
    feats = {f["name"]: f for f in read(out / "constraints.json")["features"]}
    assert feats["mileage"]["inferred_type"] == "Fractional"
    assert feats["mileage"]["num_constraints"]["is_non_negative"] is False
    assert feats["make"]["completeness"] == pytest.approx(0.9)
    stats = {f["name"]: f for f in read(out / "statistics.json")["features"]}
    assert stats["make"]["string_statistics"]["common"] == {"num_present": 90, "num_missing": 10}


def test_header_csv_and_parquet_give_the_same_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = make_baseline(tmp_path / "ref", monkeypatch)
    frame = cars()
    (tmp_path / "h").mkdir()
    frame.to_csv(tmp_path / "h" / "train.csv", index=False)
    (tmp_path / "p").mkdir()
    frame.to_parquet(tmp_path / "p" / "train.parquet")
    for d in ("h", "p"):
        argv = ["--dataset-source", str(tmp_path / d), "--output-path", str(tmp_path / d / "out"), "--target", "price"]
        assert run(baseline.main, argv, monkeypatch, tmp_path) == 0
        got = read(tmp_path / d / "out" / "statistics.json")
        expected = read(ref / "statistics.json")
        assert [f["name"] for f in got["features"]] == [f["name"] for f in expected["features"]]
        assert [f["inferred_type"] for f in got["features"]] == [f["inferred_type"] for f in expected["features"]]
        assert got["features"][0]["numerical_statistics"]["mean"] == pytest.approx(
            expected["features"][0]["numerical_statistics"]["mean"]
        )


def test_env_contract_and_dataset_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train = write_training(tmp_path / "train")
    for name in baseline.SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("dataset_source", str(train))
    monkeypatch.setenv("dataset_format", '{"csv": {"header": false}}')
    monkeypatch.setenv("output_path", str(tmp_path / "out"))
    from monitoring import jobenv

    assert jobenv.run_job(lambda: baseline.main([])) == 0
    assert read(tmp_path / "out" / "statistics.json")["dataset"]["item_count"] == len(cars())


def test_wrong_column_count_fails_with_a_clear_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train = write_training(tmp_path / "train")
    (train / "train.csv").write_text("1,2,3\n4,5,6\n")
    code = run(
        baseline.main, ["--dataset-source", str(train), "--output-path", str(tmp_path / "o")], monkeypatch, tmp_path
    )
    assert code == 1
    reason = (tmp_path / "output" / "failure").read_text().splitlines()[0]
    assert "train.csv" in reason and "expected 9 columns" in reason and "received 3" in reason


def _quality_table(tmp_path: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    y = rng.normal(20_000, 5_000, n)
    p = y + rng.normal(0, 1_000, n)
    d = tmp_path / f"mq{n}"
    d.mkdir()
    pd.DataFrame({"price": y, "prediction": p}).to_csv(d / "pred.csv", index=False)
    return d


def test_model_quality_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _quality_table(tmp_path, 500)
    out = tmp_path / "mq"
    argv = ["--model-quality", "--dataset-source", str(src), "--output-path", str(out), "--target", "price"]
    assert run(baseline.main, argv, monkeypatch, tmp_path) == 0
    frame = pd.read_csv(src / "pred.csv")
    err = frame.price - frame.prediction
    m = read(out / "statistics.json")["regression_metrics"]
    assert m["mae"]["value"] == pytest.approx(err.abs().mean())
    assert m["mse"]["value"] == pytest.approx((err**2).mean())
    assert m["rmse"]["value"] == pytest.approx(np.sqrt((err**2).mean()))
    r2 = 1 - (err**2).sum() / ((frame.price - frame.price.mean()) ** 2).sum()
    assert m["r2"]["value"] == pytest.approx(r2)
    assert all(0 < m[k]["standard_deviation"] < abs(m[k]["value"]) for k in m)
    c = read(out / "constraints.json")["regression_constraints"]
    assert c["rmse"] == {"threshold": m["rmse"]["value"], "comparison_operator": "GreaterThanThreshold"}
    assert c["mae"]["comparison_operator"] == c["mse"]["comparison_operator"] == "GreaterThanThreshold"
    assert c["r2"] == {"threshold": m["r2"]["value"], "comparison_operator": "LessThanThreshold"}


def test_model_quality_baseline_reads_batch_transform_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _quality_table(tmp_path, 300)
    (src / "pred.csv").rename(src / "validation.csv.out")  # what a batch transform writes for validation.csv
    out = tmp_path / "mq"
    argv = ["--model-quality", "--dataset-source", str(src), "--output-path", str(out), "--target", "price"]
    assert run(baseline.main, argv, monkeypatch, tmp_path) == 0
    assert read(out / "statistics.json")["dataset"]["item_count"] == 300


def test_model_quality_std_dev_only_from_200_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _quality_table(tmp_path, 150)
    out = tmp_path / "mq"
    argv = ["--model-quality", "--dataset-source", str(src), "--output-path", str(out), "--target", "price"]
    assert run(baseline.main, argv, monkeypatch, tmp_path) == 0
    m = read(out / "statistics.json")["regression_metrics"]
    assert all("standard_deviation" not in v for v in m.values())
