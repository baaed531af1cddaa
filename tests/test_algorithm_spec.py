"""pipelines.algorithm_spec: the CreateAlgorithm request and tuning configuration, generated from the declarations.

They must fit botocore's SageMaker model (what `aws sagemaker create-algorithm` checks client-side, and the limits
it leaves to the service) and say exactly what the container accepts, since the console, the SDK and tuning jobs
validate hyperparameters against them instead of the container.
"""

from __future__ import annotations

import copy
import json
import math

import botocore.session
import pytest
from botocore.stub import Stubber

from algorithms import registry, train
from algorithms.hyperparameters import Hyperparameter, HyperparameterSpec, OnlyWith, Tune
from core.errors import HyperparameterError
from pipelines import algorithm_spec as spec_mod
from pipelines.algorithm_spec import SpecError, check, create_algorithm, tuning_job_config, tuning_problems

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/byoc-{}@sha256:" + "ab" * 32
ALGORITHMS = registry.NAMES


def _request(algorithm: str) -> dict:
    return create_algorithm(algorithm, IMAGE.format(algorithm), IMAGE.format(algorithm))


def _client():
    return botocore.session.get_session().create_client(
        "sagemaker", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_create_algorithm_fits_the_sagemaker_model(algorithm):
    request = _request(algorithm)
    assert check("CreateAlgorithm", request) == []
    client = _client()  # the client's own ParamValidator, as the AWS CLI runs it before sending
    with Stubber(client) as stub:
        stub.add_response("create_algorithm", {"AlgorithmArn": "arn:aws:sagemaker:eu-west-1:1:algorithm/x"}, request)
        client.create_algorithm(**request)
    assert request["AlgorithmName"] == f"byoc-{algorithm}"
    training = request["TrainingSpecification"]
    assert training["SupportsDistributedTraining"] is True
    assert [c["Name"] for c in training["TrainingChannels"]] == ["train", "validation", "test"]
    assert [c["IsRequired"] for c in training["TrainingChannels"]] == [True, False, False]
    assert {"text/csv", "text/csv;header=present", "application/x-parquet"} <= set(
        training["TrainingChannels"][0]["SupportedContentTypes"]
    )
    assert training["TrainingChannels"][0]["SupportedInputModes"] == ["File", "FastFile"]  # Pipe is refused
    assert {m["MetricName"]: m["Type"] for m in training["SupportedTuningJobObjectiveMetrics"]} == {
        "validation:rmse": "Minimize",
        "validation:mae": "Minimize",
        "validation:mse": "Minimize",
        "validation:r2": "Maximize",
    }
    # Every objective is one of the metrics the regexes extract.
    names = {d["Name"] for d in training["MetricDefinitions"]}
    assert {m["MetricName"] for m in training["SupportedTuningJobObjectiveMetrics"]} <= names
    inference = request["InferenceSpecification"]
    assert inference["SupportedContentTypes"] == ["text/csv", "application/json", "application/jsonlines"]
    assert inference["SupportedResponseMIMETypes"] == ["text/csv", "application/json", "application/jsonlines"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_instance_types_are_x86_cpu_ones(algorithm):
    request = _request(algorithm)
    lists = [
        request["TrainingSpecification"]["SupportedTrainingInstanceTypes"],
        request["InferenceSpecification"]["SupportedTransformInstanceTypes"],
        request["InferenceSpecification"]["SupportedRealtimeInferenceInstanceTypes"],
    ]
    for types in lists:
        assert "ml.m5.large" in types or "ml.m5.xlarge" in types
        for t in types:  # no GPU (p, g), accelerator (inf, trn, dl) or Graviton (c7g, m6gd) instance
            family = t.split(".")[1]
            assert family[0] in "cmrt" and "g" not in family.split("-")[0][1:], t


def _accepts(p: Hyperparameter, text: str) -> bool:
    try:
        p.parse(text)
    except HyperparameterError:
        return False
    return True


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_declared_hyperparameter_appears_with_its_type_and_exact_range(algorithm):
    declared = train.hyperparameter_spec(registry.get(algorithm))
    generated = {h["Name"]: h for h in _request(algorithm)["TrainingSpecification"]["SupportedHyperParameters"]}
    assert list(generated) == list(declared.params)
    for p in declared:
        h = generated[p.name]
        assert h["IsRequired"] is p.required and h["IsTunable"] is (p.tune is not None), p.name
        if p.choices is not None or p.type is bool:
            assert h["Type"] == "Categorical", p.name
            values = h["Range"]["CategoricalParameterRangeSpecification"]["Values"]
            assert all(_accepts(p, v) for v in values), p.name
            if p.choices is not None:
                assert set(p.choices) <= {p.parse(v) for v in values} <= {*p.choices, "auto"}, p.name
        elif p.type in (int, float):
            kind = "Integer" if p.type is int else "Continuous"
            assert h["Type"] == kind, p.name
            r = h["Range"][f"{kind}ParameterRangeSpecification"]
            lo, hi = r["MinValue"], r["MaxValue"]
            # The bounds are accepted and the next representable value beyond each is refused: the same range.
            assert _accepts(p, lo) and _accepts(p, hi), p.name
            if p.type is int:
                below, above = str(int(lo) - 1), str(int(hi) + 1)
            else:
                below, above = repr(math.nextafter(float(lo), -math.inf)), repr(math.nextafter(float(hi), math.inf))
            assert not _accepts(p, below) and not _accepts(p, above), (p.name, below, above)
        else:
            assert h["Type"] == "FreeText", p.name
        if "DefaultValue" in h:
            assert p.parse(h["DefaultValue"]) == p.default, p.name
        else:  # required, no default at all, or Linear Learner's 'auto' that a number type cannot carry
            assert p.required or p.default is None or p.default == "auto", p.name


def _sdk_estimator(request: dict):
    """The SageMaker SDK's AlgorithmEstimator over this algorithm resource, as DescribeAlgorithm would return it."""
    from sagemaker.algorithm import AlgorithmEstimator

    estimator = AlgorithmEstimator.__new__(AlgorithmEstimator)  # no session: only its hyperparameter handling
    estimator.algorithm_spec = request
    estimator.hyperparameter_definitions = estimator._parse_hyperparameters()
    estimator._hyperparameters = {}
    return estimator


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_what_the_sdk_sends_for_the_algorithm_is_what_the_container_accepts(algorithm):
    plugin = registry.get(algorithm)
    estimator = _sdk_estimator(_request(algorithm))
    estimator._validate_and_set_default_hyperparameters()  # the SDK fills in every DefaultValue
    sent = {k: str(v) for k, v in estimator.hyperparameters().items()}
    _, params = train.validate_hyperparameters(plugin, sent)
    assert params == {**plugin.hyperparameters.defaults()}


def test_the_sdk_refuses_what_the_container_refuses_before_any_job_starts():
    estimator = _sdk_estimator(_request("xgboost"))
    estimator.set_hyperparameters(eta=0.3, max_depth=0, objective="reg:gamma")
    with pytest.raises(ValueError, match="Invalid value"):
        estimator.set_hyperparameters(eta=0)  # (0, 1]: 0 is outside [5e-324, 1]
    with pytest.raises(ValueError, match="Invalid value"):
        estimator.set_hyperparameters(max_bin=2**31)
    with pytest.raises(ValueError, match="not supported"):
        estimator.set_hyperparameters(num_rounds=10)
    linear = _sdk_estimator(_request("linear"))
    linear.set_hyperparameters(use_bias=False, normalize_label="auto")  # Python booleans arrive as "False"
    linear._validate_and_set_default_hyperparameters()
    sent = {k: str(v) for k, v in linear.hyperparameters().items()}
    assert train.validate_hyperparameters(registry.get("linear"), sent)[1]["use_bias"] is False


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_tuning_config_fits_the_model_and_the_algorithm(algorithm):
    config = tuning_job_config(algorithm)
    declared = train.hyperparameter_spec(registry.get(algorithm))
    assert check("CreateHyperParameterTuningJob", {"HyperParameterTuningJobConfig": config}, whole=False) == []
    assert tuning_problems(config, declared) == []
    ranges = config["ParameterRanges"]
    tuned = [r["Name"] for kind in ranges.values() for r in kind]
    assert sorted(tuned) == sorted(p.name for p in declared if p.tune is not None)
    for r in ranges.get("ContinuousParameterRanges", []) + ranges.get("IntegerParameterRanges", []):
        if r["ScalingType"] == "Logarithmic":
            assert float(r["MinValue"]) > 0, r
    client = _client()  # a whole request through the client's validator, the algorithm resource named
    request = {
        "HyperParameterTuningJobName": f"byoc-{algorithm}-tuning",
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": {
            "AlgorithmSpecification": {"AlgorithmName": f"byoc-{algorithm}", "TrainingInputMode": "File"},
            "RoleArn": "arn:aws:iam::123456789012:role/sagemaker",
            "OutputDataConfig": {"S3OutputPath": "s3://bucket/tuning/"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        },
    }
    assert check("CreateHyperParameterTuningJob", request) == []
    with Stubber(client) as stub:
        stub.add_response("create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": "arn:x"}, request)
        client.create_hyper_parameter_tuning_job(**request)


def test_tuning_objective_and_choices():
    config = tuning_job_config("linear", "validation:r2", tune=["wd", "use_bias"], strategy="Random")
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:r2"}
    assert config["Strategy"] == "Random"
    assert config["ParameterRanges"] == {
        "ContinuousParameterRanges": [
            {"Name": "wd", "MinValue": "1e-07", "MaxValue": "1.0", "ScalingType": "Logarithmic"}
        ],
        "CategoricalParameterRanges": [{"Name": "use_bias", "Values": ["true", "false"]}],
    }
    for kwargs, message in [
        ({"objective": "test:rmse"}, "objective 'test:rmse': expected one of validation:rmse"),
        ({"tune": ["epochs"]}, "hyperparameter 'epochs': not tunable; tunable: mini_batch_size"),
        ({"tune": ["wd"], "static": {"wd": "0.1"}}, "hyperparameter 'wd': both tuned and static"),
        ({"static": {"beta_1": "0.5", "optimizer": "sgd"}}, "static hyperparameter 'beta_1': received '0.5', which"),
        ({"max_jobs": 2, "max_parallel": 3}, "max parallel jobs 3: expected between 1 and max jobs (2)"),
        ({"strategy": "Grid"}, "strategy 'Grid': expected one of Bayesian, Random"),
    ]:
        with pytest.raises(SpecError) as e:
            tuning_job_config("linear", **kwargs)
        assert str(e.value).startswith(message), str(e.value)


def test_a_tuned_hyperparameter_that_a_rule_silences_is_refused(monkeypatch):
    class Plugin:
        hyperparameters = HyperparameterSpec(
            [
                Hyperparameter("init", str, "ridge", choices=("ridge", "uniform")),
                Hyperparameter("scale", float, 0.07, min=0, min_exclusive=True, tune=Tune(0.01, 1, "Logarithmic")),
            ],
            [OnlyWith("scale", (("init", ("uniform",)),))],
        )

    monkeypatch.setattr(registry, "get", lambda name: Plugin)
    with pytest.raises(SpecError, match=r"^hyperparameter 'scale': tuned, but it is used only with init=uniform$"):
        tuning_job_config("xgboost")
    assert tuning_job_config("xgboost", static={"init": "uniform"})["ParameterRanges"]["ContinuousParameterRanges"]


# -- the checks can fail -------------------------------------------------------------------------------------------
def _broken(mutate) -> dict:
    request = copy.deepcopy(_request("xgboost"))
    mutate(request)
    return request


def _hp(request: dict, name: str) -> dict:
    return next(h for h in request["TrainingSpecification"]["SupportedHyperParameters"] if h["Name"] == name)


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        # botocore's own validator leaves maximum lengths and counts, enums and patterns to the service
        (lambda r: r.update(AlgorithmName="a" * 64), "AlgorithmName: 64 characters, expected 1 to 63"),
        (lambda r: r.update(AlgorithmName="byoc_xgboost"), "AlgorithmName: 'byoc_xgboost' does not match"),
        (lambda r: _hp(r, "eta").update(Type="Float"), ".Type: 'Float' is not one of the model's 4 values"),
        (lambda r: _hp(r, "eta").update(Description="tab\tinside"), ".Description: 'tab\\tinside' does not match"),
        (
            lambda r: r["TrainingSpecification"]["TrainingChannels"].extend([{"Name": f"c{i}"} for i in range(6)]),
            "TrainingSpecification.TrainingChannels: 9 items, expected 1 to 8",
        ),
        (
            lambda r: r["TrainingSpecification"]["SupportedTrainingInstanceTypes"].append("ml.m99.large"),
            "'ml.m99.large' is not one of the model's",
        ),
        # and botocore's validator itself: unknown members, wrong types, missing required members
        (lambda r: r["TrainingSpecification"].update(HyperParameters=[]), "Unknown parameter"),
        (lambda r: _hp(r, "eta").update(IsTunable="yes"), "Invalid type for parameter"),
        (lambda r: r.pop("TrainingSpecification"), "missing required member TrainingSpecification"),
    ],
)
def test_a_broken_algorithm_request_is_caught(mutate, fragment):
    problems = check("CreateAlgorithm", _broken(mutate))
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda c: c["ContinuousParameterRanges"][0].update(MinValue="0", ScalingType="Logarithmic"),
         "Logarithmic scaling needs MinValue > 0, received 0"),
        (lambda c: c["IntegerParameterRanges"][0].update(ScalingType="ReverseLogarithmic"),
         "ReverseLogarithmic scaling needs a continuous range within [0, 1)"),
        (lambda c: c["ContinuousParameterRanges"][0].update(MaxValue="2"),
         "hyperparameter 'eta': received '2', expected a number in (0, 1]"),
        (lambda c: c["ContinuousParameterRanges"][0].update(MinValue="0.5", MaxValue="0.5"),
         "MinValue 0.5 is not below MaxValue 0.5"),
        (lambda c: c["CategoricalParameterRanges"].append({"Name": "tree_method", "Values": ["hist", "approx"]}),
         "CategoricalParameterRanges[tree_method]: not a tunable hyperparameter"),
        (lambda c: c["ContinuousParameterRanges"].extend([c["ContinuousParameterRanges"][0]] * 25),
         "ParameterRanges: 37 ranges, at most 30 in all"),
    ],
)  # fmt: skip
def test_a_broken_tuning_config_is_caught(mutate, fragment):
    config = tuning_job_config("xgboost")
    config["ParameterRanges"].setdefault("CategoricalParameterRanges", [])
    mutate(config["ParameterRanges"])
    problems = tuning_problems(config, train.hyperparameter_spec(registry.get("xgboost")))
    assert any(fragment in p for p in problems), problems


def test_a_broken_declaration_never_reaches_the_output(monkeypatch):
    """The generator checks before it returns: a range that AWS would refuse is a SpecError, not a document."""
    plugin = registry.get("linear")
    bad = HyperparameterSpec(
        [*(p for p in plugin.hyperparameters if p.name != "wd"),
         Hyperparameter("wd", float, 0.0, min=0, tune=Tune(0, 1, "Logarithmic"))],
        plugin.hyperparameters.rules,
    )  # fmt: skip
    monkeypatch.setattr(plugin, "hyperparameters", bad)
    with pytest.raises(SpecError, match=r"ContinuousParameterRanges\[wd\]: Logarithmic scaling needs MinValue > 0"):
        tuning_job_config("linear")


# -- command line ----------------------------------------------------------------------------------------------------
def test_cli_prints_the_request(capsys):
    image = IMAGE.format("linear")
    argv = ["--algorithm", "linear", "--training-image", image, "--inference-image", image, "--name", "cars-linear"]
    assert spec_mod.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {**_request("linear"), "AlgorithmName": "cars-linear"}
    assert spec_mod.main(["--algorithm", "xgboost", "--tuning-job-config", "--objective", "validation:mae"]) == 0
    assert json.loads(capsys.readouterr().out) == tuning_job_config("xgboost", "validation:mae")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--algorithm", "xgboost", "--inference-image", "x"], "algorithm_spec: --training-image is required"),
        (["--algorithm", "xgboost", "--training-image", "a b", "--inference-image", "x"],
         "algorithm_spec: TrainingSpecification.TrainingImage: 'a b' does not match the pattern [\\S]+"),
        (["--algorithm", "linear", "--tuning-job-config", "--static", "optimizer"],
         "algorithm_spec: --static 'optimizer': expected NAME=VALUE"),
    ],
)  # fmt: skip
def test_cli_refuses_in_one_line_and_prints_nothing(capsys, argv, message):
    assert spec_mod.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [message] or err.startswith(message), err
