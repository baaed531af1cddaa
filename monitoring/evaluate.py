"""The pipeline's "evaluate drift" step, as a Lambda handler: read a monitoring run's violations, enrich them,
and publish ONE SNS message when there are violations - only after N consecutive violating runs if configured.

Event (every key optional except the run location)::

    {"output_uri": "s3://bucket/monitoring/car-prices/2024-01-01-10/",   # or a local folder
     "violations_uri": "s3://.../constraint_violations.json",            # instead of output_uri
     "topic_arn": "arn:aws:sns:...", "consecutive": 3,
     "state_uri": "s3://bucket/monitoring/state/car-prices.json",
     "endpoint": "...", "batch_job": "...", "schedule": "...", "window": {"start": ..., "end": ...}}

Environment fallbacks: DRIFT_TOPIC_ARN, ALERT_AFTER_CONSECUTIVE, ALERT_STATE_URI. boto3 honours
AWS_ENDPOINT_URL, so the same code runs against moto or LocalStack.

Where the consecutive-run counter lives: an S3 object next to the monitoring outputs, not SSM. The runs already
write to that bucket (one place, one IAM policy), S3 is strongly consistent for a read-then-write by the one
schedule that owns the key, and the state (a small JSON document with the last run id, so that a retried
Lambda does not count a run twice) needs no parameter-size or throughput limits to think about.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DRIFT_RE = re.compile(r"distance: (.+) exceeds threshold: (.+)")
METRIC_RE = re.compile(r"Metric (\S+) with (.+) was (\w+) (.+)")
SUBJECT_LIMIT = 100


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _s3():
    import boto3

    return boto3.client("s3")


def _read_json(uri: str) -> Any | None:
    """A JSON document from s3://... or a local path; None when it does not exist."""
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri)
        s3 = _s3()
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        return json.loads(body)
    path = Path(uri)
    return json.loads(path.read_text()) if path.exists() else None


def _write_json(uri: str, doc: Any) -> None:
    body = json.dumps(doc, indent=1).encode()
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri)
        _s3().put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    else:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_bytes(body)


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def enrich(violation: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    out = {
        "feature": violation.get("feature_name") or violation.get("metric_name"),
        "check": violation.get("constraint_check_type"),
        "description": violation.get("description", ""),
        "distance": None,
        "threshold": None,
        **context,
    }
    m = DRIFT_RE.search(out["description"])
    if m:
        out["distance"], out["threshold"] = _number(m.group(1)), _number(m.group(2))
    else:
        mm = METRIC_RE.search(out["description"])
        if mm:
            out["value"], out["threshold"] = _number(mm.group(2)), _number(mm.group(4).strip("'"))
    return out


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    output_uri = event.get("output_uri")
    violations_uri = event.get("violations_uri") or (output_uri and _join(output_uri, "constraint_violations.json"))
    if not violations_uri:
        raise ValueError("event needs 'output_uri' (the monitoring run's output) or 'violations_uri'")
    doc = _read_json(violations_uri)
    if doc is None:
        raise FileNotFoundError(f"no constraint_violations.json at {violations_uri}")
    raw = list(doc.get("violations", []))
    summary_doc: dict[str, Any] = {}
    if output_uri:
        mq = _read_json(_join(output_uri, "model_quality/constraint_violations.json"))
        raw += list((mq or {}).get("violations", []))
        summary_doc = _read_json(_join(output_uri, "monitoring_report.json")) or {}
    window = event.get("window") or summary_doc.get("window") or {}
    ctx = {
        "endpoint": event.get("endpoint") or summary_doc.get("endpoint"),
        "batch_job": event.get("batch_job") or summary_doc.get("batch_job"),
        "schedule": event.get("schedule") or summary_doc.get("monitoring_schedule"),
        "window_start": window.get("start"),
        "window_end": window.get("end"),
    }
    enriched = [enrich(v, ctx) for v in raw]

    needed = int(event.get("consecutive") or os.environ.get("ALERT_AFTER_CONSECUTIVE") or 1)
    state_uri = event.get("state_uri") or os.environ.get("ALERT_STATE_URI")
    run_id = output_uri or violations_uri
    streak = 1 if enriched else 0
    if state_uri:
        state = _read_json(state_uri) or {}
        previous = int(state.get("consecutive", 0))
        # a retried invocation for the same run must not count it twice
        retried = state.get("last_run") == run_id
        streak = previous if retried else (previous + 1 if enriched else 0)
        _write_json(state_uri, {"consecutive": streak, "last_run": run_id, "updated": _now()})

    # one message per N violating runs in a row (at N, 2N, ...): persistent drift is re-announced, not spammed
    alert = bool(enriched) and streak >= needed and (streak - needed) % needed == 0
    message_id = None
    if alert:
        topic = event.get("topic_arn") or os.environ.get("DRIFT_TOPIC_ARN")
        if not topic:
            raise ValueError("violations to report but no SNS topic: set 'topic_arn' or DRIFT_TOPIC_ARN")
        message_id = _publish(topic, enriched, ctx, streak, run_id)
    return {
        "drift_detected": bool(enriched),
        "violations": len(enriched),
        "features": sorted({v["feature"] for v in enriched if v["feature"]}),
        "consecutive_violating_runs": streak,
        "alert_after": needed,
        "alerted": message_id is not None,
        "message_id": message_id,
        "details": enriched,
        **ctx,
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _publish(topic: str, violations: list[dict[str, Any]], ctx: dict[str, Any], streak: int, run_id: str) -> str:
    import boto3

    target = ctx["endpoint"] or ctx["batch_job"] or "model"
    features = sorted({v["feature"] for v in violations if v["feature"]})
    subject = f"Drift on {target}: {len(violations)} violations ({', '.join(features)})"
    if len(subject) > SUBJECT_LIMIT:
        subject = subject[: SUBJECT_LIMIT - 3] + "..."
    message = {
        "summary": f"{len(violations)} constraint violations on {target} in window "
        f"{ctx['window_start']} - {ctx['window_end']} ({streak} consecutive violating runs)",
        "run": run_id,
        **ctx,
        "consecutive_violating_runs": streak,
        "violations": violations,
    }
    resp = boto3.client("sns").publish(TopicArn=topic, Subject=subject, Message=json.dumps(message, indent=1))
    return resp["MessageId"]
