"""Turns a run's summaries into its outputs: statistics.json, constraint_violations.json (data quality),
model_quality/{statistics,constraint_violations}.json (only with ground truth), monitoring_report.json (the run
summary the report and the evaluate step read), the sketch state for merging, and CloudWatch metric lines.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from monitoring import checks, quality
from monitoring.constraints import Constraints
from monitoring.ingest import IngestResult
from monitoring.sketches import CategoricalSketch, NumericSketch
from monitoring.statistics import BaselineFeature

HIST_BINS = 20
STATE_FILE = "profile_state.json"
SUMMARY_FILE = "monitoring_report.json"


@dataclass
class RunContext:
    output: Path
    endpoint: str | None
    batch_job: str | None
    schedule: str | None
    start: datetime | None
    end: datetime | None
    publish_metrics: bool
    metrics_dir: Path


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def attach_report(summary: dict[str, Any], output: Path, args: Any) -> None:
    """report.html for the run (unless ``report`` is Disabled), with trends over ``history_path``'s runs."""
    from monitoring import jobenv, report

    if jobenv.enabled_setting(args, "report", "Enabled"):
        history = jobenv.setting(args, "history_path")
        summary["report"] = str(report.write_run_report(output, Path(history) if history else None))
        write_json(output / SUMMARY_FILE, summary)


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(doc), indent=2) + "\n")


def _finite(x: Any) -> Any:
    # JSON has no NaN/Infinity: write null
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def analyze(
    result: IngestResult,
    ctx: RunContext,
    baseline: dict[str, BaselineFeature],
    constraints: Constraints,
    quality_constraints: dict[str, Any] | None,
) -> dict[str, Any]:
    profile = result.profile
    out = ctx.output
    drifts = checks.drift_table(profile, baseline, constraints)
    violations = checks.run_checks(profile, baseline, constraints, drifts)
    write_json(out / "statistics.json", profile.statistics())
    write_json(out / "constraint_violations.json", {"violations": violations})
    write_json(out / STATE_FILE, result.to_state())

    mq: dict[str, Any] | None = None
    if result.quality.n > 0:
        mq_stats = quality.statistics(result.quality, _iso(datetime.now(UTC)))
        mq_violations = quality.check(mq_stats["regression_metrics"], quality_constraints or {})
        write_json(out / "model_quality" / "statistics.json", mq_stats)
        write_json(out / "model_quality" / "constraint_violations.json", {"violations": mq_violations})
        mq = {
            "metrics": mq_stats["regression_metrics"],
            "item_count": result.quality.n,
            "constraints": (quality_constraints or {}).get("regression_constraints", {}),
            "violations": mq_violations,
            "sample": result.quality.sample.tolist(),
        }

    summary = {
        "version": 1,
        "status": "Completed" if profile.item_count else "NoData",
        "completed_at": _iso(datetime.now(UTC)),
        "endpoint": ctx.endpoint,
        "batch_job": ctx.batch_job,
        "monitoring_schedule": ctx.schedule,
        "window": {"start": _iso(ctx.start), "end": _iso(ctx.end)},
        "records": profile.item_count,
        "records_outside_window": result.records_outside_window,
        "files_read": len(result.files_read),
        "files_skipped_by_bookmark": result.files_skipped,
        "malformed": {"count": result.bad.count, "examples": result.bad.examples},
        "ground_truth_records": result.ground_truth_records,
        "labelled_records": result.labelled_records,
        "violations": violations,
        "features": _feature_views(result, baseline, constraints, drifts),
        "predictions": _prediction_view(result.predictions),
        "model_quality": mq,
    }
    if ctx.publish_metrics and constraints.config.emit_metrics:
        summary["cloudwatch"] = write_metrics(ctx, drifts, result, mq)
    write_json(out / SUMMARY_FILE, summary)
    return summary


def _feature_views(
    result: IngestResult, baseline: dict[str, BaselineFeature], constraints: Constraints, drifts: list[checks.Drift]
) -> list[dict[str, Any]]:
    by_name = {d.feature: d for d in drifts}
    n = result.profile.item_count
    views = []
    for name, sk in result.profile.sketches.items():
        bf = baseline.get(name)
        fc = constraints.features.get(name)
        d = by_name.get(name)
        view: dict[str, Any] = {
            "name": name,
            "kind": "numeric" if isinstance(sk, NumericSketch) else "categorical",
            "completeness": sk.num_present / n if n else None,
            "baseline_completeness": fc.completeness if fc else None,
            "drift": None
            if d is None
            else {
                "distance": d.distance,
                "simple": d.simple,
                "threshold": d.threshold,
                "method": d.method,
                "drifted": d.drifted,
            },
        }
        if isinstance(sk, NumericSketch) and bf is not None and bf.numeric and sk.count and len(bf.items):
            view["histogram"] = _numeric_histogram(bf, sk)
        elif isinstance(sk, CategoricalSketch) and bf is not None and not bf.numeric:
            view["categories"] = _categorical_view(bf, sk)
        views.append(view)
    return views


def _numeric_histogram(bf: BaselineFeature, sk: NumericSketch) -> dict[str, Any]:
    items, weights = sk.weighted_items()
    lo = float(min(bf.items.min(), sk.min))
    hi = float(max(bf.items.max(), sk.max))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, HIST_BINS + 1)
    base, _ = np.histogram(bf.items, bins=edges, weights=bf.weights)
    cur, _ = np.histogram(items, bins=edges, weights=weights)
    return {
        "edges": edges.tolist(),
        "baseline": (base / max(base.sum(), 1e-12)).tolist(),
        "current": (cur / max(cur.sum(), 1e-12)).tolist(),
    }


def _categorical_view(bf: BaselineFeature, sk: CategoricalSketch) -> dict[str, Any]:
    nb, nc = sum(bf.counts.values()) or 1.0, sk.num_present or 1
    values = sorted(
        set(bf.counts) | set(sk.counts), key=lambda v: -(bf.counts.get(v, 0) / nb + sk.counts.get(v, 0) / nc)
    )
    values = values[:30]
    return {
        "values": values,
        "baseline": [bf.counts.get(v, 0) / nb for v in values],
        "current": [sk.counts.get(v, 0) / nc for v in values],
    }


def _prediction_view(sk: NumericSketch) -> dict[str, Any] | None:
    if not sk.count:
        return None
    return {"count": sk.count, "mean": sk.mean, "std_dev": sk.std_dev, "min": sk.min, "max": sk.max}


def write_metrics(
    ctx: RunContext, drifts: list[checks.Drift], result: IngestResult, mq: dict[str, Any] | None
) -> dict[str, Any]:
    """PutMetricData-shaped JSON lines: Model Monitor's metric names, the endpoint or the batch namespace."""
    realtime = ctx.endpoint is not None
    ns_root = "/aws/sagemaker/Endpoints" if realtime else "/aws/sagemaker/ModelMonitoring"
    dims = [{"Name": "Endpoint", "Value": ctx.endpoint}] if realtime else []
    dims.append({"Name": "MonitoringSchedule", "Value": ctx.schedule or "local"})
    ts = _iso(ctx.end or datetime.now(UTC))
    n = result.profile.item_count

    def metric(name: str, value: float) -> dict[str, Any]:
        return {"MetricName": name, "Timestamp": ts, "Dimensions": dims, "Value": float(value), "Unit": "None"}

    data_lines = [metric(f"feature_baseline_drift_{d.feature}", d.distance) for d in drifts]
    for name, sk in result.profile.sketches.items():
        if n:
            data_lines.append(metric(f"feature_non_null_{name}", sk.num_present / n))
    for name, sk in result.profile.sketches.items():
        if isinstance(sk, NumericSketch) and sk.count:
            # one statistic set per feature: CloudWatch derives Min, Max, Sum, SampleCount and Average from it
            stats = {"SampleCount": float(sk.count), "Sum": sk.total, "Minimum": sk.min, "Maximum": sk.max}
            data_lines.append(
                {"MetricName": f"feature_data_{name}", "Timestamp": ts, "Dimensions": dims, "StatisticValues": stats}
                | {"Unit": "None"}
            )
    ctx.metrics_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    data_file = ctx.metrics_dir / "data-metrics.jsonl"
    data_file.write_text("".join(json.dumps(m) + "\n" for m in data_lines))
    files[f"{ns_root}/data-metrics"] = str(data_file)
    if mq is not None:
        model_file = ctx.metrics_dir / "model-metrics.jsonl"
        lines = [metric(k, v["value"]) for k, v in mq["metrics"].items() if math.isfinite(v["value"])]
        model_file.write_text("".join(json.dumps(m) + "\n" for m in lines))
        files[f"{ns_root}/model-metrics"] = str(model_file)
    return {"namespaces": files}
