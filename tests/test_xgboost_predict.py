"""algorithms.xgboost_predict: the prepared C call gives exactly what xgboost's own inplace_predict gives."""

from __future__ import annotations

import numpy as np
import pytest

from algorithms import xgboost_predict
from algorithms.xgboost_regressor import XGBoostRegressor


@pytest.fixture(scope="module")
def model(trained):
    return XGBoostRegressor.load(trained("xgboost").model_dir, threads=1)


def _rows(n: int, seed: int) -> np.ndarray:
    """Random records over the real schema's ranges, with missing values and every category code."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.uniform(0, 60000, n),  # mileage
            rng.choice([4, 6, 8], n),
            rng.choice([2, 4], n),
            rng.integers(0, 2, (n, 3)),  # cruise, sound, leather
            rng.integers(0, 6, n),  # make code
            rng.integers(0, 5, n),  # body_type code
        ]
    ).astype(np.float64)
    X[rng.random(X.shape) < 0.05] = np.nan
    return X


@pytest.mark.parametrize("n", [1, 7, 10_000])
def test_prepared_call_equals_inplace_predict(model, n):
    X = _rows(n, seed=n)
    expected = np.asarray(model.booster.inplace_predict(X, missing=np.nan), dtype=np.float64).reshape(-1)
    fast = xgboost_predict.predictor(model.booster)
    assert isinstance(fast, xgboost_predict._DensePredictor), "the pinned xgboost should take the fast path"
    np.testing.assert_array_equal(fast(X), expected)
    np.testing.assert_array_equal(model.predict(X), expected)


def test_results_are_copies_not_views_of_xgboosts_reused_buffer(model):
    fast = xgboost_predict.predictor(model.booster)
    first = fast(_rows(3, seed=1))
    kept = first.copy()
    fast(_rows(3, seed=2))
    np.testing.assert_array_equal(first, kept)


def test_falls_back_to_inplace_predict_when_the_internals_differ(model, monkeypatch, caplog):
    def broken(booster):
        raise AttributeError("module 'xgboost.core' has no attribute '_LIB'")

    monkeypatch.setattr(xgboost_predict, "_DensePredictor", broken)
    X = _rows(5, seed=3)
    predict = xgboost_predict.predictor(model.booster)
    np.testing.assert_array_equal(predict(X), model.booster.inplace_predict(X, missing=np.nan).astype(np.float64))
    assert "fast prediction path unavailable" in caplog.text
