"""algorithms.metrics: metric values, the log line <-> MetricDefinitions regexes, evaluation.json."""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from algorithms import metric_definitions, metrics
from algorithms.distributed import SINGLE


def test_regression_metrics_on_a_hand_computed_example():
    # y = [1, 2, 3, 4], p = [1, 3, 2, 4]: errors 0, 1, -1, 0 -> mse 0.5, mae 0.5; var(y) = 1.25 -> r2 = 0.6
    m = metrics.regression_metrics(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4]))
    assert m == pytest.approx({"mse": 0.5, "rmse": math.sqrt(0.5), "mae": 0.5, "r2": 0.6}, rel=1e-12)


def test_regression_metrics_match_the_textbook_formulas():
    rng = np.random.default_rng(1)
    y = rng.normal(20000, 5000, 300)
    p = y + rng.normal(0, 1500, 300)
    m = metrics.regression_metrics(y, p)
    mse = sum((a - b) ** 2 for a, b in zip(y, p, strict=True)) / len(y)
    ss_tot = sum((a - y.mean()) ** 2 for a in y)
    assert m["mse"] == pytest.approx(mse, rel=1e-9)
    assert m["rmse"] == pytest.approx(math.sqrt(mse), rel=1e-9)
    assert m["mae"] == pytest.approx(sum(abs(a - b) for a, b in zip(y, p, strict=True)) / len(y), rel=1e-9)
    assert m["r2"] == pytest.approx(1 - mse * len(y) / ss_tot, rel=1e-9)
    assert metrics.r2_from_mse(m["mse"], float(np.var(y))) == pytest.approx(m["r2"], rel=1e-12)


def test_constant_label_r2_is_nan_and_bad_shapes_fail():
    assert math.isnan(metrics.regression_metrics(np.ones(3), np.zeros(3))["r2"])
    with pytest.raises(ValueError, match="equal-length"):
        metrics.regression_metrics(np.ones(3), np.ones(2))
    with pytest.raises(ValueError):
        metrics.regression_metrics(np.ones(0), np.ones(0))


def _definitions() -> dict[str, re.Pattern]:
    return {d["Name"]: re.compile(d["Regex"]) for d in metrics.metric_definitions()}


finite = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False)


@given(
    split=st.sampled_from(metrics.SPLITS),
    values=st.fixed_dictionaries({m: finite for m in metrics.METRICS}),
    iteration=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_every_regex_reads_back_exactly_its_own_value(split, values, iteration):
    line = metrics.format_line(split, values, iteration)
    for name, regex in _definitions().items():
        m = regex.search("2026-01-01T00:00:00Z " + line)  # CloudWatch may prefix a timestamp
        s, metric = name.split(":")
        if s != split:
            assert m is None
        else:
            assert m is not None, (name, line)
            assert float(m.group(1)) == pytest.approx(values[metric], rel=1e-9, abs=1e-300)


def test_nan_values_do_not_match_and_other_lines_are_ignored():
    line = metrics.format_line("validation", {"rmse": float("nan"), "r2": 0.5})
    regexes = _definitions()
    assert regexes["validation:rmse"].search(line) is None
    assert float(regexes["validation:r2"].search(line).group(1)) == 0.5
    for regex in regexes.values():
        assert regex.search("INFO validation:rmse=12 (not a metrics line)") is None


def test_metric_logger_prints_bare_lines_and_remembers_the_last():
    out = io.StringIO()
    log = metrics.MetricLogger(out)
    log("train", {"rmse": 2.0, "mae": 1.0}, iteration=3)
    log("train", {"rmse": 1.5, "mae": 0.5})
    assert out.getvalue().splitlines() == [
        "#metrics iteration=3 train:rmse=2 train:mae=1",
        "#metrics final train:rmse=1.5 train:mae=0.5",
    ]
    assert log.last == {"train": {"rmse": 1.5, "mae": 0.5}}


def test_definitions_respect_create_training_job_limits():
    for algorithm in ("xgboost", "linear"):
        defs = metric_definitions.definitions(algorithm)
        assert 1 <= len(defs) <= metric_definitions.MAX_DEFINITIONS
        assert len({d["Name"] for d in defs}) == len(defs)
        for d in defs:
            assert set(d) == {"Name", "Regex"}
            assert 1 <= len(d["Name"]) <= metric_definitions.MAX_NAME
            assert 1 <= len(d["Regex"]) <= metric_definitions.MAX_REGEX
            assert re.compile(d["Regex"]).groups == 1


def test_metric_definitions_main(capsys):
    assert metric_definitions.main(["linear"]) == 0
    assert json.loads(capsys.readouterr().out) == metrics.metric_definitions()
    assert metric_definitions.main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m algorithms.metric_definitions {xgboost|linear}") and "'nope'" in err


def test_evaluation_layout_and_seeded_bootstrap():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, 150)
    p = y + rng.normal(0, 0.3, 150)
    doc = metrics.evaluation(y, p)
    assert list(doc) == ["regression_metrics"]
    assert list(doc["regression_metrics"]) == ["mae", "mse", "rmse", "r2"]
    values = metrics.regression_metrics(y, p)
    for name, entry in doc["regression_metrics"].items():
        assert entry["value"] == values[name]
        assert entry["standard_deviation"] > 0
    assert metrics.evaluation(y, p) == doc  # seeded: identical on a rerun
    assert metrics.evaluation(y, p, seed=1) != doc
    # The bootstrap standard deviation of the mean absolute error is close to its textbook standard error.
    se = np.std(np.abs(p - y), ddof=1) / math.sqrt(len(y))
    assert doc["regression_metrics"]["mae"]["standard_deviation"] == pytest.approx(se, rel=0.3)
    json.dumps(doc, allow_nan=False)


def test_evaluation_edge_cases_stay_valid_json():
    one = metrics.evaluation(np.array([1.0]), np.array([2.0]))
    assert one["regression_metrics"]["mae"] == {"value": 1.0, "standard_deviation": 0.0}
    assert one["regression_metrics"]["r2"]["value"] is None  # constant label: NaN written as null
    json.dumps(one, allow_nan=False)
    const = metrics.evaluation(np.ones(10), np.arange(10.0))
    json.dumps(const, allow_nan=False)


def test_metrics_summed_block_by_block_equal_those_of_all_rows():
    rng = np.random.default_rng(4)
    y = 1e9 + rng.normal(0, 3, 10_001)  # a large mean against the spread: raw sums of squares would lose it
    p = y + rng.normal(0, 1, len(y))
    sums = metrics.RegressionSums()
    cuts = np.sort(rng.choice(len(y), 40, replace=False))
    for a, b in zip([0, *cuts], [*cuts, len(y)], strict=True):
        sums.add(y[a:b], p[a:b])
    sums.add(y[:0], p[:0])
    got, expected = sums.metrics(SINGLE), metrics.regression_metrics(y, p)
    for name in metrics.METRICS:
        assert got[name] == pytest.approx(expected[name], rel=1e-9), name
    assert expected["r2"] == pytest.approx(1 - 1 / 9, abs=0.01)  # error variance 1 against label variance 9
    with pytest.raises(ValueError):
        metrics.RegressionSums().metrics(SINGLE)
