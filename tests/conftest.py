"""Shared fixtures: a temporary /opt/ml tree (tests/opt_ml.py) and seeded splits of the real car prices."""

from __future__ import annotations

import json

import pytest

from tests import opt_ml as om
from tests.cfn_template import resources, template  # noqa: F401 (fixtures of the template tests)

ALGORITHMS = ("xgboost", "linear")
# Small and quick; the quality test uses each algorithm's defaults.
FAST = {"xgboost": {"num_round": 60}, "linear": {"epochs": 5}}


@pytest.fixture
def opt_ml(tmp_path) -> om.OptML:
    """An empty /opt/ml tree (config files present, no channels)."""
    return om.OptML(tmp_path / "opt_ml")


@pytest.fixture(scope="session")
def car_splits():
    """Seeded 70/15/15 split of cardata/car_prices.csv."""
    return om.split(om.car_prices())


@pytest.fixture(scope="session")
def car_schema(car_splits) -> dict:
    return om.schema_doc(om.car_prices())


def write_builtin_channels(job: om.OptML, splits, schema: dict | None, channels=("train", "validation", "test")):
    """Headerless label-first CSV (the built-in convention), with schema.json in each channel when given."""
    for name in channels:
        files = {"part-0.csv": om.label_first_csv(splits[name])}
        if schema is not None:
            files["schema.json"] = json.dumps(schema)
        job.channel(name, files)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, car_splits, car_schema):
    """One default-hyperparameter training job per algorithm on the real data (built-in CSV + schema.json)."""
    results = {}

    def get(algorithm: str) -> om.TrainResult:
        if algorithm not in results:
            job = om.OptML(tmp_path_factory.mktemp(f"trained-{algorithm}") / "opt_ml")
            write_builtin_channels(job, car_splits, car_schema)
            results[algorithm] = job.train(algorithm)
            assert results[algorithm].returncode == 0, results[algorithm].output
        return results[algorithm]

    return get
