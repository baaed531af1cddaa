"""Regression model quality: streamed, mergeable metric accumulators, the baseline's constraints, and the check.

Standard deviations follow Model Monitor: only with at least 200 samples, from 5 random samples of 80 %
(here each record joins each of the 5 samples with probability 0.8, from a seeded generator, so the samples can
be accumulated while streaming and merged across shards).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

METRICS = ("mae", "mse", "rmse", "r2")
N_SAMPLES = 5
SAMPLE_SHARE = 0.8
MIN_FOR_STD = 200
RESERVOIR = 1000
# Larger is worse for errors; smaller is worse for r2.
OPERATORS = {"mae": "GreaterThanThreshold", "mse": "GreaterThanThreshold", "rmse": "GreaterThanThreshold"}
OPERATORS["r2"] = "LessThanThreshold"

_FIELDS = ("n", "sum_abs", "sum_sq", "sum_y", "sum_y2")


class QualityAccumulator:
    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.sums = np.zeros((N_SAMPLES + 1, len(_FIELDS)))  # row 0: all records; rows 1..5: the subsamples
        self.sample_keys = np.empty(0)
        self.sample = np.empty((0, 2))  # (label, prediction) pairs kept for the predicted-vs-actual plot

    @property
    def n(self) -> int:
        return int(self.sums[0, 0])

    def update(self, labels: np.ndarray, predictions: np.ndarray) -> None:
        ok = ~(np.isnan(labels) | np.isnan(predictions))
        y, p = labels[ok], predictions[ok]
        if not len(y):
            return
        err = y - p
        cols = np.stack([np.ones_like(y), np.abs(err), err * err, y, y * y])
        self.sums[0] += cols.sum(axis=1)
        member = self.rng.random((N_SAMPLES, len(y))) < SAMPLE_SHARE
        self.sums[1:] += member.astype(np.float64) @ cols.T
        # a uniform sample that merges: keep the pairs with the smallest random keys
        keys = self.rng.random(len(y))
        self._keep(np.concatenate([self.sample_keys, keys]), np.concatenate([self.sample, np.stack([y, p], 1)]))

    def _keep(self, keys: np.ndarray, pairs: np.ndarray) -> None:
        if len(keys) > RESERVOIR:
            idx = np.argpartition(keys, RESERVOIR)[:RESERVOIR]
            keys, pairs = keys[idx], pairs[idx]
        self.sample_keys, self.sample = keys, pairs

    def merge(self, other: QualityAccumulator) -> None:
        self.sums += other.sums
        self._keep(np.concatenate([self.sample_keys, other.sample_keys]), np.concatenate([self.sample, other.sample]))

    def metrics(self) -> dict[str, dict[str, float]]:
        values = _metrics(self.sums[0])
        out: dict[str, dict[str, float]] = {}
        for m in METRICS:
            entry = {"value": values[m]}
            if self.n >= MIN_FOR_STD:
                entry["standard_deviation"] = float(np.std([_metrics(row)[m] for row in self.sums[1:]]))
            out[m] = entry
        return out

    def to_state(self) -> dict[str, Any]:
        return {"sums": self.sums.tolist(), "sample_keys": self.sample_keys.tolist(), "sample": self.sample.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> QualityAccumulator:
        q = cls()
        q.sums = np.asarray(state["sums"], dtype=np.float64)
        q.sample_keys = np.asarray(state["sample_keys"], dtype=np.float64)
        q.sample = np.asarray(state["sample"], dtype=np.float64).reshape(-1, 2)
        return q


def _metrics(row: np.ndarray) -> dict[str, float]:
    n, sum_abs, sum_sq, sum_y, sum_y2 = row.tolist()
    if n == 0:
        return dict.fromkeys(METRICS, math.nan)
    mse = sum_sq / n
    sst = sum_y2 - sum_y * sum_y / n
    r2 = 1 - sum_sq / sst if sst > 0 else (1.0 if sum_sq == 0 else -math.inf)
    return {"mae": sum_abs / n, "mse": mse, "rmse": math.sqrt(mse), "r2": r2}


def statistics(acc: QualityAccumulator, evaluation_time: str | None = None) -> dict[str, Any]:
    dataset: dict[str, Any] = {"item_count": acc.n}
    if evaluation_time:
        dataset["evaluation_time"] = evaluation_time
    return {"version": 0.0, "dataset": dataset, "regression_metrics": acc.metrics()}


def suggest_constraints(metrics: dict[str, dict[str, float]], slack_sigmas: float = 0.0) -> dict[str, Any]:
    """Thresholds at the baseline's values (Model Monitor's suggestion), optionally widened by ``slack_sigmas``
    standard deviations to keep noise from raising alerts."""
    out = {}
    for m in METRICS:
        value = metrics[m]["value"]
        sd = metrics[m].get("standard_deviation", 0.0) * slack_sigmas
        op = OPERATORS[m]
        out[m] = {"threshold": value + sd if op == "GreaterThanThreshold" else value - sd, "comparison_operator": op}
    return {"version": 0.0, "regression_constraints": out}


def check(metrics: dict[str, dict[str, float]], constraints: dict[str, Any]) -> list[dict[str, str]]:
    """Violations in Model Monitor's model-quality layout (check type = the comparison operator)."""
    violations = []
    for name, c in (constraints.get("regression_constraints") or {}).items():
        if name not in metrics:
            continue
        value, threshold, op = metrics[name]["value"], float(c["threshold"]), c.get("comparison_operator")
        if op not in ("GreaterThanThreshold", "LessThanThreshold"):
            raise ValueError(f"regression_constraints.{name}.comparison_operator: unknown operator {op!r}")
        if math.isnan(value):
            continue
        if (op == "GreaterThanThreshold" and value > threshold) or (op == "LessThanThreshold" and value < threshold):
            violations.append(
                {
                    "metric_name": name,
                    "constraint_check_type": op,
                    "description": f"Metric {name} with {value} was {op} {threshold}",
                }
            )
    return violations
