"""Monitoring: the monitor job over real-time captures and batch outputs, the pipeline's "evaluate drift" step
run locally, and the HTML report over every run.

The evaluate step (monitoring.evaluate.handler, a Lambda) publishes to SNS and has no local mode; here it runs
unchanged except for the publisher, which prints the message it would send and keeps it beside the run
(``sns_message.json``) instead of calling SNS.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lifecycle.progress import StepFailed
from pipelines.local.jobs import ProcessingJob
from pipelines.local.runners import Runner

CAPTURE_FORMAT = '{"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}}'
BATCH_FORMAT = '{"csv": {"header": false}}'
SCHEDULE = "lifecycle"
LOCAL_TOPIC = "local:dry-run"


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


@dataclass(frozen=True)
class Target:
    """What one monitor run reads: real-time captures of an endpoint (with a time window, and ground truth for
    model quality) or a batch job's joined output (id column first)."""

    name: str
    dataset: Path
    model_dir: Path  # its schema.json names the columns of headerless CSV
    target: str  # endpoint or batch job name
    batch: bool = False
    window: tuple[datetime, datetime] | None = None
    ground_truth: Path | None = None
    quality_baseline: Path | None = None


def monitor(runner: Runner, jobs_dir: Path, runs_dir: Path, t: Target, data_baseline: Path) -> MonitorRun:
    inputs = {"dataset": t.dataset, "baseline": data_baseline, "model": t.model_dir}
    inp = ProcessingJob.input_path
    env = {
        "dataset_source": inp("dataset"),
        "dataset_format": BATCH_FORMAT if t.batch else CAPTURE_FORMAT,
        "baseline_statistics": f"{inp('baseline')}/statistics.json",
        "baseline_constraints": f"{inp('baseline')}/constraints.json",
        "schema_path": f"{inp('model')}/schema.json",  # the schema travels with the model: no header guessing
        "publish_cloudwatch_metrics": "Disabled",
        "fail_on_no_data": "Disabled",  # a rerun over already-read data is expected here, not a failure
        "sagemaker_monitoring_schedule_name": SCHEDULE,
        ("batch_job_name" if t.batch else "sagemaker_endpoint_name"): t.target,
    }
    if t.batch:
        env["id_columns"] = "1"
    if t.window:
        env["start_time"], env["end_time"] = (x.strftime("%Y-%m-%dT%H:%M:%SZ") for x in t.window)
    if t.ground_truth and t.quality_baseline:
        inputs.update(groundtruth=t.ground_truth, quality=t.quality_baseline)
        env["ground_truth_source"] = inp("groundtruth")
        env["model_quality_constraints"] = f"{inp('quality')}/constraints.json"
    output = runs_dir / t.name
    result = runner.monitor(jobs_dir / f"monitor-{t.name}", inputs, output, env)
    if not result.ok:
        raise StepFailed(f"monitor job {t.name}: {result.reason()}", result.log)
    try:
        summary = json.loads((output / "monitoring_report.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StepFailed(f"monitor job {t.name} left no readable monitoring_report.json ({e})", result.log) from None
    return MonitorRun(t.name, output, summary)


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


@contextlib.contextmanager
def _local_publisher(sent: list[dict[str, Any]]) -> Iterator[None]:
    from monitoring import evaluate

    def publish(topic: str, violations: list, ctx: dict, streak: int, run_id: str) -> str:
        message = {"topic": topic, "run": run_id, "consecutive_violating_runs": streak, **ctx, "violations": violations}
        Path(run_id, "sns_message.json").write_text(json.dumps(message, indent=1) + "\n")
        sent.append(message)
        return f"dry-run-{len(sent)}"

    original = evaluate._publish
    evaluate._publish = publish
    try:
        yield
    finally:
        evaluate._publish = original


def evaluate(runs: list[MonitorRun], state_dir: Path) -> list[dict[str, Any]]:
    """monitoring.evaluate.handler per run (state per target, so N-consecutive counting works across reruns)."""
    from monitoring import evaluate as ev

    summaries = []
    sent: list[dict[str, Any]] = []
    with _local_publisher(sent):
        for run in runs:
            if run.summary.get("status") == "NoNewData":
                continue
            event = {
                "output_uri": str(run.output),
                "topic_arn": LOCAL_TOPIC,
                "state_uri": str(state_dir / f"{run.name}.json"),
            }
            summaries.append({"run": run.name, **ev.handler(event)})
    return summaries


def report(runs: list[MonitorRun], out: Path) -> Path:
    from monitoring.report import write_site

    return write_site([r.output for r in runs], out)


def mileage_drift(run: MonitorRun) -> str | None:
    for v in run.violations:
        if v.get("feature_name") == "mileage" and v.get("constraint_check_type") == "baseline_drift_check":
            return v.get("description")
    return None
