"""The main job: the whole local lifecycle on the bundled real data (the README's main command, `make demo`).

    python -m lifecycle [--runner auto|docker|local] [--workdir build/lifecycle] [--rmse-threshold 4000]
                        [--rule max] [--quality-tolerance 25] [--capture-sampling 100]
                        [--data cardata/car_prices.csv] [--image-tag latest]

Steps: 1 the training pipeline (the Step Functions state machine in pipelines/, executed in moto's ASL
interpreter with our images as the SageMaker jobs and endpoints), once per algorithm: preprocess, train, gate,
baselines, endpoint with data capture; 2 the model-quality constraints widened for a small split; 3 real-time
requests through the combiner to both endpoints; 4 batch transform of a scoring file with record ids;
5 monitoring (captures, batch output, a drifted batch; evaluate; HTML report); then where every artifact is.

Every run is a fresh (local) AWS account: the first model of each algorithm is deployed unless its RMSE is above
--rmse-threshold. Exit codes: 0 done; 1 a step failed (its name and a one-line reason are printed; also when a
pipeline deployed nothing); 2 bad command line; 130 interrupted. Containers are removed on every exit path.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from pathlib import Path

from lifecycle import pipeline
from lifecycle.progress import Progress, StepFailed, tail
from pipelines.local import runners
from pipelines.local.jobs import REPO


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, received {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, received {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, received {text!r}")
    return value


def _percentage(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 100], received {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lifecycle", description=__doc__.splitlines()[0])
    p.add_argument(
        "--runner",
        choices=("auto", "docker", "local"),
        default="auto",
        help="auto (default): the images through Docker when an engine answers and they are built, "
        "else local processes",
    )
    p.add_argument("--workdir", type=Path, default=REPO / "build" / "lifecycle", help="wiped at every run")
    p.add_argument("--rmse-threshold", type=_positive, default=4000.0, help="gate: highest test RMSE (default 4000)")
    p.add_argument(
        "--rule",
        choices=("max", "min", "mean", "xgboost", "linear"),
        default="max",
        help="the combiner's COMBINE_RULE (default max)",
    )
    p.add_argument(
        "--quality-tolerance",
        type=_non_negative,
        default=25.0,
        help="percent by which the model-quality constraints exceed the validation metrics (default 25; "
        "0: Model Monitor's suggestion, the metrics themselves)",
    )
    p.add_argument(
        "--monitor-instances",
        type=_count,
        default=1,
        help="instances per monitor job (default 1; above 1: the captures sharded between them, then a merge job)",
    )
    p.add_argument("--capture-sampling", type=_percentage, default=100.0, help="data capture sampling percentage")
    p.add_argument("--data", type=Path, default=REPO / "cardata" / "car_prices.csv", help="raw CSV with a header")
    p.add_argument("--image-tag", default="latest", help="tag of the byoc-* images (docker runner)")
    return p


def _interrupt(signum, frame):  # SIGTERM takes the same cleanup path as Ctrl-C
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    work = args.workdir.resolve()
    if not args.data.is_file():
        parser().error(f"--data {args.data}: no such file")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (&)
    progress = Progress(pipeline.STEPS)
    options = pipeline.Options(
        work,
        args.data.resolve(),
        args.rmse_threshold,
        args.rule,
        args.capture_sampling,
        args.quality_tolerance / 100,
        args.monitor_instances,
    )
    t0 = time.perf_counter()
    runner: runners.Runner | None = None
    try:
        runner = runners.pick(args.runner, args.image_tag)
        progress.say(f"Local lifecycle on {args.data}")
        progress.say(f"runner:   {runner.describe()}")
        progress.say(f"work dir: {work}")
        progress.say("")
        pipeline.prepare_workdir(work)
        pipeline.run(options, runner, progress)
    except StepFailed as e:
        if e.log.strip():
            print(tail(e.log), file=sys.stderr)
        where = f"step {progress.n} ({progress.current})" if progress.current else "setup"
        print(f"\nlifecycle: {where} failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"\nlifecycle: interrupted during {progress.current or 'setup'}; servers and containers removed",
            file=sys.stderr,
        )
        return 130
    except Exception as e:  # our bug: the traceback helps, and the step still gets named
        traceback.print_exc()
        print(
            f"\nlifecycle: internal error in step {progress.n} ({progress.current}): {type(e).__name__}: {e}",
            file=sys.stderr,
        )
        return 2
    finally:
        if runner is not None:
            runner.close()
    progress.say(f"\nDone in {time.perf_counter() - t0:.1f}s with the {runner.name} runner.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
