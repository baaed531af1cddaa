"""Readers for batch transform output, and the types every reader shares, each yielding column batches (never the
whole data set). Real-time data capture and ground truth lines are ``monitoring.datacapture``'s.

- batch transform output: joined CSV (optional leading id columns, optional label first, the features, the
  prediction, optionally the inference id and time that ``GenerateInferenceId`` appends) and JSON Lines with
  ``SageMakerOutput`` (and ``SageMakerInput`` when the input was not an object);
- batch data-capture manifests.

Malformed lines are named (file and line) and never stop the run.
"""

from __future__ import annotations

import base64
import csv
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from core import cells
from monitoring.statistics import FeatureSpec, column_name

FLUSH_ROWS = 65_536
MAX_REPORTED_BAD_LINES = 1000

_PREDICTION_KEYS = ("predictions", "prediction", "score", "scores", "predicted_label", "value", "output")


@dataclass
class Window:
    start: datetime | None = None
    end: datetime | None = None

    def contains(self, t: datetime) -> bool:
        return (self.start is None or t >= self.start) and (self.end is None or t < self.end)


@dataclass
class Batch:
    columns: dict[str, Any]  # feature or extra column name -> array of n_rows values
    n_rows: int
    absent: dict[str, int] = field(default_factory=dict)
    predictions: np.ndarray | None = None
    labels: np.ndarray | None = None  # from a label column in the data itself
    keys: list[str] | None = None  # per row: the id ground truth is matched on ("<id>" or "<id>#<index>")
    # the fast path defers building ``keys`` (a Python list per row) until ground truth needs them
    lazy_keys: tuple[pa.Array, np.ndarray] | None = None

    def row_keys(self) -> list[str] | None:
        if self.keys is None and self.lazy_keys is not None:
            self.keys = _expand_keys(self.lazy_keys[0].to_pylist(), self.lazy_keys[1])
        return self.keys


@dataclass
class BadLines:
    """Malformed input, counted and named (file, line, reason); the first MAX_REPORTED_BAD_LINES are kept."""

    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, file: str, line: int | None, reason: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_REPORTED_BAD_LINES:
            self.examples.append({"file": file, "line": line, "reason": reason})


@dataclass
class FileResult:
    """What reading one file found out besides its batches."""

    records_in_window: int = 0
    records_before: int = 0
    records_after: int = 0  # records later than the window: the file is not finished with
    fields: int | None = None  # fields per positional record, set by the file's first one (as batch CSV does)


@dataclass(frozen=True)
class Layout:
    """How the columns of a headerless CSV row map to the schema."""

    features: tuple[FeatureSpec, ...]
    id_columns: int = 0
    label_first: bool = False
    output_first: bool = False  # output_columns_position START: the prediction leads the joined row
    header: bool = False  # a CSV header names the columns (then names, not positions, decide)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]


def _column_numbers(col: Any) -> tuple[np.ndarray, int]:
    from monitoring.sketches import to_numbers

    return to_numbers(col)


def parse_time(value: str) -> datetime:
    v = value.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    t = datetime.fromisoformat(v)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _csv_records(text: str) -> list[list[str]]:
    """A CSV body's records by the cell grammar (core.cells); a malformed one raises ValueError (a bad line)."""
    text = text.removeprefix(cells.BOM).strip("\r\n")
    if not text:
        return []
    if cells.lone_cr(text) is not None:
        raise ValueError(cells.LONE_CR)
    return [cells.split_record(line.removesuffix("\r")) for line in text.split("\n") if line.strip()]


def _json_records(text: Any, *, lines: bool) -> list[Any]:
    if not isinstance(text, str):
        doc = text
    elif lines or ("\n" in text.strip() and not text.lstrip().startswith("[")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            return [_json_record(json.loads(line)) for line in text.splitlines() if line.strip()]
    else:
        doc = json.loads(text)
    if isinstance(doc, dict) and "instances" in doc:
        doc = doc["instances"]
    elif isinstance(doc, dict) and "inputs" in doc:
        doc = doc["inputs"]
    if isinstance(doc, list) and doc and all(isinstance(r, (list, dict)) for r in doc):
        return [_json_record(r) for r in doc]
    return [_json_record(doc)]


def _json_record(r: Any) -> Any:
    if isinstance(r, dict) and isinstance(r.get("features"), list) and len(r) == 1:
        return r["features"]
    if isinstance(r, (list, dict)):
        return r
    raise ValueError(f"expected a record (list or object), received {type(r).__name__}")


def _predictions_from_payload(payload: dict[str, Any]) -> list[float]:
    try:
        data: Any = payload.get("data")  # JSON: whatever the capture holds; a wrong type is caught below
        encoding = str(payload.get("encoding", "CSV")).upper()
        if encoding == "BASE64":
            data = base64.b64decode(data).decode("utf-8")
            ctype = str(payload.get("observedContentType") or "")
            encoding = "JSON" if "json" in ctype else "CSV"
        if encoding == "JSON":
            text = data if isinstance(data, str) else json.dumps(data)
            try:
                return predictions_from_json(json.loads(text))
            except json.JSONDecodeError:
                return [
                    v for line in text.splitlines() if line.strip() for v in predictions_from_json(json.loads(line))
                ]
        rows = _csv_records(str(data))
        return [float(r[0]) if r and r[0].strip() else math.nan for r in rows]
    except (ValueError, TypeError, AttributeError):
        return []


def predictions_from_json(doc: Any) -> list[float]:
    if isinstance(doc, bool):
        raise ValueError("boolean prediction")
    if isinstance(doc, (int, float)):
        return [float(doc)]
    if isinstance(doc, str):
        return [float(doc)]
    if isinstance(doc, list):
        return [v for item in doc for v in predictions_from_json(item)[:1]]
    if isinstance(doc, dict):
        for key in _PREDICTION_KEYS:
            if key in doc:
                return predictions_from_json(doc[key])
    raise ValueError("no prediction found")


class _RecordAccumulator:
    """Collects decoded records (positional or by name) into columns."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.names = set(layout.names)
        self.lower = {column_name(n): n for n in layout.names}
        self._reset()

    def _reset(self) -> None:
        self.n = 0
        self.cols: dict[str, list[Any]] = {}
        self.preds: list[float] = []
        self.labels: list[Any] = []
        self.keys: list[str] = []

    def _set(self, name: str, value: Any) -> None:
        col = self.cols.get(name)
        if col is None:
            col = self.cols[name] = [None] * self.n
        col.append(value)

    def add(self, rec: Any, pred: float, key: str, label: Any = None) -> None:
        if isinstance(rec, dict):
            for k, v in rec.items():
                # as written; a record spelling a feature otherwise (case, punctuation) still counts for it
                name = k if k in self.names else self.lower.get(column_name(k), str(k))
                self._set(name, _scalar(v))
        else:
            names = self.layout.names
            for i, v in enumerate(rec):
                self._set(names[i] if i < len(names) else f"_c{i}", _scalar(v))
        self.n += 1
        for col in self.cols.values():
            if len(col) < self.n:
                col.append(_ABSENT)
        self.preds.append(pred)
        self.labels.append(label)
        self.keys.append(key)

    def flush(self) -> Batch:
        columns: dict[str, Any] = {}
        absent: dict[str, int] = {}
        for name, values in self.cols.items():
            n_abs = sum(1 for v in values if v is _ABSENT)
            if n_abs:
                absent[name] = n_abs
                values = [None if v is _ABSENT else v for v in values]
            columns[name] = values
        labels = None
        if any(v is not None for v in self.labels):
            from monitoring.sketches import to_numbers

            labels = to_numbers(self.labels)[0]
        batch = Batch(columns, self.n, absent, np.asarray(self.preds, dtype=np.float64), labels, self.keys)
        self._reset()
        return batch


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def _scalar(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return v


# -- batch transform output -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CsvShape:
    """Where things are in a joined batch-output row, decided from the number of columns."""

    prediction: int | None
    inference_id: int | None
    label: int | None
    first_feature: int
    n_features: int


def csv_shape(n_columns: int, layout: Layout) -> CsvShape:
    n = len(layout.features)
    if layout.output_first:  # prediction, then the input row (ids, label, features), then the id and time
        head = 1 + layout.id_columns + (1 if layout.label_first else 0)
        label = 1 + layout.id_columns if layout.label_first else None
        inference_id = n_columns - 2 if n_columns - head - n >= 2 else None
        return CsvShape(0, inference_id, label, head, max(0, min(n, n_columns - head)))
    head = layout.id_columns + (1 if layout.label_first else 0)
    label = layout.id_columns if layout.label_first else None
    extra = n_columns - head - n
    if extra >= 3:  # prediction, inference id, inference time (GenerateInferenceId)
        return CsvShape(n_columns - 3, n_columns - 2, label, head, n)
    if extra >= 1:
        return CsvShape(head + n, None, label, head, n)
    return CsvShape(None, None, label, head, max(0, n_columns - head))


def read_joined_csv(
    path: Path, offset: int, layout: Layout, bad: BadLines, result: FileResult, first_line: int = 1
) -> Iterator[Batch]:
    """Joined CSV (as the batch job writes it) from byte ``offset``, in blocks, every column as text. With
    ``layout.header`` the file's first line names the columns and is not data."""
    names: list[str] | None = None
    with open(path, "rb") as f:
        if layout.header:
            names = next(csv.reader([f.readline().decode("utf-8", "replace").strip("\r\n")]), [])
            if offset == 0:
                offset, first_line = f.tell(), first_line + 1
        f.seek(offset)
        first_row = f.readline().decode("utf-8", "replace").strip("\r\n")
        if not first_row.strip():
            return
        f.seek(offset)
        n_cols = len(names) if names else len(next(csv.reader([first_row])))
        shape = csv_shape(n_cols, layout)

        pending: list[tuple[int | None, str, str]] = []

        def on_invalid(row: Any) -> str:
            # pyarrow knows row numbers only when parsing serially: resolve the others after the read
            line = None if row.number is None else row.number + first_line - 1
            pending.append((line, row.text, f"expected {row.expected_columns} columns, received {row.actual_columns}"))
            return "skip"

        reader = pacsv.open_csv(
            f,
            read_options=pacsv.ReadOptions(column_names=[f"c{i}" for i in range(n_cols)], block_size=1 << 22),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={f"c{i}": pa.string() for i in range(n_cols)}, null_values=[""], strings_can_be_null=True
            ),
        )
        if names:
            yield from _named_batches(reader, layout, names, result)
        else:
            yield from _joined_batches(reader, layout, shape, result)
    if pending:
        _report_ragged(path, offset, first_line, pending, bad)


def _report_ragged(
    path: Path, offset: int, first_line: int, pending: list[tuple[int | None, str, str]], bad: BadLines
) -> None:
    unknown: dict[str, list[int]] = {}
    for i, (line, text, _) in enumerate(pending):
        if line is None:
            unknown.setdefault(text.rstrip("\r\n"), []).append(i)
    found: dict[int, int] = {}
    if unknown:
        with open(path, "rb") as f:
            f.seek(offset)
            for lineno, raw in enumerate(f, start=first_line):
                idxs = unknown.get(raw.decode("utf-8", "replace").rstrip("\r\n"))
                if idxs:
                    found[idxs.pop(0)] = lineno
    for i, (line, _, reason) in enumerate(pending):
        bad.add(str(path), line if line is not None else found.get(i), reason)


# header names (case-insensitive) that hold the model's output or the inference id rather than a feature
_OUTPUT_NAMES = ("prediction", "predictions", "score", "sagemakeroutput", "output")
_ID_NAMES = ("inferenceid", "inference_id", "sagemakerinferenceid")


def _named_batches(reader: Any, layout: Layout, names: list[str], result: FileResult) -> Iterator[Batch]:
    feats = set(layout.names)
    pred = next((i for i, n in enumerate(names) if n not in feats and n.strip().lower() in _OUTPUT_NAMES), None)
    key = next((i for i, n in enumerate(names) if n not in feats and n.strip().lower() in _ID_NAMES), None)
    skip = {pred, key} | {i for i, n in enumerate(names) if n.strip().lower() == "sagemakerinferencetime"}
    for rb in reader:
        if not rb.num_rows:
            continue
        result.records_in_window += rb.num_rows
        columns = {n: rb.column(i) for i, n in enumerate(names) if i not in skip}
        preds = _column_numbers(rb.column(pred))[0] if pred is not None else None
        keys = rb.column(key).to_pylist() if key is not None else None
        yield Batch(columns, rb.num_rows, predictions=preds, keys=keys)


def _joined_batches(reader: Any, layout: Layout, shape: CsvShape, result: FileResult) -> Iterator[Batch]:
    for rb in reader:
        n = rb.num_rows
        if not n:
            continue
        result.records_in_window += n
        columns: dict[str, Any] = {}
        for j in range(shape.n_features):
            columns[layout.names[j]] = rb.column(shape.first_feature + j)
        preds = _column_numbers(rb.column(shape.prediction))[0] if shape.prediction is not None else None
        labels = _column_numbers(rb.column(shape.label))[0] if shape.label is not None else None
        keys = rb.column(shape.inference_id).to_pylist() if shape.inference_id is not None else None
        yield Batch(columns, n, predictions=preds, labels=labels, keys=keys)


def read_joined_jsonl(
    path: Path, data: bytes, layout: Layout, bad: BadLines, result: FileResult, first_line: int = 1
) -> Iterator[Batch]:
    """JSON Lines batch output: ``{...input fields..., "SageMakerOutput": ...}`` or with ``SageMakerInput``."""
    acc = _RecordAccumulator(layout)
    for lineno, raw in enumerate(data.split(b"\n"), start=first_line):
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("expected a JSON object")
            output = doc.get("SageMakerOutput")
            key = str(doc.get("SageMakerInferenceId") or "")
            if "SageMakerInput" in doc:
                records = _json_records(doc["SageMakerInput"], lines=False)
            else:
                fields = {
                    k: v
                    for k, v in doc.items()
                    if k not in ("SageMakerOutput", "SageMakerInferenceId", "SageMakerInferenceTime")
                }
                records = [fields]
            preds = predictions_from_json(output) if output is not None else []
            if len(preds) != len(records):
                preds = [math.nan] * len(records)
        except (ValueError, TypeError) as e:
            reason = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
            bad.add(str(path), lineno, f"malformed batch output line: {reason}")
            continue
        result.records_in_window += len(records)
        for j, (rec, p) in enumerate(zip(records, preds, strict=True)):
            label = None
            if layout.label_first and isinstance(rec, list):
                label, rec = rec[0], rec[1:]
            acc.add(rec, p, key if len(records) == 1 else f"{key}#{j}", label)
        if acc.n >= FLUSH_ROWS:
            yield acc.flush()
    if acc.n:
        yield acc.flush()


def read_manifest(path: Path, data: bytes, resolve: Callable[[str], Path]) -> list[Path] | None:
    """A batch data-capture manifest (``[{"prefix": "s3://b/p/"}, "rel/1.csv", ...]``) as local paths, or None
    when the file is not a manifest."""
    text = data.lstrip()
    if not text.startswith(b"["):
        return None
    try:
        doc = json.loads(data)
    except json.JSONDecodeError:
        return None
    if not (isinstance(doc, list) and doc and isinstance(doc[0], dict) and "prefix" in doc[0]):
        return None
    prefix = str(doc[0]["prefix"])
    return [resolve(prefix + str(rel)) for rel in doc[1:] if isinstance(rel, str)]


def _expand_keys(ids: list[str | None], rows_per: np.ndarray) -> list[str]:
    if int(rows_per.max(initial=1)) == 1:
        return [i or "" for i in ids]
    keys: list[str] = []
    for i, k in zip(ids, rows_per.tolist(), strict=True):
        keys += [i or ""] if k == 1 else [f"{i}#{j}" for j in range(k)]
    return keys


def labels_for(keys: Sequence[str] | None, truth: dict[str, float]) -> np.ndarray | None:
    if not keys or not truth:
        return None
    get = truth.get
    return np.fromiter((get(k, math.nan) for k in keys), dtype=np.float64, count=len(keys))
