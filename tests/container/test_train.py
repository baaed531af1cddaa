"""`docker run IMAGE train` against a mounted /opt/ml tree, as a SageMaker training job runs it."""

from __future__ import annotations

import json
import re
import time

import pytest

from algorithms.metric_definitions import definitions
from tests import opt_ml as om
from tests.conftest import write_builtin_channels
from tests.container.conftest import ALGORITHMS, docker, logs, new_job, state, training_volumes

pytestmark = pytest.mark.container


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_train_writes_model_and_evaluation(trained_in_container, algorithm):
    result = trained_in_container(algorithm)
    assert result.run.returncode == 0, result.run.output
    assert not result.failure_file.exists()
    assert (result.model_dir / "metadata.json").is_file()
    assert json.loads((result.model_dir / "metadata.json").read_text())
    evaluation = json.loads((result.job.base_dir / "output" / "data" / "evaluation.json").read_text())
    assert evaluation


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_train_log_matches_the_shipped_metric_definitions(trained_in_container, algorithm):
    """What SageMaker scrapes from the container's log: every shipped regex for validation and test matches."""
    log = trained_in_container(algorithm).run.output
    for definition in definitions(algorithm):
        if definition["Name"].split(":")[0] in ("validation", "test"):
            values = re.findall(definition["Regex"], log)
            assert values, f"{definition['Name']}: no log line matches {definition['Regex']}\n{log[-2000:]}"
            assert all(float(v) == float(v) for v in values)  # parseable, not NaN


BAD_HYPERPARAMETERS = {"xgboost": ("num_round", "ten"), "linear": ("epochs", "0")}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_bad_hyperparameter_fails_with_reason_first(images, containers, tmp_path, car_splits, car_schema, algorithm):
    name, value = BAD_HYPERPARAMETERS[algorithm]
    job = new_job(tmp_path)
    write_builtin_channels(job, car_splits, car_schema)
    job.hyperparameters({name: value})
    run = containers.run(images[algorithm], ["train"], volumes=training_volumes(job))
    assert run.returncode == 1, run.output
    failure = (job.base_dir / "output" / "failure").read_text()
    first = failure.splitlines()[0]
    assert name in first and value in first, failure
    assert len(first) <= 1024
    assert not any((job.base_dir / "model").iterdir()), "a failed job left a model behind"


def test_missing_channel_fails_with_reason_first(images, containers, tmp_path):
    job = new_job(tmp_path)  # config present, no channel at all
    run = containers.run(images["xgboost"], ["train"], volumes=training_volumes(job))
    assert run.returncode == 1, run.output
    assert "train" in (job.base_dir / "output" / "failure").read_text().splitlines()[0]


def test_monitor_image_does_not_train(images, containers, tmp_path, car_splits, car_schema):
    """The processing image holds no training code: `train` there is a usage error, not a guess."""
    job = new_job(tmp_path)
    write_builtin_channels(job, car_splits, car_schema)
    run = containers.run(images["monitor"], ["train"], volumes=training_volumes(job))
    assert run.returncode == 2, run.output
    assert "(received 'train')" in run.stderr
    assert not (job.base_dir / "output" / "failure").exists()


def test_parquet_channels_train_the_model_csv_trains(images, containers, trained_in_container, tmp_path, car_splits):
    """Parquet written by pandas/pyarrow (as users and the preprocessing job write it), read in an image without
    pyarrow (fastparquet): the same rows give the same model as the label-first CSV channels."""
    csv = trained_in_container("xgboost")
    assert csv.run.returncode == 0, csv.run.output
    job = new_job(tmp_path)
    for name in ("train", "validation", "test"):
        job.channel(name, {"data.parquet": car_splits[name]}, content_type="application/x-parquet")
    job.hyperparameters({"num_round": "60", "target": om.TARGET})
    run = containers.run(images["xgboost"], ["train"], volumes=training_volumes(job))
    assert run.returncode == 0, run.output
    assert "pyarrow" not in run.output
    models = (csv.model_dir, job.base_dir / "model")
    metrics = [json.loads((d / "metadata.json").read_text())["metrics"] for d in models]
    assert metrics[0] == metrics[1]


def test_read_only_model_dir_fails_with_one_line_reason(images, containers, tmp_path, car_splits, car_schema):
    """A read-only /opt/ml/model (#14 item 10) once ended as exit 2 'internal error'."""
    job = new_job(tmp_path)
    write_builtin_channels(job, car_splits, car_schema, channels=("train",))
    job.hyperparameters({"num_round": "20"})
    volumes = [*training_volumes(job), (job.base_dir / "model", "/opt/ml/model", "ro")]
    run = containers.run(images["xgboost"], ["train"], volumes=volumes)
    assert run.returncode == 1, run.output
    first = (job.base_dir / "output" / "failure").read_text().splitlines()[0]
    assert first.startswith("cannot write to /opt/ml/model: Read-only file system"), first


def test_docker_stop_ends_training_at_once_with_a_reason(images, containers, tmp_path, car_splits, car_schema):
    """Training runs as PID 1, which the kernel spares any signal without a handler: docker stop (and SageMaker's
    StopTrainingJob) must end it with the reason, not wait out the grace period for SIGKILL (exit 137)."""
    job = new_job(tmp_path)
    write_builtin_channels(job, car_splits, car_schema, channels=("train",))
    job.hyperparameters({"num_round": "100000", "max_depth": "8", "eta": "0.001"})
    name = containers.start(images["xgboost"], ["train"], volumes=training_volumes(job))
    deadline = time.monotonic() + 60
    while "#metrics iteration=" not in logs(name):
        assert time.monotonic() < deadline, logs(name)
        time.sleep(0.2)
    started = time.monotonic()
    docker("stop", "--time", "30", name, timeout=60)
    assert time.monotonic() - started < 10
    assert state(name)["ExitCode"] == 143, logs(name)
    first = (job.base_dir / "output" / "failure").read_text().splitlines()[0]
    assert first == "training stopped by SIGTERM (StopTrainingJob, a spot interruption or docker stop)"
