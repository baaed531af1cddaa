"""Benchmark: capture lines per second through the whole monitoring job, and its peak memory, against the same
drift computed with plain pandas + scipy.

    python -m benchmarks.monitor [--lines 1000000] [--work /tmp/monitor-bench]
    python -m benchmarks.monitor --sizes 100000,1000000,2300000 --lines-per-file 0 --skip-pandas
    python -m benchmarks.monitor --lines 10000000 --sizes 10000000 --hosts 2   # 1 vs 2 instances, plus merge

Data: the synthetic used-car generator (cardata.synthetic, ``--drift older-high-mileage``) written as SageMaker
data capture JSON Lines by ``monitoring.datacapture`` (one CSV record per request, ``--lines-per-file`` lines per
file, default 50,000; 0 puts each size in one file, the case that once held a whole file in memory); the
baseline is the monitor's own baselining job on the real data. Each job runs as a child process; peak memory is
that child's ``ru_maxrss``. Several sizes (default a tenth, then all lines) show whether memory follows the
sketch or the data.

``--hosts N`` (N > 1) also runs each size as a job on N instances would: N concurrent monitor processes, each
with its own ``/opt/ml/config`` (resourceconfig.json naming the N hosts; processingjobconfig.json saying
ShardedByS3Key) and every N-th capture file (hard links), all writing the same output prefix, then ``merge``
over that prefix; it reports the hosts' wall time (until the last one ends), the merge time, their sum
against the single process, and checks that the merged result matches it (records, violated checks, drift
distance within the sketches' rank-error bound). On one machine the hosts share its cores: the figure shows
the speed-up the cores allow and the cost of the merge, not N machines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from benchmarks.machine import describe
from cardata import REAL_CSV, TARGET, synthetic
from core.schema import Schema
from monitoring import datacapture
from monitoring.sketches import rank_error

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2024, 1, 1, 0, 0, tzinfo=UTC)

PANDAS_SCIPY = r"""
import json, sys, glob
import numpy as np, pandas as pd
from scipy import stats
src, train, schema_path = sys.argv[1:4]
schema = json.load(open(schema_path))
names = [f["name"] for f in schema["features"]]
cats = {f["name"] for f in schema["features"] if f["type"] == "categorical"}
frames = [pd.read_json(p, lines=True) for p in sorted(glob.glob(src + "/**/*.jsonl", recursive=True))]
cap = pd.concat(frames, ignore_index=True)
t = pd.to_datetime(cap["eventMetadata"].str["inferenceTime"], utc=True)
cap = cap[(t >= sys.argv[4]) & (t < sys.argv[5])]
data = cap["captureData"].str["endpointInput"].str["data"].str.split(",", expand=True)
data.columns = names
base = pd.read_csv(train, header=None, names=[schema["target"]] + names)
out = {}
for n in names:
    if n in cats:
        a = base[n].value_counts(normalize=True); b = data[n].value_counts(normalize=True)
        out[n] = float(a.sub(b, fill_value=0).abs().max())
    else:
        out[n] = float(stats.ks_2samp(base[n].astype(float), pd.to_numeric(data[n])).statistic)
print(json.dumps(out))
"""


def write_captures(path: Path, lines: int, seed: int, lines_per_file: int) -> float:
    """Capture JSONL from the synthetic generator (drifted), 0.01 s apart, written by the capture format's own
    writer; ``lines_per_file`` 0 puts every line in one file. Returns seconds spent."""
    t0 = time.perf_counter()
    model = synthetic.fit(synthetic.pd.read_csv(REAL_CSV))
    drift = synthetic.DRIFTS["older-high-mileage"]
    written = in_file = 0
    handle = None
    try:
        for table in synthetic.generate(model, lines, seed, chunk_rows=50_000, drift=drift):
            df = table.to_pandas()
            rows = df.drop(columns=TARGET).itertuples(index=False, name=None)
            preds = (df[TARGET] * 1.02).round(2).tolist()
            out: list[str] = []
            for row, pred in zip(rows, preds, strict=True):
                when = START + timedelta(seconds=written * 0.01)
                if handle is None or (lines_per_file and in_file >= lines_per_file):
                    if handle is not None:
                        handle.writelines(out)
                        out = []
                        handle.close()
                    folder = datacapture.hour_dir(path / "car-prices" / "AllTraffic", when)
                    folder.mkdir(parents=True, exist_ok=True)
                    handle = open(folder / f"capture-{written:09d}.jsonl", "w")  # noqa: SIM115
                    in_file = 0
                out.append(datacapture.capture_line(list(row), pred, when, f"{written:012d}") + "\n")
                written += 1
                in_file += 1
            handle.writelines(out)  # type: ignore[union-attr]
    finally:
        if handle is not None:
            handle.close()
    return time.perf_counter() - t0


def run_child(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """(seconds, peak RSS in KiB of that child, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{err}")
    return seconds, usage.ru_maxrss, out


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _setting(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def run_hosts(
    n: int, cap: Path, root: Path, common: list[str], single: dict, single_s: float, env: dict[str, str]
) -> dict:
    """The same job on ``n`` concurrent local hosts (ShardedByS3Key: every n-th file each), then ``merge``."""
    if root.exists():
        shutil.rmtree(root)
    hosts = [f"algo-{i + 1}" for i in range(n)]
    files = sorted(cap.rglob("*.jsonl"))
    if len(files) < n:
        raise SystemExit(f"{len(files)} capture files for {n} hosts: lower --lines-per-file")
    prefix = root / "s3-output"  # every host's output LocalPath uploads to the same S3 prefix
    argvs, envs = [], []
    for rank, host in enumerate(hosts):
        data = root / host / "dataset"
        for f in files[rank::n]:
            dest = data / f.relative_to(cap)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, dest)
        config = root / host / "ml" / "config"
        config.mkdir(parents=True)
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": hosts}))
        job = {"ProcessingInputs": [{"S3Input": {"LocalPath": str(data), "S3DataDistributionType": "ShardedByS3Key"}}]}
        (config / "processingjobconfig.json").write_text(json.dumps(job))
        argv = list(common)
        argv[argv.index("--dataset-source") + 1] = str(data)
        argv[argv.index("--output-path") + 1] = str(prefix)
        argvs.append([sys.executable, "-m", "monitoring.monitor", *argv])
        envs.append({**env, "SAGEMAKER_BASE_DIR": str(root / host / "ml")})
    print(f"uptime before {n} hosts: {uptime()}", file=sys.stderr)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        runs = list(pool.map(run_child, argvs, envs))
    hosts_s = time.perf_counter() - t0
    merged = root / "merged"
    merge_argv = [sys.executable, "-m", "monitoring.merge", "--states", str(prefix), "--output-path", str(merged)]
    for flag in ("--baseline-statistics", "--baseline-constraints", "--start-time", "--end-time", "--report"):
        merge_argv += [flag, _setting(common, flag)]
    merge_s, merge_rss, _ = run_child(merge_argv, env)
    summary = json.loads((merged / "monitoring_report.json").read_text())
    distances = {
        name: abs(f["drift"]["distance"] - g["drift"]["distance"])
        for f in summary["features"]
        for g in single["features"]
        if f["name"] == g["name"] == (name := f["name"]) and f["drift"] and g["drift"]
    }
    checks = sorted((v["feature_name"], v["constraint_check_type"]) for v in summary["violations"])
    single_checks = sorted((v["feature_name"], v["constraint_check_type"]) for v in single["violations"])
    total = hosts_s + merge_s
    return {
        "hosts": n,
        "host_s": [round(r[0], 2) for r in runs],
        "host_peak_rss_mib": [round(r[1] / 1024, 1) for r in runs],
        "hosts_wall_s": round(hosts_s, 2),
        "merge_s": round(merge_s, 2),
        "merge_peak_rss_mib": round(merge_rss / 1024, 1),
        "hosts_plus_merge_s": round(total, 2),
        "speedup_vs_single": round(single_s / total, 2),
        "same_records": summary["records"] == single["records"],
        "same_violated_checks": checks == single_checks,
        "max_drift_distance_diff": round(max(distances.values(), default=0.0), 5),
        "bound_2_eps_k2048": round(2 * rank_error(), 5),
        "uptime_after": uptime(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.monitor", description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--work", type=Path, default=Path("/tmp/monitor-bench"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-pandas", action="store_true")
    p.add_argument("--sizes", help="comma-separated line counts (default: a tenth of --lines, then --lines)")
    p.add_argument("--lines-per-file", type=int, default=50_000, help="0: one file per size")
    p.add_argument("--hosts", type=int, default=1, help="N > 1: also run each size on N local hosts + merge")
    args = p.parse_args(argv)
    print("Machine:", describe(("datasketches", "numpy", "pandas", "pyarrow", "scipy")), sep="\n", flush=True)
    work = args.work
    py = sys.executable
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(work / "ml"), "PYTHONPATH": str(ROOT)}

    train = work / "train"
    train.mkdir(parents=True, exist_ok=True)
    real = synthetic.pd.read_csv(REAL_CSV)
    Schema.infer(real, TARGET).save(train / "schema.json")
    real.to_csv(train / "train.csv", header=False, index=False)
    base = work / "baseline"
    run_child([py, "-m", "monitoring.baseline", "--dataset-source", str(train), "--output-path", str(base)], env)

    results = []
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else [max(1, args.lines // 10), args.lines]
    for lines in sorted(set(sizes)):
        cap = work / f"capture-{lines}-{args.lines_per_file}"
        if not cap.exists():
            gen_s = write_captures(cap, lines, args.seed, args.lines_per_file)
            print(f"generated {lines:,} capture lines in {gen_s:.1f} s", file=sys.stderr)
        size = sum(f.stat().st_size for f in cap.rglob("*.jsonl"))
        end = (START + timedelta(seconds=lines * 0.01 + 3600)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out = work / f"out-{lines}"
        common = [
            "--dataset-source",
            str(cap),
            "--output-path",
            str(out),
            "--baseline-statistics",
            str(base / "statistics.json"),
            "--baseline-constraints",
            str(base / "constraints.json"),
            "--schema-path",
            str(train / "schema.json"),
            "--dataset-format",
            '{"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}}',
            "--start-time",
            START.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "--end-time",
            end,
            "--bookmark",
            "Disabled",
            "--report",
            "Disabled",
        ]
        print(f"uptime before the single run: {uptime()}", file=sys.stderr)
        secs, rss, _ = run_child([py, "-m", "monitoring.monitor", *common], env)
        summary = json.loads((out / "monitoring_report.json").read_text())
        drift = {f["name"]: round(f["drift"]["distance"], 4) for f in summary["features"] if f["drift"]}
        simple = {}
        for f in summary["features"]:
            if f["drift"]:
                simple[f["name"]] = f["drift"]["distance"]
        row = {
            "lines": lines,
            "files": sum(1 for _ in cap.rglob("*.jsonl")),
            "bytes": size,
            "monitor_s": round(secs, 2),
            "monitor_lines_per_s": round(lines / secs),
            "monitor_peak_rss_mib": round(rss / 1024, 1),
            "violations": len(summary["violations"]),
            "robust_distance": drift,
        }
        if not args.skip_pandas:
            secs_p, rss_p, out_p = run_child(
                [
                    py,
                    "-c",
                    PANDAS_SCIPY,
                    str(cap),
                    str(train / "train.csv"),
                    str(train / "schema.json"),
                    START.isoformat(),
                    end,
                ],
                env,
            )
            exact = json.loads(out_p)
            row.update(
                pandas_s=round(secs_p, 2),
                pandas_lines_per_s=round(lines / secs_p),
                pandas_peak_rss_mib=round(rss_p / 1024, 1),
                simple_distance_exact=exact,
            )
            # Robust = max(0, simple - 1.8 sqrt((n+m)/nm)): recover the monitor's simple distance to compare
            n_base = len(real)
            corr = 1.8 * np.sqrt((n_base + lines) / (n_base * lines))
            row["max_abs_diff_vs_exact"] = round(
                max(abs(exact[k] - (v + corr if v > 0 else exact[k])) for k, v in simple.items()), 5
            )
        if args.hosts > 1:
            row["hosts"] = run_hosts(args.hosts, cap, work / f"hosts-{lines}", common, summary, secs, env)
        results.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(f"uptime at the end: {uptime()}")
    print(json.dumps({"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
