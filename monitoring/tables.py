"""Training-style tables read in blocks: headerless label-first CSV (named by schema.json), CSV with a header,
parquet. Every CSV column is read as text so a stray value is counted by the sketches, not fatal."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import DataError

# ".out": what a batch transform writes for each input file (<name>.out), read as CSV.
DATA_SUFFIXES = (".csv", ".parquet", ".pq", ".txt", ".out", "")


def data_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError("dataset_source does not exist", file=str(source))
    files = sorted(
        p
        for p in source.rglob("*")
        if p.is_file() and p.suffix.lower() in DATA_SUFFIXES and not p.name.startswith(".") and p.suffix != ".json"
    )
    if not files:
        raise DataError("dataset_source holds no CSV or parquet file", file=str(source))
    return files


def read_blocks(path: Path, *, header: bool, names: list[str] | None) -> Iterator[pa.RecordBatch]:
    """Record batches whose columns are named as the data names them (header, parquet schema, schema.json):
    Model Monitor's statistics and constraints carry names as written ("Account Length", "Min.Price")."""
    if path.suffix.lower() in (".parquet", ".pq"):
        yield from pq.ParquetFile(path).iter_batches(batch_size=65_536)
        return
    with open(path, newline="", encoding="utf-8-sig") as f:  # a byte-order mark is not data (core.cells)
        first = f.readline()
    if not first.strip():
        return
    n_cols = len(next(csv.reader([first])))
    if header:
        col_names = next(csv.reader([first]))
    else:
        if names is None:
            col_names = [f"_c{i}" for i in range(n_cols)]
        elif len(names) != n_cols:
            raise DataError(
                f"expected {len(names)} columns ({', '.join(names)}) as schema.json says, received {n_cols}",
                file=str(path),
                line=1,
            )
        else:
            col_names = names
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=col_names, skip_rows=1 if header else 0, block_size=1 << 22),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in col_names}, null_values=[""], strings_can_be_null=True
        ),
    )
    try:
        yield from reader
    except pa.ArrowInvalid as e:
        raise DataError(f"cannot parse CSV: {' '.join(str(e).split())}", file=str(path)) from None
