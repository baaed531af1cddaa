"""The training contract, end to end: `python -m algorithms.train` in a temporary /opt/ml tree, as SageMaker runs it.

Both algorithms x every input format; every failure case (exit code + the failure file's first line naming the
culprit); MetricDefinitions regexes over real training output; artifacts that load without pickle in a fresh
process; evaluation.json; the quality bar on the real data.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from algorithms import registry
from core.schema import Schema
from tests import opt_ml as om
from tests.conftest import ALGORITHMS, FAST, write_builtin_channels

both = pytest.mark.parametrize("algorithm", ALGORITHMS)


def _succeeded(result: om.TrainResult) -> om.TrainResult:
    assert result.returncode == 0, result.output
    assert result.failure is None
    return result


def _model_files(algorithm: str) -> set[str]:
    return {*registry.get(algorithm).MODEL_FILES, "schema.json", "metadata.json"}


# -- formats ---------------------------------------------------------------------------------------------------------
def _middle_target(frame: pd.DataFrame) -> pd.DataFrame:
    """The label in the middle of the columns, so 'label first' cannot pass by accident."""
    cols = [c for c in frame.columns if c != om.TARGET]
    return frame[[*cols[:3], om.TARGET, *cols[3:]]]


FORMATS = {
    # name: (content type, hyperparameters, writer(splits, schema) -> {channel: files}, header for DataFrames)
    "csv": ("text/csv", {}, lambda s, sch: {c: {"part-0.csv": om.label_first_csv(s[c])} for c in s}),
    "csv+schema": (
        "text/csv;label_size=1",
        {},
        lambda s, sch: {c: {"part-0.csv": om.label_first_csv(s[c]), "schema.json": json.dumps(sch)} for c in s},
    ),
    "csv-header+target": (
        "text/csv; charset=utf-8",
        {"target": om.TARGET},
        lambda s, sch: {c: {"data.csv": _middle_target(s[c]).to_csv(index=False)} for c in s},
    ),
    "csv-header+target+schema": (
        "text/csv",
        {"target": om.TARGET},
        lambda s, sch: {
            c: {"data.csv": _middle_target(s[c]).to_csv(index=False), "schema.json": json.dumps(sch)} for c in s
        },
    ),
    "csv;header=present": (
        "text/csv;header=present",
        {},
        lambda s, sch: {c: {"data.csv": s[c].to_csv(index=False)} for c in s},  # price is the first column
    ),
    "parquet+target": (
        "application/x-parquet",
        {"target": om.TARGET},
        lambda s, sch: {c: {"data.parquet": _middle_target(s[c])} for c in s},
    ),
    "parquet+schema": (
        "application/x-parquet",
        {},
        lambda s, sch: {c: {"data.parquet": s[c], "schema.json": json.dumps(sch)} for c in s},
    ),
    "no-content-type": (None, {}, lambda s, sch: {c: {"part-0.csv": om.label_first_csv(s[c])} for c in s}),
    "many-files-subfolders": (
        "text/csv",
        {},
        lambda s, sch: {
            c: {
                "a/part-0.csv": om.label_first_csv(s[c].iloc[: len(s[c]) // 2]),
                "b/c/part-1.csv": om.label_first_csv(s[c].iloc[len(s[c]) // 2 :]),
                ".hidden.csv": "not,data\n",
                ".meta/notes.csv": "not data either\n",
            }
            for c in s
        },
    ),
}


@both
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_trains_on_every_format(opt_ml, car_splits, car_schema, algorithm, fmt):
    content_type, hps, writer = FORMATS[fmt]
    for channel, files in writer(car_splits, car_schema).items():
        opt_ml.channel(channel, files, content_type)
    opt_ml.hyperparameters(**FAST[algorithm], **hps)
    result = _succeeded(opt_ml.train(algorithm))

    assert {p.name for p in result.model_dir.iterdir()} == _model_files(algorithm)
    schema = Schema.load(result.model_dir / "schema.json")
    # Categorical string columns stay categorical in every format, with the train split's levels.
    kinds = [f.type for f in schema.features]
    assert kinds.count("categorical") == 2, schema.to_dict()
    levels = {f.name: f.levels for f in schema.features if f.is_categorical}
    assert sorted(map(len, levels.values())) == [5, 6]
    if "schema" in fmt:
        assert schema.to_dict() == Schema.from_dict(car_schema).to_dict()
    if fmt in ("csv-header+target", "parquet+target", "csv;header=present"):
        assert schema.target == om.TARGET
        assert set(schema.names) == set(car_splits["train"].columns) - {om.TARGET}
    if fmt == "no-content-type":
        assert "assuming text/csv" in result.output
    # The label was found: a model that learned the price explains most of its variance.
    assert result.evaluation["regression_metrics"]["r2"]["value"] > 0.8, result.output


# -- failures --------------------------------------------------------------------------------------------------------
HYPERPARAMETER_FAILURES = {
    # case: {algorithm: (hyperparameters, fragments the failure's first line must hold)}
    "unknown name": {
        "xgboost": ({"num_rounds": "10"}, ["'num_rounds'", "unknown", "'10'", "num_round"]),
        "linear": ({"epoch": "3"}, ["'epoch'", "unknown", "'3'", "epochs"]),
    },
    "wrong type": {
        "xgboost": ({"num_round": "ten"}, ["'num_round'", "'ten'", "integer"]),
        "linear": ({"epochs": "2.5"}, ["'epochs'", "'2.5'", "integer"]),
    },
    "out of range": {
        "xgboost": ({"eta": "1.5"}, ["'eta'", "'1.5'", "(0, 1]"]),
        "linear": ({"epochs": "0"}, ["'epochs'", "'0'", "[1, 2147483647]"]),
    },
    "not a choice": {
        "xgboost": ({"objective": "binary:logistic"}, ["'objective'", "'binary:logistic'", "reg:squarederror"]),
        "linear": ({"predictor_type": "binary_classifier"}, ["'predictor_type'", "'binary_classifier'", "regressor"]),
    },
}


def _assert_failure(result: om.TrainResult, code: int, fragments: list[str]) -> str:
    assert result.returncode == code, result.output
    text = result.failure
    assert text is not None, result.output
    assert len(text) <= 1024
    assert "Traceback" not in text
    first = text.splitlines()[0]
    for fragment in fragments:
        assert fragment in first, f"{fragment!r} not in failure line {first!r}"
    assert first in result.output  # the reason is in the log too
    assert not (result.model_dir / "metadata.json").exists()
    return first


@both
@pytest.mark.parametrize("case", list(HYPERPARAMETER_FAILURES))
def test_bad_hyperparameter_fails_naming_it(opt_ml, car_splits, algorithm, case):
    hps, fragments = HYPERPARAMETER_FAILURES[case][algorithm]
    write_builtin_channels(opt_ml, car_splits, None, channels=("train",))
    opt_ml.hyperparameters(hps)
    _assert_failure(opt_ml.train(algorithm), 1, ["hyperparameter", *fragments])


@both
def test_platform_hyperparameters_are_ignored(opt_ml, car_splits, algorithm):
    write_builtin_channels(opt_ml, car_splits, None, channels=("train",))
    opt_ml.hyperparameters(
        FAST[algorithm],
        sagemaker_region='"us-east-1"',
        sagemaker_container_log_level="20",
        _tuning_objective_metric="validation:rmse",
    )
    _succeeded(opt_ml.train(algorithm))


DATA_FAILURES = {
    # case: (content type, hyperparameters, {file: content}, fragments of the failure line)
    "empty channel (no files)": ("text/csv", {}, {}, ["channel 'train'", "no data files"]),
    "empty channel (no rows)": ("text/csv", {}, {"a.csv": "", "b.csv": "\n\n"}, ["channel 'train'", "no rows"]),
    "row too short": (
        "text/csv",
        {},
        {"d.csv": "1,2,a\n3,4,b\n5,6\n7,8,c\n"},
        ["d.csv", "line 3", "expected 3 columns", "received 2"],
    ),
    "row too long": (
        "text/csv",
        {},
        {"d.csv": "1,2,a\n\n3,4,b,9\n"},
        ["d.csv", "line 3", "expected 3 columns", "received 4"],
    ),
    "unparsable number": (
        "text/csv",
        {},
        {"d.csv": "".join(f"{i},{i * 10},a\n" for i in range(1, 9)) + "9,12o0,b\n"},
        ["d.csv", "line 9", "column 2", "'12o0'", "expected a number"],
    ),
    "unparsable label": (
        "text/csv",
        {},
        {"d.csv": "1,2,a\n2,3,b\nx,4,a\n"},
        ["d.csv", "line 3", "column 1", "'x'", "expected a number"],
    ),
    "missing label": ("text/csv", {}, {"d.csv": "1,2,a\n,3,b\n"}, ["d.csv", "line 2", "column 1", "missing label"]),
    "target not in header": (
        "text/csv",
        {"target": "cost"},
        {"d.csv": "price,mileage\n1,2\n"},
        ["d.csv", "line 1", "'cost'", "not found", "price, mileage"],
    ),
    "missing label in header csv": (
        "text/csv",
        {"target": "price"},
        {"d.csv": "mileage,price\n1,2\n3,\n"},
        ["d.csv", "line 3", "column 2 (price)", "missing label"],
    ),
    "CR-only line endings": (
        "text/csv",
        {},
        {"d.csv": b"1,2,a\n3,4,b\r5,6,a\r7,8,b\r"},
        ["d.csv", "line 2", "lone CR", "LF or CRLF"],
    ),
    "inf in a feature": (
        "text/csv",
        {},
        {"d.csv": "1,2,a\n2,inf,b\n"},
        ["d.csv", "line 2", "column 2", "finite", "inf"],
    ),
    "1e308 in a feature": (
        "text/csv",
        {},
        {"d.csv": "1,2,a\n2,1e308,b\n3,4,a\n"},
        ["d.csv", "line 2", "column 2", "'1e308'", "magnitude at most 3.402823e+38"],
    ),
    "1e200 label": (
        "text/csv",
        {},
        {"d.csv": "1,2,a\n2,3,b\n1e200,4,a\n"},
        ["d.csv", "line 3", "column 1", "magnitude at most"],
    ),
    "-1e999 label in header csv": (
        "text/csv",
        {"target": "price"},
        {"d.csv": "mileage,price\n1,2\n3,-1e999\n"},
        ["d.csv", "line 3", "column 2 (price)", "magnitude at most", "'-1e999'"],
    ),
    "unsupported content type": (
        "text/libsvm",
        {},
        {"d.libsvm": "1 1:2\n"},
        ["channel 'train'", "'text/libsvm'", "text/csv", "application/x-parquet"],
    ),
}


@pytest.mark.parametrize("case", list(DATA_FAILURES))
def test_bad_data_fails_naming_file_line_column(opt_ml, case):
    content_type, hps, files, fragments = DATA_FAILURES[case]
    opt_ml.channel("train", files, content_type)
    opt_ml.hyperparameters(hps)
    _assert_failure(opt_ml.train("xgboost"), 1, fragments)


@both
def test_huge_values_fail_fast_naming_the_cell(opt_ml, car_splits, algorithm):
    """One 1e200 cell once made the linear model run for minutes and XGBoost die with a C++ stack trace."""
    frame = car_splits["train"].copy()
    frame["mileage"] = frame["mileage"].astype(float)
    frame.loc[5, "mileage"] = 1e200
    opt_ml.channel("train", {"d.csv": om.label_first_csv(frame)})
    opt_ml.hyperparameters(FAST[algorithm])
    _assert_failure(opt_ml.train(algorithm, timeout=120), 1, ["d.csv", "line 6", "column 2", "magnitude at most"])


@both
def test_largest_allowed_values_train(opt_ml, car_splits, algorithm):
    """At the limit (float32's largest) both algorithms still finish with a model, in bounded time."""
    frame = car_splits["train"].copy()
    frame["mileage"] = frame["mileage"].astype(float)
    frame.loc[5, "mileage"] = -3.4e38
    opt_ml.channel("train", {"d.csv": om.label_first_csv(frame)})
    opt_ml.hyperparameters(FAST[algorithm])
    _succeeded(opt_ml.train(algorithm, timeout=120))


@both
def test_missing_train_channel(opt_ml, car_splits, algorithm):
    write_builtin_channels(opt_ml, car_splits, None, channels=("validation",))
    _assert_failure(opt_ml.train(algorithm), 1, ["missing required channel 'train'", "validation"])


def test_unknown_category_in_validation(opt_ml):
    opt_ml.channel("train", {"d.csv": "1,2,a\n2,3,b\n3,4,a\n"})
    opt_ml.channel("validation", {"v.csv": "1,2,a\n2,3,zz\n"})
    _assert_failure(opt_ml.train("xgboost"), 1, ["v.csv", "line 2", "column 3", "'zz'", "unknown level"])


def test_bad_algorithm_env(opt_ml, car_splits):
    write_builtin_channels(opt_ml, car_splits, None, channels=("train",))
    _assert_failure(opt_ml.train("catboost"), 1, ["ALGORITHM", "'catboost'", "xgboost", "linear"])


def test_internal_error_is_reported_as_ours(opt_ml, car_splits):
    write_builtin_channels(opt_ml, car_splits, None, channels=("train",))
    opt_ml.hyperparameters(FAST["xgboost"])
    (opt_ml.base_dir / "model").write_text("a file where the model directory should be")
    result = opt_ml.train("xgboost")
    first = _assert_failure(result, 2, ["internal error: FileExistsError:"])
    assert "Traceback" in result.output  # the traceback goes to the log, not the failure file
    assert len(first) <= 1024


def test_failure_file_is_truncated_to_1024(opt_ml):
    opt_ml.channel("train", {"d.csv": "1,2\n"})
    opt_ml.hyperparameters({"x" * 3000: "1"})
    result = opt_ml.train("xgboost")
    assert result.returncode == 1
    assert len(result.failure) == 1024
    assert result.failure.startswith("hyperparameter 'xxx")


# -- metrics in the log ----------------------------------------------------------------------------------------------
def _metric_definitions(algorithm: str) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "algorithms.metric_definitions", algorithm],
        cwd=om.REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


@both
def test_metric_definitions_match_real_training_output(trained, algorithm):
    result = trained(algorithm)
    definitions = _metric_definitions(algorithm)
    assert 1 <= len(definitions) <= 40
    names = {d["Name"] for d in definitions}
    for split in ("train", "validation", "test"):
        for metric in ("rmse", "mae", "r2", "mse"):
            assert f"{split}:{metric}" in names
    lines = result.output.splitlines()
    for d in definitions:
        assert 1 <= len(d["Name"]) <= 255 and len(d["Regex"]) <= 500
        regex = re.compile(d["Regex"])
        # SageMaker applies each regex to each log line and records the first group as a float.
        values = [float(m.group(1)) for line in lines if (m := regex.search(line))]
        assert values, f"{d['Name']} matched nothing"
        # Every match is exactly the value printed for that name on that line (no cross-talk rmse/mse, train/test).
        token = re.compile(rf"(?:^| ){re.escape(d['Name'])}=(\S+)")
        expected = [float(m.group(1)) for line in lines if (m := token.search(line))]
        assert values == expected
    # Per iteration for train and validation; the last value of each is the saved model's.
    per_iteration = [line for line in lines if line.startswith("#metrics iteration=") and "validation:rmse=" in line]
    assert len(per_iteration) >= 2
    test_rmse = [float(m.group(1)) for line in lines if (m := re.search(r" test:rmse=(\S+)", line))]
    assert test_rmse[-1] == pytest.approx(result.evaluation["regression_metrics"]["rmse"]["value"], rel=1e-8)
    validation_rmse = [float(m.group(1)) for line in lines if (m := re.search(r" validation:rmse=(\S+)", line))]
    assert result.metadata["metrics"]["validation"]["rmse"] == pytest.approx(validation_rmse[-1], rel=1e-8)


def test_metric_definitions_cli_without_algorithm_prints_usage():
    # The argument handling itself is covered in-process in test_metrics.py.
    proc = subprocess.run(
        [sys.executable, "-m", "algorithms.metric_definitions"], cwd=om.REPO, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert proc.stderr.startswith("usage: python -m algorithms.metric_definitions {xgboost|linear}")
    assert proc.stdout == ""


# -- artifacts -------------------------------------------------------------------------------------------------------
_LOAD_AND_PREDICT = """
import json, sys
import numpy as np, pandas as pd
from algorithms import registry
from core.schema import Schema
model_dir, test_csv, algorithm = sys.argv[1:]
model = registry.get(algorithm).load(model_dir, threads=1)
schema = Schema.load(f"{model_dir}/schema.json")
frame = pd.read_csv(test_csv)
X = schema.encode(frame[schema.names])
print(json.dumps([float(v) for v in model.predict(X)]))
"""


@both
def test_artifacts_are_plain_files_that_load_in_a_fresh_process(trained, car_splits, tmp_path, algorithm):
    result = trained(algorithm)
    assert {p.name for p in result.model_dir.iterdir()} == _model_files(algorithm)
    for path in result.model_dir.iterdir():
        json.loads(path.read_text())  # every artifact is a JSON document: nothing executes on load
    meta = result.metadata
    assert meta["algorithm"] == algorithm
    assert meta["kind"].startswith("training-metadata")
    assert meta["model_files"] == list(registry.get(algorithm).MODEL_FILES)
    assert meta["schema"] == json.loads((result.model_dir / "schema.json").read_text())
    assert set(meta["metrics"]) == {"train", "validation", "test"}
    assert {"python", "numpy", "pandas"} <= set(meta["versions"])
    assert "target" in meta["hyperparameters"]

    test_csv = tmp_path / "test.csv"
    car_splits["test"].to_csv(test_csv, index=False)
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_PREDICT, str(result.model_dir), str(test_csv), algorithm],
        cwd=om.REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    predictions = np.array(json.loads(proc.stdout))
    rmse = float(np.sqrt(np.mean((predictions - car_splits["test"][om.TARGET].to_numpy()) ** 2)))
    assert rmse == pytest.approx(result.evaluation["regression_metrics"]["rmse"]["value"], rel=1e-6)


@both
def test_load_reads_only_its_own_files(trained, tmp_path, algorithm):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(trained(algorithm).model_dir, model_dir)
    (model_dir / "stray-file.bin").write_bytes(b"\x00not a model")
    registry.get(algorithm).load(model_dir)  # a stray file beside the model breaks nothing
    (model_dir / registry.get(algorithm).MODEL_FILES[0]).unlink()
    with pytest.raises(Exception, match=registry.get(algorithm).MODEL_FILES[0]):
        registry.get(algorithm).load(model_dir)


# -- evaluation.json -------------------------------------------------------------------------------------------------
@both
def test_evaluation_json_has_model_monitor_layout(trained, algorithm):
    result = trained(algorithm)
    doc = result.evaluation
    assert set(doc) == {"regression_metrics"}
    assert set(doc["regression_metrics"]) == {"mae", "mse", "rmse", "r2"}
    for name, entry in doc["regression_metrics"].items():
        assert set(entry) == {"value", "standard_deviation"}
        assert isinstance(entry["value"], float) and isinstance(entry["standard_deviation"], float)
        assert entry["standard_deviation"] > 0
        assert entry["value"] == pytest.approx(result.metadata["metrics"]["test"][name], rel=1e-9)


@pytest.mark.parametrize("channels", [("train", "validation"), ("train",)])
def test_evaluation_falls_back_to_validation_then_none(opt_ml, car_splits, channels):
    write_builtin_channels(opt_ml, car_splits, None, channels=channels)
    opt_ml.hyperparameters(FAST["xgboost"])
    result = _succeeded(opt_ml.train("xgboost"))
    if "validation" in channels:
        assert result.evaluation["regression_metrics"]["rmse"]["value"] == pytest.approx(
            result.metadata["metrics"]["validation"]["rmse"], rel=1e-9
        )
    else:
        assert not result.evaluation_file.exists()


# -- quality ---------------------------------------------------------------------------------------------------------
@both
def test_quality_bar_on_the_real_data(trained, algorithm):
    r2 = trained(algorithm).evaluation["regression_metrics"]["r2"]["value"]
    assert r2 >= 0.90, f"{algorithm}: test R^2 {r2:.4f} < 0.90"


# -- input modes -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("mode", "ok"), [("File", True), ("FastFile", True), ("Pipe", False)])
def test_input_modes_file_and_fastfile_are_read_pipe_is_refused(opt_ml, car_splits, car_schema, mode, ok):
    write_builtin_channels(opt_ml, car_splits, car_schema, channels=("train",))
    doc = json.loads((opt_ml.config_dir / "inputdataconfig.json").read_text())
    doc["train"]["TrainingInputMode"] = mode
    (opt_ml.config_dir / "inputdataconfig.json").write_text(json.dumps(doc))
    opt_ml.hyperparameters(FAST["xgboost"])
    result = opt_ml.train("xgboost")
    if ok:
        _succeeded(result)
    else:
        assert result.returncode == 1, result.output
        assert result.failure_line == "channel 'train': TrainingInputMode 'Pipe' is not supported; use File or FastFile"


@both
def test_sigterm_stops_training_at_once_with_a_reason(opt_ml, car_splits, algorithm):
    """StopTrainingJob and spot interruptions send SIGTERM; the image runs training as PID 1, which ignores a
    signal without a handler, so the job would sit out the grace period and die by SIGKILL."""
    opt_ml.channel("train", {"train.csv": car_splits["train"]}, "text/csv", header=True)
    long = {
        "xgboost": {"num_round": 100000, "max_depth": 8, "eta": 0.001, "early_stopping_rounds": 0},
        "linear": {"epochs": 100000, "early_stopping_patience": 100000},
    }
    opt_ml.hyperparameters(target="price", **long[algorithm])
    proc = opt_ml.popen(algorithm)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("#metrics iteration="):
            break
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    output = proc.communicate(timeout=30)[0]
    assert time.monotonic() - started < 10, output
    result = opt_ml.result(proc, output)
    assert result.returncode == 128 + signal.SIGTERM, output
    assert result.failure_line == "training stopped by SIGTERM (StopTrainingJob, a spot interruption or docker stop)"
    assert "Traceback" not in output
