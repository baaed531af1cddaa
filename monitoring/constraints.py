"""constraints.json: suggested from a baseline profile, and read back with its monitoring_config and overrides.

Every spelling the AWS pages have used is accepted when reading (``comparison_method`` / ``comparion_method``,
``Simple`` / ``Robust`` / ``linf_simple`` / ``linf_robust``); ``Simple`` / ``Robust`` are written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.errors import ConfigurationError, DataError
from core.jsonfile import read_json
from monitoring.sketches import CategoricalSketch, NumericSketch
from monitoring.statistics import Profile

# What Model Monitor's baselining job writes. datatype_check_threshold and domain_content_threshold are the
# share of values that must match (Deequ's ``hasDataType(_ >= t)`` / ``isContainedIn(_ >= t)``): real
# constraints carry 1.0 and real violations read "Expected match: 100.0%. Observed: Only 99.6...%".
DEFAULT_MONITORING_CONFIG: dict[str, Any] = {
    "evaluate_constraints": "Enabled",
    "emit_metrics": "Enabled",
    "datatype_check_threshold": 1.0,
    "domain_content_threshold": 1.0,
    "distribution_constraints": {
        "perform_comparison": "Enabled",
        "comparison_threshold": 0.1,
        "comparison_method": "Robust",
        "categorical_comparison_threshold": 0.1,
        "categorical_drift_method": "LInfinity",
    },
}
# Above this many distinct values a string feature gets no domain (the built-in analyzer's "small cardinality").
MAX_DOMAIN_SIZE = 100

_METHODS = {"simple": "Simple", "linf_simple": "Simple", "robust": "Robust", "linf_robust": "Robust"}
_CATEGORICAL_METHODS = {"linfinity": "LInfinity", "linf": "LInfinity", "chisquared": "ChiSquared"}
_CATEGORICAL_METHODS.update({"chi_squared": "ChiSquared", "l_infinity": "LInfinity"})


def suggest(profile: Profile) -> dict[str, Any]:
    features = []
    for spec in profile.specs:
        sk = profile.sketches[spec.name]
        total = profile.item_count
        present = sk.num_present
        entry: dict[str, Any] = {
            "name": spec.name,
            "inferred_type": sk.inferred_type,
            # unrounded: a rounded-up value would make the baseline's own data fail its completeness check
            "completeness": present / total if total else 0.0,
        }
        if isinstance(sk, NumericSketch):
            entry["num_constraints"] = {"is_non_negative": bool(sk.count == 0 or sk.min >= 0)}
        elif isinstance(sk, CategoricalSketch) and len(sk.counts) <= MAX_DOMAIN_SIZE:
            entry["string_constraints"] = {"domains": sorted(sk.counts)}
        features.append(entry)
    return {
        "version": 0.0,
        "features": features,
        "monitoring_config": json.loads(json.dumps(DEFAULT_MONITORING_CONFIG)),
    }


@dataclass(frozen=True)
class CheckConfig:
    """The effective settings for one feature (global monitoring_config, then its monitoringConfigOverrides)."""

    evaluate_constraints: bool = True
    emit_metrics: bool = True
    datatype_check_threshold: float = 1.0
    domain_content_threshold: float = 1.0
    perform_comparison: bool = True
    comparison_threshold: float = 0.1
    comparison_method: str = "Robust"
    categorical_comparison_threshold: float = 0.1
    categorical_drift_method: str = "LInfinity"


@dataclass
class FeatureConstraint:
    name: str
    inferred_type: str
    completeness: float | None
    is_non_negative: bool | None
    domains: list[str] | None
    config: CheckConfig


@dataclass
class Constraints:
    features: dict[str, FeatureConstraint]
    config: CheckConfig


def load(path: str | Path) -> Constraints:
    return parse(read_json(path), source=str(path))


def parse(doc: Any, *, source: str = "constraints.json") -> Constraints:
    if not isinstance(doc, dict) or not isinstance(doc.get("features", []), list):
        raise DataError("expected a constraints.json object with a 'features' list", file=source)
    base = _apply(CheckConfig(), doc.get("monitoring_config") or {}, f"{source}: monitoring_config")
    features = {}
    for i, f in enumerate(doc.get("features", [])):
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise DataError(f"features[{i}]: expected an object with a 'name'", file=source)
        overrides = f.get("monitoringConfigOverrides") or f.get("monitoring_config_overrides") or {}
        cfg = _apply(base, overrides, f"{source}: features[{i}].monitoringConfigOverrides")
        features[f["name"]] = FeatureConstraint(
            name=f["name"],
            inferred_type=f.get("inferred_type", "Unknown"),
            completeness=_float_or_none(f.get("completeness")),
            is_non_negative=(f.get("num_constraints") or {}).get("is_non_negative"),
            domains=(f.get("string_constraints") or {}).get("domains"),
            config=cfg,
        )
    return Constraints(features, base)


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


def _apply(cfg: CheckConfig, raw: Mapping[str, Any], where: str) -> CheckConfig:
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where}: expected an object, received {raw!r}")
    flat = dict(raw)
    flat.update(raw.get("distribution_constraints") or {})
    changes: dict[str, Any] = {}
    for key in ("evaluate_constraints", "emit_metrics", "perform_comparison"):
        if key in flat:
            changes[key] = _enabled(flat[key], f"{where}.{key}")
    for key in (
        "datatype_check_threshold",
        "domain_content_threshold",
        "comparison_threshold",
        "categorical_comparison_threshold",
    ):
        if key in flat:
            try:
                changes[key] = float(flat[key])
            except (TypeError, ValueError):
                raise ConfigurationError(f"{where}.{key}: expected a number, received {flat[key]!r}") from None
    method = flat.get("comparison_method", flat.get("comparion_method"))
    if method is not None:
        m = _METHODS.get(str(method).strip().lower())
        if m is None:
            raise ConfigurationError(
                f"{where}.comparison_method: expected Simple, Robust, linf_simple or linf_robust, received {method!r}"
            )
        changes["comparison_method"] = m
    cmethod = flat.get("categorical_drift_method")
    if cmethod is not None:
        m = _CATEGORICAL_METHODS.get(str(cmethod).strip().lower())
        if m is None:
            raise ConfigurationError(
                f"{where}.categorical_drift_method: expected LInfinity or ChiSquared, received {cmethod!r}"
            )
        changes["categorical_drift_method"] = m
    return replace(cfg, **changes)


def _enabled(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("enabled", "true"):
        return True
    if s in ("disabled", "false"):
        return False
    raise ConfigurationError(f"{where}: expected Enabled or Disabled, received {value!r}")
