"""Benchmark: `python -m algorithms.train` against bare pandas + DMatrix + xgboost.train, wall time and peak RSS.

    python -m benchmarks.training [--rows 1000000] [--formats csv,parquet] [--hosts 1,2] [--repeats 2]
    python -m benchmarks.training --rows 5000000 --formats parquet --repeats 1

Data: the synthetic used-car generator (cardata.synthetic, seed 0), with a header (CSV) and ``target=price``,
as a user would send it. Each run is a child process (so peak RSS is that child's ``ru_maxrss``) with the same
settings: 100 rounds, max_depth 6, eta 0.1, hist, 256 bins, every core, no validation channel, no early stopping.

- **ours**: the real entry point in a fresh /opt/ml tree (reading, schema inference, per-round metric log,
  final metrics, model + metadata; no evaluation.json without a test channel);
- **bare**: ``pd.read_csv`` / ``pd.read_parquet``, string columns to ``category``, ``xgb.DMatrix(...,
  enable_categorical=True)``, ``xgb.train`` (no evaluation set), ``save_model``;
- **2 hosts**: two entry points on 127.0.0.1 / 127.0.0.2 (FullyReplicated: each reads every row and trains on
  half); wall time until both exit, peak RSS of each;
- **linear**: the linear image's entry point (default hyperparameters) on the same file;
- ``--compare-src DIR``: also the entry points of another source tree (e.g. ``git archive main`` unpacked), run
  with this interpreter, so a change is measured against its predecessor in the same run;
- ``--on-disk``: also ours with every encoded row in a temporary file (``BYOC_ROWS_IN_MEMORY_MB=0``), whose
  peak RSS is the bounded-memory figure to compare across ``--rows``;
- ``--omp-passive``: ``OMP_WAIT_POLICY=PASSIVE`` for every child alike (on an oversubscribed machine OpenMP's
  spinning threads dominate every XGBoost figure).

Prints the machine (other load on a shared machine stretches every figure; compare ratios within one run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import describe
from cardata import synthetic
from emulators.local_server import free_port_pair

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 100
DEPTH = 6
HYPERPARAMETERS = {
    "num_round": str(ROUNDS),
    "max_depth": str(DEPTH),
    "early_stopping_rounds": "0",
    "target": "price",
}
ON_DISK = {"BYOC_ROWS_IN_MEMORY_MB": "0"}
CONTENT_TYPES = {"csv": "text/csv", "parquet": "application/x-parquet"}


def make_data(work: Path, rows: int, fmt: str) -> Path:
    """The data file, generated once by a child process: generating 5M rows here would raise this process's peak
    RSS, which Linux hands on to every child it starts (ru_maxrss survives fork and exec)."""
    path = work / f"cars-{rows}.{fmt}"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "benchmarks.training", "--make", str(path), str(rows)], check=True)
    return path


def _make(path: Path, rows: int) -> None:
    import pandas as pd

    model = synthetic.fit(pd.read_csv(synthetic.REAL_CSV))
    tmp = path.with_suffix(".tmp")
    synthetic.write(synthetic.generate(model, rows, 0), tmp, path.suffix.lstrip("."), header=True)
    tmp.rename(path)


def opt_ml(base: Path, data: Path, fmt: str, hyperparameters: dict, hosts=("algo-1",), host="algo-1") -> Path:
    config = base / "input" / "config"
    channel = base / "input" / "data" / "train"
    config.mkdir(parents=True, exist_ok=True)
    channel.mkdir(parents=True, exist_ok=True)
    link = channel / data.name
    if not link.exists():
        link.symlink_to(data)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": list(hosts)}))
    (config / "inputdataconfig.json").write_text(
        json.dumps({"train": {"ContentType": CONTENT_TYPES[fmt], "S3DistributionType": "FullyReplicated"}})
    )
    return base


def start(argv: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=cwd)


def wait(proc: subprocess.Popen, log: Path) -> tuple[int, float]:
    """Peak RSS (KiB) and CPU seconds (user + system) of that child."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        command = proc.args if isinstance(proc.args, list) else [proc.args]
        raise SystemExit(f"{command[:3]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
    return usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def run_ours(
    work: Path, data: Path, fmt: str, algorithm: str, hyperparameters: dict, src: Path = ROOT, extra_env=None
) -> tuple[float, int, str, float]:
    base = Path(tempfile.mkdtemp(dir=work, prefix=f"{algorithm}-"))
    opt_ml(base, data, fmt, hyperparameters)
    log = base / "log.txt"
    t0 = time.perf_counter()
    env = {"SAGEMAKER_BASE_DIR": str(base), "ALGORITHM": algorithm, "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(extra_env or {})
    proc = start([sys.executable, "-m", "algorithms.train"], env, log, cwd=src)
    rss, cpu = wait(proc, log)
    return time.perf_counter() - t0, rss, log.read_text(), cpu


def run_two_hosts(work: Path, data: Path, fmt: str) -> tuple[float, list[int]]:
    hosts = ("127.0.0.1", "127.0.0.2")
    port = free_port_pair()
    procs, logs = [], []
    t0 = time.perf_counter()
    for i, host in enumerate(hosts):
        base = Path(tempfile.mkdtemp(dir=work, prefix=f"host{i + 1}-"))
        opt_ml(base, data, fmt, HYPERPARAMETERS, hosts, host)
        logs.append(base / "log.txt")
        env = {"SAGEMAKER_BASE_DIR": str(base), "ALGORITHM": "xgboost", "BYOC_TRACKER_PORT": str(port)}
        procs.append(start([sys.executable, "-m", "algorithms.train"], env, logs[-1]))
    rss = [wait(p, log)[0] for p, log in zip(procs, logs, strict=True)]
    return time.perf_counter() - t0, rss


def run_bare(work: Path, data: Path, fmt: str) -> tuple[float, int, str, float]:
    log = work / "bare.txt"
    t0 = time.perf_counter()
    proc = start([sys.executable, "-m", "benchmarks.training", "--bare", str(data)], {}, log)
    rss, cpu = wait(proc, log)
    return time.perf_counter() - t0, rss, log.read_text(), cpu


def bare(path: Path) -> None:
    """The baseline, in this (child) process."""
    import pandas as pd
    import xgboost as xgb

    t0 = time.perf_counter()
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    for column in ("make", "body_type"):
        frame[column] = frame[column].astype("category")
    y = frame.pop("price")
    dtrain = xgb.DMatrix(frame, label=y, enable_categorical=True, nthread=os.cpu_count())
    t1 = time.perf_counter()
    params = {"eta": 0.1, "max_depth": DEPTH, "tree_method": "hist", "max_bin": 256, "max_cat_to_onehot": 4}
    booster = xgb.train({**params, "nthread": os.cpu_count()}, dtrain, num_boost_round=ROUNDS)
    t2 = time.perf_counter()
    booster.save_model(str(path.parent / "bare-model.json"))
    print(f"bare: read + DMatrix {t1 - t0:.2f}s, train {t2 - t1:.2f}s")


def phases(log: str) -> str:
    found = []
    for line in log.splitlines():
        for key in ("read channels in", "trained in"):
            if key in line:
                found.append(key.split()[0] + " " + line.rsplit(" ", 1)[1])
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--formats", default="csv,parquet")
    p.add_argument("--hosts", default="1,2", help="1: single host; 2: also two local hosts")
    p.add_argument("--repeats", type=int, default=2, help="runs of each; the fastest is reported")
    p.add_argument("--skip-linear", action="store_true")
    p.add_argument("--work", type=Path, default=Path("/tmp/training-bench"))
    p.add_argument("--compare-src", type=Path, help="also run the entry points of this source tree")
    p.add_argument(
        "--omp-passive",
        action="store_true",
        help="OMP_WAIT_POLICY=PASSIVE for every child (a shared, overloaded machine: spinning threads there made "
        "100 rounds 5x slower)",
    )
    p.add_argument(
        "--on-disk",
        action="store_true",
        help="also run ours with BYOC_ROWS_IN_MEMORY_MB=0 (every encoded row in a temporary file): the bounded-memory "
        "peak, to compare across --rows",
    )
    p.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--make", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bare:
        bare(args.bare)
        return 0
    if args.make:
        _make(Path(args.make[0]), int(args.make[1]))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    if args.omp_passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # inherited by every child alike
    print(describe(["numpy", "pandas", "pyarrow", "xgboost-cpu"]))
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print(f"{args.rows:,} rows, {ROUNDS} rounds, max_depth {DEPTH}; fastest of {args.repeats}; RSS = peak of the child")
    for fmt in args.formats.split(","):
        data = make_data(args.work, args.rows, fmt)
        print(f"\n{fmt}: {data} ({data.stat().st_size / 2**20:.0f} MiB); load average {load()}")
        ours = min(run_ours(args.work, data, fmt, "xgboost", HYPERPARAMETERS) for _ in range(args.repeats))
        base = min(run_bare(args.work, data, fmt) for _ in range(args.repeats))
        print(f"  ours  xgboost   {figures(ours)}   ({phases(ours[2])})")
        print(f"  bare  xgboost   {figures(base)}   ({base[2].strip()})")
        print(
            f"  ratio           {ours[0] / base[0]:6.2f} x  {ours[1] / base[1]:6.2f} x  "
            f"    CPU {ours[3] / base[3]:.2f} x"
            "   (targets: 1.1 x time, 1.5 x memory)"
        )
        if args.compare_src:
            old = min(
                run_ours(args.work, data, fmt, "xgboost", HYPERPARAMETERS, args.compare_src)
                for _ in range(args.repeats)
            )
            print(f"  src   xgboost   {figures(old)}   ({phases(old[2])}; previous)")
        if args.on_disk:
            disk = min(
                run_ours(args.work, data, fmt, "xgboost", HYPERPARAMETERS, extra_env=ON_DISK)
                for _ in range(args.repeats)
            )
            print(f"  disk  xgboost   {figures(disk)}   ({phases(disk[2])}; rows in a temporary file)")
        if "2" in args.hosts.split(","):
            seconds, rss = run_two_hosts(args.work, data, fmt)
            print(f"  2 local hosts   {seconds:6.2f} s  {' + '.join(f'{r / 1024:.0f}' for r in rss)} MiB")
        if not args.skip_linear:
            lin = min(run_ours(args.work, data, fmt, "linear", {"target": "price"}) for _ in range(args.repeats))
            print(f"  ours  linear    {figures(lin)}   ({phases(lin[2])})")
            if args.on_disk:
                disk = min(
                    run_ours(args.work, data, fmt, "linear", {"target": "price"}, extra_env=ON_DISK)
                    for _ in range(args.repeats)
                )
                print(f"  disk  linear    {figures(disk)}   ({phases(disk[2])}; rows in a temporary file)")
            if args.compare_src:
                old = min(
                    run_ours(args.work, data, fmt, "linear", {"target": "price"}, args.compare_src)
                    for _ in range(args.repeats)
                )
                print(f"  src   linear    {figures(old)}   ({phases(old[2])}; previous)")
        print(f"  load average at the end: {load()}")
    return 0


def figures(run: tuple) -> str:
    return f"{run[0]:6.2f} s  {run[1] / 1024:6.0f} MiB  CPU {run[3]:6.2f} s"


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
