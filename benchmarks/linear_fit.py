"""Benchmark: the linear model's ``fit`` alone on a channel on disk, wall time, CPU and peak RSS per row count.

    python -m benchmarks.linear_fit [--rows 1000000,5000000] [--compare-src DIR] [--repeats 1]

Data: the synthetic used-car generator (cardata.synthetic, seed 0), encoded once (in a child process) into raw
float64 files, ``cars-<rows>.X`` (rows x 8 features) and ``.y``. Each run is a child process that fits
``LinearRegressor`` with default hyperparameters on a Dataset reading those files with ``np.fromfile`` per
``rows()`` call; its ``X``/``y`` read the whole file, as a spilled channel's do (an older fit that takes
``train.X`` pays for it). Reported: fit seconds, CPU seconds, the peak RSS of the fit alone (the high-water mark
reset just before it, /proc/self/clear_refs) and the child's ru_maxrss. ``--compare-src DIR``: also the same fit
from another source tree (e.g. ``git archive main`` unpacked), alternated with this one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.machine import describe

ROOT = Path(__file__).resolve().parent.parent

MAKE = r"""
import json, sys
import numpy as np, pandas as pd
from cardata import synthetic
from core.schema import Schema
rows, prefix = int(sys.argv[1]), sys.argv[2]
model = synthetic.fit(pd.read_csv(synthetic.REAL_CSV))
schema = None
with open(prefix + ".X.tmp", "wb") as fx, open(prefix + ".y.tmp", "wb") as fy:
    for table in synthetic.generate(model, rows, 0):
        frame = table.to_pandas()
        schema = schema or Schema.infer(frame, "price")
        schema.encode(frame[schema.names]).tofile(fx)
        frame["price"].to_numpy(np.float64).tofile(fy)
open(prefix + ".schema.json", "w").write(json.dumps(schema.to_dict()))
"""

FIT = r"""
import json, os, resource, sys, time
import numpy as np
from algorithms.base import Dataset
from algorithms.linear import LinearRegressor
from core.schema import Schema

class OnDisk(Dataset):
    def __init__(self, prefix, width):
        self.name, self.prefix, self.width = "train", prefix, width
        self.n = os.path.getsize(prefix + ".y") // 8
    def __len__(self):
        return self.n
    @property
    def n_features(self):
        return self.width
    def rows(self, start, stop):
        start, stop = min(max(start, 0), self.n), min(max(stop, 0), self.n)
        count = max(stop - start, 0)
        X = np.fromfile(self.prefix + ".X", count=count * self.width, offset=start * self.width * 8)
        return X.reshape(count, self.width), np.fromfile(self.prefix + ".y", count=count, offset=start * 8)
    @property
    def X(self):
        return np.fromfile(self.prefix + ".X").reshape(-1, self.width)
    @property
    def y(self):
        return np.fromfile(self.prefix + ".y")

def high_water_mark():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

prefix = sys.argv[1]
schema = Schema.from_dict(json.load(open(prefix + ".schema.json")))
train = OnDisk(prefix, schema.n_features)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
t0, c0 = time.perf_counter(), time.process_time()
model = LinearRegressor({}, schema).fit(train, log=lambda *a, **k: None)
t1, c1 = time.perf_counter(), time.process_time()
print(json.dumps({"seconds": t1 - t0, "cpu": c1 - c0, "fit_peak_kib": high_water_mark(),
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "epochs": model.epochs_run}))
"""


def make_data(work: Path, rows: int) -> Path:
    prefix = work / f"cars-{rows}"
    if not Path(f"{prefix}.y").exists():
        subprocess.run([sys.executable, "-c", MAKE, str(rows), str(prefix)], cwd=ROOT, check=True)
        for suffix in (".X", ".y"):
            os.replace(f"{prefix}{suffix}.tmp", f"{prefix}{suffix}")
    return prefix


def run(prefix: Path, src: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", FIT, str(prefix)], cwd=src, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"fit from {src} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.linear_fit", description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="1000000,5000000")
    p.add_argument("--repeats", type=int, default=1, help="runs of each; the fastest is reported")
    p.add_argument("--work", type=Path, default=Path("/tmp/linear-fit-bench"))
    p.add_argument("--compare-src", type=Path, help="also fit with this source tree")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    print(describe(["numpy"]))
    sources = [("this", ROOT)] + ([("src", args.compare_src)] if args.compare_src else [])
    for rows in (int(r) for r in args.rows.split(",")):
        prefix = make_data(args.work, rows)
        for name, src in sources:
            best = min((run(prefix, src) for _ in range(args.repeats)), key=lambda r: r["seconds"])
            print(
                f"{rows:>10,} rows  {name:4}  fit {best['seconds']:6.2f} s  CPU {best['cpu']:6.2f} s  "
                f"fit peak {best['fit_peak_kib'] / 1024:6.0f} MiB  ru_maxrss {best['maxrss_kib'] / 1024:6.0f} MiB  "
                f"epochs {best['epochs']}  load {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
