"""The lifecycle's steps in order, each printing one result line; the work dir layout; the closing summary."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lifecycle import batch, data, realtime, watch
from lifecycle.progress import Progress, StepFailed
from lifecycle.registry import APPROVED, KEPT, Registry
from pipelines.local.jobs import layout_training
from pipelines.local.runners import Runner

ALGORITHMS = ("xgboost", "linear")
HYPERPARAMETERS = {
    "xgboost": {"num_round": 500, "eta": 0.05, "max_depth": 4, "early_stopping_rounds": 30, "seed": 0},
    "linear": {"predictor_type": "regressor", "epochs": 30},
}
MARKER = ".lifecycle-workdir"
STEPS = 8


@dataclass(frozen=True)
class Options:
    workdir: Path
    registry: Path
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
    jobs = work / "jobs"  # one /opt/ml tree per processing job
    art: dict[str, Path] = {}  # what the closing list shows
    summary: dict[str, Any] = {"runner": runner.name, "workdir": str(work), "registry": str(options.registry)}

    # 1 -------------------------------------------------------------------------------------------------------
    with progress.step(
        "preprocess", "preprocess: the processing job splits the real data (train/validation/test)"
    ) as r:
        raw = work / "raw"
        raw.mkdir()
        shutil.copy(options.data, raw / options.data.name)
        splits = work / "splits"
        job = runner.preprocess(jobs / "preprocess", raw, splits)
        if not job.ok:
            raise StepFailed(job.reason(), job.log)
        art["splits + schema.json"] = splits
        r.ok(job.last_line().split(" written to ")[0].rstrip("; "))

    # 2 -------------------------------------------------------------------------------------------------------
    evaluations: dict[str, dict[str, Any]] = {}
    with progress.step("train", "train: one training job per algorithm, each in its own /opt/ml tree") as r:
        channels = {c: splits / c for c in data.SPLITS}
        for algorithm in ALGORITHMS:
            base = layout_training(work / "training" / algorithm / "opt_ml", channels, HYPERPARAMETERS[algorithm])
            job = runner.train(algorithm, base)
            if not job.ok:
                raise StepFailed(f"training {algorithm}: {job.reason()}", job.log)
            evaluations[algorithm] = json.loads((base / "output" / "data" / "evaluation.json").read_text())
            m = evaluations[algorithm]["regression_metrics"]
            progress.detail(
                f"{algorithm:<8} test rmse {m['rmse']['value']:>8,.1f}  mae {m['mae']['value']:>8,.1f}  "
                f"r2 {m['r2']['value']:.4f}   model: {base / 'model'}"
            )
        art["trained models (this run)"] = work / "training"
        r.ok(f"{len(ALGORITHMS)} models trained")

    # 3 -------------------------------------------------------------------------------------------------------
    registry = Registry(options.registry)
    serving: dict[str, Path] = {}
    with progress.step("gate", f"gate: test RMSE <= {options.rmse_threshold:,.0f} and not worse than the best") as r:
        digest = data.data_hash(splits)
        decisions = {}
        for algorithm in ALGORITHMS:
            d = registry.gate(
                algorithm,
                work / "training" / algorithm / "opt_ml",
                evaluations[algorithm],
                threshold=options.rmse_threshold,
                data_hash=digest,
                runner=runner.name,
            )
            decisions[algorithm] = d
            using = f"v{d.serving['version']}" if d.serving else "none"
            progress.detail(f"{algorithm:<8} {d.status.upper():<9} {d.reason}; serving {using}")
            if d.status not in (APPROVED, KEPT):
                progress.detail(
                    f"         notification (the pipeline's SNS topic): {algorithm} model rejected: {d.reason}"
                )
        summary["gate"] = {
            a: {
                "status": d.status,
                "reason": d.reason,
                "rmse": d.rmse,
                "serving_version": (d.serving or {}).get("version"),
            }
            for a, d in decisions.items()
        }
        missing = [a for a, d in decisions.items() if d.version_dir is None]
        if missing:
            raise StepFailed(
                f"no approved {' or '.join(missing)} model: "
                + "; ".join(f"{a} {decisions[a].reason}" for a in missing)
                + f"; and the registry {options.registry} holds no earlier approved one"
            )
        serving = {a: d.version_dir for a, d in decisions.items()}
        art["registry"] = registry.path
        art["registered models"] = registry.models_root
        r.ok(", ".join(f"{a} {d.status} (serving v{d.serving['version']})" for a, d in decisions.items()))

    with contextlib.ExitStack() as servers:
        # 4 ---------------------------------------------------------------------------------------------------
        urls: dict[str, str] = {}
        with progress.step("serve", "serve: one model server per approved model (the endpoints)") as r:
            for algorithm in ALGORITHMS:
                urls[algorithm] = servers.enter_context(runner.serve(algorithm, serving[algorithm]))
                progress.detail(f"{algorithm:<8} {urls[algorithm]}  model {serving[algorithm] / 'model'}")
            r.ok("both answer /ping")

        # 5 ---------------------------------------------------------------------------------------------------
        baselines = work / "baselines"
        with progress.step("baselines", "baselines: data quality (train split), model quality (validation)") as r:
            job = runner.baseline(jobs / "baseline-data", splits / "train", baselines / "data")
            if not job.ok:
                raise StepFailed(f"data-quality baseline: {job.reason()}", job.log)
            lines = [f"data quality: {job.last_line().split(' written to ')[0]}"]
            for algorithm in ALGORITHMS:
                scored = batch.transform(
                    urls[algorithm], splits / "validation" / "validation.csv", baselines / f"scored-{algorithm}"
                )
                job = runner.baseline(  # reads the transform's validation.csv.out: label,prediction
                    jobs / f"baseline-quality-{algorithm}",
                    scored.parent,
                    baselines / f"quality-{algorithm}",
                    model_quality=True,
                )
                if not job.ok:
                    raise StepFailed(f"model-quality baseline of {algorithm}: {job.reason()}", job.log)
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

        # 6 ---------------------------------------------------------------------------------------------------
        capture_dir, truth_dir = work / "capture", work / "ground_truth"
        test = data.Split.read(splits / "test", "test")
        with progress.step("realtime", "real time: combiner Lambda + endpoints behind data capture") as r:
            with realtime.capturing(urls, capture_dir, options.sampling) as proxies:
                traffic = realtime.run({a: p.url for a, p in proxies.items()}, test, options.rule)
            captured = {a: dict(p.stats) for a, p in proxies.items()}
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

        # 7 ---------------------------------------------------------------------------------------------------
        batch_dir = work / "batch"
        with progress.step("batch", "batch transform: scoring file with record ids, filters and join") as r:
            scoring = data.write_scoring(test, batch_dir / "input" / "scoring.csv")
            out = batch.transform(urls["xgboost"], scoring, batch_dir / "output")
            lines = out.read_text().splitlines()
            if len(lines) != len(test.rows):
                raise StepFailed(f"{out} holds {len(lines)} lines for {len(test.rows)} records")
            progress.detail("--input-filter '$[1:]' --join-source Input --output-filter '$[0,-1]' (id,prediction):")
            for line in lines[:3]:
                progress.detail("  " + line)
            # for the monitor: the whole joined record (id, features, prediction), real and drifted
            joined = batch.transform(urls["xgboost"], scoring, batch_dir / "joined", batch.WHOLE_RECORD)
            drifted_in = data.write_scoring(
                test, batch_dir / "drifted-input" / "scoring-drifted.csv", data.drifted_rows(test)
            )
            drifted = batch.transform(urls["xgboost"], drifted_in, batch_dir / "drifted", batch.WHOLE_RECORD)
            art["batch output (id,prediction)"] = out
            art["batch output (joined)"] = joined
            art["drifted batch output"] = drifted
            r.ok(f"{len(lines)} records scored by xgboost: {out}")

    # 8 -----------------------------------------------------------------------------------------------------------
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

    summary["artifacts"] = {k: str(v) for k, v in art.items()}
    summary["timings"] = {name: round(t, 2) for name, t in progress.timings}
    (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    art["this run's summary"] = work / "summary.json"
    progress.say("\nArtifacts:")
    width = max(len(k) for k in art)
    for key, path in art.items():
        progress.say(f"  {key:<{width}}  {path}")
    return summary
