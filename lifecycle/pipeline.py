"""The lifecycle's steps in order, each printing one result line; the work dir layout; the closing summary."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lifecycle import batch, data, realtime, watch
from lifecycle.progress import Progress, StepFailed
from pipelines.local.execute import LocalAws
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
    jobs = work / "jobs"  # one /opt/ml tree per monitoring job
    art: dict[str, Path] = {}  # what the closing list shows
    summary: dict[str, Any] = {"runner": runner.name, "workdir": str(work)}
    with LocalAws(work / "aws", runner) as aws:
        _run(options, runner, progress, aws, work, jobs, art, summary)
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
    """Step 1: one execution of the training state machine per algorithm; what they deployed, downloaded."""
    data_uri = aws.upload(options.data, f"data/training/{options.data.name}")
    executions = {}
    for algorithm in ALGORITHMS:
        payload = aws.training_input(
            algorithm,
            data_uri,
            RmseThreshold=options.rmse_threshold,
            CaptureSamplingPercentage=round(options.sampling),
        )
        name = f"{algorithm}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        progress.detail(f"{algorithm}: execution {name} of the training state machine")
        result = aws.execute("training", payload, name)
        for state in result.states:
            progress.detail(f"  {state.name:<30} {state.seconds or 0:6.1f} s")
        for message in result.messages:
            progress.detail(f"  SNS: {message['Subject']}")
        executions[algorithm] = result
        if result.status != "SUCCEEDED" or not isinstance(result.output, dict) or "EndpointName" not in result.output:
            why = result.messages[-1]["Message"] if result.messages else f"{result.error}: {result.cause}"
            raise StepFailed(f"the {algorithm} training pipeline deployed nothing ({result.status}): {why}")
        m = result.output["Metrics"]
        progress.detail(
            f"  deployed: test rmse {m['test:rmse']:,.1f}  mae {m['test:mae']:,.1f}  r2 {m['test:r2']:.4f}"
            f" -> endpoint {result.output['EndpointName']} ({result.seconds:.1f} s)"
        )
    summary["pipeline"] = {
        a: {"status": r.status, "seconds": round(r.seconds, 2), "deployment": r.output,
            "states": [[s.name, round(s.seconds or 0, 2)] for s in r.states],
            "notifications": [m["Subject"] for m in r.messages]}
        for a, r in executions.items()
    }  # fmt: skip
    deployed = {a: r.output for a, r in executions.items()}
    first = deployed[ALGORITHMS[0]]
    splits, baselines = work / "splits", work / "baselines"
    aws.download(first["DataQualityBaselineUri"].rsplit("/baselines/", 1)[0] + "/preprocessed", splits)
    aws.download(first["DataQualityBaselineUri"], baselines / "data")
    for a, record in deployed.items():
        aws.download(record["ModelQualityBaselineUri"], baselines / f"quality-{a}")
        aws.extract(record["ModelArtifacts"], work / "models" / a / "model")
    art["state machine executions"] = work / "aws"
    art["splits + schema.json"] = splits
    art["deployed models"] = work / "models"
    return deployed


def _run(options, runner, progress, aws: LocalAws, work: Path, jobs: Path, art: dict, summary: dict) -> None:
    # 1 -------------------------------------------------------------------------------------------------------
    with progress.step("pipeline", "training pipeline: the state machine, once per algorithm (Step Functions)") as r:
        deployed = _train(options, progress, aws, work, art, summary)
        r.ok(", ".join(f"{a} deployed to {d['EndpointName']} (rmse {d['Rmse']:,.1f})" for a, d in deployed.items()))
    splits, baselines = work / "splits", work / "baselines"
    serving = {a: work / "models" / a for a in ALGORITHMS}

    # 2 -------------------------------------------------------------------------------------------------------
    with progress.step("baselines", "baselines: the pipeline's, model quality widened for a small split") as r:
        lines = []
        for algorithm in ALGORITHMS:
            m = json.loads((baselines / f"quality-{algorithm}" / "statistics.json").read_text())
            limits = watch.widen_quality_constraints(baselines / f"quality-{algorithm}", options.quality_tolerance)
            rmse = m["regression_metrics"]["rmse"]["value"]
            lines.append(f"{algorithm} validation rmse {rmse:,.1f}")
            progress.detail(
                f"{algorithm:<8} model quality: validation rmse {rmse:,.1f} -> constraint rmse <= "
                f"{limits['rmse']:,.1f}, r2 >= {limits['r2']:.4f} (+{options.quality_tolerance:.0%} tolerance)"
            )
        art["baselines"] = baselines
        r.ok("; ".join(lines))

    # Requests go to the endpoints (their capture proxies); batch transforms straight to the model servers, as a
    # transform job's own containers are not behind the endpoint's data capture.
    urls = {a: aws.sagemaker.endpoint_url(realtime.ENDPOINTS[a]) for a in ALGORITHMS}
    servers = {a: aws.sagemaker.server_url(realtime.ENDPOINTS[a]) for a in ALGORITHMS}

    # 3 ---------------------------------------------------------------------------------------------------
    capture_dir, truth_dir = work / "capture", work / "ground_truth"
    test = data.Split.read(splits / "test", "test")
    with progress.step("realtime", "real time: combiner Lambda + endpoints behind data capture") as r:
        traffic = realtime.run(urls, test, options.rule)  # the endpoints capture, as their config says
        aws.sagemaker.flush_capture()
        aws.download(deployed["xgboost"]["CaptureUri"], capture_dir)
        captured = {a: {"captured": realtime.count_captured(capture_dir / realtime.ENDPOINTS[a])}
                    for a in ALGORITHMS}  # fmt: skip
        data.write_ground_truth(traffic.labelled, truth_dir, datetime.now(UTC))
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

    # 4 ---------------------------------------------------------------------------------------------------
    batch_dir = work / "batch"
    with progress.step("batch", "batch transform: scoring file with record ids, filters and join") as r:
        scoring = data.write_scoring(test, batch_dir / "input" / "scoring.csv")
        out = batch.transform(servers["xgboost"], scoring, batch_dir / "output")
        lines = out.read_text().splitlines()
        if len(lines) != len(test.rows):
            raise StepFailed(f"{out} holds {len(lines)} lines for {len(test.rows)} records")
        progress.detail("--input-filter '$[1:]' --join-source Input --output-filter '$[0,-1]' (id,prediction):")
        for line in lines[:3]:
            progress.detail("  " + line)
        # for the monitor: the whole joined record (id, features, prediction), real and drifted
        joined = batch.transform(servers["xgboost"], scoring, batch_dir / "joined", batch.WHOLE_RECORD)
        drifted_in = data.write_scoring(
            test, batch_dir / "drifted-input" / "scoring-drifted.csv", data.drifted_rows(test)
        )
        drifted = batch.transform(servers["xgboost"], drifted_in, batch_dir / "drifted", batch.WHOLE_RECORD)
        art["batch output (id,prediction)"] = out
        art["batch output (joined)"] = joined
        art["drifted batch output"] = drifted
        r.ok(f"{len(lines)} records scored by xgboost: {out}")

    # 5 -----------------------------------------------------------------------------------------------------------
    monitoring = work / "monitoring"
    with progress.step("monitor", "monitoring: data and model drift on real-time captures and batch outputs") as r:
        start = traffic.start.replace(microsecond=0)
        end = traffic.end.replace(microsecond=0) + timedelta(seconds=1)  # capture times have whole seconds
        targets = [
            watch.Target(
                f"realtime-{a}", capture_dir / realtime.ENDPOINTS[a], serving[a] / "model", realtime.ENDPOINTS[a],
                window=(start, end), ground_truth=truth_dir, quality_baseline=baselines / f"quality-{a}",
            )
            for a in ALGORITHMS
        ] + [
            watch.Target(name, batch_dir / folder, serving["xgboost"] / "model", f"car-prices-{name}", batch=True)
            for name, folder in (("batch", "joined"), ("batch-drifted", "drifted"))
        ]  # fmt: skip
        runs = [watch.monitor(runner, jobs, monitoring / "runs", t, baselines / "data") for t in targets]
        for run_ in runs:
            progress.detail(run_.line())
        drift = watch.mileage_drift(runs[-1])
        progress.detail(f"drifted batch, mileage: {drift or 'NO baseline_drift_check violation'}")
        evaluations_ = watch.evaluate(runs, monitoring / "evaluate-state")
        for e in evaluations_:
            features = ", ".join(e["features"]) or "-"
            alert = "would publish an SNS alert (dry run: sns_message.json)" if e["alerted"] else "no alert"
            progress.detail(f"evaluate {e['run']}: {e['violations']} violations ({features}); {alert}")
        index = watch.report(runs, monitoring / "report")
        summary["monitoring"] = {run_.name: run_.brief() for run_ in runs}
        summary["evaluate"] = [{k: v for k, v in e.items() if k != "details"} for e in evaluations_]
        summary["report"] = str(index)
        art["monitoring outputs"] = monitoring / "runs"
        art["monitoring report"] = index
        r.ok(
            f"{len(runs)} monitor runs; drifted batch {'drifts' if drift else 'does NOT drift'} on mileage; "
            f"report {index}"
        )
