"""Helpers for the serving tests: the real car-prices schema and a tiny deterministic stand-in algorithm."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from algorithms.base import Algorithm
from algorithms.hyperparameters import HyperparameterSpec
from core.schema import Schema
from serving.codecs import Codecs
from serving.model import Served
from serving.records import RecordParser

REPO = Path(__file__).resolve().parent.parent
CAR_PRICES = REPO / "cardata" / "car_prices.csv"


def car_schema() -> Schema:
    return Schema.infer(pd.read_csv(CAR_PRICES), target="price")


class SumModel(Algorithm):
    """predict = sum of the encoded features, NaN counted as 0.5: easy to check by hand, sensitive to order."""

    name = "sum"
    hyperparameters = HyperparameterSpec(())
    MODEL_FILES = ()

    def fit(self, train, validation=None, *, log, context=None):
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.nansum(X, axis=1) + 0.5 * np.isnan(X).sum(axis=1)

    def save(self, model_dir):
        return []

    @classmethod
    def load(cls, model_dir, *, threads=None):
        raise NotImplementedError


def served(schema: Schema | None = None, *, default_accept: str = "text/csv", unknown: str = "error") -> Served:
    schema = schema or car_schema()
    return Served(SumModel({}, schema), Codecs(RecordParser(schema, unknown), default_accept))


def variant(src: Path, dst: Path, algorithm: str, shift: float) -> Path:
    """A copy of a trained model whose every prediction is ``shift`` higher: tells the models apart."""
    shutil.copytree(src, dst)
    if algorithm == "linear":
        path = dst / "linear-model.json"
        doc = json.loads(path.read_text())
        doc["intercept"] += shift
    else:
        path = dst / "xgboost-model.json"
        doc = json.loads(path.read_text())
        params = doc["learner"]["learner_model_param"]
        params["base_score"] = f"[{float(params['base_score'].strip('[]')) + shift}]"
    path.write_text(json.dumps(doc))
    return dst
