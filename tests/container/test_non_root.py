"""Every role's job as the images' non-root user (`docker run --user byoc`), read-only root and /tmp tmpfs as always.

The images run as root by default because SageMaker expects it; these tests hold that nothing in them needs root:
a platform (or a user) that runs them as an unprivileged uid gets the same jobs, given mounts that uid can write.
"""

from __future__ import annotations

import json
import shutil

import pytest
import requests

from tests import opt_ml as om
from tests.conftest import write_builtin_channels
from tests.container.conftest import ALGORITHMS, NON_ROOT, host_port, new_job, training_volumes, wait_ready

pytestmark = pytest.mark.container


def writable_by_anyone(*dirs) -> None:
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o777)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_train_then_serve_as_non_root(images, containers, tmp_path, car_splits, car_schema, algorithm):
    job = new_job(tmp_path)
    write_builtin_channels(job, car_splits, car_schema)
    job.hyperparameters({"num_round": "20"} if algorithm == "xgboost" else {"epochs": "2"})
    # /opt/ml too: sagemaker_training creates /opt/ml/code when it is imported.
    writable_by_anyone(job.base_dir, job.base_dir / "model", job.base_dir / "output")
    run = containers.run(images[algorithm], ["train"], volumes=training_volumes(job), user=NON_ROOT)
    assert run.returncode == 0, run.output
    model_dir = job.base_dir / "model"
    assert json.loads((model_dir / "metadata.json").read_text())

    name = containers.start(
        images[algorithm],
        ["serve"],
        volumes=[(model_dir, "/opt/ml/model", "ro")],
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        ports=["8080"],
        user=NON_ROOT,
    )
    url = f"http://127.0.0.1:{host_port(name, 8080)}"
    wait_ready(name, f"{url}/ping")
    row = car_splits["test"].drop(columns=[om.TARGET]).head(1).to_csv(index=False, header=False)
    response = requests.post(f"{url}/invocations", data=row, headers={"Content-Type": "text/csv"}, timeout=30)
    assert response.status_code == 200, response.text
    assert float(response.text) > 0


def test_preprocess_as_non_root(images, containers, tmp_path):
    input_dir, output_dir, message_dir = tmp_path / "input", tmp_path / "output", tmp_path / "message"
    input_dir.mkdir()
    shutil.copy(om.CAR_PRICES, input_dir / "car_prices.csv")
    writable_by_anyone(output_dir, message_dir)
    volumes = [
        (input_dir, "/opt/ml/processing/input", "ro"),
        (output_dir, "/opt/ml/processing/output", "rw"),
        (message_dir, "/opt/ml/output", "rw"),
    ]
    run = containers.run(images["monitor"], ["preprocess"], volumes=volumes, user=NON_ROOT)
    assert run.returncode == 0, run.output
    for split in ("train", "validation", "test"):
        assert (output_dir / split / f"{split}.csv").stat().st_size > 0
