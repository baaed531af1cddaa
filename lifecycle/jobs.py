"""Run the project's entry points the way SageMaker runs them, as local processes.

A training job gets its own /opt/ml tree (relocated with SAGEMAKER_BASE_DIR) laid out exactly as SageMaker lays
it out in the container: config files under input/config, channels under input/data/<channel>.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class JobResult:
    returncode: int
    log: str
    base_dir: Path

    @property
    def model_dir(self) -> Path:
        return self.base_dir / "model"

    @property
    def failure(self) -> str | None:
        path = self.base_dir / "output" / "failure"
        return path.read_text() if path.exists() else None

    @property
    def evaluation(self) -> dict | None:
        path = self.base_dir / "output" / "data" / "evaluation.json"
        return json.loads(path.read_text()) if path.exists() else None


def layout_training(
    base_dir: Path,
    channels: Mapping[str, Path],
    hyperparameters: Mapping[str, object],
    content_type: str = "text/csv",
    checkpoints: Path | None = None,
) -> Path:
    """Lay out /opt/ml for a training job. Channel folders are copied, like SageMaker's File mode does."""
    config = base_dir / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    # SageMaker passes every hyperparameter as a string.
    (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hyperparameters.items()}))
    channel_config = {"ContentType": content_type, "TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
    (config / "inputdataconfig.json").write_text(json.dumps(dict.fromkeys(channels, channel_config)))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    if checkpoints is not None:
        (config / "checkpointconfig.json").write_text(json.dumps({"LocalPath": str(checkpoints)}))
    for name, src in channels.items():
        dest = base_dir / "input" / "data" / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(src, dest)
    for sub in ("model", "output/data"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    return base_dir


def run_module(module: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m module args` from the repository root, output captured (stdout and stderr interleaved)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )


def train(algorithm: str, base_dir: Path) -> JobResult:
    """`docker run IMAGE train`, as a local process: same entry point, same /opt/ml tree."""
    proc = run_module("algorithms.train", env={"ALGORITHM": algorithm, "SAGEMAKER_BASE_DIR": str(base_dir)})
    return JobResult(proc.returncode, proc.stdout, base_dir)


def preprocess(input_dir: Path, output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_module("processing.preprocess", "--input", str(input_dir), "--output", str(output_dir), *extra)
