"""Drift distances: exact equality with scipy's KS statistic, the sketched one within the KLL's documented error,
Deequ's Robust correction, categorical L-infinity and chi-squared."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from monitoring import distance
from monitoring.sketches import DEFAULT_K, CategoricalSketch, NumericSketch, rank_error
from monitoring.statistics import baseline_features


def _sketch(values: np.ndarray, k: int = DEFAULT_K) -> NumericSketch:
    s = NumericSketch(k)
    s.update_numbers(values.astype(np.float64))
    return s


def _sketch_linf(a: NumericSketch, b: NumericSketch) -> float:
    ai, aw = a.weighted_items()
    bi, bw = b.weighted_items()
    return distance.numeric_linf(ai, aw, bi, bw)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_exact_simple_distance_equals_ks_2samp_both_directions(seed: int, shift: float) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, 700)
    b = np.round(rng.normal(shift, 1.2, 450), 1)  # ties too
    expected = stats.ks_2samp(a, b).statistic
    assert distance.numeric_linf(a, None, b, None) == pytest.approx(expected, abs=1e-12)
    assert distance.numeric_linf(b, None, a, None) == pytest.approx(expected, abs=1e-12)
    # below k values the sketch is exact, so the same holds through it
    assert _sketch_linf(_sketch(a), _sketch(b)) == pytest.approx(expected, abs=1e-12)
    assert _sketch_linf(_sketch(b), _sketch(a)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k", [200, DEFAULT_K])
@pytest.mark.parametrize("seed", [0, 1])
def test_sketched_distance_within_documented_rank_error(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.lognormal(10, 0.5, 120_000)
    b = rng.lognormal(10.05, 0.55, 90_000)
    exact = stats.ks_2samp(a, b).statistic
    sa, sb = _sketch(a, k), _sketch(b, k)
    assert sa.kll.is_estimation_mode() and sb.kll.is_estimation_mode()
    bound = 2 * rank_error(k)  # each CDF is off by at most the rank error
    assert abs(_sketch_linf(sa, sb) - exact) <= bound
    assert abs(_sketch_linf(sb, sa) - exact) <= bound


def test_documented_rank_errors() -> None:
    # DataSketches' published figures: 1.33 % at k=200, about 0.14 % at k=2048 (99 % confidence)
    assert rank_error(200) == pytest.approx(0.0133, abs=5e-4)
    assert rank_error(2048) == pytest.approx(0.00138, abs=1e-4)


def test_robust_is_deequs_formula_exactly() -> None:
    linf, n, m = 0.3, 400, 250
    assert distance.robust(linf, n, m) == max(0.0, linf - 1.8 * math.sqrt((n + m) / (n * m)))
    assert distance.robust(0.05, 100, 100) == 0.0


def test_categorical_linf_is_max_frequency_difference() -> None:
    a = {"Chevy": 50, "Saab": 30, "Buick": 20}
    b = {"Chevy": 20, "Saab": 30, "Saturn": 50}
    assert distance.categorical_linf(a, b) == pytest.approx(0.5)
    assert distance.categorical_linf(b, a) == pytest.approx(0.5)
    assert distance.categorical_linf(a, a) == 0.0


def test_chi_squared_pvalue_matches_scipy() -> None:
    base = {"a": 100.0, "b": 200.0, "c": 300.0}
    cur = {"a": 130.0, "b": 180.0, "c": 290.0}
    expected = stats.chisquare([130, 180, 290], f_exp=[100, 200, 300]).pvalue
    assert distance.chi_squared_pvalue(base, cur) == pytest.approx(expected, rel=1e-9)
    for dof, x in [(1, 0.5), (4, 9.3), (30, 12.0), (30, 80.0)]:
        assert distance.gammaincc(dof / 2, x / 2) == pytest.approx(stats.chi2.sf(x, dof), rel=1e-9)


def test_statistics_round_trip_keeps_the_sketch_distribution() -> None:
    """The KLL written to statistics.json (levels of weight 2**i) reproduces the sketch's CDF exactly."""
    rng = np.random.default_rng(3)
    s = _sketch(rng.gamma(2.0, 1000.0, 50_000), k=200)
    doc = {"features": [{"name": "x", "inferred_type": "Fractional", "numerical_statistics": s.statistics()}]}
    bf = baseline_features(doc)["x"]
    items, weights = s.weighted_items()
    assert bf.weights.sum() == pytest.approx(weights.sum())
    probe = rng.gamma(2.0, 1000.0, 200)
    assert distance.numeric_linf(bf.items, bf.weights, items, weights) == 0.0
    assert distance.numeric_linf(bf.items, bf.weights, probe, None) == pytest.approx(
        distance.numeric_linf(items, weights, probe, None)
    )


def test_sketches_merge_like_one_pass() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(5, 2, 30_000)
    whole = _sketch(x)
    a, b = _sketch(x[:10_000]), _sketch(x[10_000:])
    a.merge(NumericSketch.from_state(b.to_state()))
    assert a.count == whole.count and a.mean == pytest.approx(whole.mean) and a.std_dev == pytest.approx(whole.std_dev)
    assert (a.min, a.max) == (whole.min, whole.max)
    assert _sketch_linf(a, whole) <= 2 * rank_error()
    c1, c2 = CategoricalSketch(), CategoricalSketch()
    c1.update(["a", "b", None, ""])
    c2.update(["a", "7"])
    c1.merge(CategoricalSketch.from_state(c2.to_state()))
    assert c1.counts == {"a": 2, "b": 1, "7": 1} and c1.num_missing == 2 and c1.num_mismatch == 1
