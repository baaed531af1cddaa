"""Read training channels (/opt/ml/input/data/<channel>/) into encoded Datasets.

Formats, chosen by the channel's ContentType (media type parsed, parameters honoured):

- ``text/csv`` (default, the built-in algorithms' convention): no header, label in the first column.
- ``text/csv`` with a header: when the ``target`` hyperparameter names the label column, or with
  ``text/csv;header=present`` (label = ``target``, else schema.json's target, else the first column).
- ``application/x-parquet``: label = ``target`` if given, else schema.json's target if present, else column 0.
  Read with fastparquet (a few MB), not pyarrow (155 MB), which the algorithm images leave out.

Every format takes categorical string columns. A channel may hold any number of files, in sub-folders too;
dot-files and ``schema.json`` are not data. The schema (feature names, types, levels) comes from ``schema.json``
when a channel has one (all that have one must agree); otherwise it is inferred from the train channel and
applied unchanged to validation and test, so a level they hold that train did not is an error.

Reading is pandas' C parser plus one vectorised pass over the bytes that counts fields per line (pandas silently
pads short rows) and maps rows to line numbers, so every error names the file, line and column.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from algorithms.base import Dataset
from core import cells
from core import schema as schema_mod
from core.errors import DataError, SchemaError, UserError
from core.schema import Schema

log = logging.getLogger(__name__)

CSV = "text/csv"
PARQUET = "application/x-parquet"
# Aliases users write (the built-in XGBoost container takes "csv" and "parquet" too).
_MEDIA_TYPES = {
    "text/csv": CSV,
    "csv": CSV,
    "application/x-parquet": PARQUET,
    "application/parquet": PARQUET,
    "application/vnd.apache.parquet": PARQUET,
    "parquet": PARQUET,
}
SUPPORTED = ("text/csv", "text/csv;header=present", "application/x-parquet")
CHANNELS = ("train", "validation", "test")
# Numeric-looking columns with a few non-numbers are typos, not categories (see _infer_schema).
_NUMERIC_MAJORITY = 0.5
_NA_VALUES = cells.pandas_na_values()  # the cell grammar's missing tokens, for pandas' parser


@dataclass(frozen=True)
class ContentType:
    media_type: str  # CSV or PARQUET
    header: bool | None = None  # CSV only: None when the content type does not say
    charset: str = "utf-8"

    @classmethod
    def parse(cls, value: str | None, *, channel: str) -> ContentType:
        if value is None or not value.strip():
            log.info(
                "channel %r has no ContentType in inputdataconfig.json: assuming text/csv (no header, label first)",
                channel,
            )
            return cls(CSV)
        parts = [p.strip() for p in value.split(";")]
        media = _MEDIA_TYPES.get(parts[0].lower())
        if media is None:
            raise UserError(
                f"channel '{channel}': ContentType {value!r} is not supported; supported: {', '.join(SUPPORTED)}"
            )
        params = {}
        for p in parts[1:]:
            if not p:
                continue
            key, _, val = p.partition("=")
            params[key.strip().lower()] = val.strip().strip('"').lower()
        header = None
        if "header" in params:
            if params["header"] not in ("present", "absent"):
                raise UserError(
                    f"channel '{channel}': ContentType {value!r}: header={params['header']!r}, "
                    "expected 'present' or 'absent'"
                )
            header = params["header"] == "present"
        if params.get("label_size", "1") != "1":
            raise UserError(
                f"channel '{channel}': ContentType {value!r}: label_size={params['label_size']!r}, "
                "expected 1 (training needs exactly one label column)"
            )
        charset = params.get("charset", "utf-8")
        try:
            "".encode(charset)
        except LookupError:
            raise UserError(f"channel '{channel}': ContentType {value!r}: unknown charset {charset!r}") from None
        return cls(media, header, charset)


@dataclass(frozen=True)
class Channel:
    name: str
    path: Path
    content_type: str | None = None


@dataclass
class _Part:
    """One file read raw: its feature columns (frame, in schema order once resolved) and label column."""

    file: str
    features: pd.DataFrame
    label: pd.Series
    rows: np.ndarray | None  # line number of each row (CSV); None for parquet (row numbers)
    feature_columns: list[str]  # how an error names the column of each feature, e.g. "3 (mileage)"
    label_column: str
    target: str | None = None  # the label's name when the file names it (header, parquet)
    width: int = 0  # number of columns in the file


def data_files(directory: Path) -> list[Path]:
    """Data files under a channel directory, sorted; dot-files/folders and schema.json files are not data."""
    files = []
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory).parts
        if any(part.startswith(".") for part in rel) or p.name == schema_mod.FILENAME or not p.is_file():
            continue
        files.append(p)
    return files


def read_channels(
    channels: Mapping[str, Channel],
    *,
    target: str | None = None,
    schema: Schema | None = None,
    settle_schema: Callable[[Schema], Schema] | None = None,
) -> tuple[dict[str, Dataset], Schema]:
    """Read train (required), validation and test into Datasets encoded with one schema.

    ``schema`` (decided by the caller, e.g. agreed across hosts) replaces the channels' schema.json files;
    ``settle_schema`` maps the schema inferred from this host's train data to the one to encode with (hosts of
    a multi-host job merge their inferences there).
    """
    if "train" not in channels:
        configured = ", ".join(sorted(channels)) or "none"
        raise DataError(f"missing required channel 'train' (channels configured: {configured})")
    for name in channels:
        if name not in CHANNELS:
            log.warning("ignoring channel %r: this algorithm reads only %s", name, ", ".join(CHANNELS))
    present = [c for c in CHANNELS if c in channels]
    for name in present:
        if not channels[name].path.is_dir():
            raise DataError(f"channel '{name}': directory {channels[name].path} does not exist")

    if schema is None:
        schema = given_schema({n: channels[n] for n in present}, target)
    raw_train = _read_parts(channels["train"], schema, target)
    if schema is None:
        schema = _infer_schema(raw_train)
        log.info("no schema.json in the channels: inferred from train: %s", _describe(schema))
        if settle_schema is not None:
            schema = settle_schema(schema)
    datasets = {"train": _encode("train", raw_train, schema)}
    del raw_train  # the raw frames: no longer needed once encoded
    for name in present[1:]:
        datasets[name] = _encode(name, _read_parts(channels[name], schema, target), schema)
    for name, ds in datasets.items():
        log.info("channel %s: %d rows, %d features", name, len(ds), ds.n_features)
    return datasets, schema


# -- schema ---------------------------------------------------------------------------------------------------------
def given_schema(channels: Mapping[str, Channel], target: str | None) -> Schema | None:
    """The schema.json of the channels (all that have one must agree), or None."""
    found: dict[str, Schema] = {}
    for name, ch in channels.items():
        path = ch.path / schema_mod.FILENAME
        if path.is_file():
            found[name] = Schema.load(path)
    if not found:
        return None
    (first, schema), *others = found.items()
    for name, other in others:
        if other.to_dict() != schema.to_dict():
            raise SchemaError(
                f"schema.json of channel '{name}' differs from that of channel '{first}'",
                file=str(channels[name].path / schema_mod.FILENAME),
            )
    if target is not None and schema.target is not None and schema.target != target:
        raise SchemaError(
            f"field 'target' is {schema.target!r} but hyperparameter 'target' is {target!r}",
            file=str(channels[first].path / schema_mod.FILENAME),
        )
    log.info("schema from %s: %s", channels[first].path / schema_mod.FILENAME, _describe(schema))
    return schema


def _infer_schema(parts: list[_Part]) -> Schema:
    frame = pd.concat([p.features for p in parts], ignore_index=True) if len(parts) > 1 else parts[0].features
    # A column of numbers with a few words is a numeric column with typos: name the first bad cell instead of
    # silently turning it into a category with hundreds of levels. Inference looks at distinct values only (fast).
    features: list[schema_mod.Feature] = []
    for j, name in enumerate(frame.columns):
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col.dtype):
            features.extend(Schema.infer(frame[[name]]).features)
            continue
        counts = cells.levels(col).value_counts(dropna=True)
        numeric = np.array([cells.looks_numeric(v) for v in counts.index], dtype=bool)
        share = counts.to_numpy()[numeric].sum() / max(counts.sum(), 1)
        if numeric.any() and not numeric.all() and share > _NUMERIC_MAJORITY:
            for p in parts:
                _relocated(
                    lambda p=p, j=j: schema_mod.to_float(p.features.iloc[:, j], source=None, first_line=0, column=j), p
                )
        features.extend(Schema.infer(frame[[name]].drop_duplicates()).features)
    return Schema(tuple(features), parts[0].target)


DESCRIBE_FEATURES = 20  # a log line names at most this many features (wide data: thousands)


def _describe(schema: Schema) -> str:
    names = [f"{f.name}({'cat:' + str(len(f.levels)) if f.is_categorical else 'num'})" for f in schema.features]
    shown = ", ".join(names[:DESCRIBE_FEATURES])
    if len(names) > DESCRIBE_FEATURES:
        shown += f", ... and {len(names) - DESCRIBE_FEATURES} more ({len(names)} features)"
    return shown


# -- reading --------------------------------------------------------------------------------------------------------
def _read_parts(channel: Channel, schema: Schema | None, target: str | None) -> list[_Part]:
    ctype = ContentType.parse(channel.content_type, channel=channel.name)
    files = data_files(channel.path)
    if not files:
        raise DataError(f"channel '{channel.name}': no data files in {channel.path}")
    parts: list[_Part] = []
    if ctype.media_type == PARQUET:
        parts = [_read_parquet(f, schema, target) for f in files]
    else:
        if ctype.header is False and target is not None:
            raise UserError(
                f"channel '{channel.name}': hyperparameter 'target' ({target!r}) names a header column, "
                f"but ContentType {channel.content_type!r} says header=absent"
            )
        header = ctype.header if ctype.header is not None else target is not None
        layout: tuple[int, str] | None = None  # headerless without schema.json: the first file sets the width
        for f in files:
            part = _read_csv(f, schema, target, header, ctype.charset, layout)
            if not header and schema is None and layout is None and part.width and part.rows is not None:
                layout = (part.width, f"line {int(part.rows[0])} of {f}")
            parts.append(part)
    parts = [p for p in parts if len(p.label)]
    if not parts:
        raise DataError(f"channel '{channel.name}': no rows in {len(files)} data file(s) under {channel.path}")
    first = parts[0]
    for p in parts[1:]:
        if list(p.features.columns) != list(first.features.columns):
            raise DataError(
                f"feature columns {list(p.features.columns)} differ from those of {first.file}: "
                f"{list(first.features.columns)}",
                file=p.file,
            )
    return parts


def _scan_lines(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Field count and 1-based line number of every non-blank record.

    Vectorised when the file has no quotes (fields then cannot hold commas or newlines); otherwise each line is
    split by the cell grammar (core.cells: RFC 4180, no line break in a cell), which names a malformed one.
    Blank (whitespace-only) lines are skipped, as pandas skips them.
    """
    if b'"' not in data:
        buf = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(buf == 10)
        starts = np.concatenate(([0], newlines + 1))
        ends = np.concatenate((newlines, [len(buf)]))
        commas = np.flatnonzero(buf == 44)
        fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
        keep = fields > 1
        # Only lines without a comma can be blank; they are few, so look at them one by one.
        for i in np.flatnonzero(~keep):
            keep[i] = bool(data[starts[i] : ends[i]].strip())
        return fields[keep], np.flatnonzero(keep) + 1
    counts, lines = [], []
    for number, line in enumerate(data.decode("utf-8").split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            counts.append(len(cells.split_record(line)))
        except cells.CellError as e:
            raise DataError(e.reason, file=source, line=number, column=e.column) from None
        lines.append(number)
    return np.asarray(counts, dtype=np.int64), np.asarray(lines, dtype=np.int64)


def _refuse_lone_cr(data: bytes, source: str) -> None:
    """A CR not followed by LF: pandas would read a CR-only file as one row with thousands of columns. Inside
    quotes too: the cell grammar has no line break in a cell."""
    at = cells.lone_cr(data)
    if at is not None:
        raise DataError(cells.LONE_CR, file=source, line=data[:at].count(b"\n") + 1)


def _decode(data: bytes, charset: str, source: str) -> bytes:
    """The file as UTF-8 bytes without a byte-order mark."""
    try:
        if charset.replace("-", "").replace("_", "") in ("utf8", "usascii", "ascii"):
            data.decode("utf-8")
        else:
            data = data.decode(charset).encode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"not valid {charset} text (byte {e.start})", file=source, line=line) from None
    return cells.strip_bom(data)


def _read_csv(
    path: Path, schema: Schema | None, target: str | None, header: bool, charset: str, layout: tuple[int, str] | None
) -> _Part:
    source = str(path)
    data = _decode(path.read_bytes(), charset, source)
    _refuse_lone_cr(data, source)
    fields, lines = _scan_lines(data, source)
    if not len(fields):
        return _Part(source, pd.DataFrame(), pd.Series([], dtype=float), lines, [], "", width=0)

    if header:
        first = data.decode("utf-8").lstrip("\r\n\t ").split("\n", 1)[0]
        names = [n.strip() for n in cells.split_record(first.removesuffix("\r"))]
        expected, expected_from = len(names), f"the header on line {lines[0]}"
    elif schema is not None:
        names = [schema.target or "label", *schema.names]
        expected, expected_from = len(names), f"the label and {schema.n_features} features of schema.json"
    else:
        expected, expected_from = layout or (int(fields[0]), f"line {lines[0]}")
        names = ["label", *(f"f{i}" for i in range(expected - 1))]
    bad = np.flatnonzero(fields != expected)
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"expected {expected} columns (from {expected_from}), received {int(fields[i])}",
            file=source,
            line=int(lines[i]),
        )
    if header and len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"duplicate column name {dup!r} in the header", file=source, line=int(lines[0]))

    label_index = _label_index(names, schema, target, header, source, int(lines[0]))
    # Categorical columns stay strings when the schema says so (a level "4" must not become the float 4.0).
    dtype = None
    if schema is not None:
        dtype = {names.index(f.name): str for f in schema.features if f.is_categorical and f.name in names}
    read: dict[str, Any] = dict(header=None, skiprows=int(lines[0]) if header else None, skip_blank_lines=True)
    read.update(engine="c", encoding="utf-8", keep_default_na=False, na_values=_NA_VALUES)
    frame = pd.read_csv(io.BytesIO(data), names=range(expected), dtype=dtype, **read)
    # pandas reads inf, Infinity and 1e400 as infinite floats: such columns are read again as text, so that the
    # error shows the cell as written, as every other stage does.
    refused = [j for j in frame.columns if cells.out_of_range(frame[j])]
    if refused:
        text = pd.read_csv(io.BytesIO(data), names=range(expected), usecols=refused, dtype=str, **read)
        frame[refused] = text[refused]
    rows = lines[1:] if header else lines
    return _split(source, frame, names, label_index, schema if header else None, rows, expected, named=header)


def _read_parquet(path: Path, schema: Schema | None, target: str | None) -> _Part:
    source = str(path)
    try:
        frame = _fastparquet().ParquetFile(source).to_pandas()
    except Exception as e:  # fastparquet raises several types for a file that is not parquet
        raise DataError(f"not a readable parquet file: {type(e).__name__}: {e}", file=source) from None
    names = [str(c) for c in frame.columns]
    frame.columns = range(len(names))
    label_index = _label_index(names, schema, target, True, source, None)
    return _split(source, frame, names, label_index, schema, None, len(names), named=True)


def _fastparquet():
    # Imported on the first parquet file only: CSV training and serving never pay for it. Its import asks pandas
    # about an option pandas 3 deprecates; that warning says nothing to a user.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*future.infer_string.*")
        import fastparquet

    return fastparquet


def _label_index(
    names: list[str], schema: Schema | None, target: str | None, named: bool, source: str, line: int | None
) -> int:
    if not named:
        return 0
    wanted = target or (schema.target if schema is not None and schema.target in names else None)
    if wanted is None:
        return 0
    if wanted not in names:
        what = "hyperparameter 'target'" if target else "schema.json's target"
        raise DataError(
            f"label column {wanted!r} ({what}) not found; columns: {', '.join(names)}", file=source, line=line
        )
    return names.index(wanted)


def _split(
    source: str,
    frame: pd.DataFrame,
    names: list[str],
    label_index: int,
    by_name: Schema | None,
    rows: np.ndarray | None,
    width: int,
    *,
    named: bool,
) -> _Part:
    """Separate label and features; with ``by_name``, select that schema's features by column name, in order."""
    feature_idx = [i for i in range(len(names)) if i != label_index]
    if by_name is not None:
        available = {names[i]: i for i in feature_idx}
        missing = [n for n in by_name.names if n not in available]
        if missing:
            raise SchemaError(
                f"feature {missing[0]!r} of schema.json not found; columns: {', '.join(names)}", file=source
            )
        extra = [n for n in available if n not in by_name.names]
        if extra:
            raise SchemaError(f"column {extra[0]!r} is neither the label nor a feature of schema.json", file=source)
        feature_idx = [available[n] for n in by_name.names]
    features = frame.iloc[:, feature_idx]
    features.columns = [names[i] for i in feature_idx]
    label = frame.iloc[:, label_index]
    target = names[label_index] if named else None
    return _Part(
        source,
        features,
        label,
        rows,
        [f"{i + 1} ({names[i]})" for i in feature_idx],
        f"{label_index + 1} ({names[label_index]})",
        target,
        width,
    )


# -- encoding -------------------------------------------------------------------------------------------------------
# Rows encoded at a time: the encoders' temporaries (string copies, masks) stay this small whatever the file size,
# where encoding a 1M-row file whole raised the job's peak memory by a quarter (benchmarks/training).
ENCODE_BLOCK = 1 << 16


def _encode(name: str, parts: list[_Part], schema: Schema) -> Dataset:
    n = sum(len(p.label) for p in parts)
    X = np.empty((n, schema.n_features), dtype=np.float64)
    y = np.empty(n, dtype=np.float64)
    at = 0
    for p in parts:
        for start in range(0, len(p.label), ENCODE_BLOCK):
            label, features = p.label.iloc[start : start + ENCODE_BLOCK], p.features.iloc[start : start + ENCODE_BLOCK]
            rows = slice(at, at + len(label))
            # first_line=start: an error's line is the row's index in the part, which _locate maps to the file.
            y[rows] = _relocated(
                lambda label=label, start=start: schema_mod.to_float(
                    label, source=None, first_line=start, column="label"
                ),
                p,
            )
            missing = np.flatnonzero(np.isnan(y[rows]))
            if len(missing):
                line = start + int(missing[0])
                err = DataError("missing label (an empty cell, NA, null, ...)", line=line, column="label")
                raise _locate(err, p)
            X[rows] = _relocated(
                lambda features=features, start=start: schema.encode(
                    features, source=None, first_line=start, column_offset=0
                ),
                p,
            )
            at += len(label)
    return Dataset(name, X, y)


def _relocated(fn, part: _Part):
    """Run an encoder called with row indices (first_line=0) and column indices; re-raise errors located in the file."""
    try:
        return fn()
    except DataError as e:
        raise _locate(e, part) from None


def _locate(err: DataError, part: _Part) -> DataError:
    column = err.column
    if column == "label":
        column = part.label_column
    elif isinstance(column, int):
        column = part.feature_columns[column]
    elif isinstance(column, str):
        for j, fname in enumerate(part.features.columns):
            if column == f"{j} ({fname})":
                column = part.feature_columns[j]
    line = row = None
    if err.line is not None:
        if part.rows is not None:
            line = int(part.rows[err.line])
        else:
            row = err.line + 1
    return type(err)(err.reason, file=part.file, line=line, column=column, row=row)
