"""Multi-host training (algorithms.distributed): the pieces in-process, and real jobs of two or three hosts as
local processes on 127.0.0.x, each with its own /opt/ml tree and resourceconfig.json, as SageMaker runs them.

Hosts are loopback addresses (every 127.0.0.0/8 address reaches this machine), so host names resolve without
DNS; tests/container/test_distributed.py runs the same jobs in two containers under SageMaker's host names.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from algorithms import distributed
from core.errors import ClusterError, SchemaError
from core.schema import CATEGORICAL, NUMERIC, Feature, Schema
from emulators.local_server import free_port_pair
from tests import opt_ml as om
from tests.conftest import write_builtin_channels

HOSTS = ("127.0.0.1", "127.0.0.2")
# Short timeouts so a broken cluster fails the test instead of hanging it; the communicate() timeout below is
# only a guard against a hang.
ENV = {"BYOC_COLLECTIVE_TIMEOUT": "30", "BYOC_HOST_WAIT_SECONDS": "3"}
GUARD = 240


def cluster_env() -> dict[str, str]:
    return {**ENV, "BYOC_TRACKER_PORT": str(free_port_pair())}


def start(jobs: list[om.OptML], algorithm: str, env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    env = env or cluster_env()
    return [job.popen(algorithm, env) for job in jobs]


def finish(jobs: list[om.OptML], procs: list[subprocess.Popen]) -> list[om.TrainResult]:
    results = []
    try:
        for job, proc in zip(jobs, procs, strict=True):
            out, _ = proc.communicate(timeout=GUARD)
            results.append(job.result(proc, out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def run_cluster(jobs, algorithm, env=None) -> list[om.TrainResult]:
    return finish(jobs, start(jobs, algorithm, env))


def host_jobs(base: Path, hosts=HOSTS) -> list[om.OptML]:
    jobs = []
    for i, host in enumerate(hosts):
        job = om.OptML(base / f"host-{i + 1}")
        job.resources(hosts, host)
        jobs.append(job)
    return jobs


def linear_model(result: om.TrainResult) -> np.ndarray:
    doc = json.loads((result.model_dir / "linear-model.json").read_text())
    return np.array([doc["intercept"], *(c["coefficient"] for c in doc["columns"])])


def final_metrics(output: str) -> dict[str, float]:
    found = {}
    for line in output.splitlines():
        if line.startswith("#metrics final"):
            for item in line.split()[2:]:
                name, value = item.split("=")
                found[name] = float(value)
    return found


# -- pieces ------------------------------------------------------------------------------------------------------------
def test_wait_for_hosts_retries_until_every_name_resolves():
    attempts = {"algo-2": 0}

    def resolve(host: str) -> str:
        if host == "algo-2":
            attempts[host] += 1
            if attempts[host] < 3:
                raise socket.gaierror(-2, "Name or service not known")
        return f"10.0.0.{host[-1]}"

    found = distributed.wait_for_hosts(("algo-1", "algo-2"), 10, resolve=resolve, interval=0.01)
    assert found == {"algo-1": "10.0.0.1", "algo-2": "10.0.0.2"}
    assert attempts["algo-2"] == 3


def test_a_host_that_never_resolves_is_named():
    def resolve(host: str) -> str:
        if host == "algo-3":
            raise socket.gaierror(-2, "Name or service not known")
        return "10.0.0.1"

    with pytest.raises(ClusterError, match=r"host 'algo-3' \(resourceconfig.json\) did not resolve within 0.05 s"):
        distributed.wait_for_hosts(("algo-1", "algo-2", "algo-3"), 0.05, resolve=resolve, interval=0.01)


@pytest.mark.parametrize("n", [0, 1, 7, 1000])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_row_slices_cover_every_row_once_in_order(n, world):
    rows = [i for rank in range(world) for i in range(n)[distributed.row_slice(n, rank, world)]]
    assert rows == list(range(n))


def test_exact_products_do_not_depend_on_row_order():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(5000, 6)) * np.array([1e-6, 1e-3, 1, 1e3, 1e6, 1])
    B = rng.normal(size=(5000, 2))
    exact = distributed.SINGLE.dot(A, B, len(A))
    perm = rng.permutation(len(A))
    assert np.array_equal(distributed.SINGLE.dot(A[perm], B[perm], len(A)), exact)
    # Accurate to 2^-38 of the largest possible sum of each column pair.
    bound = np.abs(A).max(axis=0)[:, None] * np.abs(B).max(axis=0)[None, :] * len(A)
    assert (np.abs(exact - A.T @ B) <= bound * 2.0**-36).all()


class _Gathered(distributed.Collective):
    """A stand-in for several hosts: gather_json returns the given documents."""

    def __init__(self, hosts, docs):
        self.hosts, self.docs, self.world_size = tuple(hosts), docs, len(hosts)

    def gather_json(self, doc):
        return self.docs


def test_inferred_schemas_merge_levels_across_hosts():
    a = Schema((Feature("year"), Feature("make", CATEGORICAL, ("Buick", "Saturn"))), "price")
    b = Schema((Feature("year"), Feature("make", CATEGORICAL, ("Cadillac",))), "price")
    merged = distributed.agree_inferred_schema(_Gathered(HOSTS, [a.to_dict(), b.to_dict()]), a)
    assert merged.features[1].levels == ("Buick", "Cadillac", "Saturn")
    assert merged.features[0].type == NUMERIC and merged.target == "price"


def test_a_feature_numeric_on_one_host_and_categorical_on_another_is_refused():
    a = Schema((Feature("doors", CATEGORICAL, ("four", "two")),))
    b = Schema((Feature("doors"),))
    with pytest.raises(SchemaError, match=r"feature 'doors' is categorical in the data of host '127.0.0.1' but"):
        distributed.agree_inferred_schema(_Gathered(HOSTS, [a.to_dict(), b.to_dict()]), a)


def test_schema_json_on_one_host_is_used_by_all():
    given = Schema((Feature("year"),), "price")
    agreed = distributed.agree_given_schema(_Gathered(HOSTS, [None, given.to_dict()]), None)
    assert agreed == given
    other = Schema((Feature("mileage"),), "price")
    with pytest.raises(SchemaError, match=r"schema\.json files of hosts"):
        distributed.agree_given_schema(_Gathered(HOSTS, [other.to_dict(), given.to_dict()]), other)


# -- real jobs, one process per host ----------------------------------------------------------------------------------
HP = {"xgboost": {"num_round": 40, "max_depth": 4}, "linear": {"epochs": 6}}


def _single(base: Path, splits, algorithm, hp, schema=None) -> om.TrainResult:
    job = om.OptML(base / "single")
    write_builtin_channels(job, splits, schema)
    job.hyperparameters(hp)
    result = job.train(algorithm)
    assert result.returncode == 0, result.output
    return result


@pytest.mark.parametrize("algorithm", ["xgboost", "linear"])
def test_fully_replicated_two_hosts_train_the_single_host_model(tmp_path, car_splits, algorithm):
    jobs = host_jobs(tmp_path)
    for job in jobs:
        write_builtin_channels(job, car_splits, None)
        job.hyperparameters(HP[algorithm])
    first, second = run_cluster(jobs, algorithm)
    assert first.returncode == 0, first.output
    assert second.returncode == 0, second.output
    single = _single(tmp_path, car_splits, algorithm, HP[algorithm])

    # Each host trained on half the rows (a contiguous slice), yet the metrics are those of all the rows.
    assert "channel train (FullyReplicated): 281 rows on this host" in first.output
    assert "channel train (FullyReplicated): 282 rows on this host" in second.output
    assert final_metrics(first.output) == pytest.approx(final_metrics(single.output), rel=1e-6)
    assert final_metrics(second.output) == final_metrics(first.output)
    # Only the first host writes the model and the evaluation.
    assert sorted(p.name for p in first.model_dir.iterdir()) == sorted(p.name for p in single.model_dir.iterdir())
    assert not second.model_dir.exists() or not any(second.model_dir.iterdir())
    assert not second.evaluation_file.exists()
    assert first.evaluation["regression_metrics"]["rmse"]["value"] == pytest.approx(
        single.evaluation["regression_metrics"]["rmse"]["value"], rel=1e-6
    )
    if algorithm == "linear":
        np.testing.assert_allclose(linear_model(first), linear_model(single), rtol=1e-6, atol=0)


def _sharded(jobs, car_splits, channels=("train", "validation", "test")):
    """Train rows split in two files, one per host, as ShardedByS3Key mounts them; no schema.json anywhere."""
    for name in channels:
        frame = car_splits[name]
        half = len(frame) // 2
        for job, part in zip(jobs, (frame.iloc[:half], frame.iloc[half:]), strict=False):
            job.channel(name, {f"part-{name}.csv": om.label_first_csv(part)}, distribution="ShardedByS3Key")


def test_sharded_linear_two_hosts_equal_one_host_on_the_concatenated_files(tmp_path, car_splits):
    """Sampled scaler (num_point_for_scaler < rows), several mini-batches per epoch, Adam: still the same model."""
    hp = {"epochs": 4, "num_point_for_scaler": 300, "mini_batch_size": 64}
    jobs = host_jobs(tmp_path)
    _sharded(jobs, car_splits)
    for job in jobs:
        job.hyperparameters(hp)
    first, second = run_cluster(jobs, "linear")
    assert first.returncode == 0, first.output
    assert second.returncode == 0, second.output
    single = _single(tmp_path, car_splits, "linear", hp)
    np.testing.assert_allclose(linear_model(first), linear_model(single), rtol=1e-6, atol=0)
    assert final_metrics(first.output) == pytest.approx(final_metrics(single.output), rel=1e-6)


def test_sharded_xgboost_merges_categories_and_a_host_without_data_leaves(tmp_path, car_splits):
    hosts = (*HOSTS, "127.0.0.3")
    jobs = host_jobs(tmp_path, hosts)
    # Host 1 only Buicks and Cadillacs, host 2 the rest: each infers different levels of `make`.
    train = car_splits["train"].sort_values("make", kind="stable")
    cut = int(train["make"].isin(["Buick", "Cadillac"]).sum())
    jobs[0].channel("train", {"a.csv": om.label_first_csv(train.iloc[:cut])}, distribution="ShardedByS3Key")
    jobs[1].channel("train", {"b.csv": om.label_first_csv(train.iloc[cut:])}, distribution="ShardedByS3Key")
    jobs[2].channel("train", {}, distribution="ShardedByS3Key")  # more hosts than files: nothing here
    for job in jobs:
        job.channel("validation", {"v.csv": om.label_first_csv(car_splits["validation"])})
        job.hyperparameters(HP["xgboost"])
    results = run_cluster(jobs, "xgboost")
    for r in results:
        assert r.returncode == 0, r.output
    first, _, idle = results
    assert "host 127.0.0.3 received no training data: it takes no part" in idle.output
    assert not idle.model_dir.exists() or not any(idle.model_dir.iterdir())
    schema = json.loads((first.model_dir / "schema.json").read_text())
    features = [c for c in car_splits["train"].columns if c != om.TARGET]
    make = schema["features"][features.index("make")]  # headerless CSV: named f0, f1, ...
    assert make["levels"] == sorted(car_splits["train"]["make"].unique())

    whole = om.OptML(tmp_path / "single")
    whole.channel("train", {"a.csv": om.label_first_csv(train)})
    whole.channel("validation", {"v.csv": om.label_first_csv(car_splits["validation"])})
    whole.hyperparameters(HP["xgboost"])
    single = whole.train("xgboost")
    assert single.returncode == 0, single.output
    # Histogram cuts come from per-host sketches, so the trees may differ slightly: the quality does not.
    rmse, single_rmse = final_metrics(first.output)["validation:rmse"], final_metrics(single.output)["validation:rmse"]
    assert rmse == pytest.approx(single_rmse, rel=0.01)


def test_a_host_that_dies_fails_every_other_host_with_a_reason(tmp_path, car_splits):
    jobs = host_jobs(tmp_path)
    for job in jobs:
        write_builtin_channels(job, car_splits, None)
        # Long enough to be killed in the middle.
        job.hyperparameters(num_round=100000, early_stopping_rounds=0, max_depth=6)
    procs = start(jobs, "xgboost")
    try:
        for line in procs[1].stdout:
            if line.startswith("#metrics iteration=20 "):
                break
        procs[1].kill()
        procs[1].wait()
        results = finish(jobs[:1], procs[:1])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    survivor = results[0]
    assert survivor.returncode == 1, survivor.output
    expected = "training across hosts 127.0.0.1, 127.0.0.2 failed (a host stopped"
    assert survivor.failure_line.startswith(expected), survivor.failure
    assert not (survivor.model_dir / "xgboost-model.json").exists()


def test_a_host_that_never_resolves_fails_the_job_naming_it(tmp_path, car_splits):
    job = host_jobs(tmp_path, ("127.0.0.1", "algo-never.invalid"))[0]
    write_builtin_channels(job, car_splits, None)
    result = job.train("xgboost", env={**cluster_env(), "BYOC_HOST_WAIT_SECONDS": "0.5"})
    assert result.returncode == 1, result.output
    expected = "host 'algo-never.invalid' (resourceconfig.json) did not resolve within 0.5 s"
    assert result.failure_line.startswith(expected), result.failure
