"""algorithms.hyperparameters (declarations, parsing, errors) and the entry point's one validation place."""

from __future__ import annotations

import pytest

from algorithms import registry, train
from algorithms.hyperparameters import REQUIRED, Hyperparameter, HyperparameterSpec, OnlyWith
from core.errors import HyperparameterError
from tests.opt_ml import OptML, car_prices

SPEC = HyperparameterSpec(
    [
        Hyperparameter("num_round", int, REQUIRED, min=1),
        Hyperparameter("eta", float, 0.3, min=0, max=1, min_exclusive=True),
        Hyperparameter("normalize", bool, True),
        Hyperparameter("objective", str, "reg:squarederror", choices=("reg:squarederror", "reg:gamma")),
        Hyperparameter("name", str, None),
    ]
)


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("num_round", "10", 10),
        ("num_round", " 10 ", 10),
        ("num_round", "10.0", 10),
        ("num_round", "1e3", 1000),
        ("eta", "1", 1.0),
        ("eta", "0.05", 0.05),
        ("normalize", "False", False),
        ("normalize", "true", True),
        ("normalize", "1", True),
        ("objective", "reg:gamma", "reg:gamma"),
        ("name", "anything at all", "anything at all"),
    ],
)
def test_parses_strings_as_sagemaker_passes_them(name, raw, value):
    parsed = SPEC.params[name].parse(raw)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("num_round", "ten", "hyperparameter 'num_round': received 'ten', expected an integer in [1, 2147483647]"),
        ("num_round", "10.5", "hyperparameter 'num_round': received '10.5', expected an integer in [1, 2147483647]"),
        ("num_round", "0", "hyperparameter 'num_round': received '0', expected an integer in [1, 2147483647]"),
        ("eta", "0", "hyperparameter 'eta': received '0', expected a number in (0, 1]"),
        ("eta", "1.01", "hyperparameter 'eta': received '1.01', expected a number in (0, 1]"),
        ("eta", "nan", "hyperparameter 'eta': received 'nan', expected a number in (0, 1]"),
        ("eta", "inf", "hyperparameter 'eta': received 'inf', expected a number in (0, 1]"),
        ("normalize", "maybe", "hyperparameter 'normalize': received 'maybe', expected a boolean"),
        (
            "objective",
            "binary:logistic",
            "hyperparameter 'objective': received 'binary:logistic', expected one of reg:squarederror, reg:gamma",
        ),
    ],
)
def test_errors_name_hyperparameter_value_and_what_is_allowed(name, raw, message):
    with pytest.raises(HyperparameterError) as e:
        SPEC.params[name].parse(raw)
    assert str(e.value) == message


def test_validate_fills_defaults_and_rejects_unknown_and_missing():
    assert SPEC.validate({"num_round": "5"}) == {
        "num_round": 5,
        "eta": 0.3,
        "normalize": True,
        "objective": "reg:squarederror",
        "name": None,
    }
    with pytest.raises(HyperparameterError, match=r"^hyperparameter 'num_round': required but not given"):
        SPEC.validate({})
    with pytest.raises(HyperparameterError) as e:
        SPEC.validate({"num_round": "5", "etaa": "0.1"})
    assert str(e.value).startswith("hyperparameter 'etaa': unknown name, received '0.1'; known: eta, name, normalize")
    assert SPEC.validate({"num_round": "5", "sagemaker_job": "x"}, ignore=["sagemaker_job"])["num_round"] == 5


def test_spec_rejects_duplicates_and_describes_itself():
    with pytest.raises(ValueError, match="declared twice"):
        HyperparameterSpec([Hyperparameter("a", int, 1), Hyperparameter("a", int, 2)])
    table = {row["name"]: row for row in SPEC.as_table()}
    assert table["num_round"]["required"] is True and table["num_round"]["default"] is None
    assert table["eta"]["allowed"] == "a number in (0, 1]"
    assert SPEC.defaults() == {"eta": 0.3, "normalize": True, "objective": "reg:squarederror", "name": None}


# -- the entry point's validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["xgboost", "linear"])
def test_every_declared_default_is_valid_and_common_names_do_not_clash(algorithm):
    plugin = registry.get(algorithm)
    spec = train.hyperparameter_spec(plugin)  # raises if an algorithm redeclares a common name
    for p in spec:
        if not p.required and p.default is not None:
            assert p.parse(str(p.default)) == p.default, p.name
    common, params = train.validate_hyperparameters(plugin, {})
    assert common == {"target": None}
    assert set(params) == set(plugin.hyperparameters.params)


def test_platform_names_are_ignored_and_target_is_common():
    plugin = registry.get("xgboost")
    raw = {
        "target": "price",
        "eta": "0.2",
        "sagemaker_program": "x",
        "sagemaker_submit_directory": "s3://b/k",
        "_tuning_objective_metric": "validation:rmse",
    }
    common, params = train.validate_hyperparameters(plugin, raw)
    assert common == {"target": "price"}
    assert params["eta"] == 0.2 and "target" not in params
    with pytest.raises(HyperparameterError, match=r"^hyperparameter 'target': received '', expected a column name"):
        train.validate_hyperparameters(plugin, {"target": " "})


def test_missing_required_through_the_entry_point():
    class Plugin:
        hyperparameters = HyperparameterSpec([Hyperparameter("num_round", int, REQUIRED, min=1)])

    with pytest.raises(HyperparameterError) as e:
        train.validate_hyperparameters(Plugin, {"target": "price"})
    assert str(e.value) == "hyperparameter 'num_round': required but not given, expected an integer in [1, 2147483647]"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"objective": "reg:linear"}, "hyperparameter 'objective': received 'reg:linear', expected one of reg:"),
        ({"max_depth": "-1"}, "hyperparameter 'max_depth': received '-1', expected an integer in [0, 30]"),
        ({"subsample": "0"}, "hyperparameter 'subsample': received '0', expected a number in (0, 1]"),
        ({"tree_method": "exact"}, "hyperparameter 'tree_method': received 'exact', expected one of hist, approx"),
        ({"eval_metric": "auc"}, "hyperparameter 'eval_metric': received 'auc', expected one of rmse"),
    ],
)
def test_xgboost_declarations(raw, fragment):
    with pytest.raises(HyperparameterError) as e:
        train.validate_hyperparameters(registry.get("xgboost"), raw)
    assert str(e.value).startswith(fragment)


# -- rules between hyperparameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("algorithm", "raw", "message"),
    [
        (
            "xgboost",
            {"huber_slope": "2"},
            "hyperparameter 'huber_slope': received '2', which is used only with objective=reg:pseudohubererror or "
            "eval_metric=mphe (received objective=reg:squarederror, eval_metric=rmse)",
        ),
        (
            "xgboost",
            {"tweedie_variance_power": "1.2", "objective": "reg:gamma"},
            "hyperparameter 'tweedie_variance_power': received '1.2', which is used only with objective=reg:tweedie "
            "(received objective=reg:gamma)",
        ),
        (
            "linear",
            {"beta_1": "0.5", "optimizer": "sgd"},
            "hyperparameter 'beta_1': received '0.5', which is used only with optimizer in (auto, adam) "
            "(received optimizer=sgd)",
        ),
        (
            "linear",
            {"init_scale": "0.5"},
            "hyperparameter 'init_scale': received '0.5', which is used only with init_method=uniform "
            "(received init_method=ridge)",
        ),
        (
            "linear",
            {"huber_delta": "3", "loss": "absolute_loss"},
            "hyperparameter 'huber_delta': received '3', which is used only with loss=huber_loss "
            "(received loss=absolute_loss)",
        ),
    ],
)
def test_a_value_that_would_be_ignored_is_refused_in_one_line(algorithm, raw, message):
    with pytest.raises(HyperparameterError) as e:
        train.validate_hyperparameters(registry.get(algorithm), raw)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("algorithm", "raw"),
    [
        ("xgboost", {"huber_slope": "2", "objective": "reg:pseudohubererror"}),
        ("xgboost", {"huber_slope": "2", "eval_metric": "mphe"}),
        ("xgboost", {"tweedie_variance_power": "1.2", "objective": "reg:tweedie"}),
        ("linear", {"beta_1": "0.5", "beta_2": "0.9"}),  # optimizer auto is adam
        ("linear", {"init_sigma": "0.1", "init_method": "normal"}),
        # The SageMaker SDK's AlgorithmEstimator sends every default, whatever else is set.
        ("xgboost", {"huber_slope": "1.0", "tweedie_variance_power": "1.5", "objective": "reg:gamma"}),
        ("linear", {"beta_1": "auto", "init_scale": "0.07", "huber_delta": "1", "optimizer": "sgd"}),
    ],
)
def test_the_rules_accept_what_is_used_and_every_default(algorithm, raw):
    train.validate_hyperparameters(registry.get(algorithm), raw)


def test_a_rule_must_name_declared_hyperparameters_and_allowed_values():
    params = [Hyperparameter("a", float, 1.0), Hyperparameter("mode", str, "x", choices=("x", "y"))]
    HyperparameterSpec(params, [OnlyWith("a", (("mode", ("y",)),))])
    with pytest.raises(ValueError, match="'b' is not declared"):
        HyperparameterSpec(params, [OnlyWith("a", (("b", ("y",)),))])
    with pytest.raises(ValueError, match="mode='z' is not an allowed value"):
        HyperparameterSpec(params, [OnlyWith("a", (("mode", ("z",)),))])


def test_integers_are_32_bit_as_xgboost_reads_them():
    """max_bin=1e12 used to reach XGBoost, overflow and end the job with exit 2 and a C++ stack trace."""
    with pytest.raises(HyperparameterError) as e:
        train.validate_hyperparameters(registry.get("xgboost"), {"max_bin": "1e12"})
    assert str(e.value) == "hyperparameter 'max_bin': received '1e12', expected an integer in [2, 2147483647]"
    assert train.validate_hyperparameters(registry.get("xgboost"), {"max_bin": "2147483647"})[1]["max_bin"] == 2**31 - 1


def test_huber_slope_reaches_xgboost_for_the_mphe_metric():
    from algorithms.xgboost_regressor import HYPERPARAMETERS, XGBoostRegressor

    params = {**HYPERPARAMETERS.defaults(), "eval_metric": "mphe", "huber_slope": 3.0}
    assert XGBoostRegressor(params, None)._booster_params(1)["huber_slope"] == 3.0
    assert "huber_slope" not in XGBoostRegressor(HYPERPARAMETERS.defaults(), None)._booster_params(1)


@pytest.mark.parametrize("raw", [{"tree_method": "approx"}, {"tree_method": "approx", "max_depth": "0"},
                                 {"max_depth": "0"}])  # fmt: skip
def test_every_tree_method_trains_also_without_a_depth_limit(tmp_path, raw):
    """approx used to fail with exit 2 (XGBoost refuses it a QuantileDMatrix); max_depth=0 is fine with both."""
    job = OptML(tmp_path).hyperparameters({**raw, "num_round": "5"})
    job.channel("train", {"train.csv": car_prices().head(200)})
    result = job.train("xgboost")
    assert result.returncode == 0, result.failure
    assert (result.model_dir / "xgboost-model.json").is_file()


@pytest.mark.parametrize(
    ("objective", "labels", "message"),
    [
        ("reg:gamma", [5.0, 0.0, 3.0], "objective reg:gamma takes labels > 0, but row 2 (in file order) has label 0"),
        ("reg:tweedie", [-2.5, 1.0, 3.0], "objective reg:tweedie takes labels >= 0, but row 1 (in file order) has "
         "label -2.5"),
        ("reg:squaredlogerror", [1.0, 2.0, -1.0], "objective reg:squaredlogerror takes labels > -1, but row 3"),
    ],
)  # fmt: skip
def test_labels_outside_the_objectives_domain_are_a_user_error(tmp_path, objective, labels, message):
    """XGBoost checks these in C++: the job used to end with exit 2 and a stack trace instead of the reason."""
    rows = "\n".join(f"{y},{i},{i % 2}" for i, y in enumerate(labels * 10)) + "\n"
    job = OptML(tmp_path).hyperparameters(objective=objective, num_round="3")
    job.channel("train", {"train.csv": rows})
    result = job.train("xgboost")
    assert result.returncode == 1, result.output
    assert result.failure_line.startswith(f"channel 'train': {message}"), result.failure_line
