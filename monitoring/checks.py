"""The data-quality checks: the current profile against the baseline statistics and constraints.

Each check returns violations in Model Monitor's layout (``feature_name``, ``constraint_check_type``,
``description``); the drift description keeps the wording downstream tools parse with
``distance: (.+) exceeds threshold: (.+)``. ``drift_table`` also returns every distance, drifted or not, for the
report and the CloudWatch metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from monitoring import distance
from monitoring.constraints import Constraints
from monitoring.sketches import CategoricalSketch, NumericSketch
from monitoring.statistics import BaselineFeature, Profile


@dataclass
class Drift:
    feature: str
    kind: str  # numeric | categorical
    method: str
    distance: float  # the value compared with the threshold (p-value for ChiSquared)
    simple: float  # the uncorrected L-infinity distance
    threshold: float
    n_baseline: float
    n_current: float
    drifted: bool


def _pct(x: float) -> str:
    # full precision, as Model Monitor writes it ("Observed: Only 99.64592817400101%")
    return f"{100 * x}%"


def violation(feature: str, check: str, description: str) -> dict[str, str]:
    return {"feature_name": feature, "constraint_check_type": check, "description": description}


def drift_table(profile: Profile, baseline: dict[str, BaselineFeature], constraints: Constraints) -> list[Drift]:
    out = []
    for name, sk in profile.sketches.items():
        bf = baseline.get(name)
        fc = constraints.features.get(name)
        cfg = fc.config if fc else constraints.config
        if bf is None:
            continue
        if isinstance(sk, NumericSketch) and bf.numeric:
            if sk.count == 0 or not len(bf.items):
                continue
            items, weights = sk.weighted_items()
            linf = distance.numeric_linf(bf.items, bf.weights, items, weights)
            n, m = float(bf.weights.sum()), float(sk.count)
            value = distance.robust(linf, n, m) if cfg.comparison_method == "Robust" else linf
            threshold = cfg.comparison_threshold
            out.append(Drift(name, "numeric", cfg.comparison_method, value, linf, threshold, n, m, value > threshold))
        elif isinstance(sk, CategoricalSketch) and not bf.numeric:
            if not sk.counts or not bf.counts:
                continue
            linf = distance.categorical_linf(bf.counts, sk.counts)
            n, m = sum(bf.counts.values()), float(sk.num_present)
            threshold = cfg.categorical_comparison_threshold
            if cfg.categorical_drift_method == "ChiSquared":
                p = distance.chi_squared_pvalue(bf.counts, sk.counts)
                out.append(Drift(name, "categorical", "ChiSquared", p, linf, threshold, n, m, p < threshold))
            else:
                value = distance.robust(linf, n, m) if cfg.comparison_method == "Robust" else linf
                out.append(
                    Drift(name, "categorical", cfg.comparison_method, value, linf, threshold, n, m, value > threshold)
                )
    return out


def run_checks(
    profile: Profile,
    baseline: dict[str, BaselineFeature],
    constraints: Constraints,
    drifts: list[Drift] | None = None,
) -> list[dict[str, str]]:
    violations: list[dict[str, str]] = []
    n_items = profile.item_count
    if n_items == 0:
        return violations
    expected = [name for name in constraints.features] or list(baseline)
    present_columns = [n for n in profile.sketches if profile.absent[n] < n_items] + list(profile.extra)

    for name in expected:
        fc = constraints.features.get(name)
        cfg = fc.config if fc else constraints.config
        if not cfg.evaluate_constraints:
            continue
        sk = profile.sketches.get(name)
        if sk is None or profile.absent.get(name, 0) >= n_items:
            violations.append(
                violation(
                    name,
                    "missing_column_check",
                    f"There are missing columns in current dataset: {name!r} is absent. Number of columns in "
                    f"current dataset: {len(present_columns)}, Number of columns in baseline constraints: "
                    f"{len(expected)}",
                )
            )
            continue
        expected_type = fc.inferred_type if fc else baseline[name].inferred_type
        violations += _type_check(name, sk, expected_type, cfg.datatype_check_threshold)
        if fc and fc.completeness is not None:
            observed = sk.num_present / n_items
            if observed < fc.completeness:
                violations.append(
                    violation(
                        name,
                        "completeness_check",
                        f"Data completeness requirement is not met. Expected: {_pct(fc.completeness)}. "
                        f"Observed: Only {_pct(observed)} of data is non-null.",
                    )
                )
        if fc and fc.domains is not None and isinstance(sk, CategoricalSketch) and sk.num_present:
            domain = set(fc.domains)
            unknown = {v: c for v, c in sk.counts.items() if v not in domain}
            within = 1 - sum(unknown.values()) / sk.num_present
            # the threshold is the share that must lie in the domain (Deequ's isContainedIn(_ >= t))
            if within < cfg.domain_content_threshold:
                top = ", ".join(repr(v) for v, _ in sorted(unknown.items(), key=lambda kv: -kv[1])[:5])
                violations.append(
                    violation(
                        name,
                        "categorical_values_check",
                        f"Data does not meet the domain content requirement. Expected match: "
                        f"{_pct(cfg.domain_content_threshold)}. Observed: Only {_pct(within)} of data is within "
                        f"the baseline domain (outside: {top}).",
                    )
                )

    for name in sorted(profile.extra):
        violations.append(
            violation(
                name,
                "extra_column_check",
                f"There are extra columns in current dataset: {name!r} is not in the baseline. Number of columns "
                f"in current dataset: {len(present_columns)}, Number of columns in baseline constraints: "
                f"{len(expected)}",
            )
        )

    for d in drift_table(profile, baseline, constraints) if drifts is None else drifts:
        fc = constraints.features.get(d.feature)
        cfg = fc.config if fc else constraints.config
        if not (cfg.evaluate_constraints and cfg.perform_comparison) or not d.drifted:
            continue
        if d.method == "ChiSquared":
            desc = f"Baseline drift chi-squared p-value: {d.distance} is below threshold: {d.threshold}"
        else:
            desc = f"Baseline drift distance: {d.distance} exceeds threshold: {d.threshold}"
        violations.append(violation(d.feature, "baseline_drift_check", desc))
    return violations


def _type_check(name: str, sk: Any, expected_type: str, threshold: float) -> list[dict[str, str]]:
    if not isinstance(sk, NumericSketch) or expected_type not in ("Integral", "Fractional") or not sk.num_present:
        return []
    wrong = sk.num_mismatch + (sk.num_fractional if expected_type == "Integral" else 0)
    share_ok = 1 - wrong / sk.num_present
    # the threshold is the share that must match (Deequ's hasDataType(_ >= t)); 1.0 tolerates no mismatch
    if share_ok >= threshold:
        return []
    return [
        violation(
            name,
            "data_type_check",
            f"Data type match requirement is not met. Expected data type: {expected_type}, Expected match: "
            f"{_pct(threshold)}. Observed: Only {_pct(share_ok)} of data is {expected_type}.",
        )
    ]


def drift_summary(drifts: list[Drift]) -> list[dict[str, Any]]:
    return [
        {
            "feature": d.feature,
            "kind": d.kind,
            "method": d.method,
            "distance": d.distance,
            "linf_simple": d.simple,
            "threshold": d.threshold,
            "n_baseline": d.n_baseline,
            "n_current": d.n_current,
            "drifted": d.drifted,
        }
        for d in drifts
        if not math.isnan(d.distance)
    ]
