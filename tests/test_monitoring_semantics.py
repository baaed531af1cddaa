"""Model Monitor's exact semantics, each on the smallest case that showed it wrong (issue #11): completeness
never rounded against the baseline, strict booleans in dataset_format, ragged capture records named, match
thresholds, Deequ's histogram buckets, KLL parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monitoring import baseline, capturegen, checks, constraints, monitor
from monitoring.statistics import FeatureSpec, Profile, baseline_features
from tests.test_monitoring_support import (
    START,
    by_check,
    cars,
    features,
    make_baseline,
    monitor_args,
    predictions,
    read,
    run,
    write_training,
)

WINDOW = ["--start-time", "2024-01-01T10:00:00Z", "--end-time", "2024-01-01T14:00:00Z"]


def _self_check(profile: Profile) -> list[dict[str, str]]:
    stats = json.loads(json.dumps(profile.statistics()))
    cons = constraints.parse(json.loads(json.dumps(constraints.suggest(profile))))
    return checks.run_checks(profile, baseline_features(stats), cons)


def test_completeness_is_never_rounded_against_the_baseline() -> None:
    # 2 of 3 present: round(2/3, 6) = 0.666667 > 0.6666666...; the baseline then failed on its own rows
    profile = Profile([FeatureSpec("a", True), FeatureSpec("b", False)])
    profile.update({"a": ["1", "", "3"], "b": ["x", "y", None]}, 3)
    assert constraints.suggest(profile)["features"][0]["completeness"] <= 2 / 3
    assert _self_check(profile) == []


@pytest.mark.parametrize("header", ['"false"', '"False"', "false"])
def test_csv_header_false_as_a_string_is_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, header: str) -> None:
    train = write_training(tmp_path / "train")
    out = tmp_path / "baseline"
    argv = ["--dataset-source", str(train), "--output-path", str(out)]
    argv += ["--dataset-format", f'{{"csv": {{"header": {header}}}}}']
    assert run(baseline.main, argv, monkeypatch, tmp_path) == 0
    assert read(out / "statistics.json")["dataset"]["item_count"] == len(cars())  # no row eaten as a header


@pytest.mark.parametrize("value", ['"yes"', "1", '"0"', "null"])
def test_csv_header_rejects_anything_but_true_or_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    train = write_training(tmp_path / "train")
    argv = ["--dataset-source", str(train), "--output-path", str(tmp_path / "b")]
    argv += ["--dataset-format", f'{{"csv": {{"header": {value}}}}}']
    assert run(baseline.main, argv, monkeypatch, tmp_path) == 1
    first = (tmp_path / "output" / "failure").read_text().splitlines()[0]
    assert first.startswith("dataset_format csv.header: expected true or false") and repr(json.loads(value)) in first


def test_capture_record_with_the_wrong_number_of_fields_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = make_baseline(tmp_path, monkeypatch)
    frame = cars().head(200)
    src = tmp_path / "cap"
    capturegen.write_captures(src, features(frame), predictions(frame), START)
    path = sorted(src.rglob("*.jsonl"))[0]
    lines = path.read_text().splitlines()
    for i, cut in ((2, 1), (6, -1)):  # a field missing, a field too many
        doc = json.loads(lines[i])
        fields = doc["captureData"]["endpointInput"]["data"].split(",")
        doc["captureData"]["endpointInput"]["data"] = ",".join(fields[:-1] if cut == 1 else [*fields, "7"])
        lines[i] = json.dumps(doc)
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert run(monitor.main, monitor_args(tmp_path, src, base, out, *WINDOW), monkeypatch, tmp_path) == 0
    summary = read(out / "monitoring_report.json")
    assert summary["records"] == 198
    bad = summary["malformed"]
    assert bad["count"] == 2
    assert [(e["file"], e["line"]) for e in bad["examples"]] == [(str(path), 3), (str(path), 7)]
    assert "expected 8 fields, received 7" in bad["examples"][0]["reason"]
    assert "expected 8 fields, received 9" in bad["examples"][1]["reason"]
    assert by_check(out, "completeness_check") == {} and by_check(out, "extra_column_check") == {}


def test_datatype_threshold_is_the_share_that_must_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Model Monitor writes datatype_check_threshold 1.0 and reports "Expected match: 100.0%. Observed: Only
    # 99.64592817400101% of data is Integral." for a single stray value: 1.0 tolerates no mismatch.
    base = make_baseline(tmp_path, monkeypatch)
    cons = read(base / "constraints.json")
    assert cons["monitoring_config"]["datatype_check_threshold"] == 1.0
    frame = cars().head(300).astype({"cylinder": object})
    frame.loc[0, "cylinder"] = "six"
    src = tmp_path / "cap"
    capturegen.write_captures(src, features(frame), predictions(frame), START)
    out = tmp_path / "out"
    assert run(monitor.main, monitor_args(tmp_path, src, base, out, *WINDOW), monkeypatch, tmp_path) == 0
    v = by_check(out, "data_type_check")
    assert set(v) == {"cylinder"}
    assert v["cylinder"]["description"] == (
        "Data type match requirement is not met. Expected data type: Integral, Expected match: 100.0%. "
        f"Observed: Only {100 * 299 / 300}% of data is Integral."
    )
    # the same share is what domain_content_threshold asks of a string feature
    unknown = cars().head(300)
    unknown.loc[0, "make"] = "Tesla"
    src2 = tmp_path / "cap2"
    capturegen.write_captures(src2, features(unknown), predictions(unknown), START)
    out2 = tmp_path / "out2"
    assert run(monitor.main, monitor_args(tmp_path, src2, base, out2, *WINDOW), monkeypatch, tmp_path) == 0
    d = by_check(out2, "categorical_values_check")["make"]["description"]
    assert f"Expected match: 100.0%. Observed: Only {100 * 299 / 300}%" in d


def test_histogram_buckets_are_deequs_half_open() -> None:
    # Cars93 Passengers: Deequ counts [low, high) with the last bucket closed
    values = [2] * 2 + [4] * 23 + [5] * 41 + [6] * 18 + [7] * 8 + [8] * 1
    profile = Profile([FeatureSpec("Passengers", True)])
    profile.update({"Passengers": np.asarray(values, dtype=float)}, len(values))
    kll = profile.statistics()["features"][0]["numerical_statistics"]["distribution"]["kll"]
    assert [b["count"] for b in kll["buckets"]] == [2, 0, 0, 23, 0, 41, 18, 0, 8, 1]


def test_kll_parameters_are_model_monitors() -> None:
    profile = Profile([FeatureSpec("x", True)])
    profile.update({"x": np.arange(10.0)}, 10)
    params = profile.statistics()["features"][0]["numerical_statistics"]["distribution"]["kll"]["sketch"]
    assert params["parameters"] == {"c": 0.64, "k": 2048.0}
    assert isinstance(params["parameters"]["k"], float)
