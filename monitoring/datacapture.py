"""SageMaker real-time data capture and ground truth lines: the one module that writes and reads them.

A capture line (SageMaker's DataCaptureConfig layout, what Model Monitor reads)::

    {"captureData": {"endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",  "data": "...",
                                        "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "...",
                                        "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<optional>", "inferenceTime": "2024-03-05T07:59:59Z"},
     "eventVersion": "0"}

in ``<root>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<uuid>.jsonl`` by the UTC hour of the inference.
Ground truth: ``{"groundTruthData": {"data": "6.10", "encoding": "CSV"}, "eventMetadata": {"eventId": ...},
"eventVersion": "0"}``.

Writers: ``payload``, ``capture_record``, ``capture_line``, ``CaptureWriter`` (the capture proxy's, hourly files),
``ground_truth_line``. Readers: ``read_capture_file`` (a vectorised path with pyarrow for clean blocks; anything
unusual is re-read line by line, naming each malformed line), ``decode_payload``, ``read_ground_truth``.
"""

from __future__ import annotations

import base64
import io
import json
import math
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from core import cells
from monitoring.readers import (
    FLUSH_ROWS,
    BadLines,
    Batch,
    FileResult,
    Layout,
    Window,
    _column_numbers,
    _csv_records,
    _json_records,
    _predictions_from_payload,
    _RecordAccumulator,
    parse_time,
)

# SageMaker's inferenceTime: UTC, whole seconds, "Z" (as its capture files and the docs show)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DEFAULT_CSV_TYPES = ("text/csv",)
DEFAULT_JSON_TYPES = ("application/json",)
EVENT_VERSION = "0"


# -- writing ---------------------------------------------------------------------------------------------------
def format_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime(TIME_FORMAT)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def payload(
    body: bytes,
    content_type: str | None,
    mode: str,
    csv_types: Iterable[str] = DEFAULT_CSV_TYPES,
    json_types: Iterable[str] = DEFAULT_JSON_TYPES,
) -> dict[str, str]:
    """One side of ``captureData``: the body as text when its media type is listed (and it is UTF-8), else base64."""
    media = media_type(content_type)
    encoding = "CSV" if media in csv_types else "JSON" if media in json_types else "BASE64"
    data = None
    if encoding != "BASE64":
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            encoding = "BASE64"
    if data is None:
        data = base64.b64encode(body).decode("ascii")
    return {"observedContentType": content_type or "", "mode": mode, "data": data, "encoding": encoding}


def capture_record(
    request_body: bytes,
    request_type: str | None,
    response_body: bytes,
    response_type: str | None,
    when: datetime,
    *,
    inference_id: str | None = None,
    event_id: str | None = None,
    csv_types: Iterable[str] = DEFAULT_CSV_TYPES,
    json_types: Iterable[str] = DEFAULT_JSON_TYPES,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"eventId": event_id or str(uuid.uuid4())}
    if inference_id:
        meta["inferenceId"] = inference_id
    meta["inferenceTime"] = format_time(when)
    return {
        "captureData": {
            "endpointInput": payload(request_body, request_type, "INPUT", csv_types, json_types),
            "endpointOutput": payload(response_body, response_type, "OUTPUT", csv_types, json_types),
        },
        "eventMetadata": meta,
        "eventVersion": EVENT_VERSION,
    }


def to_line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


def _csv_row(values: Any) -> str:
    return ",".join("" if v is None or (isinstance(v, float) and v != v) else _fmt(v) for v in values)


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def capture_line(
    features: Any,
    prediction: float | list[float],
    when: datetime,
    event_id: str,
    *,
    encoding: str = "CSV",
    inference_id: str | None = None,
) -> str:
    """One capture line (no newline) from values, as an endpoint would have seen them. ``features``: one record
    (values in schema order, or a dict) or a list of records (several per request). ``encoding``: CSV, JSON
    (``{"instances": [...]}`` in, ``{"predictions": [{"score": p}]}`` out) or BASE64 (a CSV payload, base64)."""
    many = isinstance(features, list) and features and isinstance(features[0], (list, tuple, dict))
    records = features if many else [features]
    preds = prediction if isinstance(prediction, list) else [prediction]
    if encoding == "JSON":
        body_in = json.dumps({"instances": [r if isinstance(r, dict) else list(r) for r in records]})
        body_out = json.dumps({"predictions": [{"score": p} for p in preds]})
        types = ("application/json", "application/json")
    else:
        body_in = "\n".join(_csv_row(r) for r in records)
        body_out = "\n".join(_fmt(float(p)) for p in preds)
        types = ("text/csv", "text/csv")
    known = () if encoding == "BASE64" else None  # an unlisted media type is what makes SageMaker use base64
    rec = capture_record(
        body_in.encode(),
        types[0],
        body_out.encode(),
        types[1],
        when,
        inference_id=inference_id,
        event_id=event_id,
        **({"csv_types": known, "json_types": known} if known is not None else {}),
    )
    return to_line(rec)[:-1]


def ground_truth_line(event_id: str, label: float, *, inference_id: bool = False) -> str:
    meta = {"inferenceId" if inference_id else "eventId": event_id}
    doc = {"groundTruthData": {"data": _fmt(float(label)), "encoding": "CSV"}, "eventMetadata": meta}
    return to_line({**doc, "eventVersion": EVENT_VERSION})[:-1]


def hour_dir(root: Path, when: datetime) -> Path:
    """``<root>/yyyy/mm/dd/hh`` of ``when`` in UTC (root is ``<destination>/<endpoint>/<variant>``)."""
    return root / when.astimezone(UTC).strftime("%Y/%m/%d/%H")


def file_name(when: datetime) -> str:
    """SageMaker's: minute-second-millisecond of the first record, then a uuid."""
    when = when.astimezone(UTC)
    return f"{when:%M-%S}-{when.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"


class CaptureWriter:
    """Appends capture lines under ``<root>/yyyy/mm/dd/hh/``; one open file per hour, rotated when the hour changes."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._hour: Path | None = None
        self._file: IO[str] | None = None
        self.files: list[Path] = []

    def write(self, record: dict[str, Any], when: datetime) -> Path:
        line = to_line(record)
        with self._lock:
            folder = hour_dir(self.root, when)
            if folder != self._hour or self._file is None:
                self._close()
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / file_name(when)
                self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across requests
                self._hour = folder
                self.files.append(path)
            self._file.write(line)
            self._file.flush()
            return self.files[-1]

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        with self._lock:
            self._close()


_PAYLOAD = pa.struct(
    [("observedContentType", pa.string()), ("mode", pa.string()), ("data", pa.string()), ("encoding", pa.string())]
)
CAPTURE_SCHEMA = pa.schema(
    [
        ("captureData", pa.struct([("endpointInput", _PAYLOAD), ("endpointOutput", _PAYLOAD)])),
        (
            "eventMetadata",
            pa.struct([("eventId", pa.string()), ("inferenceId", pa.string()), ("inferenceTime", pa.string())]),
        ),
    ]
)


# -- reading ---------------------------------------------------------------------------------------------------
def read_capture_file(
    path: Path, data: bytes, layout: Layout, window: Window, bad: BadLines, result: FileResult, first_line: int = 1
) -> Iterator[Batch]:
    """Batches from one capture file's bytes (``data`` may start mid-file at line ``first_line``)."""
    fast = _capture_fast(path, data, layout, window, result)
    if fast is not None:
        yield from fast
        return
    yield from _capture_slow(path, data, layout, window, bad, result, first_line)


def _capture_fast(path: Path, data: bytes, layout: Layout, window: Window, result: FileResult) -> list[Batch] | None:
    """The vectorised path, or None when the file needs the careful line-by-line one."""
    if not data.strip():
        return []
    try:
        table = pajson.read_json(
            io.BytesIO(data),
            parse_options=pajson.ParseOptions(explicit_schema=CAPTURE_SCHEMA, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != data.count(b"\n") + (0 if data.endswith(b"\n") else 1):
        return None  # blank lines would shift line numbers
    cap = table.column("captureData").combine_chunks()
    meta = table.column("eventMetadata").combine_chunks()
    inp, out = cap.field("endpointInput"), cap.field("endpointOutput")
    in_data, in_enc = inp.field("data"), inp.field("encoding")
    times_raw = meta.field("inferenceTime")
    if in_data.null_count or times_raw.null_count or in_enc.null_count:
        return None
    if not pc.all(pc.equal(in_enc, "CSV")).as_py():
        return None
    try:
        times = pc.cast(times_raw, pa.timestamp("us", tz="UTC"))
    except pa.ArrowInvalid:
        return None
    keep = _window_mask(times, window, result)
    if keep is not None:
        in_data, out = in_data.filter(keep), out.filter(keep)
        meta = meta.filter(keep)
    n_caps = len(in_data)
    result.records_in_window += n_caps
    if n_caps == 0:
        return []
    # each payload is a request body: a byte-order mark at its start is not data (core.cells); a quoted one takes
    # the careful path, which applies the grammar's quoting rules
    in_data = pc.utf8_ltrim(pc.utf8_rtrim(in_data, characters="\r\n"), characters=cells.BOM)
    if pc.any(pc.match_substring(in_data, '"')).as_py():
        return None
    rows_per = pc.add(pc.count_substring(in_data, "\n"), 1).to_numpy(zero_copy_only=False)
    n_rows = int(rows_per.sum())
    table_in = _read_csv_block(in_data)
    if table_in is None or table_in.num_rows != n_rows:
        return None
    if result.fields is not None and table_in.num_columns != result.fields:
        return None  # the careful path names each record of the wrong width
    result.fields = table_in.num_columns
    columns, absent = _positional_columns(table_in, layout, n_rows)
    predictions = _fast_predictions(out, rows_per, n_rows)
    ids = meta.field("inferenceId")
    ids = pc.if_else(pc.is_valid(ids), ids, meta.field("eventId"))
    return [Batch(columns, n_rows, absent, predictions=predictions, lazy_keys=(ids, rows_per))]


def _window_mask(times: pa.Array, window: Window, result: FileResult) -> pa.Array | None:
    if window.start is None and window.end is None:
        return None
    keep = pa.array(np.ones(len(times), dtype=bool))
    if window.start is not None:
        before = pc.less(times, pa.scalar(window.start, pa.timestamp("us", tz="UTC")))
        result.records_before += pc.sum(before).as_py() or 0
        keep = pc.and_(keep, pc.invert(before))
    if window.end is not None:
        after = pc.greater_equal(times, pa.scalar(window.end, pa.timestamp("us", tz="UTC")))
        result.records_after += pc.sum(after).as_py() or 0
        keep = pc.and_(keep, pc.invert(after))
    return keep


def _read_csv_block(lines: pa.Array) -> pa.Table | None:
    joined = pc.binary_join_element_wise(lines, "\n", "")  # each value + "\n": the buffer is then the CSV text
    joined = joined if joined.offset == 0 else pa.concat_arrays([joined])
    buf = joined.buffers()[2]
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32, count=len(joined) + 1)
    body = buf[offsets[0] : offsets[-1]] if buf is not None else b""
    # every column as text: the sketches read cells by core.cells (pyarrow would take "4.0" for the level "4")
    first = bytes(body[: max(bytes(body[:65536]).find(b"\n"), 0)])
    names = [f"f{i}" for i in range(first.count(b",") + 1)]
    try:
        return pacsv.read_csv(
            pa.BufferReader(body),
            read_options=pacsv.ReadOptions(column_names=names),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), null_values=[""], strings_can_be_null=True
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _positional_columns(table: pa.Table, layout: Layout, n_rows: int) -> tuple[dict[str, Any], dict[str, int]]:
    columns: dict[str, Any] = {}
    names = layout.names
    for i in range(table.num_columns):
        name = names[i] if i < len(names) else f"_c{i}"
        columns[name] = table.column(i)
    return columns, {}


def _fast_predictions(out: pa.StructArray, rows_per: np.ndarray, n_rows: int) -> np.ndarray | None:
    data, enc = out.field("data"), out.field("encoding")
    if data.null_count or enc.null_count or not pc.all(pc.equal(enc, "CSV")).as_py():
        return _slow_predictions(out, rows_per, n_rows)
    data = pc.utf8_rtrim(data, characters="\r\n")
    per = pc.add(pc.count_substring(data, "\n"), 1).to_numpy(zero_copy_only=False)
    if not np.array_equal(per, rows_per):
        return _slow_predictions(out, rows_per, n_rows)
    table = _read_csv_block(data)
    if table is None or table.num_rows != n_rows:
        return _slow_predictions(out, rows_per, n_rows)
    numbers, _ = _column_numbers(table.column(0))
    return numbers


def _slow_predictions(out: pa.StructArray, rows_per: np.ndarray, n_rows: int) -> np.ndarray:
    preds = np.full(n_rows, np.nan)
    pos = 0
    for payload, k in zip(out.to_pylist(), rows_per.tolist(), strict=True):
        values = _predictions_from_payload(payload) if payload else []
        if len(values) == k:
            preds[pos : pos + k] = values
        pos += k
    return preds


def _capture_slow(
    path: Path, data: bytes, layout: Layout, window: Window, bad: BadLines, result: FileResult, first_line: int
) -> Iterator[Batch]:
    acc = _RecordAccumulator(layout)
    for lineno, raw in enumerate(data.split(b"\n"), start=first_line):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
            if not isinstance(event, dict):
                raise ValueError("expected a JSON object")
            cap = event.get("captureData")
            meta = event.get("eventMetadata") or {}
            if not isinstance(cap, dict) or not isinstance(cap.get("endpointInput"), dict):
                raise ValueError("no captureData.endpointInput")
            t_raw = meta.get("inferenceTime")
            if t_raw is None:
                raise ValueError("no eventMetadata.inferenceTime")
            t = parse_time(str(t_raw))
            if window.start is not None and t < window.start:
                result.records_before += 1
                continue
            if window.end is not None and t >= window.end:
                result.records_after += 1
                continue
            records = decode_payload(cap["endpointInput"])
            if not records:
                raise ValueError("endpointInput holds no record")
            _check_fields(records, result)
            output = cap.get("endpointOutput")
            preds = _predictions_from_payload(output) if isinstance(output, dict) else []
            if len(preds) != len(records):
                preds = [math.nan] * len(records)
            key = meta.get("inferenceId") or meta.get("eventId") or ""
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
            reason = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
            bad.add(str(path), lineno, f"malformed capture line: {reason}")
            continue
        result.records_in_window += 1
        keys = [key] if len(records) == 1 else [f"{key}#{j}" for j in range(len(records))]
        for rec, p, k in zip(records, preds, keys, strict=True):
            acc.add(rec, p, k)
        if acc.n >= FLUSH_ROWS:
            yield acc.flush()
    if acc.n:
        yield acc.flush()


def _check_fields(records: list[Any], result: FileResult) -> None:
    """Positional records must all have as many fields as the file's first one (named records may differ)."""
    for rec in records:
        if isinstance(rec, list):
            if result.fields is None:
                result.fields = len(rec)
            elif len(rec) != result.fields:
                raise ValueError(f"expected {result.fields} fields, received {len(rec)}")


def decode_payload(payload: dict[str, Any]) -> list[Any]:
    """A capture payload as a list of records (each a list of values, or a dict by feature name)."""
    data = payload.get("data")
    if data is None:
        raise ValueError("payload has no 'data'")
    encoding = str(payload.get("encoding", "CSV")).upper()
    ctype = str(payload.get("observedContentType") or "").split(";")[0].strip().lower()
    if encoding == "BASE64":
        text = base64.b64decode(data, validate=True).decode("utf-8")
        if "json" in ctype:
            return _json_records(text, lines=ctype == "application/jsonlines")
        return _csv_records(text)
    if encoding == "JSON":
        return _json_records(data, lines=ctype == "application/jsonlines")
    if encoding == "CSV":
        return _csv_records(str(data))
    raise ValueError(f"unknown encoding {payload.get('encoding')!r}; expected CSV, JSON or BASE64")


def read_ground_truth(path: Path, data: bytes, bad: BadLines, into: dict[str, float], first_line: int = 1) -> None:
    """``{"groundTruthData": {"data": "6.10", "encoding": "CSV"}, "eventMetadata": {"eventId": ...}}`` lines;
    keyed by ``inferenceId`` when present, else ``eventId`` (several labels: ``<id>#<index>``)."""
    for lineno, raw in enumerate(data.split(b"\n"), start=first_line):
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
            gt = doc["groundTruthData"]
            meta = doc.get("eventMetadata") or {}
            key = meta.get("inferenceId") or meta.get("eventId")
            if not key:
                raise ValueError("no eventMetadata.inferenceId or eventId")
            labels = _predictions_from_payload(gt)
            if not labels:
                raise ValueError("groundTruthData holds no number")
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            reason = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
            bad.add(str(path), lineno, f"malformed ground truth line: {reason}")
            continue
        if len(labels) == 1:
            into[str(key)] = labels[0]
        else:
            for j, v in enumerate(labels):
                into[f"{key}#{j}"] = v
