"""The analytics tables built from the main job's real outputs: ``python -m lifecycle --runner local`` once per
session (cached here, so every test_analytics*.py module shares the one run), then the append CLI on the
xgboost model's two batch outputs (the undrifted and the drifted scoring file) and on four of its monitor runs
(both endpoints, both xgboost batches), as the pipelines' processing jobs run it. The run ids the tests use,
``car-prices-batch`` and ``car-prices-batch-drifted``, name those two batches; ``MainJob.target`` gives the batch
job name (the scoring pipeline's transform job) that the monitor reported for each."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parent.parent
SCORED_AT = {"car-prices-batch": "2026-11-30T10:00:00Z", "car-prices-batch-drifted": "2026-12-01T10:00:00Z"}
# run id -> (the main job's scoring file, its monitor run)
SOURCES = {
    "car-prices-batch": ("scoring", "batch-xgboost-scoring"),
    "car-prices-batch-drifted": ("scoring-drifted", "batch-xgboost-scoring-drifted"),
}
RUNS = {"realtime-xgboost": "realtime-xgboost", "realtime-linear": "realtime-linear", "batch": "batch-xgboost-scoring",
        "batch-drifted": "batch-xgboost-scoring-drifted"}  # fmt: skip


@dataclass(frozen=True)
class MainJob:
    workdir: Path
    tables: Path

    @property
    def runs(self) -> Path:
        """The four monitor runs the tables hold, by their short names (``batch``, ``batch-drifted``, ...)."""
        return self.workdir / "analytics-fixture-runs"

    @property
    def schema(self) -> Path:
        return self.workdir / "models" / "xgboost" / "model" / "schema.json"

    def out_file(self, run_id: str) -> Path:
        return next((self.workdir / "batch" / SOURCES[run_id][0] / "xgboost").glob("*.out"))

    def target(self, run_id: str) -> str:
        """The batch job the monitor named for a batch (the scoring pipeline's transform job)."""
        return self.report(SOURCES[run_id][1].replace("batch-xgboost-scoring", "batch"))["batch_job"]

    def out_rows(self, target: str) -> list[list[str]]:
        with open(self.out_file(target), newline="") as f:
            return [r for r in csv.reader(f) if r]

    def report(self, run: str) -> dict:
        return json.loads((self.runs / run / "monitoring_report.json").read_text())


def append(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analytics.append", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip


def append_main_job(job: MainJob, tables: Path) -> None:
    for short, name in RUNS.items():
        shutil.copytree(job.workdir / "monitoring" / "runs" / name, job.runs / short)
    for run_id, when in SCORED_AT.items():
        out = job.out_file(run_id).parent
        schema = job.workdir / "models" / "xgboost" / "model"
        proc = append("scoring", "--run-id", run_id, "--model", "xgboost", "--scored-at", when,
                      "--target", job.target(run_id), "--input", str(out), "--schema", str(schema),
                      "--tables", str(tables))  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = append("monitoring", "--input", str(job.runs), "--tables", str(tables))
    assert proc.returncode == 0, proc.stdout + proc.stderr


_CACHE: dict[str, MainJob] = {}


def main_job(tmp_path_factory: pytest.TempPathFactory) -> MainJob:
    if "job" not in _CACHE:
        root = tmp_path_factory.mktemp("analytics-main-job")
        proc = subprocess.run(
            [sys.executable, "-m", "lifecycle", "--runner", "local", "--workdir", str(root / "work")],
            cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        job = MainJob(root / "work", root / "tables")
        append_main_job(job, root / "tables")
        _CACHE["job"] = job
    return _CACHE["job"]


def rows(tables: Path, table: str) -> list[dict]:
    files = sorted((tables / table).glob("dt=*/*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]
