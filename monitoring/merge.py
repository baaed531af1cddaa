"""``python -m monitoring.merge``: combine sharded monitoring runs into one result, as if one job had read
everything: the hosts of a multi-instance monitor job (each wrote ``hosts/<host>/profile_state.json``), or shards
run by hand (each instance monitors its share of the files and writes profile_state.json).

    python -m monitoring.merge --states RUN_OUTPUT/ --output-path merged/ \
        --baseline-statistics ... --baseline-constraints ... [--model-quality-constraints ...]

A folder given to ``--states`` holds a profile_state.json, or is searched for them (``hosts/*/``). States
written by the hosts of one job must cover every host that job listed, each once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import DataError
from monitoring import analyze, cluster, constraints, jobenv, monitor
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
    "fail_on_no_data",
)


def state_files(raw: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in raw:
        path = Path(item)
        if path.is_dir():
            if (path / analyze.STATE_FILE).is_file():
                found = [path / analyze.STATE_FILE]
            else:
                found = sorted(p for p in path.rglob(analyze.STATE_FILE) if p.is_file())
            if not found:
                raise DataError(f"no {analyze.STATE_FILE} in this folder or below it", file=str(path))
            files += found
        else:
            files.append(path)
    return files


def check_hosts(states: list[tuple[Path, dict]]) -> None:
    """The states of one multi-host job must be every host's, each once: a missing host is missing data."""
    shards = [(path, s["shard"]) for path, s in states if isinstance(s.get("shard"), dict)]
    if not shards:
        return
    if len(shards) != len(states):
        plain = next(path for path, s in states if not isinstance(s.get("shard"), dict))
        raise DataError(
            "a state written by one host of a multi-host job and one that was not: mixed runs", file=str(plain)
        )
    listed = shards[0][1]["hosts"]
    seen: dict[str, Path] = {}
    for path, shard in shards:
        if shard["hosts"] != listed:
            raise DataError(
                f"written by a job on hosts {shard['hosts']}, the first state's job ran on {listed}", file=str(path)
            )
        if shard["host"] in seen:
            raise DataError(
                f"host {shard['host']} has a second state (the first: {seen[shard['host']]})", file=str(path)
            )
        seen[shard["host"]] = path
    missing = [h for h in listed if h not in seen]
    if missing:
        raise DataError(
            f"the job ran on hosts {', '.join(listed)} but no state of {', '.join(missing)} was given "
            f"(each host writes {cluster.HOSTS_FOLDER}/<host>/{analyze.STATE_FILE})"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitoring.merge", description=__doc__.split("\n")[0])
    p.add_argument("--states", nargs="+", required=True, help="profile_state.json files (or folders holding one)")
    for name in SETTINGS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None)
    args = p.parse_args(argv)
    states: list[tuple[Path, dict]] = []
    for path in state_files(args.states):
        try:
            doc = json.loads(path.read_text())
        except OSError as e:
            raise DataError(f"cannot read shard state: {e.strerror}", file=str(path)) from None
        except json.JSONDecodeError as e:
            raise DataError(f"not a monitoring profile state ({type(e).__name__}: {e})", file=str(path)) from None
        if not isinstance(doc, dict):
            raise DataError("not a monitoring profile state (not a JSON object)", file=str(path))
        states.append((path, doc))
    check_hosts(states)
    merged: IngestResult | None = None
    for path, doc in states:
        try:
            state = IngestResult.from_state(doc)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"not a monitoring profile state ({type(e).__name__}: {e})", file=str(path)) from None
        if merged is None:
            merged = state
        elif [s.name for s in state.profile.specs] != [s.name for s in merged.profile.specs]:
            raise DataError("shard monitored other features than the first shard", file=str(path))
        else:
            merged.merge(state)
    assert merged is not None  # argparse requires at least one state
    digests = {(doc.get("shard") or {}).get("ground_truth") for _, doc in states}
    if len(digests) == 1 and None not in digests:
        # every host read the same (replicated) ground truth: its records count once, not once per host
        merged.ground_truth_records = max(int(doc["ground_truth_records"]) for _, doc in states)
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
    fail_on_no_data = jobenv.enabled_setting(args, "fail_on_no_data", "Enabled")
    output.mkdir(parents=True, exist_ok=True)
    if merged.profile.item_count == 0:
        monitor.finish_without_data(merged, f"{len(states)} shard states", output, fail_on_no_data)
        return 0
    summary = analyze.analyze(merged, ctx, baseline, cons, mq)
    (output / "constraints.json").write_bytes(Path(cons_path).read_bytes())  # as a single run's folder holds
    analyze.attach_report(summary, output, args)
    print(f"merged {len(states)} shards: {summary['records']} records, {len(summary['violations'])} violations")
    return 0


if __name__ == "__main__":
    sys.exit(jobenv.run_job(main))
