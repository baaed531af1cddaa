"""Scored records from a batch transform's joined output: headerless CSV, one line per record, the record id, the
features in schema.json order, then the prediction (``--input-filter '$[1:]' --join-source Input
--output-filter '$'``). Read in blocks with pyarrow; when a block does not parse, the file is read again line by
line to name the first bad line and column."""

from __future__ import annotations

import csv
import json
import math
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from analytics.tables import RESERVED, SCORED_HEAD, SCORED_TAIL, TIME, AnalyticsError

BLOCK = 1 << 22  # bytes per CSV block: memory stays flat whatever the file size


@dataclass(frozen=True)
class Feature:
    name: str
    numeric: bool


def load_schema(path: Path) -> list[Feature]:
    """The model's schema.json: a file, a folder holding one (a model or split folder), or a model.tar.gz."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "schema.json", path / "model.tar.gz"):
            if candidate.is_file():
                return load_schema(candidate)
        raise AnalyticsError("holds neither schema.json nor model.tar.gz", file=path)
    try:
        if path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path, "r:gz") as tar:  # read one member's bytes: nothing is extracted or executed
                member = next((m for m in tar.getmembers() if Path(m.name).name == "schema.json" and m.isfile()), None)
                if member is None:
                    raise AnalyticsError("holds no schema.json", file=path)
                text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
        else:
            text = path.read_text()
        doc = json.loads(text)
    except AnalyticsError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, tarfile.TarError) as e:
        raise AnalyticsError(f"cannot read the schema: {e}", file=path) from None
    features = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(features, list) or not features:
        raise AnalyticsError("schema.json has no 'features' list", file=path)
    out = []
    for i, f in enumerate(features):
        if (
            not isinstance(f, dict)
            or not isinstance(f.get("name"), str)
            or f.get("type") not in ("numeric", "categorical")
        ):
            raise AnalyticsError(f"features[{i}]: expected {{'name': ..., 'type': 'numeric'|'categorical'}}", file=path)
        if f["name"] in RESERVED:
            raise AnalyticsError(f"feature name {f['name']!r} is a column of scored_records itself", file=path)
        out.append(Feature(f["name"], f["type"] == "numeric"))
    if len({f.name for f in out}) != len(out):
        raise AnalyticsError("feature names repeat", file=path)
    return out


def schema(features: list[Feature]) -> pa.Schema:
    cols = [pa.field(f.name, pa.float64() if f.numeric else pa.string()) for f in features]
    return pa.schema([*SCORED_HEAD, *cols, *SCORED_TAIL])


def output_files(source: Path) -> list[Path]:
    """A ``.out`` file, or every ``.out`` file under a folder (one per transformed input file)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise AnalyticsError("does not exist", file=source)
    files = sorted(p for p in source.rglob("*.out") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise AnalyticsError("holds no batch transform output (*.out)", file=source)
    return files


@dataclass(frozen=True)
class Run:
    run_id: str
    target: str
    model: str
    scored_at: datetime


def batches(files: list[Path], features: list[Feature], run: Run) -> Iterator[pa.RecordBatch]:
    """Record batches of scored_records; raises AnalyticsError (file, line, column) on the first bad record."""
    out_schema = schema(features)
    total = 0
    for path in files:
        if _blank(path):
            continue  # an input file without records leaves an empty .out
        try:
            for block in _read(path, len(features) + 2):
                batch = _convert(block, features, run, path.name, out_schema)
                total += batch.num_rows
                yield batch
        except (pa.ArrowInvalid, _Bad) as e:
            _locate(path, features)  # raises with the line
            raise AnalyticsError(f"cannot read it as CSV: {' '.join(str(e).split())}", file=path) from None
    if total == 0:
        raise AnalyticsError("no records", file=files[0] if len(files) == 1 else files[0].parent)


def _blank(path: Path) -> bool:
    size = path.stat().st_size
    return size == 0 or (size < 64 and not path.read_bytes().strip())


class _Bad(Exception):
    """A block with a value the fast path refuses; the slow path says where."""


def _read(path: Path, n_cols: int) -> Iterator[pa.RecordBatch]:
    names = [f"c{i}" for i in range(n_cols)]
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, block_size=BLOCK),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, null_values=[""], strings_can_be_null=True
        ),
    )
    yield from reader


def _number(col: pa.Array) -> pa.Array:
    values = pc.cast(pc.utf8_trim_whitespace(col), pa.float64())
    if pc.any(pc.invert(pc.is_finite(values))).as_py():
        raise _Bad("not finite")
    return values


def _convert(block: pa.RecordBatch, features: list[Feature], run: Run, source: str, out: pa.Schema) -> pa.RecordBatch:
    n = block.num_rows
    ids = block.column(0)
    prediction = _number(block.column(len(features) + 1))
    if ids.null_count or prediction.null_count:
        raise _Bad("empty record id or prediction")
    cols = [pa.array([run.run_id] * n), pa.array([run.target] * n), pa.array([run.model] * n), ids]
    for i, f in enumerate(features, start=1):
        cols.append(_number(block.column(i)) if f.numeric else block.column(i))
    cols += [prediction, pa.array([run.scored_at] * n, TIME), pa.array([source] * n)]
    return pa.RecordBatch.from_arrays(cols, schema=out)


def _locate(path: Path, features: list[Feature]) -> None:
    """Raise for the first bad line of ``path`` (the fast path only knows the block)."""
    names = ["record id", *(f.name for f in features), "prediction"]
    numeric = {i for i, f in enumerate(features, start=1) if f.numeric} | {len(features) + 1}
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                if not row:
                    continue
                line = reader.line_num
                if len(row) != len(names):
                    raise AnalyticsError(
                        f"expected {len(names)} fields (record id, {len(features)} features as schema.json lists "
                        f"them, prediction), received {len(row)}",
                        file=path,
                        line=line,
                    )
                for i, value in enumerate(row):
                    where = f"{i + 1} ({names[i]})"
                    if i in (0, len(names) - 1) and value == "":
                        raise AnalyticsError(f"the {names[i]} is empty", file=path, line=line, column=where)
                    if i in numeric and value != "" and not _finite(value):
                        raise AnalyticsError(
                            f"expected a number, received {value!r}", file=path, line=line, column=where
                        )
    except (UnicodeDecodeError, csv.Error) as e:
        raise AnalyticsError(f"cannot read it as CSV: {e}", file=path) from None


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
