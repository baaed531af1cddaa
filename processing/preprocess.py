"""The pipeline's first step, a SageMaker Processing job: raw tables in, train/validation/test channels out.

    python -m processing.preprocess [--input DIR] [--output DIR] [--target price] [--split 0.7,0.15,0.15]
                                    [--seed 42] [--one-hot] [--drop-columns a,b] [--categorical a,b]

Input: every ``*.csv``, ``*.csv.gz``, ``*.parquet`` or ``*.pq`` file under ``--input`` (default
``/opt/ml/processing/input``), sub-folders included, hidden files skipped, read in sorted path order and
concatenated. CSV files need a header line. All files must hold the same columns (any order).

Column names are normalised to snake_case lowercase (``Body Type`` -> ``body_type``): Model Monitor requires it.
Cells follow the cell grammar of every stage (core.cells). A column is categorical when most of its non-missing
values are not numbers (or when named in ``--categorical``); otherwise it is numeric and every non-missing value
must be a number. A missing cell (empty, NA, null, ...) is allowed in features, not in the target. Categorical
levels come from the whole input before splitting, so validation and test never hold a level that schema.json
does not know.

Output (default ``/opt/ml/processing/output``): ``train/train.csv``, ``validation/validation.csv``,
``test/test.csv`` in the built-in algorithms' convention (no header, label first, features in schema order,
categorical values as their strings) plus ``schema.json`` in each folder, so each folder is a complete training
channel. The split is a seeded shuffle: same input and seed, same files.

Bad input exits 1 with a one-line reason naming the culprit on stderr; the same line goes to
``/opt/ml/output/message``, which SageMaker returns as the job's ``ExitMessage`` (first 1 KB). On success that
file holds the summary line. ``SAGEMAKER_BASE_DIR`` relocates ``/opt/ml`` for all three default paths; the
message file is only written when that base directory exists (or ``--message-file`` names it).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import math
import os
import re
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core import arrow_cells, cells
from core.errors import DataError, UserError
from core.schema import CATEGORICAL, NUMERIC, Feature, Schema

SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT = "0.7,0.15,0.15"
DEFAULT_SEED = 42
CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
MESSAGE_LIMIT = 1024  # bytes of /opt/ml/output/message that DescribeProcessingJob returns
INTERNAL_ERROR_EXIT = 2


def base_dir() -> Path:
    return Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))


class ArgumentError(UserError):
    """A command-line argument is malformed."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit 2; we want the one-line contract
        raise ArgumentError(message)


# -- column names ---------------------------------------------------------------------------------------------------
def snake_case(name: str) -> str:
    """``Body Type`` / ``BodyType`` / ``body-type`` -> ``body_type``; ``MPG`` -> ``mpg``."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_").lower()


def _data_hint(names: Sequence[str]) -> str:
    """Headerless input (the built-in convention) is a common mistake here: say so."""
    try:
        numbers = all(math.isfinite(float(n)) for n in names)
    except ValueError:
        numbers = False
    return " (the first line looks like data: the input needs a header line naming the columns)" if numbers else ""


def _normalise_header(raw: Sequence[str], source: str) -> list[str]:
    names: list[str] = []
    first_of: dict[str, str] = {}
    for i, original in enumerate(raw, start=1):
        name = snake_case(original)
        if not name:
            raise DataError(
                f"column {i} has no usable name (received {original!r}); every column needs a name", file=source
            )
        if name in first_of:
            raise DataError(
                f"columns {first_of[name]!r} and {original!r} both normalise to {name!r}{_data_hint(raw)}", file=source
            )
        first_of[name] = original
        names.append(name)
    return names


# -- reading ----------------------------------------------------------------------------------------------------------
@dataclass
class Table:
    """One input file: its columns (normalised names -> values) and how to point at a cell in it."""

    path: Path
    raw_names: list[str]  # as in the file, for messages
    names: list[str]  # normalised
    frame: pd.DataFrame  # columns named by ``names``; CSV cells are strings, Parquet keeps its types
    is_csv: bool

    def cell_error(self, row: int, name: str, message: str) -> DataError:
        j = self.names.index(name)
        column = f"{j + 1} ({self.raw_names[j]})"
        if self.is_csv:
            return DataError(message, file=str(self.path), line=_csv_line(self.path, row), column=column)
        return DataError(f"row {row + 1}, column {column}: {message}", file=str(self.path))


def discover(input_path: Path) -> list[Path]:
    if not input_path.exists():
        raise DataError(f"input folder {input_path} does not exist")
    if input_path.is_file():
        candidates = [input_path]
    else:
        candidates = sorted(
            (p for p in input_path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(input_path).as_posix()
        )
        candidates = [
            p for p in candidates if not any(part.startswith(".") for part in p.relative_to(input_path).parts)
        ]
    files = [p for p in candidates if p.name.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)]
    if not files:
        found = ", ".join(p.name for p in candidates[:5]) + (", ..." if len(candidates) > 5 else "")
        raise DataError(
            f"input {input_path} holds no data files (*.csv, *.csv.gz, *.parquet, *.pq); "
            + (f"found only: {found}" if candidates else "it is empty")
        )
    ignored = [p for p in candidates if p not in files]
    if ignored:
        print(f"ignoring {len(ignored)} non-data file(s): {', '.join(str(p) for p in ignored[:5])}")
    return files


def _open_text(path: Path) -> io.TextIOBase:
    # utf-8-sig: a spreadsheet's byte-order mark must not end up in the first column's name.
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _csv_line(path: Path, row: int) -> int | None:
    """The 1-based line of data row ``row`` (0-based, after the header), skipping empty lines as the reader does."""
    with _open_text(path) as f:
        reader = csv.reader(f)
        next(reader, None)
        seen = -1
        for record in reader:
            if record:
                seen += 1
                if seen == row:
                    return reader.line_num
    return None


def _first_bad_width(path: Path, width: int) -> tuple[int, int] | None:
    with _open_text(path) as f:
        reader = csv.reader(f)
        next(reader, None)
        for record in reader:
            if record and len(record) != width:
                return reader.line_num, len(record)
    return None


def _check_records(path: Path) -> list[str] | None:
    """The cell grammar's record rules (core.cells), which pyarrow's reader does not apply: no lone CR (pyarrow
    would end a row there), RFC 4180 quoting, no line break in a cell. Returns the header's fields."""
    source = str(path)
    try:
        with _open_text(path) as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", file=source) from e
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read: {e}", file=source) from e
    if not text:
        return None
    at = cells.lone_cr(text)
    if at is not None:
        raise DataError(cells.LONE_CR, file=source, line=text.count("\n", 0, at) + 1)
    header = None
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if header is not None and ('"' not in line or not line.strip()):
            continue
        try:
            fields = cells.split_record(line)
        except cells.CellError as e:
            raise DataError(f"malformed CSV: {e.reason}", file=source, line=number, column=e.column) from None
        if header is None:
            header = fields  # a blank first line is refused by the caller
    return header


def read_csv(path: Path) -> Table:
    source = str(path)
    header = _check_records(path)
    if header is None:
        raise DataError("empty file", file=source)
    if not any(h.strip() for h in header):
        raise DataError("the first line is empty; expected a header naming the columns", file=source)
    names = _normalise_header(header, source)
    positional = [f"c{i}" for i in range(len(header))]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=positional, skip_rows=1, encoding="utf8"),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(positional, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as e:
        text = str(e)
        if "Expected" in text and "columns" in text:
            bad = _first_bad_width(path, len(header))
            if bad:
                raise DataError(
                    f"expected {len(header)} fields like the header, received {bad[1]}", file=source, line=bad[0]
                ) from e
        if "UTF8" in text or "UTF-8" in text:
            raise DataError("not UTF-8 text", file=source) from e
        raise DataError(f"not readable as CSV: {text}", file=source) from e
    if table.num_rows == 0:
        raise DataError("a header but no data rows", file=source)
    frame = table.to_pandas()
    frame.columns = names
    return Table(path, list(header), names, frame, is_csv=True)


def read_parquet(path: Path) -> Table:
    source = str(path)
    if path.stat().st_size == 0:
        raise DataError("empty file", file=source)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"not a readable Parquet file: {e}", file=source) from e
    for field in table.schema:
        t = field.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if not (
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_boolean(t)
            or pa.types.is_string(t)
            or pa.types.is_large_string(t)
        ):
            raise DataError(f"column {field.name!r} has type {field.type}; expected numbers or strings", file=source)
    if table.num_rows == 0:
        raise DataError("no data rows", file=source)
    raw = list(table.column_names)
    names = _normalise_header(raw, source)
    frame = table.to_pandas()
    frame.columns = names
    for name in names:
        if pd.api.types.is_bool_dtype(frame[name].dtype):
            frame[name] = frame[name].astype("Float64").astype(np.float64)
        elif isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype("string")
    return Table(path, raw, names, frame, is_csv=False)


def read_all(files: list[Path]) -> list[Table]:
    tables: list[Table] = []
    for path in files:
        table = read_csv(path) if path.name.lower().endswith(CSV_SUFFIXES) else read_parquet(path)
        if tables:
            first = tables[0]
            missing = [n for n in first.names if n not in table.names]
            extra = [n for n in table.names if n not in first.names]
            if missing or extra:
                raise DataError(
                    f"columns differ from {first.path}: missing {missing}, unexpected {extra}", file=str(path)
                )
            table.frame = table.frame[first.names]
        tables.append(table)
    return tables


# -- typing and parsing ---------------------------------------------------------------------------------------------
def _is_numeric_dtype(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)


def _arrow(col: pd.Series) -> pa.Array:
    return pa.array(col, type=pa.string(), from_pandas=True)


def _parse(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float values with NaN for missing and refused cells, mask of the refused cells), by core.cells."""
    if _is_numeric_dtype(col):
        return arrow_cells.arrow_numbers(pa.array(col.to_numpy(dtype=np.float64, na_value=np.nan), from_pandas=True))
    return arrow_cells.arrow_numbers(_arrow(col))


def _count_numbers(col: pd.Series) -> tuple[int, int]:
    """(non-missing cells, cells that look like numbers: an inf counts, so that it is refused, not a category)."""
    if _is_numeric_dtype(col):
        n = int(col.notna().sum())
        return n, n
    text = arrow_cells.arrow_levels(_arrow(col))
    numeric = pc.match_substring_regex(text, cells.LOOKS_NUMERIC_PATTERN)
    return len(text) - text.null_count, int(pc.sum(numeric).as_py() or 0)


def decide_types(tables: list[Table], target: str, forced_categorical: set[str]) -> dict[str, str]:
    """numeric or categorical per feature column, judged over all files together."""
    types = {}
    for name in tables[0].frame.columns:
        if name == target:
            continue
        if name in forced_categorical:
            types[name] = CATEGORICAL
            continue
        counts = [_count_numbers(t.frame[name]) for t in tables]
        filled, numbers = sum(c[0] for c in counts), sum(c[1] for c in counts)
        # Most cells numbers: a numeric column with typos (reported), not a categorical one.
        types[name] = NUMERIC if filled == 0 or numbers * 2 > filled else CATEGORICAL
    return types


def _numeric(table: Table, name: str, *, what: str) -> np.ndarray:
    values, bad = _parse(table.frame[name])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        received = table.frame[name].iloc[i]
        raise table.cell_error(i, name, f"{what}: {cells.number_reason(str(received))}")
    return values


def _categorical(table: Table, name: str) -> pd.Series:
    col = table.frame[name]
    if _is_numeric_dtype(col):  # a Parquet number forced categorical: 4.0 -> "4"
        text = col.map(lambda v: "" if pd.isna(v) else (str(int(v)) if float(v).is_integer() else repr(float(v))))
        return text.astype("string").replace("", pd.NA)
    return cells.levels(col)


@dataclass
class Prepared:
    frame: pd.DataFrame  # target first, then the features in schema order
    schema: Schema


def prepare(tables: list[Table], target: str, types: dict[str, str], one_hot: bool) -> Prepared:
    parts = []
    for t in tables:
        y = _numeric(t, target, what=f"target {target!r}")
        if np.isnan(y).any():
            i = int(np.flatnonzero(np.isnan(y))[0])
            reason = f"target {target!r} is missing (an empty cell, NA, null, ...); every row needs a label"
            raise t.cell_error(i, target, reason)
        cols: dict[str, object] = {target: y}
        for name, kind in types.items():
            cols[name] = _categorical(t, name) if kind == CATEGORICAL else _numeric(t, name, what=f"feature {name!r}")
        parts.append(pd.DataFrame(cols))
    frame = pd.concat(parts, ignore_index=True)

    features = []
    for name, kind in types.items():
        if kind == CATEGORICAL:
            levels = tuple(sorted(frame[name].dropna().unique()))
            if not levels:
                raise DataError(f"categorical column {name!r} holds no values")
            features.append(Feature(name, CATEGORICAL, levels))
        else:
            features.append(Feature(name, NUMERIC))
    if not features:
        raise DataError(f"no feature columns besides the target {target!r}")
    schema = Schema(tuple(features), target)
    if one_hot:
        frame, schema = one_hot_encode(frame, schema)
    return Prepared(frame, schema)


def one_hot_encode(frame: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, Schema]:
    """Each categorical column becomes one 0/1 column per level, ``<name>_<level>``; a missing value is all zeros."""
    # A scoring file has no label column: only the features then.
    cols: dict[str, object] = {} if schema.target is None else {schema.target: frame[schema.target]}
    features: list[Feature] = []
    taken = set(frame.columns)
    for f in schema.features:
        if not f.is_categorical:
            cols[f.name] = frame[f.name]
            features.append(f)
            continue
        values = frame[f.name]
        for level in f.levels:
            name = f"{f.name}_{snake_case(level)}" if snake_case(level) else ""
            if not name or (name in taken and name != f.name) or name in cols:
                raise DataError(
                    f"--one-hot: level {level!r} of {f.name!r} gives the column name {name!r}, "
                    "which is empty or already taken"
                )
            cols[name] = (values == level).fillna(False).to_numpy(dtype=np.float64)
            features.append(Feature(name, NUMERIC))
    return pd.DataFrame(cols), Schema(tuple(features), schema.target)


# -- splitting and writing ------------------------------------------------------------------------------------------
def parse_split(text: str) -> tuple[float, float, float]:
    expected = "expected three fractions train,validation,test, each above 0, summing to 1 (e.g. 0.7,0.15,0.15)"
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise ArgumentError(f"--split: {expected}; received {text!r}") from None
    if len(parts) != 3 or not all(math.isfinite(p) and 0 < p < 1 for p in parts):
        raise ArgumentError(f"--split: {expected}; received {text!r}")
    if abs(sum(parts) - 1) > 1e-6:
        raise ArgumentError(f"--split: {expected}; received {text!r} (sum {sum(parts):g})")
    return parts[0], parts[1], parts[2]


def split_indices(n: int, fractions: tuple[float, float, float], seed: int, split_text: str) -> dict[str, np.ndarray]:
    n_val, n_test = round(n * fractions[1]), round(n * fractions[2])
    sizes = {"train": n - n_val - n_test, "validation": n_val, "test": n_test}
    empty = [s for s, k in sizes.items() if k < 1]
    if empty:
        raise DataError(
            f"{n} row(s) are too few for --split {split_text}: the {' and '.join(empty)} "
            f"split{'s' if len(empty) > 1 else ''} would be empty (each needs at least 1 row)"
        )
    order = np.random.default_rng(seed).permutation(n)
    return {
        "train": order[: sizes["train"]],
        "validation": order[sizes["train"] : sizes["train"] + n_val],
        "test": order[sizes["train"] + n_val :],
    }


def _arrow_column(col: pd.Series) -> pa.Array:
    if not _is_numeric_dtype(col):
        return pa.array(col.astype("string"), type=pa.string(), from_pandas=True)
    values = col.to_numpy(dtype=np.float64)
    finite = values[~np.isnan(values)]
    # Whole numbers are written as integers ("20105", not "20105.0"), as in the source data.
    if np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 2**53):
        return pa.array(np.nan_to_num(values).astype(np.int64), mask=np.isnan(values))
    return pa.array(values, mask=np.isnan(values))


def write_split(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_arrays([_arrow_column(frame[c]) for c in frame.columns], names=list(frame.columns))
    # pyarrow's "needed" quotes every string; only quote when some value holds a delimiter, quote or newline.
    special = any(
        pa.types.is_string(col.type) and pc.any(pc.match_substring_regex(col, r'[,"\r\n]')).as_py()
        for col in table.columns
    )
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed" if special else "none")
    pacsv.write_csv(table, path, write_options=options)


# -- the job --------------------------------------------------------------------------------------------------------
def _columns(text: str | None) -> list[str]:
    return [snake_case(c) for c in text.split(",") if c.strip()] if text else []


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    base = base_dir()
    p = _Parser(prog="python -m processing.preprocess", description=__doc__.splitlines()[0])
    p.add_argument("--input", type=Path, default=base / "processing" / "input", help="folder (or one file) to read")
    p.add_argument("--output", type=Path, default=base / "processing" / "output", help="where the splits go")
    p.add_argument("--target", default="price", help="label column (normalised like the headers)")
    p.add_argument("--split", default=DEFAULT_SPLIT, help="train,validation,test fractions")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="shuffle seed")
    p.add_argument("--one-hot", action="store_true", help="write 0/1 columns instead of categorical strings")
    p.add_argument("--drop-columns", help="comma-separated columns to leave out (e.g. an id)")
    p.add_argument("--categorical", help="comma-separated columns to treat as categorical even if numeric")
    p.add_argument("--message-file", type=Path, help="default: $SAGEMAKER_BASE_DIR/output/message")
    p.add_argument(
        "--schema",
        type=Path,
        help="scoring mode: the training schema.json; write one headerless <input name>.csv per input file (id, "
        "then the features in schema order), no split, no label",
    )
    p.add_argument("--id-column", default="id", help="scoring mode: the record id column (default id)")
    args = p.parse_args(argv)
    if args.seed < 0:
        raise ArgumentError(f"--seed: expected a non-negative integer, received {args.seed}")
    args.fractions = parse_split(args.split)
    return args


def score(args: argparse.Namespace) -> str:
    """Scoring mode: the training transformation (names, types, levels) applied to files to score, ids kept."""
    schema = Schema.load(args.schema)
    id_column = snake_case(args.id_column)
    written = []
    for table in read_all(discover(args.input)):
        needed = [id_column, *(f.name for f in schema.features)]
        missing = [c for c in needed if c not in table.names]
        if missing:
            raise DataError(
                f"column {missing[0]!r} not found (scoring needs {', '.join(needed)}); columns found: "
                f"{', '.join(table.raw_names)}",
                file=str(table.path),
            )
        ids = _categorical(table, id_column)
        if ids.isna().any():
            raise table.cell_error(int(np.flatnonzero(ids.isna().to_numpy())[0]), id_column, "empty record id")
        cols: dict[str, object] = {id_column: ids}
        for f in schema.features:
            if not f.is_categorical:
                cols[f.name] = _numeric(table, f.name, what=f"feature {f.name!r}")
                continue
            values = _categorical(table, f.name)
            unknown = values.notna() & ~values.isin(f.levels)
            if unknown.any():
                i = int(np.flatnonzero(unknown.to_numpy())[0])
                raise table.cell_error(
                    i, f.name, f"unknown level {values.iloc[i]!r} of {f.name!r}; the model knows {', '.join(f.levels)}"
                )
            cols[f.name] = values
        name = table.path.name.removesuffix(".gz").rsplit(".", 1)[0] + ".csv"
        args.output.mkdir(parents=True, exist_ok=True)
        write_split(pd.DataFrame(cols), args.output / name)
        written.append(f"{name} {len(ids)}")
    return (
        f"score: {', '.join(written)} records ({schema.n_features} features, id {id_column}); written to {args.output}"
    )


def run(args: argparse.Namespace) -> str:
    if args.schema is not None:
        return score(args)
    target = snake_case(args.target)
    tables = read_all(discover(args.input))
    first = tables[0]
    renamed = [f"{r!r} -> {n!r}" for r, n in zip(first.raw_names, first.names, strict=True) if r != n]
    if renamed:
        print(f"normalised column names: {', '.join(renamed)}")
    if target not in first.names:
        raise DataError(
            f"target column {target!r} not found; columns found: {', '.join(first.raw_names)}"
            + _data_hint(first.raw_names),
            file=str(first.path),
        )
    for option, cols in (
        ("--drop-columns", _columns(args.drop_columns)),
        ("--categorical", _columns(args.categorical)),
    ):
        unknown = [c for c in cols if c not in first.names]
        if unknown:
            raise ArgumentError(f"{option}: no column {unknown[0]!r}; columns found: {', '.join(first.names)}")
        if target in cols:
            raise ArgumentError(f"{option}: {target!r} is the target")
    drop = set(_columns(args.drop_columns))
    for t in tables:
        t.frame = t.frame.drop(columns=[c for c in t.frame.columns if c in drop])
    types = decide_types(tables, target, set(_columns(args.categorical)))
    prepared = prepare(tables, target, types, args.one_hot)
    parts = split_indices(len(prepared.frame), args.fractions, args.seed, args.split)

    for split, rows in parts.items():
        folder = args.output / split
        folder.mkdir(parents=True, exist_ok=True)
        write_split(prepared.frame.iloc[rows], folder / f"{split}.csv")
        prepared.schema.save(folder / "schema.json")

    described = ", ".join(
        f"{f.name} ({len(f.levels)} levels)" if f.is_categorical else f.name for f in prepared.schema.features
    )
    sizes = ", ".join(f"{s} {len(parts[s])}" for s in SPLITS)
    return (
        f"preprocess: {len(prepared.frame)} rows from {len(tables)} file(s) -> {sizes} (seed {args.seed}); "
        f"label {target}; {prepared.schema.n_features} features: {described}; written to {args.output}"
    )


def _write_message(path: Path | None, text: str) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8")[:MESSAGE_LIMIT].decode("utf-8", "ignore").encode("utf-8"))
    except OSError as e:
        print(f"could not write {path}: {e}", file=sys.stderr)


def _message_path(argv: list[str] | None) -> Path | None:
    """--message-file if given, else $SAGEMAKER_BASE_DIR/output/message when that base exists (i.e. in a job)."""
    argv = sys.argv[1:] if argv is None else argv
    for i, a in enumerate(argv):
        if a == "--message-file" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if a.startswith("--message-file="):
            return Path(a.split("=", 1)[1])
    return base_dir() / "output" / "message" if base_dir().is_dir() else None


def main(argv: list[str] | None = None) -> int:
    message = _message_path(argv)
    try:
        summary = run(parse_args(argv))
    except UserError as e:
        print(f"preprocess failed: {e}", file=sys.stderr)
        _write_message(message, str(e))
        return e.exit_code
    except Exception as e:  # our bug, not the user's: traceback to the log, a short reason to SageMaker
        traceback.print_exc()
        reason = f"internal error in processing.preprocess: {type(e).__name__}: {' '.join(str(e).split())}"
        print(reason, file=sys.stderr)
        _write_message(message, reason)
        return INTERNAL_ERROR_EXIT
    print(summary)
    _write_message(message, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
