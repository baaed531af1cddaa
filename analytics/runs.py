"""Drift and model-quality rows from one monitor run's output folder: ``monitoring_report.json`` (target, time,
window, every feature's drift distance and threshold, the model-quality metrics and constraints) and the Model
Monitor files beside it, ``constraint_violations.json`` and ``model_quality/constraint_violations.json``, which
say what was violated."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from analytics.tables import DRIFT_SCHEMA, QUALITY_SCHEMA, AnalyticsError

REPORT = "monitoring_report.json"
VIOLATIONS = "constraint_violations.json"
QUALITY_VIOLATIONS = "model_quality/constraint_violations.json"


@dataclass(frozen=True)
class MonitorRun:
    folder: Path
    status: str
    target: str
    target_type: str
    monitored_at: datetime
    run_id: str
    drift: pa.Table
    quality: pa.Table


def default_run_id(target: str, monitored_at: datetime) -> str:
    """Stable for a given run (its target and completion time), so re-appending a folder replaces its rows."""
    return f"{target}-{monitored_at:%Y%m%dT%H%M%SZ}"


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnalyticsError(f"cannot read it: {' '.join(str(e).split())}", file=path) from None


def _time(value: Any, path: Path, key: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        raise AnalyticsError(f"{key}: expected an ISO 8601 time, received {value!r}", file=path) from None
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _violations(path: Path, fallback: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The Model Monitor file when the folder holds it (what alerting reads), else the report's copy."""
    if not path.is_file():
        return list(fallback or [])
    doc = _json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("violations"), list):
        raise AnalyticsError("expected {'violations': [...]}", file=path)
    return doc["violations"]


def read_run(folder: Path, run_id: str | None = None) -> MonitorRun:
    """The run's rows; ``run_id`` defaults to one derived from its target and time."""
    folder = Path(folder)
    path = folder / REPORT
    if not path.is_file():
        raise AnalyticsError(f"not a monitor output folder: no {REPORT}", file=folder)
    doc = _json(path)
    if not isinstance(doc, dict):
        raise AnalyticsError("expected a JSON object", file=path)
    status = doc.get("status")
    if status not in ("Completed", "NoNewData"):
        raise AnalyticsError(f"status {status!r}: only a Completed (or NoNewData) run can be appended", file=path)
    target_type = "endpoint" if doc.get("endpoint") else "batch_job" if doc.get("batch_job") else None
    if target_type is None:
        raise AnalyticsError("names neither an endpoint nor a batch_job", file=path)
    target = str(doc["endpoint"] or doc["batch_job"])
    monitored_at = _time(doc.get("completed_at"), path, "completed_at")
    if monitored_at is None:
        raise AnalyticsError("completed_at is missing", file=path)
    window = doc.get("window") or {}
    start, end = _time(window.get("start"), path, "window.start"), _time(window.get("end"), path, "window.end")
    run_id = run_id or default_run_id(target, monitored_at)
    common = {
        "run_id": run_id,
        "target": target,
        "target_type": target_type,
        "monitoring_schedule": doc.get("monitoring_schedule"),
        "window_start": start,
        "window_end": end,
        "monitored_at": monitored_at,
    }
    if status == "NoNewData":
        empty = (DRIFT_SCHEMA.empty_table(), QUALITY_SCHEMA.empty_table())
        return MonitorRun(folder, status, target, target_type, monitored_at, run_id, *empty)

    by_feature: dict[str, list[dict[str, Any]]] = {}
    for v in _violations(folder / VIOLATIONS, doc.get("violations")):
        by_feature.setdefault(str(v.get("feature_name") or ""), []).append(v)
    drift = []
    seen = set()
    for f in doc.get("features") or []:
        name = str(f.get("name"))
        seen.add(name)
        d = f.get("drift") or {}
        drift.append(
            {**common, "feature": name, "kind": f.get("kind"), "method": d.get("method"),
             "distance": _num(d.get("distance")), "threshold": _num(d.get("threshold")),
             "completeness": _num(f.get("completeness")), "records": doc.get("records"),
             **_verdict(by_feature.get(name, []))}
        )  # fmt: skip
    for name, vs in by_feature.items():  # a missing column has a violation but no feature entry
        if name not in seen:
            drift.append({**common, "feature": name, "records": doc.get("records"), **_verdict(vs)})

    quality = []
    mq = doc.get("model_quality") or {}
    if mq.get("metrics"):
        violated = {v.get("metric_name") for v in _violations(folder / QUALITY_VIOLATIONS, mq.get("violations"))}
        constraints = mq.get("constraints") or {}
        for metric, m in mq["metrics"].items():
            c = constraints.get(metric) or {}
            value = _num((m or {}).get("value"))
            quality.append(
                {**common, "metric": metric, "value": None if value is None or math.isnan(value) else value,
                 "standard_deviation": _num((m or {}).get("standard_deviation")), "threshold": _num(c.get("threshold")),
                 "comparison_operator": c.get("comparison_operator"), "violated": metric in violated,
                 "item_count": mq.get("item_count")}
            )  # fmt: skip
    return MonitorRun(
        folder, status, target, target_type, monitored_at, run_id,
        pa.Table.from_pylist(drift, schema=DRIFT_SCHEMA), pa.Table.from_pylist(quality, schema=QUALITY_SCHEMA),
    )  # fmt: skip


def _verdict(violations: list[dict[str, Any]]) -> dict[str, Any]:
    checks = sorted({str(v.get("constraint_check_type")) for v in violations})
    return {
        "violated": bool(violations),
        "check_type": ",".join(checks) or None,
        "description": " | ".join(str(v.get("description", "")) for v in violations) or None,
    }
