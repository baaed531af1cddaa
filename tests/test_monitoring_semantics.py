"""Model Monitor's exact semantics, each on the smallest case that showed it wrong (issue #11): completeness
never rounded against the baseline, strict booleans in dataset_format, ragged capture records named, match
thresholds, Deequ's histogram buckets, KLL parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness import capturegen
from monitoring import baseline, checks, constraints, monitor
from monitoring.statistics import FeatureSpec, Profile, baseline_features
from tests.test_monitoring_support import (
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
    write_training,
)


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


# -- bounded memory ---------------------------------------------------------------------------------------------
def test_blocks_hold_whole_lines_with_their_numbers(tmp_path: Path) -> None:
    from monitoring.ingest import blocks

    path = tmp_path / "f.jsonl"
    lines = [f"line {i} " + "x" * (i * 7 % 40) for i in range(200)]
    lines[50] = "y" * 500  # longer than a block
    path.write_text("\n".join(lines))  # no final newline
    got = list(blocks(path, size=64))
    assert b"".join(b for b, _ in got) == path.read_bytes()
    for data, first in got:
        assert data.endswith(b"\n") or data is got[-1][0]
        assert data.split(b"\n")[0].decode() == lines[first - 1]
    offset = len("\n".join(lines[:10])) + 1
    assert next(blocks(path, offset, first_line=11, size=64))[1] == 11


def test_small_blocks_give_the_same_results_and_line_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from monitoring import ingest

    base = make_baseline(tmp_path, monkeypatch)
    frame = cars().head(400)
    src = tmp_path / "cap"
    capturegen.write_captures(src, features(frame), predictions(frame), START)
    path = sorted(src.rglob("*.jsonl"))[0]
    lines = path.read_text().splitlines()
    lines[4], lines[300] = lines[4][:40], "not json"
    path.write_text("\n".join(lines) + "\n")
    outs = []
    for size in (None, 2000):
        if size:
            monkeypatch.setattr(ingest, "BLOCK_BYTES", size)
        out = tmp_path / f"out{size}"
        assert run(monitor.main, monitor_args(tmp_path, src, base, out, *WINDOW), monkeypatch, tmp_path) == 0
        outs.append(out)
    a, b = (read(o / "monitoring_report.json") for o in outs)
    assert a["malformed"] == b["malformed"] and [e["line"] for e in a["malformed"]["examples"]] == [5, 301]
    assert a["records"] == b["records"] == 398
    # the same numbers up to float summation order (moments are combined per block)
    assert _rounded(read(outs[0] / "statistics.json")) == _rounded(read(outs[1] / "statistics.json"))


def _rounded(x):
    if isinstance(x, float):
        return float(f"{x:.10g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x
