"""The final metrics and evaluation.json of an XGBoost job use the predictions XGBoost cached while training
(read before xgb.train's Booster.reset() drops them): they must be the saved model's own predictions."""

from __future__ import annotations

import numpy as np

from algorithms.base import Dataset
from algorithms.xgboost_regressor import XGBoostRegressor
from core.schema import CATEGORICAL, NUMERIC, Feature, Schema

SCHEMA = Schema((Feature("x", NUMERIC), Feature("c", CATEGORICAL, ("a", "b", "c"))))


def data(name: str, n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=n), rng.integers(0, 3, n).astype(float)])
    y = 3 * X[:, 0] + X[:, 1] + rng.normal(scale=0.5, size=n)
    return Dataset(name, X, y)


def fit(params: dict, validation: Dataset | None):
    lines = []
    model = XGBoostRegressor({"num_round": 40, "seed": 0, **params}, SCHEMA)
    model.fit(data("train", 600, 1), validation, log=lambda *a, **k: lines.append(a))
    return model


def test_cached_predictions_are_the_saved_models():
    validation = data("validation", 200, 2)
    model = fit({"early_stopping_rounds": 0}, validation)
    fitted = model.fitted_predictions()
    assert set(fitted) == {"train", "validation"}
    assert model.booster.num_boosted_rounds() == 40
    np.testing.assert_allclose(fitted["train"], model.predict(data("train", 600, 1).X), rtol=1e-6)
    np.testing.assert_allclose(fitted["validation"], model.predict(validation.X), rtol=1e-6)


def test_no_cached_predictions_when_early_stopping_keeps_fewer_rounds():
    # patience 1 on noisy validation data stops early; the cache holds the last round's, not the saved model's
    validation = data("validation", 50, 3)
    model = fit({"early_stopping_rounds": 1, "eta": 0.9}, validation)
    assert model.booster.num_boosted_rounds() < 40
    assert model.fitted_predictions() == {}
