"""algorithms.hyperparameters (declarations, parsing, errors) and the entry point's one validation place."""

from __future__ import annotations

import pytest

from algorithms import registry, train
from algorithms.hyperparameters import REQUIRED, Hyperparameter, HyperparameterSpec
from core.errors import HyperparameterError

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
        ("num_round", "ten", "hyperparameter 'num_round': received 'ten', expected an integer in [1, inf]"),
        ("num_round", "10.5", "hyperparameter 'num_round': received '10.5', expected an integer in [1, inf]"),
        ("num_round", "0", "hyperparameter 'num_round': received '0', expected an integer in [1, inf]"),
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
    assert str(e.value) == "hyperparameter 'num_round': required but not given, expected an integer in [1, inf]"


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
