"""Build a temporary /opt/ml tree and run `python -m algorithms.train` in it, as SageMaker runs the image.

job = OptML(tmp_path / "opt_ml")
job.channel("train", {"part-0.csv": text}, content_type="text/csv")
job.hyperparameters(num_round=50)
result = job.train("xgboost")
assert result.returncode == 0, result.output
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
CAR_PRICES = REPO / "cardata" / "car_prices.csv"
TARGET = "price"


@dataclass(frozen=True)
class TrainResult:
    returncode: int
    output: str  # stdout and stderr, interleaved
    base_dir: Path

    @property
    def model_dir(self) -> Path:
        return self.base_dir / "model"

    @property
    def failure_file(self) -> Path:
        return self.base_dir / "output" / "failure"

    @property
    def failure(self) -> str | None:
        return self.failure_file.read_text() if self.failure_file.exists() else None

    @property
    def failure_line(self) -> str:
        assert self.failure is not None, f"no failure file; exit {self.returncode}\n{self.output}"
        return self.failure.splitlines()[0]

    @property
    def evaluation_file(self) -> Path:
        return self.base_dir / "output" / "data" / "evaluation.json"

    @property
    def evaluation(self) -> dict:
        return json.loads(self.evaluation_file.read_text())

    @property
    def metadata(self) -> dict:
        return json.loads((self.model_dir / "metadata.json").read_text())


class OptML:
    """A SageMaker training tree under ``base_dir`` (input/config, input/data/<channel>, model, output)."""

    def __init__(self, base_dir: Path):
        self.base_dir = Path(base_dir)
        self.config_dir = self.base_dir / "input" / "config"
        self.data_dir = self.base_dir / "input" / "data"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._hyperparameters: dict[str, str] = {}
        self._input_data: dict[str, dict] = {}
        self.hyperparameters()
        self.resources()
        self._write_input_data()

    # -- config ------------------------------------------------------------------------------------------------
    def hyperparameters(self, raw: Mapping[str, object] | None = None, /, **values: object) -> OptML:
        """Set hyperparameters.json; values become strings as SageMaker writes them (use ``raw`` for exact text)."""
        self._hyperparameters = {k: str(v) for k, v in {**(raw or {}), **values}.items()}
        (self.config_dir / "hyperparameters.json").write_text(json.dumps(self._hyperparameters))
        return self

    def resources(self, hosts: tuple[str, ...] = ("algo-1",), current_host: str = "algo-1") -> OptML:
        doc = {"current_host": current_host, "hosts": list(hosts), "network_interface_name": "eth0"}
        (self.config_dir / "resourceconfig.json").write_text(json.dumps(doc))
        return self

    def checkpoints(self, local_path: Path | None = None) -> Path:
        path = Path(local_path or self.base_dir / "checkpoints")
        (self.config_dir / "checkpointconfig.json").write_text(json.dumps({"LocalPath": str(path)}))
        return path

    def _write_input_data(self) -> None:
        (self.config_dir / "inputdataconfig.json").write_text(json.dumps(self._input_data))

    # -- channels ----------------------------------------------------------------------------------------------
    def channel(
        self,
        name: str,
        files: Mapping[str, str | bytes | pd.DataFrame],
        content_type: str | None = "text/csv",
        *,
        header: bool = False,
        distribution: str = "FullyReplicated",
    ) -> Path:
        """Write a channel: text/bytes as is; DataFrames as CSV (``header``) or as parquet for *.parquet names.

        ``content_type=None`` leaves ContentType out of inputdataconfig.json.
        """
        directory = self.data_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        for rel, content in files.items():
            path = directory / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, pd.DataFrame):
                if rel.endswith(".parquet"):
                    content.to_parquet(path, index=False)
                else:
                    content.to_csv(path, index=False, header=header)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        cfg = {"TrainingInputMode": "File", "S3DistributionType": distribution, "RecordWrapperType": "None"}
        if content_type is not None:
            cfg["ContentType"] = content_type
        self._input_data[name] = cfg
        self._write_input_data()
        return directory

    def drop_channel_config(self, name: str) -> None:
        self._input_data.pop(name, None)
        self._write_input_data()

    # -- running -----------------------------------------------------------------------------------------------
    def command(self, algorithm: str, env: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
        full_env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "SAGEMAKER_BASE_DIR": str(self.base_dir),
            "ALGORITHM": algorithm,
            **(env or {}),
        }
        return [sys.executable, "-m", "algorithms.train"], full_env

    def train(self, algorithm: str, env: Mapping[str, str] | None = None, timeout: float = 300) -> TrainResult:
        cmd, full_env = self.command(algorithm, env)
        proc = subprocess.run(
            cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )
        return TrainResult(proc.returncode, proc.stdout, self.base_dir)

    def popen(self, algorithm: str, env: Mapping[str, str] | None = None) -> subprocess.Popen:
        cmd, full_env = self.command(algorithm, env)
        return subprocess.Popen(
            cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def result(self, proc: subprocess.Popen, output: str) -> TrainResult:
        return TrainResult(proc.returncode, output, self.base_dir)


# -- data ------------------------------------------------------------------------------------------------------
def car_prices() -> pd.DataFrame:
    return pd.read_csv(CAR_PRICES)


def split(frame: pd.DataFrame, seed: int = 42, fractions=(0.7, 0.15)) -> dict[str, pd.DataFrame]:
    """Seeded shuffle-split into train/validation/test (70/15/15 by default)."""
    idx = np.random.default_rng(seed).permutation(len(frame))
    n_train = round(fractions[0] * len(frame))
    n_val = round(fractions[1] * len(frame))
    parts = {"train": idx[:n_train], "validation": idx[n_train : n_train + n_val], "test": idx[n_train + n_val :]}
    return {k: frame.iloc[v].reset_index(drop=True) for k, v in parts.items()}


def schema_doc(frame: pd.DataFrame, target: str = TARGET) -> dict:
    """schema.json for a frame: object columns categorical with sorted levels, the rest numeric."""
    features = []
    for name in frame.columns:
        if name == target:
            continue
        if frame[name].dtype.kind in "OSU" or str(frame[name].dtype) in ("str", "string"):
            features.append({"name": name, "type": "categorical", "levels": sorted(frame[name].dropna().unique())})
        else:
            features.append({"name": name, "type": "numeric"})
    return {"version": 1, "target": target, "features": features}


def label_first_csv(frame: pd.DataFrame, target: str = TARGET) -> str:
    """The built-in convention: no header, label first."""
    cols = [target, *(c for c in frame.columns if c != target)]
    return frame[cols].to_csv(index=False, header=False)
