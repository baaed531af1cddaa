"""Multi-host training in containers: one Docker network made for the test, one container per host reachable
under SageMaker's host names (algo-1, algo-2), each with its own /opt/ml (its own channels and a
resourceconfig.json naming both hosts), exactly as SageMaker mounts them. Network and containers are removed
after each test."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from tests import opt_ml as om
from tests.conftest import write_builtin_channels
from tests.container.conftest import RUN_TIMEOUT, Containers, docker, logs, new_job, state, training_volumes
from tests.test_distributed import final_metrics, linear_model

pytestmark = pytest.mark.container

HOSTS = ("algo-1", "algo-2")
ENV = {"BYOC_COLLECTIVE_TIMEOUT": "60", "BYOC_HOST_WAIT_SECONDS": "60"}
HP = {"xgboost": {"num_round": "40", "max_depth": "4"}, "linear": {"epochs": "6"}}


@pytest.fixture
def network(docker_engine) -> Iterator[str]:
    name = f"byoc-test-net-{uuid.uuid4().hex[:8]}"
    docker("network", "create", name)
    yield name
    # Containers first (a network with endpoints cannot be removed); only ours are on this network.
    attached = docker("network", "inspect", "--format", "{{range .Containers}}{{.Name}} {{end}}", name, check=False)
    for container in attached.stdout.split():
        docker("rm", "--force", container, check=False)
    docker("network", "rm", name, check=False)


def host_jobs(tmp_path) -> list[om.OptML]:
    jobs = []
    for host in HOSTS:
        job = new_job(tmp_path / host)
        job.resources(HOSTS, host)
        jobs.append(job)
    return jobs


def start_hosts(containers: Containers, network: str, image: str, jobs) -> list[str]:
    names = []
    for host, job in zip(HOSTS, jobs, strict=True):
        names.append(
            containers.start(
                image, ["train"], volumes=training_volumes(job), env=ENV, network=network, network_alias=host
            )
        )
    return names


def wait_exit(name: str, timeout: float = RUN_TIMEOUT) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = state(name)
        if not s["Running"]:
            return s["ExitCode"]
        time.sleep(0.5)
    raise AssertionError(f"{name} still running after {timeout} s:\n{logs(name)[-3000:]}")


def single_host(tmp_path, car_splits, algorithm) -> om.TrainResult:
    job = om.OptML(tmp_path / "single")
    write_builtin_channels(job, car_splits, None)
    job.hyperparameters(HP[algorithm])
    result = job.train(algorithm)
    assert result.returncode == 0, result.output
    return result


@pytest.mark.parametrize("algorithm", ["xgboost", "linear"])
def test_two_containers_train_the_single_host_model(images, containers, network, tmp_path, car_splits, algorithm):
    jobs = host_jobs(tmp_path)
    for job in jobs:
        write_builtin_channels(job, car_splits, None)
        job.hyperparameters(HP[algorithm])
    names = start_hosts(containers, network, images[algorithm], jobs)
    codes = [wait_exit(name) for name in names]
    outputs = [logs(name) for name in names]
    assert codes == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert "hosts training: algo-1, algo-2; this host is rank 1" in outputs[1]

    single = single_host(tmp_path, car_splits, algorithm)
    assert final_metrics(outputs[0]) == pytest.approx(final_metrics(single.output), rel=1e-6)
    first, second = (job.base_dir for job in jobs)
    assert (first / "output" / "data" / "evaluation.json").is_file()
    assert not any((second / "model").iterdir()), "only the first host writes the model"
    assert not (second / "output" / "data" / "evaluation.json").exists()
    if algorithm == "linear":
        mine = om.TrainResult(0, outputs[0], first)
        np.testing.assert_allclose(linear_model(mine), linear_model(single), rtol=1e-6, atol=0)


def test_sharded_channels_per_container(images, containers, network, tmp_path, car_splits):
    """ShardedByS3Key: each container has only its own files; the schema (levels of `make`) is agreed."""
    jobs = host_jobs(tmp_path)
    for name in ("train", "validation"):
        frame = car_splits[name]
        half = len(frame) // 2
        for job, part in zip(jobs, (frame.iloc[:half], frame.iloc[half:]), strict=True):
            job.channel(name, {f"{name}.csv": om.label_first_csv(part)}, distribution="ShardedByS3Key")
    for job in jobs:
        job.hyperparameters(HP["xgboost"])
    names = start_hosts(containers, network, images["xgboost"], jobs)
    codes = [wait_exit(name) for name in names]
    outputs = [logs(name) for name in names]
    assert codes == [0, 0], "\n".join(o[-3000:] for o in outputs)
    schema = json.loads((jobs[0].base_dir / "model" / "schema.json").read_text())
    features = [c for c in car_splits["train"].columns if c != om.TARGET]
    assert schema["features"][features.index("make")]["levels"] == sorted(car_splits["train"]["make"].unique())
    single = single_host(tmp_path, car_splits, "xgboost")
    rmse = final_metrics(outputs[0])["validation:rmse"]
    assert rmse == pytest.approx(final_metrics(single.output)["validation:rmse"], rel=0.01)


def test_a_killed_container_fails_the_other_with_a_reason(images, containers, network, tmp_path, car_splits):
    jobs = host_jobs(tmp_path)
    for job in jobs:
        write_builtin_channels(job, car_splits, None)
        job.hyperparameters(num_round="100000", early_stopping_rounds="0", max_depth="6")
    names = start_hosts(containers, network, images["xgboost"], jobs)
    deadline = time.monotonic() + RUN_TIMEOUT
    while "#metrics iteration=20 " not in logs(names[1]):
        assert time.monotonic() < deadline and state(names[1])["Running"], logs(names[1])[-3000:]
        time.sleep(0.5)
    docker("kill", names[1])
    assert wait_exit(names[0]) == 1, logs(names[0])[-3000:]
    failure = (jobs[0].base_dir / "output" / "failure").read_text().splitlines()[0]
    assert failure.startswith("training across hosts algo-1, algo-2 failed (a host stopped"), failure
    assert not (jobs[0].base_dir / "model" / "xgboost-model.json").exists()
