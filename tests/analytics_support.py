"""The analytics tables built from the main job's real outputs: ``python -m lifecycle --runner local`` once per
session (cached here, so every test_analytics*.py module shares the one run), then the append CLI on its batch
outputs and monitor runs, as the pipelines' processing jobs run it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parent.parent
SCORED_AT = {"car-prices-batch": "2026-11-30T10:00:00Z", "car-prices-batch-drifted": "2026-12-01T10:00:00Z"}
OUT_DIR = {"car-prices-batch": "joined", "car-prices-batch-drifted": "drifted"}


@dataclass(frozen=True)
class MainJob:
    workdir: Path
    tables: Path

    @property
    def runs(self) -> Path:
        return self.workdir / "monitoring" / "runs"

    @property
    def schema(self) -> Path:
        return self.workdir / "models" / "xgboost" / "model" / "schema.json"

    def out_file(self, target: str) -> Path:
        return next((self.workdir / "batch" / OUT_DIR[target]).glob("*.out"))

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


def append_main_job(workdir: Path, tables: Path) -> None:
    for target, when in SCORED_AT.items():
        out = workdir / "batch" / OUT_DIR[target]
        schema = workdir / "models" / "xgboost" / "model"
        proc = append("scoring", "--run-id", target, "--model", "xgboost", "--scored-at", when,
                      "--input", str(out), "--schema", str(schema), "--tables", str(tables))  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = append("monitoring", "--input", str(workdir / "monitoring" / "runs"), "--tables", str(tables))
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
        append_main_job(root / "work", root / "tables")
        _CACHE["job"] = MainJob(root / "work", root / "tables")
    return _CACHE["job"]


def rows(tables: Path, table: str) -> list[dict]:
    files = sorted((tables / table).glob("dt=*/*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]
