"""The lifecycle's steps in order, each printing one result line; the work dir layout; the closing summary."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analytics import query
from lifecycle import data, realtime, watch
from lifecycle.progress import Progress, StepFailed
from pipelines import events
from pipelines.local.execute import PREFIX, LocalAws
from pipelines.local.runners import Runner

ALGORITHMS = ("xgboost", "linear")
MARKER = ".lifecycle-workdir"
STEPS = 5


@dataclass(frozen=True)
class Options:
    workdir: Path
    data: Path
    rmse_threshold: float
    rule: str
    sampling: float
    quality_tolerance: float  # fraction: 0.25 lets the error metrics grow 25 % over the validation baseline
    monitor_instances: int = 1  # instances per monitor job (above 1: sharded captures, then a merge job)


def prepare_workdir(work: Path) -> None:
    """A fresh work dir; an existing folder is wiped only when an earlier run made it (marker file)."""
    if work.exists():
        ours = (work / MARKER).is_file() or (work / "summary.json").is_file()  # summary.json: earlier versions
        if not ours and any(work.iterdir()):
            raise StepFailed(
                f"--workdir {work} exists, is not empty and was not made by this command ({MARKER} missing)"
            )
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / MARKER).write_text("made by python -m lifecycle; wiped at the start of every run\n")


def run(options: Options, runner: Runner, progress: Progress) -> dict[str, Any]:
    work = options.workdir
    art: dict[str, Path] = {}  # what the closing list shows
    summary: dict[str, Any] = {"runner": runner.name, "workdir": str(work)}
    overrides = {"RmseThreshold": options.rmse_threshold, "CaptureSamplingPercentage": round(options.sampling)}
    with LocalAws(work / "aws", runner, training_overrides=overrides) as aws:
        _run(options, runner, progress, aws, work, art, summary)
    summary["artifacts"] = {k: str(v) for k, v in art.items()}
    summary["timings"] = {name: round(t, 2) for name, t in progress.timings}
    (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    art["this run's summary"] = work / "summary.json"
    progress.say("\nArtifacts:")
    width = max(len(k) for k in art)
    for key, path in art.items():
        progress.say(f"  {key:<{width}}  {path}")
    return summary


def _train(options: Options, progress: Progress, aws: LocalAws, work: Path, art: dict, summary: dict) -> dict:
    """Step 1: the training data lands in S3; its EventBridge rules start the training state machine once per
    algorithm; what they deployed is downloaded for the steps after."""
    started = aws.put(options.data, f"{events.TRAINING_PREFIX}{options.data.name}")
    executions = {}
    for rule, arn in started:
        result = aws.follow(arn)
        algorithm = rule.removeprefix("new-training-data-")
        progress.detail(f"{algorithm}: rule {rule} started execution {result.name}")
        for state in result.states:
            progress.detail(f"  {state.name:<30} {state.seconds or 0:6.1f} s")
        executions[algorithm] = result
    messages = [m for r in executions.values() for m in r.messages]
    for message in messages:
        progress.detail(f"SNS: {message['Subject']}")
    for algorithm, result in executions.items():
        if result.status != "SUCCEEDED" or not isinstance(result.output, dict) or "EndpointName" not in result.output:
            mine = [m["Message"] for m in messages if f" {algorithm} " in m["Subject"]]
            why = mine[-1] if mine else f"{result.error}: {result.cause}"
            raise StepFailed(f"the {algorithm} training pipeline deployed nothing ({result.status}): {why}")
        m = result.output["Metrics"]
        progress.detail(
            f"{algorithm:<8} deployed: test rmse {m['test:rmse']:,.1f}  mae {m['test:mae']:,.1f}  "
            f"r2 {m['test:r2']:.4f} -> endpoint {result.output['EndpointName']} ({result.seconds:.1f} s)"
        )
    summary["pipeline"] = {
        a: {"status": r.status, "seconds": round(r.seconds, 2), "deployment": r.output,
            "states": [[s.name, round(s.seconds or 0, 2)] for s in r.states],
            "notifications": [m["Subject"] for m in messages if f" {a} " in m["Subject"]]}
        for a, r in executions.items()
    }  # fmt: skip
    deployed = {a: r.output for a, r in sorted(executions.items(), key=lambda x: ALGORITHMS.index(x[0]))}
    first = deployed[ALGORITHMS[0]]
    splits, baselines = work / "splits", work / "baselines"
    aws.download(first["SchemaUri"].rsplit("/train/", 1)[0], splits)
    aws.download(first["DataQualityBaselineUri"], baselines / "data")
    for a, record in deployed.items():
        aws.download(record["ModelQualityBaselineUri"], baselines / f"quality-{a}")
        aws.extract(record["ModelArtifacts"], work / "models" / a / "model")
    art["state machine executions"] = work / "aws"
    art["splits + schema.json"] = splits
    art["deployed models"] = work / "models"
    return deployed


def _run(options, runner, progress, aws: LocalAws, work: Path, art: dict, summary: dict) -> None:
    # 1 -------------------------------------------------------------------------------------------------------
    with progress.step("pipeline", "training pipeline: new data in S3 -> EventBridge -> the state machine") as r:
        deployed = _train(options, progress, aws, work, art, summary)
        r.ok(", ".join(f"{a} deployed to {d['EndpointName']} (rmse {d['Rmse']:,.1f})" for a, d in deployed.items()))
    splits, baselines = work / "splits", work / "baselines"

    # 2 -------------------------------------------------------------------------------------------------------
    with progress.step("baselines", "baselines: model-quality constraints widened for a small split") as r:
        lines = []
        for algorithm, record in deployed.items():
            folder = baselines / f"quality-{algorithm}"
            m = json.loads((folder / "statistics.json").read_text())
            limits = watch.widen_quality_constraints(folder, options.quality_tolerance)
            aws.upload(folder / "constraints.json", aws.key(record["ModelQualityBaselineUri"]) + "/constraints.json")
            rmse = m["regression_metrics"]["rmse"]["value"]
            lines.append(f"{algorithm} validation rmse {rmse:,.1f}")
            progress.detail(
                f"{algorithm:<8} model quality: validation rmse {rmse:,.1f} -> constraint rmse <= "
                f"{limits['rmse']:,.1f}, r2 >= {limits['r2']:.4f} (+{options.quality_tolerance:.0%} tolerance; "
                "the edited constraints.json replaces the suggested one in S3)"
            )
        art["baselines"] = baselines
        r.ok("; ".join(lines))

    # 3 -------------------------------------------------------------------------------------------------------
    capture_dir, truth_dir = work / "capture", work / "ground_truth"
    test = data.Split.read(splits / "test", "test")
    sagemaker = aws.sagemaker
    if sagemaker is None:  # set while LocalAws's with block runs, which holds this whole function
        raise RuntimeError("the local AWS is not running")
    urls = {a: sagemaker.endpoint_url(realtime.ENDPOINTS[a]) for a in ALGORITHMS}
    with progress.step("realtime", "real time: combiner Lambda + endpoints behind data capture") as r:
        # the combiner configured as the template deploys it: endpoint names from the SSM deployment records
        records = {a: f"/{PREFIX}/{a}/deployment" for a in ALGORITHMS}
        traffic = realtime.run(urls, test, options.rule, records)  # the endpoints capture, as their config says
        sagemaker.flush_capture()
        aws.download(deployed["xgboost"]["CaptureUri"], capture_dir)
        captured = {a: {"captured": realtime.count_captured(capture_dir / realtime.ENDPOINTS[a])}
                    for a in ALGORITHMS}  # fmt: skip
        truth = data.write_ground_truth(traffic.labelled, truth_dir, datetime.now(UTC))
        for endpoint in realtime.ENDPOINTS.values():  # where the monitoring pipeline looks for it
            aws.upload(truth, f"pipelines/ground-truth/{endpoint}/{truth.relative_to(truth_dir)}")
        progress.detail(
            f"combiner (COMBINE_RULE={options.rule}), {len(traffic.table) - 1} test records; "
            "CSV, JSON and JSON Lines requests got the same answer:"
        )
        for line in traffic.table:
            progress.detail("  " + line)
        n_captured = sum(c.get("captured", 0) for c in captured.values())
        summary["realtime"] = {
            "requests": traffic.requests,
            "captured": captured,
            "combined_checked": traffic.combined_checked,
            "predictions": traffic.predictions,
            "table": traffic.table,
        }
        art["data capture"] = capture_dir
        art["ground truth"] = truth_dir
        r.ok(
            f"{traffic.requests} requests ({len(test.rows)} test records with an InferenceId to each endpoint, "
            f"3 through the combiner); {n_captured} capture lines; {len(traffic.labelled)} ground-truth labels"
        )

    # 4 -------------------------------------------------------------------------------------------------------
    batch_dir = work / "batch"
    with progress.step("batch", "batch scoring pipeline: scoring files in S3 -> EventBridge -> both models") as r:
        files = {
            "scoring": data.write_scoring(test, batch_dir / "input" / "scoring.csv"),
            "scoring-drifted": data.write_scoring(
                test, batch_dir / "input" / "scoring-drifted.csv", data.drifted_rows(test)
            ),
        }
        scored: dict[str, dict[str, Path]] = {}
        executions: dict[str, str] = {}  # scoring execution -> the file it scored (names the monitor runs)
        for name, path in files.items():
            ((_rule, arn),) = aws.put(path, f"{events.SCORING_PREFIX}{path.name}")
            result = aws.follow(arn)
            for message in result.messages:
                progress.detail(f"SNS: {message['Subject']}")
            if result.status != "SUCCEEDED":
                why = result.messages[-1]["Message"] if result.messages else f"{result.error}: {result.cause}"
                raise StepFailed(f"scoring {path.name} failed: {why}")
            scored[name], executions[result.name] = {}, name
            for output in result.output["Outputs"]:
                algorithm = output["OutputUri"].split("/scored/", 1)[1].split("/")[0]
                folder = batch_dir / name / algorithm
                aws.download(output["OutputUri"], folder)
                scored[name][algorithm] = folder / f"{path.name}.out"
            progress.detail(
                f"{path.name}: execution {result.name} ({result.seconds:.1f} s), "
                + ", ".join(f"{a} -> {p.relative_to(work)}" for a, p in scored[name].items())
            )
        lines = scored["scoring"]["xgboost"].read_text().splitlines()
        if len(lines) != len(test.rows):
            raise StepFailed(f"{scored['scoring']['xgboost']} holds {len(lines)} lines for {len(test.rows)} records")
        progress.detail("id, features, prediction (InputFilter $[1:], JoinSource Input, OutputFilter $):")
        for line in lines[:3]:
            progress.detail("  " + line)
        summary["batch"] = {n: {a: str(p) for a, p in files_.items()} for n, files_ in scored.items()}
        art["batch outputs"] = batch_dir
        r.ok(f"{len(files)} files x {len(scored['scoring'])} models, {len(lines)} records each")

    # 5 -------------------------------------------------------------------------------------------------------
    monitoring = work / "monitoring"
    with progress.step("monitor", "monitoring pipeline: the schedule fires; drift alerts; retraining loop") as r:
        retrain = aws.monitoring_input(f"s3://{aws.bucket}/{events.TRAINING_PREFIX}{options.data.name}")["Retrain"]
        result = aws.follow(aws.trigger_schedule(Retrain=retrain, MonitorInstanceCount=options.monitor_instances))
        if result.status != "SUCCEEDED":
            why = result.messages[-1]["Message"] if result.messages else f"{result.error}: {result.cause}"
            raise StepFailed(f"the monitoring pipeline failed: {why}")
        runs = []
        for item in result.output["Results"]:
            name = item["Name"]  # batch-<algorithm>-<scoring execution>: named after the file here
            for execution, file in executions.items():
                name = name.replace(execution, file)
            folder = monitoring / "runs" / name
            aws.download(item["OutputUri"], folder)
            runs.append(watch.MonitorRun(name, folder, json.loads((folder / "monitoring_report.json").read_text())))
        for run_ in runs:
            progress.detail(run_.line())
        drift = watch.mileage_drift(next(r_ for r_ in runs if r_.name == "batch-xgboost-scoring-drifted"))
        progress.detail(f"drifted batch, mileage: {drift or 'NO baseline_drift_check violation'}")
        for message in result.messages:
            progress.detail(f"SNS: {message['Subject']}")
        sfn = aws.client("stepfunctions")
        retraining = [
            aws.follow(e["executionArn"])
            for e in sfn.list_executions(stateMachineArn=aws.machines["training"])["executions"]
            if e["name"].endswith(result.name)
        ]
        for retrained in retraining:
            progress.detail(f"retraining {retrained.name}: {retrained.status}, {retrained.visited()[-1]}")
            for message in retrained.messages:
                progress.detail(f"SNS: {message['Subject']}")
        tables = work / "analytics"  # what the scoring and monitoring pipelines appended (Athena's tables in AWS)
        aws.download(f"{aws.artifacts}/analytics", tables)
        summary["analytics"] = {}
        con = query.connect(tables)
        for name in ("drifted_features", "drift_alert_records"):
            columns, rows = query.run_named(con, name)
            summary["analytics"][name] = {"columns": columns, "rows": [[str(v) for v in r] for r in rows]}
            progress.detail(f"analytics query {name} (DuckDB over {tables.relative_to(work)}):")
            for line in query.format_rows(columns, rows[:4]).splitlines():
                progress.detail("  " + line)
        index = watch.report(runs, monitoring / "report", tables)
        art["analytics tables"] = tables
        summary["monitoring"] = {run_.name: run_.brief() for run_ in runs}
        summary["monitoring_execution"] = {
            "name": result.name, "drift": result.output["Drift"], "results": result.output["Results"],
            "notifications": [m["Subject"] for m in result.messages],
            "retraining": [{"name": e.name, "status": e.status, "end": e.visited()[-1]} for e in retraining],
        }  # fmt: skip
        summary["report"] = str(index)
        art["monitoring outputs"] = monitoring / "runs"
        art["monitoring report"] = index
        r.ok(
            f"{len(runs)} sources monitored; drift {'found' if result.output['Drift'] else 'not found'}; "
            f"{len(retraining)} retraining run(s) started; report {index}"
        )
