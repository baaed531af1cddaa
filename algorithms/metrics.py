"""Regression metrics, the metric log line, its MetricDefinitions regexes, and evaluation.json.

The log line and the regexes are declared here and nowhere else. One line per (split, iteration) an algorithm
reports (XGBoost: the train channel every ``train_metric_frequency`` rounds, validation every round)::

    #metrics iteration=12 train:rmse=1234.5678 train:mae=901.2 train:r2=0.91234 train:mse=1524030.1
    #metrics final test:rmse=1301.2 test:mae=950.4 test:r2=0.90321 test:mse=1693121.4

Names read like Linear Learner's (``validation:rmse``, ``test:r2``). ``final`` lines come after training, from
the model that is saved (the best iteration under early stopping), so the last value SageMaker records for a
metric (what hyperparameter tuning optimises) is the saved model's.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping

import numpy as np

METRICS = ("rmse", "mae", "r2", "mse")
SPLITS = ("train", "validation", "test")
PREFIX = "#metrics"
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"  # what SageMaker can parse as a float; nan/inf never match


def metric_name(split: str, metric: str) -> str:
    return f"{split}:{metric}"


def metric_definitions() -> list[dict[str, str]]:
    """[{"Name": "validation:rmse", "Regex": ...}, ...] as CreateTrainingJob's MetricDefinitions takes them."""
    return [{"Name": metric_name(s, m), "Regex": rf"{PREFIX} .* {s}:{m}={_NUMBER}"} for s in SPLITS for m in METRICS]


def format_line(split: str, metrics: Mapping[str, float], iteration: int | None = None) -> str:
    where = "final" if iteration is None else f"iteration={iteration}"
    values = " ".join(f"{metric_name(split, k)}={_fmt(v)}" for k, v in metrics.items())
    return f"{PREFIX} {where} {values}"


def _fmt(v: float) -> str:
    return f"{float(v):.10g}"


class MetricLogger:
    """The MetricLog the training entry point hands to algorithms: prints one bare line per call to stdout.

    Bare (no logging prefix) so a person reads the same line the regexes match.
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.last: dict[str, dict[str, float]] = {}  # split -> the most recent metrics (the final ones at the end)

    def __call__(self, split: str, metrics: Mapping[str, float], iteration: int | None = None) -> None:
        self.last[split] = {k: float(v) for k, v in metrics.items()}
        print(format_line(split, metrics, iteration), file=self.stream, flush=True)


# -- metrics -------------------------------------------------------------------------------------------------------
def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """rmse, mae, r2, mse of predictions ``p`` for labels ``y``. r2 is NaN when y is constant."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1 or not len(y):
        raise ValueError(f"need two equal-length non-empty 1-d arrays, received {y.shape} and {p.shape}")
    err = p - y
    mse = float(np.mean(err * err))
    return {"rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(err))), "r2": _r2(mse, y), "mse": mse}


class RegressionSums:
    """regression_metrics accumulated block by block, for a channel that is never whole in memory.

    Per block: the error sums and the label's mean and squared deviations, merged with Chan et al.'s pairwise
    update (no sum of squares of raw labels, which loses digits when the mean is large against the spread).
    """

    def __init__(self) -> None:
        self.n, self.mean, self.m2, self.sse, self.sae = 0, 0.0, 0.0, 0.0, 0.0

    def add(self, y: np.ndarray, p: np.ndarray) -> None:
        y = np.asarray(y, dtype=np.float64)
        k = len(y)
        if not k:
            return
        err = np.asarray(p, dtype=np.float64) - y
        self.sse += float(err @ err)
        self.sae += float(np.abs(err).sum())
        mean = float(y.mean())
        n = self.n + k
        delta = mean - self.mean
        self.m2 += float(((y - mean) ** 2).sum()) + delta * delta * self.n * k / n
        self.mean += delta * k / n
        self.n = n

    def metrics(self, collective) -> dict[str, float]:
        """rmse, mae, r2, mse over every host's rows (``collective``: algorithms.distributed.Collective)."""
        n, total = collective.allreduce([self.n, self.n * self.mean]) if collective.distributed else (self.n, 0.0)
        if not n:
            raise ValueError("no rows on any host")
        if collective.distributed:
            mean = total / n
            sse, sae, m2 = collective.allreduce([self.sse, self.sae, self.m2 + self.n * (self.mean - mean) ** 2])
        else:
            sse, sae, m2 = self.sse, self.sae, self.m2
        mse = float(sse / n)
        return {"rmse": math.sqrt(mse), "mae": float(sae / n), "r2": r2_from_mse(mse, float(m2 / n)), "mse": mse}


def variance_across(y: np.ndarray, collective) -> float:
    """Population variance of the label over every host's rows."""
    if not collective.distributed:
        return float(np.var(y))
    n, total = collective.allreduce([len(y), float(np.sum(y))])
    (ss,) = collective.allreduce([float(((np.asarray(y) - total / n) ** 2).sum())])
    return float(ss / n)


def r2_from_mse(mse: float, variance: float) -> float:
    """R^2 = 1 - mse / var(y) (population variance), NaN for a constant label."""
    return 1.0 - mse / variance if variance > 0 else math.nan


def _r2(mse: float, y: np.ndarray) -> float:
    return r2_from_mse(mse, float(np.var(y)))


# -- evaluation.json -----------------------------------------------------------------------------------------------
BOOTSTRAP_SAMPLES = 100
BOOTSTRAP_SEED = 0


def evaluation(y: np.ndarray, p: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> dict:
    """Model Monitor's model-quality layout for regression (evaluation.json)::

        {"regression_metrics": {"mae": {"value": v, "standard_deviation": s}, "mse": ..., "rmse": ..., "r2": ...}}

    ``value`` is the metric on all rows. ``standard_deviation`` is a bootstrap estimate: ``samples`` resamples of
    n rows drawn with replacement by ``numpy.random.default_rng(seed)``, the metric on each, and their standard
    deviation (ddof=1), so a rerun gives identical numbers. Model Monitor itself uses 5 subsamples of 80% and only
    from 200 rows; the bootstrap is steadier and also says something for small test sets. With fewer than 2 rows
    it is 0.0. NaN (r2 of a constant label) is written as null to keep the file valid JSON.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    values = regression_metrics(y, p)
    stds = dict.fromkeys(METRICS, 0.0)
    n = len(y)
    if n >= 2 and samples >= 2:
        rng = np.random.default_rng(seed)
        draws = {m: np.empty(samples) for m in METRICS}
        for b in range(samples):
            idx = rng.integers(0, n, n)
            for m, v in regression_metrics(y[idx], p[idx]).items():
                draws[m][b] = v
        stds = {m: float(np.nanstd(d, ddof=1)) if np.isfinite(d).sum() >= 2 else math.nan for m, d in draws.items()}
    return {
        "regression_metrics": {
            m: {"value": _json_number(values[m]), "standard_deviation": _json_number(stds[m])}
            for m in ("mae", "mse", "rmse", "r2")
        }
    }


def _json_number(v: float) -> float | None:
    return v if math.isfinite(v) else None
