"""Distribution distances, as Deequ (and so Model Monitor) defines them.

- numeric: L-infinity distance between the two empirical CDFs (the two-sample Kolmogorov-Smirnov statistic),
  computed over weighted values so that a KLL sketch's retained items (weight 2**level) and exact data
  (weight 1) are handled alike;
- categorical: L-infinity distance between the per-category relative frequencies, or a chi-squared test;
- ``Robust``: ``max(0, linf - 1.8 * sqrt((n + m) / (n * m)))`` (1.8 ~ the KS critical value at alpha 0.003).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

ROBUST_FACTOR = 1.8


def _cdf_at(items: np.ndarray, weights: np.ndarray, points: np.ndarray) -> np.ndarray:
    order = np.argsort(items, kind="stable")
    sorted_items = items[order]
    cum = np.concatenate([[0.0], np.cumsum(weights[order])])
    return cum[np.searchsorted(sorted_items, points, side="right")] / cum[-1]


def numeric_linf(
    a_items: np.ndarray,
    a_weights: np.ndarray | None,
    b_items: np.ndarray,
    b_weights: np.ndarray | None,
) -> float:
    """sup_x |F_a(x) - F_b(x)| over weighted samples (weights None = 1 each)."""
    a_items, b_items = np.asarray(a_items, np.float64), np.asarray(b_items, np.float64)
    if not len(a_items) or not len(b_items):
        return 0.0
    a_w = np.ones(len(a_items)) if a_weights is None else np.asarray(a_weights, np.float64)
    b_w = np.ones(len(b_items)) if b_weights is None else np.asarray(b_weights, np.float64)
    points = np.unique(np.concatenate([a_items, b_items]))
    return float(np.max(np.abs(_cdf_at(a_items, a_w, points) - _cdf_at(b_items, b_w, points))))


def categorical_linf(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 0.0
    return max(abs(a.get(v, 0.0) / na - b.get(v, 0.0) / nb) for v in set(a) | set(b))


def robust(linf: float, n: float, m: float) -> float:
    if n <= 0 or m <= 0:
        return 0.0
    return max(0.0, linf - ROBUST_FACTOR * math.sqrt((n + m) / (n * m)))


def chi_squared_pvalue(baseline: Mapping[str, float], current: Mapping[str, float]) -> float:
    """Goodness of fit of the current counts to the baseline's frequencies (categories unseen in the baseline
    get a pseudo-count of 0.5 so that a new value counts as evidence rather than dividing by zero)."""
    nb, nc = sum(baseline.values()), sum(current.values())
    if not nb or not nc:
        return 1.0
    cats = sorted(set(baseline) | set(current))
    base = np.array([baseline.get(c, 0.0) or 0.5 for c in cats])
    expected = base / base.sum() * nc
    observed = np.array([current.get(c, 0.0) for c in cats])
    stat = float(((observed - expected) ** 2 / expected).sum())
    dof = len(cats) - 1
    return 1.0 if dof <= 0 else gammaincc(dof / 2.0, stat / 2.0)


def gammaincc(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) (series below a+1, Lentz continued fraction above)."""
    if x <= 0:
        return 1.0
    log_pre = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_pre))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_pre) * h)
