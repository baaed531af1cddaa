"""The main job: the local lifecycle on the bundled real data.

    python -m lifecycle [--workdir build/lifecycle]

Steps: preprocess -> train XGBoost and the linear model through the real training entry point -> compare them
on the test split. Every step runs the same entry point the images run, as a local process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from lifecycle import jobs

ALGORITHMS = ("xgboost", "linear")
HYPERPARAMETERS = {
    "xgboost": {"num_round": 500, "eta": 0.05, "max_depth": 4, "early_stopping_rounds": 30},
    "linear": {"predictor_type": "regressor", "epochs": 30},
}


class Steps:
    """Numbered progress lines with timings, so a person sees what runs and how long it took."""

    def __init__(self, total: int):
        self.total, self.n = total, 0

    def start(self, title: str) -> float:
        self.n += 1
        print(f"[{self.n}/{self.total}] {title} ...", flush=True)
        return time.perf_counter()

    @staticmethod
    def done(t0: float, detail: str = "") -> None:
        print(f"      done in {time.perf_counter() - t0:.1f}s{' - ' + detail if detail else ''}", flush=True)


def fail(step: str, log: str, reason: str | None) -> None:
    print(log, file=sys.stderr)
    print(f"\nlifecycle: {step} failed: {(reason or 'see the log above').splitlines()[0]}", file=sys.stderr)
    sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifecycle", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=jobs.REPO / "build" / "lifecycle")
    parser.add_argument("--data", type=Path, default=jobs.REPO / "cardata" / "car_prices.csv")
    args = parser.parse_args(argv)

    work: Path = args.workdir.resolve()
    if work.exists():
        shutil.rmtree(work)
    steps = Steps(total=2 + len(ALGORITHMS))
    print(f"Local lifecycle on {args.data.name}; entry points run as local processes; work dir {work}\n")

    # 1. Preprocess (the processing job's contract: input folder -> train/validation/test folders).
    t0 = steps.start("preprocess: split the real data into train/validation/test with schema.json")
    raw = work / "processing" / "input"
    raw.mkdir(parents=True)
    shutil.copy(args.data, raw / args.data.name)
    splits = work / "processing" / "output"
    proc = jobs.preprocess(raw, splits)
    if proc.returncode != 0:
        fail("preprocess", proc.stdout, proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else None)
    Steps.done(t0, proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "")

    # 2. Train both algorithms through `python -m algorithms.train` in their own /opt/ml trees.
    results = {}
    for algorithm in ALGORITHMS:
        t0 = steps.start(f"train {algorithm}: python -m algorithms.train (ALGORITHM={algorithm})")
        base = jobs.layout_training(
            work / "training" / algorithm / "opt_ml",
            {c: splits / c for c in ("train", "validation", "test")},
            HYPERPARAMETERS[algorithm],
        )
        result = jobs.train(algorithm, base)
        if result.returncode != 0:
            fail(f"training {algorithm}", result.log, result.failure)
        results[algorithm] = result
        Steps.done(t0, f"model in {result.model_dir}")

    # 3. Compare on the test split.
    t0 = steps.start("compare: test-split metrics from each job's evaluation.json")
    print()
    print(f"      {'metric':<8}" + "".join(f"{a:>14}" for a in ALGORITHMS))
    for metric in ("rmse", "mae", "r2"):
        row = [results[a].evaluation["regression_metrics"][metric]["value"] for a in ALGORITHMS]
        fmt = "{:>14.4f}" if metric == "r2" else "{:>14,.0f}"
        print(f"      {metric:<8}" + "".join(fmt.format(v) for v in row))
    print()
    Steps.done(t0)

    print("\nArtifacts:")
    print(f"  splits + schema.json   {splits}")
    for a, r in results.items():
        print(f"  {a:<22} {r.model_dir}  (evaluation: {r.base_dir / 'output' / 'data' / 'evaluation.json'})")
    summary = {a: r.evaluation["regression_metrics"] for a, r in results.items()}
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"  summary                {work / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
