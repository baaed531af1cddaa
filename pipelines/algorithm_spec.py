"""The algorithms as SageMaker algorithm resources: ``CreateAlgorithm`` requests and tuning configurations.

Generated from what the code already declares, so the console, training jobs and tuning jobs that use the
algorithm resource validate exactly what the container validates:

- hyperparameters (types, ranges, defaults, tunability): each plug-in's ``HyperparameterSpec``;
- metrics and tuning objectives: ``algorithms.metrics``; channels and their content types: ``algorithms.data``
  and ``algorithms.train``; request and response content types: ``serving.codecs``.

    python -m pipelines.algorithm_spec --algorithm xgboost --training-image URI --inference-image URI > algo.json
    aws sagemaker create-algorithm --cli-input-json file://algo.json
    python -m pipelines.algorithm_spec --algorithm xgboost --tuning-job-config > tuning.json

How declarations map to AWS's types: integers are Integer, numbers Continuous, choices and booleans Categorical,
free strings FreeText. AWS ranges are inclusive: an exclusive bound becomes the nearest double inside it (``eta``
in (0, 1] is [5e-324, 1]) and an unbounded side the largest finite double, so the range is the container's exact.
A hyperparameter whose default is Linear Learner's ``auto`` gets no ``DefaultValue`` (the SDK's
AlgorithmEstimator sends every DefaultValue, and ``auto`` is not a number): left out, the container uses ``auto``.

Every document is checked against botocore's SageMaker model before it is printed: botocore's own
``validate_parameters`` (types, required members) plus the limits it does not check (maximum lengths and counts,
enums, patterns), and AWS's documented tuning rules (Logarithmic needs MinValue > 0, ReverseLogarithmic a
continuous range within [0, 1), at most 30 ranges in all, tuned ranges within the algorithm's).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

import botocore.session
from botocore.exceptions import ParamValidationError
from botocore.model import Shape
from botocore.validate import validate_parameters

from algorithms import data, metrics, registry, train
from algorithms.hyperparameters import SCALING_TYPES, Hyperparameter, HyperparameterSpec
from core.errors import HyperparameterError
from serving import codecs

DESCRIPTIONS = {
    "xgboost": "XGBoost regression with native categorical features, early stopping and checkpoints (CPU).",
    "linear": "Linear regression in the way of Linear Learner (closed-form start, Adam or SGD, L1/L2) (CPU).",
}
# x86-64 CPU instances only: the images are amd64 and XGBoost is its CPU build (no GPU, no Graviton, no
# accelerators): general purpose, compute and memory families whose suffix has no 'g'.
X86_CPU_INSTANCE = re.compile(r"ml\.[cmrt]\d+[a-fh-z]*(-flex)?\.[0-9a-z]+")
CHANNEL_DESCRIPTIONS = {
    "train": "Training data (headerless CSV with the label first, CSV with a header and the target hyperparameter, "
    "or parquet); a schema.json in the channel fixes names, types and levels.",
    "validation": "Early stopping, the validation:* metrics (tuning objectives) and the evaluation when there is "
    "no test channel.",
    "test": "The test:* metrics and evaluation.json.",
}
METRIC_GOALS = {"rmse": "Minimize", "mae": "Minimize", "mse": "Minimize", "r2": "Maximize"}
OBJECTIVE_SPLIT = "validation"  # tuning objectives: metrics of data the model did not train on
MAX_TUNED = 30  # ParameterRanges: integer + continuous + categorical ranges together (AWS docs)
MAX_CATEGORICAL_VALUES = 30
STRATEGIES = ("Bayesian", "Random")  # Grid takes categorical ranges only, Hyperband needs a StrategyConfig

_session = botocore.session.get_session()


class SpecError(ValueError):
    """A request that cannot be generated or would be refused; the message is one line naming the culprit."""


# -- hyperparameters --------------------------------------------------------------------------------------------
def _auto(p: Hyperparameter) -> bool:
    return bool(getattr(p, "auto", False))  # linear's _Param: "auto" is accepted besides the declared type


def _number(v: float) -> str:
    return repr(float(v))


def _integer(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)  # a fractional bound stays visible to the checks


def _text(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def parameter_type(p: Hyperparameter) -> str:
    if p.choices is not None or p.type is bool:
        return "Categorical"
    return {int: "Integer", float: "Continuous"}.get(p.type, "FreeText")


def categorical_values(p: Hyperparameter, *, tuning: bool = False) -> list[str]:
    if tuning and p.tune is not None and p.tune.values is not None:
        return [_text(v) for v in p.tune.values]
    values = [_text(v) for v in (p.choices if p.choices is not None else (True, False))]
    if p.type is bool and not tuning:
        values += ["True", "False"]  # the SDK's AlgorithmEstimator sends str(value) of Python booleans
    if _auto(p) and "auto" not in values and not tuning:
        values.append("auto")
    return values


def allowed_range(p: Hyperparameter) -> tuple[str, str]:
    """[MinValue, MaxValue] as AWS's inclusive range: exactly the values the container accepts."""
    if p.type is int:  # the declarations give every integer finite (32-bit) bounds
        assert p.min is not None and p.max is not None, p.name
        return str(int(p.min) + p.min_exclusive), str(int(p.max) - p.max_exclusive)
    lo = -sys.float_info.max if p.min is None else float(p.min)
    hi = sys.float_info.max if p.max is None else float(p.max)
    if p.min is not None and p.min_exclusive:
        lo = math.nextafter(lo, math.inf)
    if p.max is not None and p.max_exclusive:
        hi = math.nextafter(hi, -math.inf)
    return _number(lo), _number(hi)


def hyperparameter_specification(p: Hyperparameter) -> dict[str, Any]:
    kind = parameter_type(p)
    out: dict[str, Any] = {"Name": p.name, "Type": kind}
    description = p.description
    if _auto(p) and kind != "Categorical":
        description = f"{description} Leave unset for 'auto'.".strip()
    if description:
        out["Description"] = description
    if kind == "Categorical":
        out["Range"] = {"CategoricalParameterRangeSpecification": {"Values": categorical_values(p)}}
    elif kind in ("Integer", "Continuous"):
        lo, hi = allowed_range(p)
        out["Range"] = {f"{kind}ParameterRangeSpecification": {"MinValue": lo, "MaxValue": hi}}
    out["IsTunable"] = p.tune is not None
    out["IsRequired"] = p.required
    if not p.required and p.default is not None and not (_auto(p) and p.default == "auto" and kind != "Categorical"):
        out["DefaultValue"] = _text(p.default)
    return out


# -- metrics and channels ---------------------------------------------------------------------------------------
def objective_metrics() -> list[dict[str, str]]:
    return [{"Type": METRIC_GOALS[m], "MetricName": metrics.metric_name(OBJECTIVE_SPLIT, m)} for m in metrics.METRICS]


def training_content_types() -> list[str]:
    # The canonical types, then the aliases the reader also takes (the built-in containers take "csv" too).
    return list(dict.fromkeys([*data.SUPPORTED, *data._MEDIA_TYPES]))


def training_channels() -> list[dict[str, Any]]:
    return [
        {
            "Name": name,
            "Description": CHANNEL_DESCRIPTIONS[name],
            "IsRequired": name == "train",
            "SupportedContentTypes": training_content_types(),
            "SupportedCompressionTypes": ["None"],  # Gzip is for Pipe mode, which the reader does not take
            "SupportedInputModes": list(train.INPUT_MODES),
        }
        for name in data.CHANNELS
    ]


def instance_types(shape_name: str) -> list[str]:
    """The x86-64 CPU instance types of one of the model's instance-type enums."""
    enum = _session.get_service_model("sagemaker").shape_for(shape_name).enum
    return [t for t in enum if X86_CPU_INSTANCE.fullmatch(t)]


# -- the requests -----------------------------------------------------------------------------------------------
def create_algorithm(algorithm: str, training_image: str, inference_image: str, name: str | None = None) -> dict:
    """The CreateAlgorithm request for one algorithm (checked against the model: SpecError if it does not fit)."""
    spec = train.hyperparameter_spec(registry.get(algorithm))
    request = {
        "AlgorithmName": name or f"byoc-{algorithm}",
        "AlgorithmDescription": DESCRIPTIONS[algorithm],
        "TrainingSpecification": {
            "TrainingImage": training_image,
            "SupportedHyperParameters": [hyperparameter_specification(p) for p in spec],
            "SupportedTrainingInstanceTypes": instance_types("TrainingInstanceType"),
            "SupportsDistributedTraining": True,  # README "Multi-host training"
            "MetricDefinitions": metrics.metric_definitions(),
            "TrainingChannels": training_channels(),
            "SupportedTuningJobObjectiveMetrics": objective_metrics(),
        },
        "InferenceSpecification": {
            "Containers": [{"Image": inference_image}],
            "SupportedTransformInstanceTypes": instance_types("TransformInstanceType"),
            "SupportedRealtimeInferenceInstanceTypes": instance_types("ProductionVariantInstanceType"),
            "SupportedContentTypes": list(codecs.DECODERS),
            "SupportedResponseMIMETypes": [e.content_type for e in codecs.ENCODERS.values()],
        },
    }
    _raise_first(check("CreateAlgorithm", request))
    return request


def tuning_job_config(
    algorithm: str,
    objective: str = f"{OBJECTIVE_SPLIT}:rmse",
    *,
    strategy: str = "Bayesian",
    max_jobs: int = 20,
    max_parallel: int = 2,
    tune: Iterable[str] | None = None,
    static: Mapping[str, str] | None = None,
) -> dict:
    """HyperParameterTuningJobConfig: a range for each tunable hyperparameter (or those in ``tune``).

    ``static`` are the hyperparameters the training job definition fixes: a tuned hyperparameter that a rule makes
    meaningless under them (``init_scale`` unless ``init_method=uniform``) is refused, since every job would fail.
    """
    spec = train.hyperparameter_spec(registry.get(algorithm))
    goals = {m["MetricName"]: m["Type"] for m in objective_metrics()}
    if objective not in goals:
        raise SpecError(f"objective {objective!r}: expected one of {', '.join(goals)}")
    if strategy not in STRATEGIES:
        raise SpecError(f"strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if not 1 <= max_parallel <= max_jobs:
        raise SpecError(f"max parallel jobs {max_parallel}: expected between 1 and max jobs ({max_jobs})")
    tunable = [p.name for p in spec if p.tune is not None]
    names = list(dict.fromkeys(tune)) if tune is not None else tunable
    for name in names:
        if name not in tunable:
            raise SpecError(f"hyperparameter {name!r}: not tunable; tunable: {', '.join(tunable)}")
    static = dict(static or {})
    for name in names:
        if name in static:
            raise SpecError(f"hyperparameter {name!r}: both tuned and static")
    try:
        fixed = spec.validate(static)  # also fails on static values that break a rule among themselves
    except HyperparameterError as e:
        raise SpecError(f"static {e}") from None
    for rule in spec.rules:
        if rule.name in names and not any(fixed[n] in allowed for n, allowed in rule.when):
            raise SpecError(f"hyperparameter {rule.name!r}: tuned, but it is used only with {rule.condition()}")
    ranges: dict[str, list] = {"IntegerParameterRanges": [], "ContinuousParameterRanges": [],
                               "CategoricalParameterRanges": []}  # fmt: skip
    for name in names:
        p = spec.params[name]
        kind = parameter_type(p)
        if kind == "Categorical":
            values = categorical_values(p, tuning=True)
            ranges["CategoricalParameterRanges"].append({"Name": name, "Values": values})
        else:
            show = _integer if kind == "Integer" else _number
            search = p.tune
            assert search is not None and search.min is not None and search.max is not None, name  # numeric
            bounds = {"MinValue": show(search.min), "MaxValue": show(search.max)}
            ranges[f"{kind}ParameterRanges"].append({"Name": name, **bounds, "ScalingType": search.scaling})
    config = {
        "Strategy": strategy,
        "HyperParameterTuningJobObjective": {"Type": goals[objective], "MetricName": objective},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": max_jobs, "MaxParallelTrainingJobs": max_parallel},
        "ParameterRanges": {k: v for k, v in ranges.items() if v},
        "TrainingJobEarlyStoppingType": "Off",
    }
    problems = check("CreateHyperParameterTuningJob", {"HyperParameterTuningJobConfig": config}, whole=False)
    problems += tuning_problems(config, spec)
    _raise_first(problems)
    return config


def tuning_problems(config: Mapping[str, Any], spec: HyperparameterSpec) -> list[str]:
    """AWS's rules for ParameterRanges that the model does not carry, and each range within the algorithm's."""
    problems = []
    ranges = config.get("ParameterRanges", {})
    count = sum(len(v) for k, v in ranges.items() if k != "AutoParameters")
    if count > MAX_TUNED:
        problems.append(f"ParameterRanges: {count} ranges, at most {MAX_TUNED} in all")
    for kind in ("Integer", "Continuous", "Categorical"):
        for r in ranges.get(f"{kind}ParameterRanges", []):
            where = f"ParameterRanges.{kind}ParameterRanges[{r['Name']}]"
            p = spec.params.get(r["Name"])
            if p is None or p.tune is None:
                problems.append(f"{where}: not a tunable hyperparameter")
                continue
            if parameter_type(p) != kind:
                problems.append(f"{where}: the hyperparameter is {parameter_type(p)}")
                continue
            values = r["Values"] if kind == "Categorical" else [r["MinValue"], r["MaxValue"]]
            for v in values:  # within the algorithm's range: exactly what the container accepts
                try:
                    p.parse(v)
                except HyperparameterError as e:
                    problems.append(f"{where}: {e}")
            if kind == "Categorical":
                if len(values) > MAX_CATEGORICAL_VALUES:
                    problems.append(f"{where}: {len(values)} values, at most {MAX_CATEGORICAL_VALUES}")
                continue
            lo, hi, scaling = float(r["MinValue"]), float(r["MaxValue"]), r.get("ScalingType", "Auto")
            if not lo < hi:
                problems.append(f"{where}: MinValue {r['MinValue']} is not below MaxValue {r['MaxValue']}")
            if scaling not in SCALING_TYPES:
                problems.append(f"{where}: ScalingType {scaling!r} is not one of {', '.join(SCALING_TYPES)}")
            if scaling == "Logarithmic" and lo <= 0:
                problems.append(f"{where}: Logarithmic scaling needs MinValue > 0, received {r['MinValue']}")
            if scaling == "ReverseLogarithmic" and (kind == "Integer" or lo < 0 or hi >= 1):
                problems.append(f"{where}: ReverseLogarithmic scaling needs a continuous range within [0, 1)")
    return problems


# -- checking against botocore's model --------------------------------------------------------------------------
def check(operation: str, params: Mapping[str, Any], *, whole: bool = True) -> list[str]:
    """Problems of a request against the SageMaker model (``whole=False``: of some of its members); [] if it fits."""
    shape = _session.get_service_model("sagemaker").operation_model(operation).input_shape
    problems = []
    if whole:
        problems += [f"{operation}: missing required member {m}" for m in shape.required_members if m not in params]
    for key, value in params.items():
        if key not in shape.members:
            problems.append(f"{operation}: unknown member {key!r}")
            continue
        member = shape.members[key]
        try:
            validate_parameters(value, member)
        except ParamValidationError as e:
            problems += [f"{key}: {line.strip()}" for line in str(e).splitlines()[1:] if line.strip()]
        problems += limits(value, member, key)
    return problems


def limits(value: Any, shape: Shape, path: str) -> list[str]:
    """What botocore's validator leaves to the service: maximum lengths and counts, enums, patterns."""
    meta = shape.metadata
    kind = shape.type_name
    problems = []
    if kind == "structure" and isinstance(value, Mapping):
        for key, item in value.items():
            if key in shape.members:
                problems += limits(item, shape.members[key], f"{path}.{key}")
    elif kind == "list" and isinstance(value, list):
        problems += _size(len(value), meta, path, "items")
        for i, item in enumerate(value):
            problems += limits(item, shape.member, f"{path}[{i}]")
    elif kind == "map" and isinstance(value, Mapping):
        problems += _size(len(value), meta, path, "entries")
        for k, v in value.items():
            problems += limits(k, shape.key, f"{path} key {k!r}") + limits(v, shape.value, f"{path}.{k}")
    elif kind == "string" and isinstance(value, str):
        problems += _size(len(value), meta, path, "characters")
        if getattr(shape, "enum", None) and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of the model's {len(shape.enum)} values")
        if "pattern" in meta and not _matches(meta["pattern"], value):
            problems.append(f"{path}: {value!r} does not match the pattern {meta['pattern']}")
    elif kind in ("integer", "long") and isinstance(value, int) and not _within(value, meta):
        problems.append(f"{path}: {value} outside [{meta.get('min', '-inf')}, {meta.get('max', 'inf')}]")
    return problems


def _within(n: int, meta: Mapping[str, Any]) -> bool:
    return meta.get("min", n) <= n <= meta.get("max", n)


def _size(n: int, meta: Mapping[str, Any], path: str, unit: str) -> list[str]:
    if not _within(n, meta):
        return [f"{path}: {n} {unit}, expected {meta.get('min', 0)} to {meta.get('max', 'any')}"]
    return []


_CATEGORY_CLASS = re.compile(r"\[((?:\\p\{[A-Z]\})+)\]\*")


def _matches(pattern: str, value: str) -> bool:
    """The model's patterns are Java's and match whole values; its Unicode classes are checked by category."""
    if m := _CATEGORY_CLASS.fullmatch(pattern):
        categories = set(re.findall(r"\\p\{([A-Z])\}", m.group(1)))
        return all(unicodedata.category(c)[0] in categories for c in value)
    return re.fullmatch(pattern, value) is not None


def _raise_first(problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SpecError(problems[0] + more)


# -- command line -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.algorithm_spec",
        description="Print the CreateAlgorithm request (aws sagemaker create-algorithm --cli-input-json) or, with "
        "--tuning-job-config, a HyperParameterTuningJobConfig, generated from the algorithm's declarations.",
    )
    parser.add_argument("--algorithm", required=True, choices=registry.NAMES)
    parser.add_argument("--training-image", help="training image URI (ECR, tag or @sha256 digest)")
    parser.add_argument("--inference-image", help="inference image URI (the same image serves)")
    parser.add_argument("--name", help="AlgorithmName (default byoc-ALGORITHM)")
    parser.add_argument("--tuning-job-config", action="store_true", help="print a HyperParameterTuningJobConfig")
    parser.add_argument("--objective", default=f"{OBJECTIVE_SPLIT}:rmse", help="tuning objective metric")
    parser.add_argument("--strategy", default="Bayesian", choices=STRATEGIES)
    parser.add_argument("--max-jobs", type=int, default=20)
    parser.add_argument("--max-parallel", type=int, default=2)
    parser.add_argument("--tune", action="append", metavar="NAME", help="tune only these (repeatable)")
    parser.add_argument(
        "--static", action="append", default=[], metavar="NAME=VALUE",
        help="a hyperparameter the training job definition fixes (repeatable; checked against the rules)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if args.tuning_job_config:
            static = {}
            for item in args.static:
                name, sep, value = item.partition("=")
                if not sep:
                    raise SpecError(f"--static {item!r}: expected NAME=VALUE")
                static[name] = value
            document = tuning_job_config(
                args.algorithm, args.objective, strategy=args.strategy, max_jobs=args.max_jobs,
                max_parallel=args.max_parallel, tune=args.tune, static=static,
            )  # fmt: skip
        else:
            for flag in ("training_image", "inference_image"):
                if not getattr(args, flag):
                    raise SpecError(f"--{flag.replace('_', '-')} is required (or --tuning-job-config)")
            document = create_algorithm(args.algorithm, args.training_image, args.inference_image, args.name)
    except SpecError as e:
        print(f"algorithm_spec: {e}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
