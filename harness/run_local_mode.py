"""Train, deploy, invoke and batch-transform both algorithms with the SageMaker Python SDK in local mode.

    python -m harness.run_local_mode                       # both algorithms, bundled data, build/local-mode/
    python -m harness.run_local_mode --algorithms linear --verbose

Uses the built images (byoc-xgboost, byoc-linear), Docker and Docker Compose, and makes no AWS call (a guard refuses
any connection that is not to this machine). Progress goes to stderr; the SDK's and the containers' output to
WORK/local-mode.log (on the terminal with --verbose); a summary with timings to WORK/local-mode-report.json.
Exit codes: 0 done; 1 a step failed (one line saying which and why); 2 cannot run here (no engine, no Compose,
images missing, bad arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from harness import sdk_local_mode as sdk

REPO = Path(__file__).resolve().parents[1]
ALGORITHMS = ("xgboost", "linear")
IMAGES = {"xgboost": "byoc-xgboost", "linear": "byoc-linear"}
HYPERPARAMETERS = {"xgboost": {"num_round": "200", "eta": "0.1", "max_depth": "4"}, "linear": {"epochs": "15"}}
INVOKE_ROWS = 5


def say(message: str) -> None:
    print(f"local-mode: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.run_local_mode", description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated (default: both)")
    parser.add_argument("--data", type=Path, default=REPO / "cardata" / "car_prices.csv", help="raw CSV to split")
    parser.add_argument("--channels", type=Path, help="existing train/validation/test channels (skips preprocess)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "local-mode")
    parser.add_argument("--image", action="append", default=[], metavar="ALGORITHM=IMAGE", help="override an image")
    parser.add_argument("--hyperparameter", action="append", default=[], metavar="ALGORITHM.NAME=VALUE")
    parser.add_argument("--region", default=sdk.DEFAULT_REGION, help="only written into the jobs; nothing is called")
    parser.add_argument("--train-timeout", type=float, default=sdk.TIMEOUTS["train"], metavar="SECONDS")
    parser.add_argument("--deploy-timeout", type=float, default=sdk.TIMEOUTS["deploy"], metavar="SECONDS")
    parser.add_argument("--transform-timeout", type=float, default=sdk.TIMEOUTS["transform"], metavar="SECONDS")
    parser.add_argument("--keep-scratch", action="store_true", help="keep the SDK's compose files and /opt/ml copies")
    parser.add_argument("--verbose", action="store_true", help="SDK and container output on the terminal")
    args = parser.parse_args(argv)
    args.algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    unknown = [a for a in args.algorithms if a not in ALGORITHMS]
    if unknown or not args.algorithms:
        parser.error(
            f"--algorithms: expected a comma-separated subset of {', '.join(ALGORITHMS)}, received "
            f"{','.join(unknown) or 'nothing'!r}"
        )
    args.images = dict(IMAGES)
    for item in args.image:
        algorithm, sep, image = item.partition("=")
        if not sep or algorithm not in ALGORITHMS or not image:
            parser.error(
                f"--image: expected ALGORITHM=IMAGE with ALGORITHM in {', '.join(ALGORITHMS)}, received {item!r}"
            )
        args.images[algorithm] = image
    args.hyperparameters = {a: dict(HYPERPARAMETERS[a]) for a in ALGORITHMS}
    for item in args.hyperparameter:
        key, sep, value = item.partition("=")
        algorithm, dot, name = key.partition(".")
        if not sep or not dot or algorithm not in ALGORITHMS or not name:
            parser.error(
                f"--hyperparameter: expected ALGORITHM.NAME=VALUE (e.g. xgboost.num_round=300), received {item!r}"
            )
        args.hyperparameters[algorithm][name] = value
    return args


def prepare_data(args: argparse.Namespace, log) -> tuple[Path, Path, list[list[str]]]:
    """Channels (preprocess unless given) and the transform input: the test channel without its label column."""
    channels = args.channels
    if channels is None:
        channels = args.work_dir / "channels"
        say(f"preprocess {args.data} -> {channels}")
        proc = subprocess.run(
            [sys.executable, "-m", "processing.preprocess", "--input", str(args.data), "--output", str(channels)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        log.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise sdk.LocalModeError(f"preprocess failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    test_files = sorted((channels / "test").glob("*.csv"))
    if not test_files:
        raise sdk.LocalModeError(f"no test channel CSV in {channels / 'test'} (needed for invoke and transform)")
    with test_files[0].open(newline="") as f:
        rows = [row[1:] for row in csv.reader(f) if row]  # label first: SageMaker's built-in CSV layout
    transform_in = args.work_dir / "transform-input"
    transform_in.mkdir(parents=True, exist_ok=True)
    with (transform_in / "test-features.csv").open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return channels, transform_in, rows


def typed(row: list[str]) -> list[object]:
    """A CSV row as JSON values: numbers as numbers, categories as strings."""
    out: list[object] = []
    for value in row:
        try:
            out.append(float(value))
        except ValueError:
            out.append(value)
    return out


def run(args: argparse.Namespace) -> dict:
    args.work_dir = args.work_dir.resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    log_path = args.work_dir / "local-mode.log"
    report: dict = {"work_dir": str(args.work_dir), "log": str(log_path), "algorithms": {}}
    with log_path.open("w") as log:
        sink = sys.stdout if args.verbose else log
        channels, transform_in, rows = prepare_data(args, log)
        where = "the terminal" if args.verbose else log_path
        say(f"{len(rows)} test records; SDK and container output -> {where}")
        if not args.verbose:  # the SDK logs INFO per step and a warning per invocation (its docker-host probe)
            for name in ("sagemaker", "sagemaker.config", "urllib3", "botocore"):
                logging.getLogger(name).setLevel(logging.ERROR)
        lm = sdk.open_local_mode(args.work_dir, region=args.region)
        lm.timeouts.update(train=args.train_timeout, deploy=args.deploy_timeout, transform=args.transform_timeout)
        report["run_id"], report["serving_port"] = lm.run_id, lm.serving_port
        try:
            with contextlib.redirect_stdout(sink):
                for algorithm in args.algorithms:
                    report["algorithms"][algorithm] = one_algorithm(args, lm, algorithm, channels, transform_in, rows)
        finally:
            leftovers = lm.close(keep_scratch=args.keep_scratch)
            if leftovers:
                say(f"removed {len(leftovers)} container(s) left by a failed step")
        if lm.guard.attempts:  # a refused attempt that the SDK swallowed still fails the run
            raise sdk.LocalModeError(f"something tried to reach AWS: {lm.guard.attempts[0]}")
        report["aws_calls_attempted"] = lm.guard.attempts
    return report


def one_algorithm(args, lm: sdk.LocalMode, algorithm: str, channels: Path, transform_in: Path, rows) -> dict:
    image = args.images[algorithm]
    hp = args.hyperparameters[algorithm]
    say(f"[{algorithm}] train {image} on file:// channels, hyperparameters {hp}")
    trained = sdk.train(lm, algorithm, image, channels, hp)
    rmse = trained.metrics.get("validation:rmse")
    say(
        f"[{algorithm}]   {trained.seconds:.1f} s -> {trained.model_path} "
        f"({', '.join(sdk.model_files(trained.model_path))}); validation:rmse {rmse}"
    )

    say(f"[{algorithm}] deploy a local endpoint (port {lm.serving_port}) and invoke it with CSV and JSON")
    sample = rows[:INVOKE_ROWS]
    with sdk.endpoint(lm, image, trained.model_data) as ep:
        by_csv = [float(r[0]) for r in ep.csv.predict("\n".join(",".join(r) for r in sample))]
        by_json = [p["score"] for p in ep.json.predict({"instances": [typed(r) for r in sample]})["predictions"]]
        deploy_seconds = ep.seconds
    if (
        len(by_csv) != len(sample)
        or len(by_json) != len(sample)
        or any(abs(a - b) > 1e-3 * max(1.0, abs(a)) for a, b in zip(by_csv, by_json, strict=True))
    ):
        raise sdk.LocalModeError(f"[{algorithm}] CSV and JSON answers differ: {by_csv} vs {by_json}")
    say(f"[{algorithm}]   deployed in {deploy_seconds:.1f} s; predictions {[round(p) for p in by_csv]} (CSV = JSON)")

    say(f"[{algorithm}] batch transform {transform_in} (Line, MultiRecord)")
    out_dir = args.work_dir / "transform-output" / algorithm
    done = sdk.transform(lm, image, trained.model_data, transform_in, out_dir)
    outputs = sorted(out_dir.glob("*.out"))
    lines = sum(len(p.read_text().splitlines()) for p in outputs)
    if lines != len(rows):
        raise sdk.LocalModeError(f"[{algorithm}] transform wrote {lines} line(s) for {len(rows)} record(s)")
    say(f"[{algorithm}]   {done.seconds:.1f} s -> {', '.join(map(str, outputs))} ({lines} lines)")
    return {
        "image": image,
        "hyperparameters": hp,
        "model_data": trained.model_data,
        "metrics": trained.metrics,
        "seconds": {
            "train": round(trained.seconds, 2),
            "deploy": round(deploy_seconds, 2),
            "transform": round(done.seconds, 2),
        },
        "predictions_csv": by_csv,
        "transform_output": [str(p) for p in outputs],
        "batch_strategy": done.description.get("BatchStrategy"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images = [args.images[a] for a in args.algorithms]
    problem = sdk.preflight(images)
    if problem:
        say(f"error: cannot run local mode: {problem}")
        return 2
    started = time.monotonic()
    try:
        report = run(args)
    except sdk.LocalModeError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted; containers of this run removed")
        return 130
    report["seconds_total"] = round(time.monotonic() - started, 1)
    path = Path(report["work_dir"]) / "local-mode-report.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    say(f"done in {report['seconds_total']} s, no AWS call; report {path}")
    for algorithm, item in report["algorithms"].items():
        s = item["seconds"]
        say(
            f"  {algorithm}: train {s['train']} s, deploy {s['deploy']} s, transform {s['transform']} s; "
            f"model {item['model_data']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
