"""Monitoring as the main job shows it: the monitoring pipeline's runs read back (``MonitorRun``), the edit a user
makes to Model Monitor's suggested model-quality constraints, and the HTML report over every run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MonitorRun:
    name: str
    output: Path
    summary: dict[str, Any]

    @property
    def violations(self) -> list[dict[str, Any]]:
        return list(self.summary.get("violations") or [])

    @property
    def quality_violations(self) -> list[dict[str, Any]]:
        return list((self.summary.get("model_quality") or {}).get("violations") or [])

    def brief(self) -> dict[str, Any]:
        mq = self.summary.get("model_quality")
        return {
            "records": self.summary.get("records"),
            "violations": self.violations,
            "model_quality": mq and {k: mq[k] for k in ("metrics", "item_count", "violations")},
            "output": str(self.output),
        }

    def line(self) -> str:
        s = self.summary
        if s.get("status") == "NoNewData":
            return f"{self.name}: no data ({s.get('message')})"
        drifted = sorted({v["feature_name"] for v in self.violations if v.get("feature_name")})
        text = f"{self.name}: {s.get('records')} records, {len(self.violations)} data-quality violations"
        text += f" ({', '.join(drifted)})" if drifted else ""
        mq = s.get("model_quality")
        if mq:
            rmse = (mq.get("metrics", {}).get("rmse") or {}).get("value")
            limit = (mq.get("constraints", {}).get("rmse") or {}).get("threshold")
            text += f"; model quality on {mq.get('item_count')} labelled records"
            if isinstance(rmse, (int, float)) and isinstance(limit, (int, float)):
                text += f": rmse {rmse:,.0f} (constraint <= {limit:,.0f})"
            names = ", ".join(v.get("metric_name", "?") for v in self.quality_violations)
            text += f", {len(self.quality_violations)} violations" + (f" ({names})" if names else "")
        return text


def widen_quality_constraints(baseline_dir: Path, tolerance: float) -> dict[str, float]:
    """Model Monitor suggests thresholds at the baseline's own metrics, which a small validation split makes
    noisy (a second sample of the same population is "worse" half the time). Widen them by ``tolerance`` (0.25:
    errors may grow 25 %): mae, rmse x (1 + t), mse x (1 + t)^2, r2 down to 1 - (1 - r2)(1 + t)^2 (the same error
    growth at the same label variance), as a user edits suggested constraints. The suggestion is kept beside."""
    path = baseline_dir / "constraints.json"
    doc = json.loads(path.read_text())
    (baseline_dir / "constraints.suggested.json").write_text(json.dumps(doc, indent=2) + "\n")
    factor = {"mae": 1 + tolerance, "rmse": 1 + tolerance, "mse": (1 + tolerance) ** 2}
    out = {}
    for name, c in doc["regression_constraints"].items():
        if name in factor:
            c["threshold"] = c["threshold"] * factor[name]
        elif name == "r2":
            c["threshold"] = 1 - (1 - c["threshold"]) * (1 + tolerance) ** 2
        out[name] = c["threshold"]
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return out


def report(runs: list[MonitorRun], out: Path, tables: Path | None = None) -> Path:
    """The HTML report; with ``tables`` (the analytics tables root) its trends come from the tables."""
    from monitoring.report import write_site

    return write_site([r.output for r in runs], out, tables)


def mileage_drift(run: MonitorRun) -> str | None:
    for v in run.violations:
        if v.get("feature_name") == "mileage" and v.get("constraint_check_type") == "baseline_drift_check":
            return v.get("description")
    return None
