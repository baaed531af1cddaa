"""Wide data (far more columns than rows) for the linear model: the closed-form start is solved in the n x n dual
(the same weights as the d x d primal, which took minutes and gigabytes at 10,000 columns), and the training log
keeps its lines short however many features there are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from algorithms import linear

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("wd", [0.0, 0.05])
@pytest.mark.parametrize("use_bias", [True, False])
def test_the_wide_start_is_the_primal_ridge_solution(wd, use_bias):
    rng = np.random.default_rng(7)
    n, d = 30, 120
    Z, t = rng.normal(size=(n, d)), rng.normal(size=n)
    active = np.ones(d, dtype=bool)
    settings = types.SimpleNamespace(init_method="ridge", use_bias=use_bias, wd=wd)
    w, b = linear._initial_weights(Z, t, active, settings, rng)
    A, tc = (Z - Z.mean(axis=0), t - t.mean()) if use_bias else (Z, t)
    primal = np.linalg.lstsq(A.T @ A / n + wd * np.eye(d), A.T @ tc / n, rcond=None)[0]
    np.testing.assert_allclose(w, primal, rtol=1e-7, atol=1e-9)
    if use_bias:
        assert b == pytest.approx(float(np.mean(t - Z @ w)))


def test_wide_training_logs_short_lines(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 50, 2000
    X = rng.normal(size=(n, d))
    base = tmp_path / "opt_ml"
    (base / "input" / "data" / "train").mkdir(parents=True)
    (base / "input" / "config").mkdir(parents=True)
    np.savetxt(base / "input/data/train/train.csv", np.column_stack([X[:, 0], X]), delimiter=",", fmt="%.4f")
    config = base / "input" / "config"
    (config / "hyperparameters.json").write_text(json.dumps({"epochs": "2"}))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"ContentType": "text/csv"}}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "ALGORITHM": "linear"}
    proc = subprocess.run([sys.executable, "-m", "algorithms.train"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (proc.stdout + proc.stderr).splitlines()
    assert max(len(line) for line in log) < 1000  # it listed all 2,000 features in one line
    assert any("... and 1980 more (2000 features)" in line for line in log)
