"""``python -m monitoring.merge``: combine sharded monitoring runs (``ShardedByS3Key``: each instance monitors
its share of the files and writes profile_state.json) into one result, as if one job had read everything.

    python -m monitoring.merge --states shard*/profile_state.json --output-path merged/ \
        --baseline-statistics ... --baseline-constraints ... [--model-quality-constraints ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import DataError
from monitoring import analyze, constraints, jobenv
from monitoring.ingest import IngestResult
from monitoring.statistics import baseline_features, load_statistics

SETTINGS = (
    "output_path",
    "baseline_statistics",
    "baseline_constraints",
    "model_quality_constraints",
    "start_time",
    "end_time",
    "publish_cloudwatch_metrics",
    "sagemaker_endpoint_name",
    "sagemaker_monitoring_schedule_name",
    "batch_job_name",
    "history_path",
    "report",
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitoring.merge", description=__doc__.split("\n")[0])
    p.add_argument("--states", nargs="+", required=True, help="profile_state.json files (or folders holding one)")
    for name in SETTINGS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None)
    args = p.parse_args(argv)
    merged: IngestResult | None = None
    for raw in args.states:
        path = Path(raw)
        path = path / analyze.STATE_FILE if path.is_dir() else path
        try:
            state = IngestResult.from_state(json.loads(path.read_text()))
        except OSError as e:
            raise DataError(f"cannot read shard state: {e.strerror}", file=str(path)) from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise DataError(f"not a monitoring profile state ({type(e).__name__}: {e})", file=str(path)) from None
        if merged is None:
            merged = state
        elif [s.name for s in state.profile.specs] != [s.name for s in merged.profile.specs]:
            raise DataError("shard monitored other features than the first shard", file=str(path))
        else:
            merged.merge(state)
    assert merged is not None  # argparse requires at least one state
    output = Path(jobenv.setting(args, "output_path") or ".")
    stats_path = jobenv.setting(args, "baseline_statistics")
    cons_path = jobenv.setting(args, "baseline_constraints")
    if not stats_path or not cons_path:
        raise DataError("baseline_statistics and baseline_constraints are required to merge shards")
    baseline = baseline_features(load_statistics(stats_path), source=stats_path)
    cons = constraints.load(cons_path)
    mq_path = jobenv.setting(args, "model_quality_constraints")
    mq = json.loads(Path(mq_path).read_text()) if mq_path else None
    ctx = analyze.RunContext(
        output=output,
        endpoint=jobenv.setting(args, "sagemaker_endpoint_name"),
        batch_job=jobenv.setting(args, "batch_job_name"),
        schedule=jobenv.setting(args, "sagemaker_monitoring_schedule_name"),
        start=jobenv.time_setting(args, "start_time"),
        end=jobenv.time_setting(args, "end_time"),
        publish_metrics=jobenv.enabled_setting(args, "publish_cloudwatch_metrics", "Disabled"),
        metrics_dir=jobenv.cloudwatch_dir(),
    )
    summary = analyze.analyze(merged, ctx, baseline, cons, mq)
    (output / "constraints.json").write_bytes(Path(cons_path).read_bytes())  # as a single run's folder holds
    analyze.attach_report(summary, output, args)
    print(f"merged {len(args.states)} shards: {summary['records']} records, {len(summary['violations'])} violations")
    return 0


if __name__ == "__main__":
    sys.exit(jobenv.run_job(main))
