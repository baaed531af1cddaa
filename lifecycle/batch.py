"""Batch transform jobs against a served model: ``python -m local_mode.transform``, which honours what
SageMaker local mode ignores (InputFilter, JoinSource, OutputFilter).

Every job here reads headerless CSV whose first column is not a feature (a record id, or the label of a
label-first split): ``InputFilter $[1:]`` sends the rest, ``JoinSource Input`` appends the prediction to the
input record, and the OutputFilter keeps what the job is for: ``$[0,-1]`` the id (or label) and the prediction,
``$`` the whole joined record (what the monitor reads: id, features, prediction).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lifecycle.progress import StepFailed
from pipelines.local.jobs import REPO

ID_AND_PREDICTION = "$[0,-1]"
WHOLE_RECORD = "$"


def transform(endpoint: str, input_file: Path, output_dir: Path, output_filter: str = ID_AND_PREDICTION) -> Path:
    """Run the job; return the ``<input name>.out`` file it wrote."""
    args = [
        "--endpoint", endpoint, "--input", str(input_file), "--output", str(output_dir),
        "--content-type", "text/csv", "--accept", "text/csv", "--split-type", "Line", "--assemble-with", "Line",
        "--input-filter", "$[1:]", "--join-source", "Input", "--output-filter", output_filter,
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "local_mode.transform", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )
    out = output_dir / f"{input_file.name}.out"
    if proc.returncode != 0 or not out.is_file():
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        raise StepFailed(f"batch transform of {input_file.name}: {reason}", proc.stdout)
    return out
