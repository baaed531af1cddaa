"""Writes SageMaker-shaped data capture files from a table (for demos, tests and benchmarks):
``<root>/<endpoint>/<variant>/yyyy/mm/dd/hh/<name>.jsonl``, one line per request. The lines themselves are
``monitoring.datacapture``'s (re-exported here: ``capture_line``, ``ground_truth_line``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.datacapture import capture_line, ground_truth_line, hour_dir

__all__ = ["capture_line", "ground_truth_line", "write_captures"]


def write_captures(
    root: Path,
    frame: pd.DataFrame,
    predictions: Sequence[float] | np.ndarray,
    start: datetime,
    *,
    endpoint: str = "car-prices",
    variant: str = "AllTraffic",
    spacing: timedelta = timedelta(seconds=1),
    encoding: str = "CSV",
    lines_per_file: int = 100_000,
    ids: Sequence[str] | None = None,
) -> list[Path]:
    """One request per row, ``spacing`` apart from ``start``; files rotate every hour and every
    ``lines_per_file`` lines. Returns the files written."""
    files: list[Path] = []
    handle = None
    current_hour = None
    count = 0
    rows = frame.itertuples(index=False, name=None)
    try:
        for i, (row, pred) in enumerate(zip(rows, predictions, strict=True)):
            when = start + spacing * i
            hour = when.replace(minute=0, second=0, microsecond=0)
            if handle is None or hour != current_hour or count >= lines_per_file:
                if handle is not None:
                    handle.close()
                d = hour_dir(root / endpoint / variant, when)
                d.mkdir(parents=True, exist_ok=True)
                path = d / f"{when.strftime('%M-%S-%f')}-{len(files):05d}.jsonl"
                files.append(path)
                handle = open(path, "w")  # noqa: SIM115 - rotated by hand
                current_hour, count = hour, 0
            eid = ids[i] if ids is not None else str(uuid.UUID(int=i))
            handle.write(capture_line(list(row), float(pred), when, eid, encoding=encoding) + "\n")
            count += 1
    finally:
        if handle is not None:
            handle.close()
    return files
