"""The three tables' fixed columns and the one way rows are written: a run's rows are one Parquet file under
``<root>/<table>/dt=YYYY-MM-DD/``, named after the run, written to a temporary file and renamed into place. The same
run appended again replaces its file (in whichever partition it was), so appends are idempotent; a failure leaves
no partial file (temporary names start with ``.``, which Athena and the views' glob both skip)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SCORED_RECORDS = "scored_records"
DRIFT_RESULTS = "drift_results"
MODEL_QUALITY = "model_quality"
TABLES = (SCORED_RECORDS, DRIFT_RESULTS, MODEL_QUALITY)
MODELS = ("xgboost", "linear")

# Naive timestamps, UTC by convention: Athena reads Parquet TIMESTAMP(MILLIS) as `timestamp`.
TIME = pa.timestamp("ms")

# scored_records: these columns, with the model's features (schema.json order) between record_id and prediction.
SCORED_HEAD = [
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("target", pa.string(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("record_id", pa.string(), nullable=False),
]
SCORED_TAIL = [
    pa.field("prediction", pa.float64(), nullable=False),
    pa.field("scored_at", TIME, nullable=False),
    pa.field("source_file", pa.string()),
]

DRIFT_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("target_type", pa.string(), nullable=False),  # endpoint | batch_job
        pa.field("monitoring_schedule", pa.string()),
        pa.field("feature", pa.string(), nullable=False),
        pa.field("kind", pa.string()),  # numeric | categorical
        pa.field("method", pa.string()),  # Robust | Simple | ChiSquared
        pa.field("distance", pa.float64()),
        pa.field("threshold", pa.float64()),
        pa.field("violated", pa.bool_(), nullable=False),
        pa.field("check_type", pa.string()),  # violated checks, comma-separated; null when none
        pa.field("description", pa.string()),
        pa.field("completeness", pa.float64()),
        pa.field("records", pa.int64()),
        pa.field("window_start", TIME),
        pa.field("window_end", TIME),
        pa.field("monitored_at", TIME, nullable=False),
    ]
)

QUALITY_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("target_type", pa.string(), nullable=False),
        pa.field("monitoring_schedule", pa.string()),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("standard_deviation", pa.float64()),
        pa.field("threshold", pa.float64()),
        pa.field("comparison_operator", pa.string()),
        pa.field("violated", pa.bool_(), nullable=False),
        pa.field("item_count", pa.int64()),
        pa.field("window_start", TIME),
        pa.field("window_end", TIME),
        pa.field("monitored_at", TIME, nullable=False),
    ]
)

RESERVED = {f.name for f in SCORED_HEAD + SCORED_TAIL} | {"dt"}


class AnalyticsError(Exception):
    """Bad input: ``str(err)`` is one line naming the file (and line, column) at fault."""

    exit_code = 1

    def __init__(self, message: str, *, file: object = None, line: int | None = None, column: str | None = None):
        where = [f"file {file}"] if file is not None else []
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column}")
        text = " ".join(str(message).split())
        super().__init__(f"{', '.join(where)}: {text}" if where else text)


@dataclass(frozen=True)
class Appended:
    table: str
    path: Path
    rows: int
    replaced: int  # files of the same run removed (0 on a first append)

    def line(self) -> str:
        verb = "replaced" if self.replaced else "appended"
        return f"{self.table}: {verb} {self.rows} rows -> {self.path}"


def partition(when: datetime) -> str:
    return f"dt={when:%Y-%m-%d}"


def file_name(*key: str) -> str:
    """Readable and unique: the key made path-safe, plus a hash of the exact key (two keys that clean up the
    same still get two files)."""
    exact = "\x1f".join(key)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(key)).strip("._")[:120] or "run"
    return f"{safe}-{hashlib.sha256(exact.encode()).hexdigest()[:10]}.parquet"


def write_run(
    root: Path, table: str, when: datetime, key: tuple[str, ...], schema: pa.Schema, batches: Iterable[pa.RecordBatch]
) -> Appended:
    """Write ``batches`` as the one file of run ``key`` in ``table``; replace that run's earlier file."""
    name = file_name(*key)
    folder = Path(root) / table / partition(when)
    folder.mkdir(parents=True, exist_ok=True)
    previous = sorted((Path(root) / table).glob(f"dt=*/{name}"))
    tmp = folder / f".{name}.tmp-{os.getpid()}"
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
            for batch in batches:
                rows += batch.num_rows
                writer.write_batch(batch)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        with contextlib.suppress(OSError):  # a partition this failed run created stays empty: remove it
            folder.rmdir()
        raise
    for old in previous:
        if old.parent != folder:  # the run moved day (another scored_at): its old rows must go
            old.unlink()
            with contextlib.suppress(OSError):
                old.parent.rmdir()
    return Appended(table, folder / name, rows, len(previous))


def remove_run(root: Path, table: str, *key: str) -> int:
    """Remove run ``key``'s file from ``table`` (a rerun that has no rows for it any more)."""
    removed = 0
    for old in (Path(root) / table).glob(f"dt=*/{file_name(*key)}"):
        old.unlink()
        removed += 1
        with contextlib.suppress(OSError):
            old.parent.rmdir()
    return removed
