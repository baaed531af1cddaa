"""The linear plug-in through the Algorithm interface: quality, Linear Learner semantics, artifacts, errors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from algorithms import registry
from algorithms.base import Dataset
from algorithms.linear import MODEL_FILE, LinearRegressor
from core.errors import DataError, HyperparameterError, SchemaError, UserError
from core.schema import Feature, Schema

CARS = Path(__file__).resolve().parents[1] / "cardata" / "car_prices.csv"


class Recorder:
    def __init__(self):
        self.calls: list[tuple[str, dict, int | None]] = []

    def __call__(self, split, metrics, iteration=None):
        self.calls.append((split, dict(metrics), iteration))

    def series(self, split: str, metric: str) -> dict[int | None, float]:
        return {it: m[metric] for s, m, it in self.calls if s == split}


def params(**raw) -> dict:
    """Typed hyperparameters, exactly as the training entry point passes them (raw strings validated)."""
    return LinearRegressor.hyperparameters.validate({k: str(v) for k, v in raw.items()})


def r2(y, pred) -> float:
    return 1 - float(np.sum((y - pred) ** 2)) / float(np.sum((y - y.mean()) ** 2))


def one_hot_design(schema: Schema, X: np.ndarray) -> np.ndarray:
    """Plain least-squares design, built independently of the plug-in: numbers, one-hot levels, a constant."""
    cols = [X[:, j] for j, f in enumerate(schema.features) if not f.is_categorical]
    for j, f in enumerate(schema.features):
        if f.is_categorical:
            cols += [(X[:, j] == level).astype(float) for level in range(len(f.levels))]
    return np.column_stack([*cols, np.ones(len(X))])


@pytest.fixture(scope="module")
def cars():
    """The real data, split as the preprocessing job does by default (seed 42, 70/15/15)."""
    frame = pd.read_csv(CARS)
    schema = Schema.infer(frame, "price")
    X = schema.encode(frame[schema.names])
    y = frame["price"].to_numpy(dtype=np.float64)
    order = np.random.default_rng(42).permutation(len(y))
    a, b = int(0.70 * len(y)), int(0.85 * len(y))
    split = {name: Dataset(name, X[idx], y[idx]) for name, idx in
             (("train", order[:a]), ("validation", order[a:b]), ("test", order[b:]))}  # fmt: skip
    return schema, split


@pytest.fixture(scope="module")
def ols_r2(cars) -> float:
    """Test R^2 of ordinary least squares on the same split: what a converged linear model should match."""
    schema, d = cars
    coef = np.linalg.lstsq(one_hot_design(schema, d["train"].X), d["train"].y, rcond=None)[0]
    return r2(d["test"].y, one_hot_design(schema, d["test"].X) @ coef)


def fit(schema, train, validation=None, **raw) -> tuple[LinearRegressor, Recorder]:
    rec = Recorder()
    return LinearRegressor(params(**raw), schema).fit(train, validation, log=rec), rec


# -- quality -----------------------------------------------------------------------------------------------


def test_registry_serves_this_plugin():
    assert registry.get("linear") is LinearRegressor
    assert LinearRegressor.name == "linear"


def test_default_hyperparameters_reach_the_quality_bar_on_real_data(cars, ols_r2):
    schema, d = cars
    model, _ = fit(schema, d["train"], d["validation"])
    score = r2(d["test"].y, model.predict(d["test"].X))
    assert score >= 0.90
    assert score == pytest.approx(ols_r2, abs=1e-3)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_optimiser_alone_converges_to_least_squares_from_a_random_start(cars, ols_r2, optimizer):
    # Without the closed-form start the epochs must do all the work.
    schema, d = cars
    model, _ = fit(schema, d["train"], d["validation"], init_method="uniform", optimizer=optimizer,
                   mini_batch_size=32, epochs=200)  # fmt: skip
    assert model.best_epoch >= 1
    assert r2(d["test"].y, model.predict(d["test"].X)) == pytest.approx(ols_r2, abs=0.005)


def test_huber_and_absolute_losses_train(cars):
    schema, d = cars
    for loss in ("huber_loss", "absolute_loss"):
        model, _ = fit(schema, d["train"], d["validation"], loss=loss, mini_batch_size=64, epochs=50)
        assert model.best_epoch >= 1  # the squared-loss start is not a candidate for another loss
        assert r2(d["test"].y, model.predict(d["test"].X)) >= 0.85, loss


# -- normalisation -----------------------------------------------------------------------------------------


def test_normalize_data_is_what_lets_plain_sgd_converge(cars, ols_r2):
    schema, d = cars
    common = dict(init_method="uniform", optimizer="sgd", mini_batch_size=32, epochs=30)
    model, _ = fit(schema, d["train"], d["validation"], normalize_data="true", **common)
    assert r2(d["test"].y, model.predict(d["test"].X)) == pytest.approx(ols_r2, abs=0.005)
    with pytest.raises(
        HyperparameterError, match=r"^hyperparameter 'learning_rate': training diverged.*normalize_data"
    ):
        fit(schema, d["train"], d["validation"], normalize_data="false", **common)


def test_scaler_recorded_in_the_model_follows_the_hyperparameters(cars):
    schema, d = cars
    mileage = d["train"].X[:, schema.names.index("mileage")]
    on, _ = fit(schema, d["train"])
    col = on.document["columns"][0]
    assert col["feature"] == "mileage"
    assert col["center"] == pytest.approx(mileage.mean())
    assert col["scale"] == pytest.approx(mileage.std())
    assert on.document["label"] == {"center": pytest.approx(d["train"].y.mean()),
                                    "scale": pytest.approx(d["train"].y.std())}  # fmt: skip

    off, _ = fit(schema, d["train"], normalize_data="false", normalize_label="false")
    assert all(c["scale"] == 1.0 for c in off.document["columns"])
    assert off.document["columns"][0]["center"] == pytest.approx(mileage.mean())  # use_bias still centres
    assert off.document["label"]["scale"] == 1.0

    no_bias, _ = fit(schema, d["train"], use_bias="false")
    assert all(c["center"] == 0.0 for c in no_bias.document["columns"])
    assert no_bias.document["intercept"] == 0.0
    # Normalisation changes the optimisation, not the model: all three land on (nearly) the same fit.
    for m in (off, no_bias):
        assert r2(d["test"].y, m.predict(d["test"].X)) == pytest.approx(r2(d["test"].y, on.predict(d["test"].X)),
                                                                           abs=0.01)  # fmt: skip


def test_scaler_uses_num_point_for_scaler_rows(cars):
    schema, d = cars
    full, _ = fit(schema, d["train"])
    sampled, _ = fit(schema, d["train"], num_point_for_scaler=50)
    assert sampled.document["columns"][0]["center"] != full.document["columns"][0]["center"]
    assert sampled.document["columns"][0]["center"] == pytest.approx(full.document["columns"][0]["center"], rel=0.3)


# -- regularisation ----------------------------------------------------------------------------------------


def _noisy_regression(n=2000, useless=8, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2 + useless))
    y = 3.0 * X[:, 0] - 2.0 * X[:, 1] + rng.normal(scale=0.5, size=n)
    schema = Schema(tuple(Feature(f"x{i}") for i in range(X.shape[1])))
    return schema, Dataset("train", X, y)


def test_large_l1_sets_useless_weights_to_exactly_zero():
    schema, train = _noisy_regression()
    lasso, _ = fit(schema, train, l1=0.1, mini_batch_size=20, epochs=5)
    coef = np.array([c["coefficient"] for c in lasso.document["columns"]])
    assert np.all(coef[2:] == 0.0), coef
    assert coef[0] > 1.0 and coef[1] < -1.0
    plain, _ = fit(schema, train, mini_batch_size=20, epochs=5)
    assert np.all(np.array([c["coefficient"] for c in plain.document["columns"]]) != 0.0)


def test_wd_shrinks_the_weights():
    schema, train = _noisy_regression()
    plain, _ = fit(schema, train)
    ridge, _ = fit(schema, train, wd=1.0)
    norm = [np.linalg.norm([c["coefficient"] for c in m.document["columns"]]) for m in (plain, ridge)]
    assert norm[1] < 0.7 * norm[0]


# -- early stopping and logging ----------------------------------------------------------------------------


def test_early_stopping_stops_before_epochs_and_keeps_the_best_epoch(cars):
    schema, d = cars
    model, rec = fit(schema, d["train"], d["validation"], init_method="uniform", mini_batch_size=32, epochs=500)
    assert model.epochs_run < 500
    val = rec.series("validation", "rmse")
    assert sorted(val) == list(range(model.epochs_run + 1))
    assert 1 <= model.best_epoch < model.epochs_run
    assert val[model.best_epoch] == min(v for it, v in val.items() if it >= 1)
    # The model returned is that epoch's, not the last one.
    pred = model.predict(d["validation"].X)
    assert math.sqrt(np.mean((pred - d["validation"].y) ** 2)) == pytest.approx(val[model.best_epoch], rel=1e-9)
    assert val[model.epochs_run] != val[model.best_epoch]


@pytest.mark.parametrize("patience", [1, 4])
def test_patience_counts_epochs_whose_relative_improvement_is_below_tolerance(cars, patience):
    schema, d = cars
    # Tolerance 0.9: no epoch improves the loss tenfold, so only the first (from a random start) counts.
    model, _ = fit(schema, d["train"], d["validation"], init_method="uniform", epochs=100,
                   early_stopping_patience=patience, early_stopping_tolerance=0.9)  # fmt: skip
    assert model.epochs_run == 1 + patience
    # From the ridge start (already the optimum, so a candidate) no epoch counts at all.
    model, _ = fit(schema, d["train"], d["validation"], epochs=100, early_stopping_patience=patience,
                   early_stopping_tolerance=0.9)  # fmt: skip
    assert model.epochs_run == patience


def test_patience_above_epochs_disables_early_stopping(cars):
    schema, d = cars
    model, _ = fit(schema, d["train"], d["validation"], epochs=7, early_stopping_patience=8)
    assert model.epochs_run == 7


def test_log_receives_train_and_validation_metrics_every_epoch(cars):
    schema, d = cars
    _, rec = fit(schema, d["train"], d["validation"], init_method="normal", epochs=4, early_stopping_patience=5)
    assert [(s, it) for s, _, it in rec.calls] == [(s, i) for i in range(5) for s in ("train", "validation")]
    for _, metrics, _ in rec.calls:
        assert set(metrics) == {"rmse", "mae", "r2", "mse"}
        assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    train_r2 = rec.series("train", "r2")
    assert train_r2[4] > train_r2[0]  # it learns


def test_without_validation_early_stopping_watches_the_training_loss(cars):
    schema, d = cars
    model, rec = fit(schema, d["train"], init_method="uniform", epochs=300, mini_batch_size=32)
    assert {s for s, _, _ in rec.calls} == {"train"}
    assert model.epochs_run < 300
    assert model.document["training"]["early_stopping_monitor"] == "train squared_loss"


# -- prediction --------------------------------------------------------------------------------------------


def test_model_file_coefficients_are_in_original_units(cars):
    schema, d = cars
    model, _ = fit(schema, d["train"])
    doc, X = model.document, d["test"].X
    by_hand = np.full(len(X), doc["intercept"])
    for c in doc["columns"]:
        j = schema.names.index(c["feature"])
        if c["type"] == "numeric":
            by_hand += c["coefficient"] * X[:, j]
        else:
            by_hand += c["coefficient"] * (X[:, j] == schema.features[j].levels.index(c["level"]))
    np.testing.assert_allclose(model.predict(X), by_hand, rtol=1e-12)


def test_missing_or_unknown_category_contributes_nothing_and_missing_number_gets_the_mean(cars):
    schema, d = cars
    model, _ = fit(schema, d["train"])
    make = schema.names.index("make")
    row = d["test"].X[:1].copy()
    level = int(row[0, make])
    coef = next(c["coefficient"] for c in model.document["columns"]
                if c["feature"] == "make" and c["level"] == schema.features[make].levels[level])  # fmt: skip
    base = model.predict(row)[0]
    for code in (np.nan, 99.0, -1.0, 0.5):
        unknown = row.copy()
        unknown[0, make] = code
        assert model.predict(unknown)[0] == pytest.approx(base - coef, abs=1e-6), code

    mileage = schema.names.index("mileage")
    missing = row.copy()
    missing[0, mileage] = np.nan
    imputed = row.copy()
    imputed[0, mileage] = model.document["columns"][mileage]["impute"]
    assert model.document["columns"][mileage]["impute"] == pytest.approx(d["train"].X[:, mileage].mean())
    assert model.predict(missing)[0] == model.predict(imputed)[0]


def test_training_data_with_missing_values_and_a_level_never_seen(cars):
    schema, d = cars
    X = d["train"].X.copy()
    X[::7, 0] = np.nan  # missing mileage
    X[::5, schema.names.index("make")] = np.nan  # missing make
    X[X[:, schema.names.index("body_type")] == 0, schema.names.index("body_type")] = 1  # no convertible
    model, _ = fit(schema, Dataset("train", X, d["train"].y))
    convertible = next(c for c in model.document["columns"] if c.get("level") == "convertible")
    assert convertible["coefficient"] == 0.0  # never seen: no information, no weight
    assert np.isfinite(model.predict(d["test"].X)).all()


def test_predict_one_row_and_many_rows_agree(cars):
    schema, d = cars
    model, _ = fit(schema, d["train"])
    X = d["test"].X
    one_by_one = np.array([model.predict(X[i : i + 1])[0] for i in range(len(X))])
    batch = model.predict(X)
    assert batch.dtype == np.float64 and batch.shape == (len(X),)
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-12)


def test_predict_rejects_a_matrix_of_the_wrong_width(cars):
    schema, d = cars
    model, _ = fit(schema, d["train"])
    with pytest.raises(DataError, match=r"expected a matrix with 8 feature columns .*received shape \(3, 7\)"):
        model.predict(d["test"].X[:3, :7])


def test_infinite_numbers_are_refused_naming_row_and_feature(cars):
    schema, d = cars
    X = d["train"].X.copy()
    X[4, schema.names.index("doors")] = -np.inf
    with pytest.raises(DataError, match=r"^channel train: row 5, feature 'doors': expected a finite number"):
        fit(schema, Dataset("train", X, d["train"].y))
    model, _ = fit(schema, d["train"])
    with pytest.raises(DataError, match=r"^prediction input: row 5, feature 'doors': .*received -inf"):
        model.predict(X[:6])


def test_fit_rejects_a_missing_label(cars):
    schema, d = cars
    y = d["train"].y.copy()
    y[3] = np.nan
    with pytest.raises(DataError, match="channel train: the label has missing"):
        fit(schema, Dataset("train", d["train"].X, y))


# -- save / load -------------------------------------------------------------------------------------------


def test_save_load_round_trip_gives_identical_predictions(cars, tmp_path):
    schema, d = cars
    model, _ = fit(schema, d["train"], d["validation"])
    written = model.save(tmp_path)
    assert sorted(p.name for p in written) == sorted([MODEL_FILE, "schema.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MODEL_FILE, "schema.json"])
    loaded = LinearRegressor.load(tmp_path, threads=1)
    X = d["test"].X.copy()
    X[0, 0] = np.nan
    X[1, schema.names.index("make")] = np.nan
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.best_epoch == model.best_epoch
    assert loaded.schema == schema
    doc = json.loads((tmp_path / MODEL_FILE).read_text())  # plain JSON, nothing to execute
    assert doc["training"]["hyperparameters"]["optimizer"] == "adam"  # 'auto' resolved


@pytest.fixture
def saved(cars, tmp_path) -> Path:
    schema, d = cars
    fit(schema, d["train"])[0].save(tmp_path)
    return tmp_path


def _tamper(model_dir: Path, change) -> None:
    path = model_dir / MODEL_FILE
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="xgboost"), r"field 'format': expected 'sagemaker-byoc-linear-regressor', "
         r"received 'xgboost'"),
        (lambda d: d.update(version=2), r"field 'version': expected 1, received 2"),
        (lambda d: d.update(intercept="12"), r"field 'intercept': expected a finite number, received '12'"),
        (lambda d: d["columns"].pop(), r"field 'columns': expected a list of 17 entries .*received '16 entries'"),
        (lambda d: d["columns"][2].update(coefficient=None), r"field 'columns\[2\]\.coefficient': expected a finite"),
        (lambda d: d["columns"][0].update(feature="miles"), r"field 'columns\[0\]\.feature': expected 'mileage'"),
        (lambda d: d["columns"][7].update(level="Ford"), r"field 'columns\[7\]\.level': expected 'Cadillac'"),
        (lambda d: d["columns"][0].pop("impute"), r"field 'columns\[0\]\.impute': expected a finite number"),
        (lambda d: d["training"].update(best_epoch=-1), r"field 'training\.best_epoch': expected a non-negative"),
        (lambda d: d.pop("label"), r"field 'label': expected an object"),
    ],
)  # fmt: skip
def test_load_rejects_a_tampered_model_naming_the_field(saved, change, message):
    _tamper(saved, change)
    with pytest.raises(DataError, match=rf"^file .*{MODEL_FILE}: {message}") as err:
        LinearRegressor.load(saved)
    assert "\n" not in str(err.value)


def test_load_rejects_non_finite_numbers(saved):
    path = saved / MODEL_FILE
    text = path.read_text()
    path.write_text(text.replace('"intercept": ', '"intercept": NaN, "x": ', 1))  # Python's json accepts NaN
    with pytest.raises(DataError, match=r"field 'intercept': expected a finite number, received nan"):
        LinearRegressor.load(saved)


def test_load_rejects_a_truncated_file(saved):
    path = saved / MODEL_FILE
    path.write_text(path.read_text()[:300])
    with pytest.raises(DataError, match=rf"file .*{MODEL_FILE}, line \d+, column \d+: not valid JSON"):
        LinearRegressor.load(saved)


def test_load_rejects_a_binary_file(saved):
    (saved / MODEL_FILE).write_bytes(b"\x80\x04\x95pickle")
    with pytest.raises(DataError, match=rf"file .*{MODEL_FILE}: not a JSON text"):
        LinearRegressor.load(saved)


def test_load_of_a_missing_model_file_names_it(saved):
    (saved / MODEL_FILE).unlink()
    with pytest.raises(DataError, match=rf"file .*{MODEL_FILE}: cannot read the linear model: No such file"):
        LinearRegressor.load(saved)


def test_load_of_a_missing_schema_names_it(saved):
    (saved / "schema.json").unlink()
    with pytest.raises(SchemaError, match=r"file .*schema\.json: not found"):
        LinearRegressor.load(saved)


def test_load_refuses_a_model_for_another_schema(saved):
    doc = json.loads((saved / "schema.json").read_text())
    doc["features"][6]["levels"].append("Volvo")
    (saved / "schema.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"field 'columns': expected a list of 18 entries"):
        LinearRegressor.load(saved)


# -- hyperparameters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("predictor_type", "binary_classifier", r"expected one of regressor; this image trains regressors only"),
        ("predictor_type", "multiclass_classifier", r"regressors only"),
        ("wd", "-0.1", r"expected 'auto' or a number in \[0, inf\]"),
        ("l1", "lots", r"expected 'auto' or a number"),
        ("epochs", "0", r"expected an integer in \[1, 2147483647\]"),
        ("epochs", "2.5", r"expected an integer"),
        ("mini_batch_size", "0", r"expected an integer in \[1, 2147483647\]"),
        ("learning_rate", "0", r"expected 'auto' or a number in \(0, inf\]"),
        ("beta_1", "1", r"expected 'auto' or a number in \[0, 1\)"),
        ("optimizer", "rmsprop", r"expected one of auto, adam, sgd"),
        ("loss", "quantile_loss", r"expected one of auto, squared_loss, absolute_loss, huber_loss"),
        ("normalize_data", "maybe", r"expected 'auto' or a boolean"),
        ("feature_dim", "0", r"expected 'auto' or an integer in \[1, 2147483647\]"),
        ("early_stopping_tolerance", "0", r"expected a number in \(0, inf\]"),
        ("early_stopping_patience", "-3", r"expected an integer in \[1, 2147483647\]"),
    ],
)  # fmt: skip
def test_invalid_hyperparameters_name_the_hyperparameter_and_value(name, value, allowed):
    with pytest.raises(HyperparameterError) as err:
        params(**{name: value})
    assert str(err.value).startswith(f"hyperparameter '{name}': received {value!r}, ")
    assert re.search(allowed, str(err.value)), str(err.value)


def test_auto_values_and_linear_learner_defaults():
    p = params(l1="auto", wd="AUTO", learning_rate="auto", normalize_label="auto", feature_dim="auto")
    assert p["l1"] == p["wd"] == p["learning_rate"] == p["normalize_label"] == "auto"
    d = params()
    assert (d["predictor_type"], d["epochs"], d["mini_batch_size"], d["early_stopping_patience"],
            d["early_stopping_tolerance"], d["num_point_for_scaler"], d["normalize_data"], d["use_bias"]) == (
        "regressor", 15, 1000, 3, 0.001, 10000, True, True)  # fmt: skip
    assert params(l1="0.5", normalize_data="false")["l1"] == 0.5


def test_unknown_hyperparameter_is_refused():
    with pytest.raises(HyperparameterError, match=r"^hyperparameter 'l2': unknown name, received '1'"):
        params(l2="1")


def test_feature_dim_must_match_the_data(cars):
    schema, d = cars
    fit(schema, d["train"], feature_dim=8, epochs=1)
    with pytest.raises(HyperparameterError, match=r"^hyperparameter 'feature_dim': received 9, expected 'auto' or 8"):
        fit(schema, d["train"], feature_dim=9)


def test_every_hyperparameter_is_documented():
    table = LinearRegressor.hyperparameters.as_table()
    assert all(row["description"] for row in table)
    assert {row["name"] for row in table} >= {
        "predictor_type",
        "l1",
        "wd",
        "normalize_data",
        "normalize_label",
        "epochs",
        "early_stopping_patience",
        "early_stopping_tolerance",
    }


def test_user_errors_are_one_line():
    with pytest.raises(UserError) as err:
        params(predictor_type="binary_classifier")
    assert "\n" not in str(err.value)
