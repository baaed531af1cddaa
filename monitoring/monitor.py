"""``python -m monitoring.monitor``: one monitoring run, driven by Model Monitor's environment variables.

Environment (each also a ``--flag``): dataset_source, dataset_format, output_path, baseline_statistics,
baseline_constraints, start_time, end_time, publish_cloudwatch_metrics, sagemaker_endpoint_name,
sagemaker_monitoring_schedule_name; ours: ground_truth_source, schema_path, model_quality_constraints,
batch_job_name, id_columns, label_first, output_columns_position (END or START), bookmark_path (or
``bookmark=Disabled``), s3_prefix_map, kll_k, history_path (earlier runs, for the report's trends), report
(Enabled/Disabled), fail_on_no_data (Enabled, Model Monitor's behaviour, or Disabled).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from core.errors import ConfigurationError, DataError
from core.schema import FILENAME as SCHEMA_FILE
from core.schema import Schema
from monitoring import analyze, constraints, jobenv
from monitoring.bookmark import Bookmark
from monitoring.ingest import Source, ingest, read_prefix_map
from monitoring.readers import Layout, Window
from monitoring.sketches import DEFAULT_K
from monitoring.statistics import FeatureSpec, baseline_features, load_statistics, specs_from_schema

log = logging.getLogger("monitoring")
BOOKMARK_FILE = "monitor_bookmark.json"
ENV_NAMES = (
    "dataset_source",
    "dataset_format",
    "output_path",
    "baseline_statistics",
    "baseline_constraints",
    "start_time",
    "end_time",
    "publish_cloudwatch_metrics",
    "sagemaker_endpoint_name",
    "sagemaker_monitoring_schedule_name",
    "ground_truth_source",
    "schema_path",
    "model_quality_constraints",
    "batch_job_name",
    "id_columns",
    "label_first",
    "bookmark_path",
    "bookmark",
    "s3_prefix_map",
    "kll_k",
    "history_path",
    "report",
    "output_columns_position",
    "fail_on_no_data",
    "record_preprocessor_script",
    "post_analytics_processor_script",
)
# Model Monitor runs these user scripts inside its own container; this monitor runs no user code (see README).
USER_SCRIPTS = ("record_preprocessor_script", "post_analytics_processor_script")


def parser() -> argparse.ArgumentParser:
    return jobenv.parser("python -m monitoring.monitor", __doc__.split("\n")[0], ENV_NAMES)


def required_path(args: Any, name: str) -> Path:
    value = jobenv.setting(args, name)
    if value is None:
        raise ConfigurationError(f"{name} is not set (environment variable or --{name.replace('_', '-')})")
    return Path(value)


def features_from(args: Any, baseline_doc: dict[str, Any], source: Path) -> list[FeatureSpec]:
    """The schema decides column order for headerless CSV; without one, the baseline's feature order."""
    schema_path = jobenv.setting(args, "schema_path")
    candidates = [Path(schema_path)] if schema_path else []
    candidates += [source / SCHEMA_FILE] if source.is_dir() else [source.parent / SCHEMA_FILE]
    for cand in candidates:
        if cand.exists():
            return specs_from_schema(Schema.load(cand))
        if schema_path and cand == Path(schema_path):
            raise DataError("schema_path does not exist", file=str(cand))
    return [
        FeatureSpec(f["name"], f.get("inferred_type") in ("Integral", "Fractional"))
        for f in baseline_doc["features"]
        if isinstance(f, dict) and "name" in f
    ]


def source_kind(fmt: dict[str, Any]) -> str:
    if not fmt:
        return "auto"
    kind = next(iter(fmt))
    if kind == "sagemakerCaptureJson":
        return "capture"
    if kind == "csv":
        jobenv.csv_header(fmt)  # validated here, used by the layout
        return "csv"
    return "jsonl" if kind == "json" else "parquet"


def _refuse_user_scripts(args: Any) -> None:
    for name in USER_SCRIPTS:
        if jobenv.setting(args, name):
            raise ConfigurationError(
                f"{name}: not supported: this monitor runs no user code. Its readers already decode CSV, JSON, "
                "JSON Lines and base64 payloads and batch output; flatten other records before capture, or "
                "post-process the outputs (statistics.json, constraint_violations.json) in a step of your own"
            )


def _output_first(args: Any) -> bool:
    raw = str(jobenv.setting(args, "output_columns_position", "END")).strip().upper()
    if raw not in ("START", "END"):
        raise ConfigurationError(f"output_columns_position: expected START or END, received {raw!r}")
    return raw == "START"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _refuse_user_scripts(args)
    source = required_path(args, "dataset_source")
    output = required_path(args, "output_path")
    stats_path = required_path(args, "baseline_statistics")
    constraints_path = required_path(args, "baseline_constraints")
    for name, path in (("baseline_statistics", stats_path), ("baseline_constraints", constraints_path)):
        if not path.is_file():
            raise DataError(f"{name} file not found", file=str(path))
    baseline_doc = load_statistics(stats_path)
    baseline = baseline_features(baseline_doc, source=str(stats_path))
    cons = constraints.load(constraints_path)
    mq_path = jobenv.setting(args, "model_quality_constraints")
    mq_constraints = None
    if mq_path:
        try:
            mq_constraints = json.loads(Path(mq_path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"cannot read model quality constraints: {e}", file=mq_path) from None
    fmt = jobenv.dataset_format(args)
    start, end = jobenv.time_setting(args, "start_time"), jobenv.time_setting(args, "end_time")
    if start and end and end <= start:
        raise ConfigurationError(f"end_time {jobenv.setting(args, 'end_time')} is not after start_time")
    gt = jobenv.setting(args, "ground_truth_source")
    src = Source(
        root=source,
        kind=source_kind(fmt),
        layout=Layout(
            tuple(features_from(args, baseline_doc, source)),
            id_columns=jobenv.int_setting(args, "id_columns", 0),
            label_first=jobenv.enabled_setting(args, "label_first", "Disabled"),
            output_first=_output_first(args),
            header=bool(jobenv.csv_header(fmt)),
        ),
        window=Window(start, end),
        ground_truth=Path(gt) if gt else None,
        prefix_map=read_prefix_map(jobenv.setting(args, "s3_prefix_map")),
        k=jobenv.int_setting(args, "kll_k", DEFAULT_K, minimum=8),
    )
    if not source.exists():
        raise DataError("dataset_source does not exist", file=str(source))
    use_bookmark = jobenv.enabled_setting(args, "bookmark", "Enabled")
    bm_path = Path(jobenv.setting(args, "bookmark_path", output / BOOKMARK_FILE)) if use_bookmark else None
    bookmark = Bookmark.load(bm_path)
    publish = jobenv.enabled_setting(args, "publish_cloudwatch_metrics", "Disabled")
    fail_on_no_data = jobenv.enabled_setting(args, "fail_on_no_data", "Enabled")

    result = ingest(src, bookmark)
    output.mkdir(parents=True, exist_ok=True)
    if result.profile.item_count == 0:
        # Model Monitor fails such an execution ("Job inputs had no data"); fail_on_no_data=Disabled says
        # "nothing new" and succeeds, for schedules that run more often than data arrives
        message = _no_data_message(result, source, fail_on_no_data)
        no_data = {
            "version": 1,
            "status": "Failed" if fail_on_no_data else "NoNewData",
            "message": message,
            "files_read": len(result.files_read),
            "files_skipped_by_bookmark": result.files_skipped,
            "records_outside_window": result.records_outside_window,
            "malformed": {"count": result.bad.count, "examples": result.bad.examples},
        }
        # only the run summary: no statistics or violations that could be mistaken for a clean result
        analyze.write_json(output / analyze.SUMMARY_FILE, no_data)
        bookmark.save()
        if fail_on_no_data:
            raise DataError(message)
        print(message)
        return 0
    ctx = analyze.RunContext(
        output=output,
        endpoint=jobenv.setting(args, "sagemaker_endpoint_name"),
        batch_job=jobenv.setting(args, "batch_job_name"),
        schedule=jobenv.setting(args, "sagemaker_monitoring_schedule_name"),
        start=start,
        end=end,
        publish_metrics=publish,
        metrics_dir=jobenv.cloudwatch_dir(),
    )
    summary = analyze.analyze(result, ctx, baseline, cons, mq_constraints)
    # Model Monitor's run folder also holds the constraints it checked against
    (output / "constraints.json").write_bytes(constraints_path.read_bytes())
    analyze.attach_report(summary, output, args)
    bookmark.save()
    n_v = len(summary["violations"]) + len((summary.get("model_quality") or {}).get("violations", []))
    print(
        f"monitored {summary['records']} records from {summary['files_read']} files "
        f"({result.bad.count} malformed lines skipped): {n_v} violations; outputs in {output}"
    )
    return 0


def _no_data_message(result: Any, source: Path, failing: bool) -> str:
    lead = "Job inputs had no data: nothing to monitor" if failing else "No new data to monitor"
    parts = [f"{lead} in {source}:"]
    parts.append(f"{len(result.files_read)} new files read, {result.files_skipped} already processed (bookmark)")
    if result.records_outside_window:
        parts.append(f"{result.records_outside_window} records outside the time window")
    if result.bad.count:
        parts.append(f"{result.bad.count} malformed lines")
    tail = " (fail_on_no_data=Disabled makes this a success)" if failing else "; exiting successfully"
    return " ".join(parts[:1]) + " " + ", ".join(parts[1:]) + tail + "."


if __name__ == "__main__":
    sys.exit(jobenv.run_job(main))
