"""`docker run byoc-monitor preprocess` with SageMaker Processing's mounts, and its output as training channels."""

from __future__ import annotations

import shutil

import pytest

from tests import opt_ml as om
from tests.container.conftest import new_job, training_volumes

pytestmark = pytest.mark.container


def processing_volumes(input_dir, output_dir, base_output):
    return [
        (input_dir, "/opt/ml/processing/input", "ro"),
        (output_dir, "/opt/ml/processing/output", "rw"),
        (base_output, "/opt/ml/output", "rw"),  # ExitMessage: /opt/ml/output/message
    ]


@pytest.fixture(scope="module")
def preprocessed(images, session_containers, tmp_path_factory):
    base = tmp_path_factory.mktemp("container-preprocess")
    input_dir, output_dir, message_dir = base / "input", base / "output", base / "message"
    for d in (input_dir, output_dir, message_dir):
        d.mkdir()
    shutil.copy(om.CAR_PRICES, input_dir / "car_prices.csv")
    run = session_containers.run(
        images["monitor"], ["preprocess"], volumes=processing_volumes(input_dir, output_dir, message_dir)
    )
    return run, output_dir, message_dir


def test_preprocess_writes_three_channels(preprocessed):
    run, output_dir, message_dir = preprocessed
    assert run.returncode == 0, run.output
    rows = 0
    for split in ("train", "validation", "test"):
        assert (output_dir / split / "schema.json").is_file()
        lines = (output_dir / split / f"{split}.csv").read_text().splitlines()
        # Built-in convention: no header, label (a price) first.
        assert float(lines[0].split(",")[0]) > 0
        rows += len(lines)
    assert rows == len(om.car_prices())
    assert (message_dir / "message").read_text().strip()


def test_bad_input_exits_1_with_the_culprit_in_the_exit_message(images, containers, tmp_path):
    input_dir, output_dir, message_dir = tmp_path / "in", tmp_path / "out", tmp_path / "msg"
    for d in (input_dir, output_dir, message_dir):
        d.mkdir()
    (input_dir / "cars.csv").write_text("price,mileage\n1000,12\nabc,13\n")
    run = containers.run(
        images["monitor"], ["preprocess"], volumes=processing_volumes(input_dir, output_dir, message_dir)
    )
    assert run.returncode == 1, run.output
    message = (message_dir / "message").read_text().splitlines()[0]
    assert "cars.csv" in message and "abc" in message, message


@pytest.mark.parametrize("algorithm", ["xgboost", "linear"])
def test_preprocess_output_trains_in_the_algorithm_images(preprocessed, images, containers, tmp_path, algorithm):
    """The pipeline's first two steps, container to container: processing output is a valid training input."""
    run, output_dir, _ = preprocessed
    assert run.returncode == 0, run.output
    job = new_job(tmp_path)
    for split in ("train", "validation", "test"):
        files = {p.name: p.read_text() for p in (output_dir / split).iterdir()}
        job.channel(split, files)
    job.hyperparameters({"xgboost": {"num_round": "30"}, "linear": {"epochs": "3"}}[algorithm])
    result = containers.run(images[algorithm], ["train"], volumes=training_volumes(job))
    assert result.returncode == 0, result.output
    assert (job.base_dir / "model" / "metadata.json").is_file()
