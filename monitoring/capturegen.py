"""Writes SageMaker-shaped data capture and ground truth files from a table (for demos, tests and benchmarks):
``<root>/<endpoint>/<variant>/yyyy/mm/dd/hh/<name>.jsonl``, one line per request."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd


def _csv_row(values: Sequence[Any]) -> str:
    return ",".join("" if v is None or (isinstance(v, float) and v != v) else _fmt(v) for v in values)


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def capture_line(
    features: Sequence[Any] | dict[str, Any] | list[Any],
    prediction: float | list[float],
    when: datetime,
    event_id: str,
    *,
    encoding: str = "CSV",
    inference_id: str | None = None,
) -> str:
    """One capture line. ``features``: one record (values in schema order, or a dict) or, for CSV, a list of
    records (several per request). ``encoding``: CSV, JSON (instances) or BASE64 (CSV payload, base64)."""
    many = isinstance(features, list) and features and isinstance(features[0], (list, tuple, dict))
    records = features if many else [features]
    preds = prediction if isinstance(prediction, list) else [prediction]
    if encoding == "JSON":
        data_in = json.dumps({"instances": [list(r) if not isinstance(r, dict) else r for r in records]})
        data_out = json.dumps({"predictions": [{"score": p} for p in preds]})
        inp = {"observedContentType": "application/json", "mode": "INPUT", "data": data_in, "encoding": "JSON"}
        out = {"observedContentType": "application/json", "mode": "OUTPUT", "data": data_out, "encoding": "JSON"}
    else:
        text_in = "\n".join(_csv_row(r) for r in records)
        text_out = "\n".join(_fmt(float(p)) for p in preds)
        if encoding == "BASE64":
            text_in = base64.b64encode(text_in.encode()).decode()
            text_out = base64.b64encode(text_out.encode()).decode()
        inp = {"observedContentType": "text/csv", "mode": "INPUT", "data": text_in, "encoding": encoding}
        out = {"observedContentType": "text/csv", "mode": "OUTPUT", "data": text_out, "encoding": encoding}
    meta: dict[str, Any] = {"eventId": event_id, "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    if inference_id:
        meta["inferenceId"] = inference_id
    return json.dumps(
        {"captureData": {"endpointInput": inp, "endpointOutput": out}, "eventMetadata": meta, "eventVersion": "0"}
    )


def hour_dir(root: Path, endpoint: str, variant: str, when: datetime) -> Path:
    return root / endpoint / variant / when.strftime("%Y/%m/%d/%H")


def write_captures(
    root: Path,
    frame: pd.DataFrame,
    predictions: Sequence[float],
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
                d = hour_dir(root, endpoint, variant, when)
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


def ground_truth_line(event_id: str, label: float, *, inference_id: bool = False) -> str:
    meta = {"inferenceId" if inference_id else "eventId": event_id}
    return json.dumps(
        {"groundTruthData": {"data": _fmt(float(label)), "encoding": "CSV"}, "eventMetadata": meta, "eventVersion": "0"}
    )
