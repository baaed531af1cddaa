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


def _lines(params: dict, validation: Dataset | None) -> list[tuple[str, int, dict]]:
    lines: list[tuple[str, int, dict]] = []
    model = XGBoostRegressor({"num_round": 25, "seed": 0, "early_stopping_rounds": 0, **params}, SCHEMA)
    model.fit(data("train", 600, 1), validation, log=lambda s, m, iteration=None: lines.append((s, iteration, m)))
    return lines


def test_train_metrics_every_n_rounds_are_those_of_every_round():
    validation = data("validation", 200, 2)
    every = _lines({"train_metric_frequency": 1}, validation)
    default = _lines({}, validation)  # 10: the first round, every 10th and the last
    assert [i for s, i, _ in default if s == "train"] == [0, 10, 20, 24]
    assert [i for s, i, _ in default if s == "validation"] == list(range(25))
    assert [i for s, i, _ in every if s == "train"] == list(range(25))
    # On a logged round the train line comes first, with the very values of evaluating every round.
    assert [(s, i) for s, i, _ in default[:3]] == [("train", 0), ("validation", 0), ("validation", 1)]
    by_round = {(s, i): m for s, i, m in every}
    for split, i, metrics in default:
        assert metrics == by_round[(split, i)], (split, i)


def test_early_stopping_logs_the_train_metrics_of_its_last_round():
    lines = _lines({"num_round": 200, "early_stopping_rounds": 1, "train_metric_frequency": 1000}, data("v", 200, 3))
    last = max(i for _, i, _ in lines)
    assert last < 199  # stopped early
    assert [i for s, i, _ in lines if s == "train"] == [0, last]
