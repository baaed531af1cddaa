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

Memory is bounded whatever the channel's size: files are read a piece at a time (READ_BYTES of whole CSV lines, or
one parquet row group), each piece is encoded and appended to a RowStore (in memory up to a budget, in a temporary
file beyond), and a schema is inferred from the pieces as they pass (_Inference), not from the whole text.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from algorithms.base import Dataset
from algorithms.store import RowStore
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
# CSV is parsed this many bytes (of whole lines) at a time, whatever the file's size.
READ_BYTES = 4 << 20
# Encoded rows of a channel kept in memory; beyond, they go to a temporary file (algorithms.store). Training
# sets it from BYOC_ROWS_IN_MEMORY_MB.
SPILL_BYTES = 1 << 30


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
    row_offset: int = 0  # parquet: rows of the file before this part (its earlier row groups)


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
    spill_bytes: int | None = None,
) -> tuple[dict[str, Dataset], Schema]:
    """Read train (required), validation and test into Datasets encoded with one schema.

    ``schema`` (decided by the caller, e.g. agreed across hosts) replaces the channels' schema.json files;
    ``settle_schema`` maps the schema inferred from this host's train data to the one to encode with (hosts of
    a multi-host job merge their inferences there). Files are read a piece at a time and the encoded rows of a
    channel beyond ``spill_bytes`` (default SPILL_BYTES) go to a temporary file (algorithms.store).
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
    spill = SPILL_BYTES if spill_bytes is None else spill_bytes

    if schema is None:
        schema = given_schema({n: channels[n] for n in present}, target)
    if schema is None:
        train, schema = _read_inferring(channels["train"], target, settle_schema, spill)
    else:
        train = _read_encoding(channels["train"], schema, target, spill)
    datasets: dict[str, Dataset] = {"train": train}
    for name in present[1:]:
        datasets[name] = _read_encoding(channels[name], schema, target, spill)
    for name, ds in datasets.items():
        where = " (beyond the in-memory budget: in a temporary file)" if getattr(ds, "spilled", False) else ""
        log.info("channel %s: %d rows, %d features%s", name, len(ds), ds.n_features, where)
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


class _Mixed(Exception):
    """Columns read as numbers in some pieces and as text in others, or as booleans: read again as text."""

    def __init__(self, columns: set[str]):
        super().__init__(", ".join(sorted(columns)))
        self.columns = columns


class _Inference:
    """Infer the schema of the train channel while it streams by, without keeping the raw text.

    Each piece is encoded as it comes: number columns as numbers, other columns as provisional ids of their
    (trimmed) levels, in order of first appearance. Once every piece is read, the rules below decide each
    column's type, and the ids are mapped to their final codes (or, for a text column of numbers, to the
    numbers) in the stored rows. The rules are those of inferring from the whole channel at once:

    - a column the parser reads as numbers everywhere is numeric;
    - a text column whose distinct values are mostly numbers (counted per cell) but not all is a numeric column
      with typos: the first cell that is not a number is named, rather than making hundreds of levels;
    - a text column of numbers only is numeric; any other is categorical, its levels sorted.
    """

    def __init__(self, columns: list[str]):
        self.columns = columns
        self.kinds: list[str | None] = [None] * len(columns)
        self.ids: list[dict[str, int]] = [{} for _ in columns]
        self.counts: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in columns]

    def encode(self, part: _Part) -> np.ndarray:
        X = np.empty((len(part.label), len(self.columns)), dtype=np.float64)
        mixed = set()
        for j, name in enumerate(self.columns):
            col = part.features.iloc[:, j]
            if pd.api.types.is_bool_dtype(col.dtype):
                # The parser made booleans of true/False/TRUE: the levels are the text as written (what validation
                # data and requests hold), so the column is read again as text.
                mixed.add(name)
                continue
            kind = "number" if cells.is_float_column(col) else "text"
            if self.kinds[j] is None:
                self.kinds[j] = kind
            elif self.kinds[j] != kind:
                mixed.add(name)
                continue
            if kind == "number":
                X[:, j] = _numbers(part, j)
            else:
                X[:, j] = self._provisional(j, col)
        if mixed:
            raise _Mixed(mixed)
        return X

    def _provisional(self, j: int, col: pd.Series) -> np.ndarray:
        # Distinct raw values first (hashing), the cell grammar then only on those: a few levels, millions of rows.
        codes, uniques = pd.factorize(col, use_na_sentinel=True)
        levels = cells.levels(pd.Series(uniques))
        ids = self.ids[j]
        local = np.array(
            [np.nan if level is pd.NA else ids.setdefault(level, len(ids)) for level in levels], dtype=np.float64
        )
        counts = np.zeros(len(ids), dtype=np.int64)
        counts[: len(self.counts[j])] = self.counts[j]
        seen = codes >= 0
        per_unique = np.bincount(codes[seen], minlength=len(uniques))
        known = ~np.isnan(local)
        np.add.at(counts, local[known].astype(np.intp), per_unique[known])
        self.counts[j] = counts
        out = np.full(len(codes), np.nan)
        out[seen] = local[codes[seen]]
        return out

    def schema(self, target: str | None) -> tuple[Schema, list[str]]:
        """The inferred schema, and the columns whose typos must be named (then the schema is not usable)."""
        features, typos = [], []
        for j, name in enumerate(self.columns):
            if self.kinds[j] != "text":
                features.append(schema_mod.Feature(name))
                continue
            levels = list(self.ids[j])
            numeric = np.array([cells.looks_numeric(v) for v in levels], dtype=bool)
            counts = self.counts[j]
            share = counts[numeric].sum() / max(counts.sum(), 1)
            if numeric.any() and not numeric.all() and share > _NUMERIC_MAJORITY:
                typos.append(name)
            if numeric.all():
                features.append(schema_mod.Feature(name))
            else:
                features.append(schema_mod.Feature(name, schema_mod.CATEGORICAL, tuple(sorted(levels))))
        return Schema(tuple(features), target), typos

    def table(self, j: int, schema: Schema) -> np.ndarray | None:
        """Provisional id -> final value for text column ``j`` (None for a number column). CellError: a level that
        is not a number in range, in a column the schema makes numeric."""
        if self.kinds[j] != "text":
            return None
        levels = list(self.ids[j])
        if schema.features[j].is_categorical:
            codes = schema.codes(j)
            return np.array([codes[v] for v in levels], dtype=np.float64)
        return cells.numbers(np.array(levels, dtype=object)) if levels else np.zeros(0)


def _numbers(part: _Part, j: int) -> np.ndarray:
    """Feature column ``j`` of a part as numbers; an error names the file's line and column."""
    col = part.features.iloc[:, j]
    return _relocated(lambda: schema_mod.to_float(col, source=None, first_line=0, column=j), part)


def _remapped(table: np.ndarray):
    def remap(ids: np.ndarray) -> np.ndarray:
        out = np.full(len(ids), np.nan)
        seen = ~np.isnan(ids)
        out[seen] = table[ids[seen].astype(np.intp)]
        return out

    return remap


def _read_inferring(
    channel: Channel, target: str | None, settle: Callable[[Schema], Schema] | None, spill: int
) -> tuple[Dataset, Schema]:
    text: set[str] = set()
    while True:
        try:
            return _infer_and_store(channel, target, settle, spill, frozenset(text))
        except _Mixed as e:
            # A column with words in some pieces only: its numbers must be read as the text they are written as.
            log.info("column(s) %s hold text in some rows: reading channel %r again with them as text", e, channel.name)
            text |= e.columns


def _infer_and_store(
    channel: Channel,
    target: str | None,
    settle: Callable[[Schema], Schema] | None,
    spill: int,
    text: frozenset[str],
) -> tuple[Dataset, Schema]:
    inference = store = first = None
    for part in _parts(channel, None, target, text):
        if inference is None or store is None:
            inference, first = _Inference([str(c) for c in part.features.columns]), part
            store = RowStore(len(inference.columns), spill)
        store.append(inference.encode(part), _labels(part))
    assert inference is not None and store is not None and first is not None  # _parts raises on a channel without rows
    schema, typos = inference.schema(first.target)
    if typos:
        _name_typo(channel, target, typos[0], text)
    log.info("no schema.json in the channels: inferred from train: %s", _describe(schema))
    if settle is not None:
        schema = settle(schema)
    remaps = {}
    for j, column in enumerate(inference.columns):
        try:
            table = inference.table(j, schema)
        except cells.CellError:  # a level shaped like a number but out of range (1e400): name its first cell
            _name_typo(channel, target, column, text)
            raise
        if table is not None:
            remaps[j] = _remapped(table)
    store.rewrite_columns(remaps, ENCODE_BLOCK)
    return store.dataset(channel.name), schema


def _name_typo(channel: Channel, target: str | None, column: str, text: frozenset[str]) -> None:
    """Raise the error naming the first cell of ``column`` that is not a number in range (file, line, column)."""
    for part in _parts(channel, None, target, text | {column}):
        j = [str(c) for c in part.features.columns].index(column)
        _numbers(part, j)
    raise DataError(f"channel '{channel.name}': column {column!r} mixes numbers and words")  # not reached


DESCRIBE_FEATURES = 20  # a log line names at most this many features (wide data: thousands)


def _describe(schema: Schema) -> str:
    names = [f"{f.name}({'cat:' + str(len(f.levels)) if f.is_categorical else 'num'})" for f in schema.features]
    shown = ", ".join(names[:DESCRIBE_FEATURES])
    if len(names) > DESCRIBE_FEATURES:
        shown += f", ... and {len(names) - DESCRIBE_FEATURES} more ({len(names)} features)"
    return shown


# -- reading --------------------------------------------------------------------------------------------------------
def _parts(
    channel: Channel, schema: Schema | None, target: str | None, text: frozenset[str] = frozenset()
) -> Iterator[_Part]:
    """The channel's rows in file order, a piece at a time: READ_BYTES of whole lines (CSV) or a row group
    (parquet). ``text``: columns to read as text whatever they hold."""
    ctype = ContentType.parse(channel.content_type, channel=channel.name)
    files = data_files(channel.path)
    if not files:
        raise DataError(f"channel '{channel.name}': no data files in {channel.path}")
    if ctype.media_type == PARQUET:
        pieces: Iterator[_Part] = (part for f in files for part in _read_parquet(f, schema, target, text))
    else:
        if ctype.header is False and target is not None:
            raise UserError(
                f"channel '{channel.name}': hyperparameter 'target' ({target!r}) names a header column, "
                f"but ContentType {channel.content_type!r} says header=absent"
            )
        header = ctype.header if ctype.header is not None else target is not None
        pieces = _csv_parts(files, schema, target, header, ctype.charset, text)
    first: _Part | None = None
    for part in _ahead(pieces):
        if not len(part.label):
            continue
        if first is None:
            first = part
        elif list(part.features.columns) != list(first.features.columns):
            raise DataError(
                f"feature columns {list(part.features.columns)} differ from those of {first.file}: "
                f"{list(first.features.columns)}",
                file=part.file,
            )
        yield part
    if first is None:
        raise DataError(f"channel '{channel.name}': no rows in {len(files)} data file(s) under {channel.path}")


def _ahead(parts: Iterator[_Part], depth: int = 2) -> Iterator[_Part]:
    """The same parts, read by a background thread up to ``depth`` pieces ahead.

    pandas' parser and numpy release the GIL, so the next piece is parsed while this one is encoded: reading would
    otherwise use one core while the others wait for training. An error is raised here, in order, as it would be
    without the thread; stopping early (an error while encoding) stops the thread after its current piece.
    """
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for part in parts:
                if not put(part):
                    return
        except BaseException as e:  # handed to the consumer, which raises it where the reading would have
            put(e)
            return
        put(done)

    thread = threading.Thread(target=produce, name="byoc-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _csv_parts(
    files: list[Path], schema: Schema | None, target: str | None, header: bool, charset: str, text: frozenset[str]
) -> Iterator[_Part]:
    layout: tuple[int, str] | None = None  # headerless without schema.json: the first file sets the width
    for f in files:
        for part in _read_csv(f, schema, target, header, charset, layout, text):
            if not header and schema is None and layout is None and part.width and part.rows is not None:
                layout = (part.width, f"line {int(part.rows[0])} of {f}")
            yield part


def _scan_lines(data: bytes, source: str, before: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Field count and 1-based line number of every non-blank record (``before``: lines preceding ``data``).

    Vectorised when the text has no quotes (fields then cannot hold commas or newlines); otherwise each line is
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
        return fields[keep], np.flatnonzero(keep) + 1 + before
    counts, lines = [], []
    for number, line in enumerate(data.decode("utf-8").split("\n"), start=1 + before):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            counts.append(len(cells.split_record(line)))
        except cells.CellError as e:
            raise DataError(e.reason, file=source, line=number, column=e.column) from None
        lines.append(number)
    return np.asarray(counts, dtype=np.int64), np.asarray(lines, dtype=np.int64)


def _refuse_lone_cr(data: bytes, source: str, before: int = 0) -> None:
    """A CR not followed by LF: pandas would read a CR-only file as one row with thousands of columns. Inside
    quotes too: the cell grammar has no line break in a cell."""
    at = cells.lone_cr(data)
    if at is not None:
        raise DataError(cells.LONE_CR, file=source, line=before + data[:at].count(b"\n") + 1)


def _utf8(charset: str) -> bool:
    return charset.replace("-", "").replace("_", "") in ("utf8", "usascii", "ascii")


def _decode(data: bytes, charset: str, source: str, before: int = 0) -> bytes:
    """The text as UTF-8 bytes (``before``: lines preceding it in the file, for an error's line)."""
    try:
        if _utf8(charset):
            data.decode("utf-8")
        else:
            data = data.decode(charset).encode("utf-8")
    except UnicodeDecodeError as e:
        line = before + data[: e.start].count(b"\n") + 1
        raise DataError(f"not valid {charset} text (byte {e.start})", file=source, line=line) from None
    return data


def _pieces(path: Path, charset: str, source: str) -> Iterator[tuple[bytes, int]]:
    """(UTF-8 text, number of lines before it) of consecutive pieces of a file, each READ_BYTES of whole lines
    (a cell holds no line break, so a line break always ends a record). Other charsets: the file at once."""
    if not _utf8(charset):
        yield cells.strip_bom(_decode(path.read_bytes(), charset, source)), 0
        return
    before, carry, first = 0, b"", True
    with path.open("rb") as f:
        while True:
            chunk = f.read(READ_BYTES)
            data = carry + chunk if carry else chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                if not cut:  # a line longer than READ_BYTES: read on
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
            elif not data:
                return
            data = _decode(data, charset, source, before)
            if first:  # a byte-order mark is dropped only at the start of the file
                data, first = cells.strip_bom(data), False
            yield data, before
            if not chunk:
                return
            before += data.count(b"\n")


def _read_csv(
    path: Path,
    schema: Schema | None,
    target: str | None,
    header: bool,
    charset: str,
    layout: tuple[int, str] | None,
    text: frozenset[str] = frozenset(),
) -> Iterator[_Part]:
    source = str(path)
    names: list[str] = []
    expected, expected_from, label_index, dtype = 0, "", 0, None
    for data, before in _pieces(path, charset, source):
        _refuse_lone_cr(data, source, before)
        fields, lines = _scan_lines(data, source, before)
        if not len(fields):
            continue
        skip = None
        if not names:  # the file's first record: its header, or the layout
            if header:
                first = data.lstrip(b"\r\n\t ").split(b"\n", 1)[0].decode("utf-8")
                names = [n.strip() for n in cells.split_record(first.removesuffix("\r"))]
                expected, expected_from = len(names), f"the header on line {lines[0]}"
                skip = int(lines[0]) - before  # the header and the blank lines above it
                if len(set(names)) != len(names):
                    dup = next(n for n in names if names.count(n) > 1)
                    raise DataError(f"duplicate column name {dup!r} in the header", file=source, line=int(lines[0]))
            elif schema is not None:
                names = [schema.target or "label", *schema.names]
                expected, expected_from = len(names), f"the label and {schema.n_features} features of schema.json"
            else:
                expected, expected_from = layout or (int(fields[0]), f"line {lines[0]}")
                names = ["label", *(f"f{i}" for i in range(expected - 1))]
            label_index = _label_index(names, schema, target, header, source, int(lines[0]))
            # Categorical columns stay strings when the schema says so (a level "4" must not become the float 4.0).
            as_text = {f.name for f in schema.features if f.is_categorical} if schema is not None else set()
            dtype = {i: str for i, n in enumerate(names) if n in as_text or n in text} or None
        bad = np.flatnonzero(fields != expected)
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"expected {expected} columns (from {expected_from}), received {int(fields[i])}",
                file=source,
                line=int(lines[i]),
            )
        read: dict[str, Any] = dict(header=None, skiprows=skip, skip_blank_lines=True)
        read.update(engine="c", encoding="utf-8", keep_default_na=False, na_values=_NA_VALUES)
        frame = pd.read_csv(io.BytesIO(data), names=range(expected), dtype=dtype, **read)
        # pandas reads inf, Infinity and 1e400 as infinite floats: such columns are read again as text, so that the
        # error shows the cell as written, as every other stage does.
        refused = [j for j in frame.columns if cells.out_of_range(frame[j])]
        if refused:
            again = pd.read_csv(io.BytesIO(data), names=range(expected), usecols=refused, dtype=str, **read)
            frame[refused] = again[refused]
        rows = lines[1:] if skip else lines
        yield _split(source, frame, names, label_index, schema if header else None, rows, expected, named=header)


def _read_parquet(
    path: Path, schema: Schema | None, target: str | None, text: frozenset[str] = frozenset()
) -> Iterator[_Part]:
    source = str(path)
    try:
        groups = _fastparquet().ParquetFile(source).iter_row_groups()
    except Exception as e:  # fastparquet raises several types for a file that is not parquet
        raise DataError(f"not a readable parquet file: {type(e).__name__}: {e}", file=source) from None
    offset = 0
    while True:
        try:
            frame = next(groups, None)
        except Exception as e:
            raise DataError(f"not a readable parquet file: {type(e).__name__}: {e}", file=source) from None
        if frame is None:
            return
        names = [str(c) for c in frame.columns]
        for name in text & set(names):
            frame[name] = frame[name].astype(object)
        frame.columns = range(len(names))
        label_index = _label_index(names, schema, target, True, source, None)
        yield _split(source, frame, names, label_index, schema, None, len(names), named=True, row_offset=offset)
        offset += len(frame)


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
    row_offset: int = 0,
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
        row_offset,
    )


# -- encoding -------------------------------------------------------------------------------------------------------
# Rows encoded at a time: the encoders' temporaries (string copies, masks) stay this small whatever the file size,
# where encoding a 1M-row file whole raised the job's peak memory by a quarter (benchmarks/training).
ENCODE_BLOCK = 1 << 16


def _read_encoding(channel: Channel, schema: Schema, target: str | None, spill: int) -> Dataset:
    store = RowStore(schema.n_features, spill)
    for part in _parts(channel, schema, target):
        store.append(_encode(part, schema), _labels(part))
    return store.dataset(channel.name)


def _labels(part: _Part) -> np.ndarray:
    y = _relocated(lambda: schema_mod.to_float(part.label, source=None, first_line=0, column="label"), part)
    missing = np.flatnonzero(np.isnan(y))
    if len(missing):
        err = DataError("missing label (an empty cell, NA, null, ...)", line=int(missing[0]), column="label")
        raise _locate(err, part)
    return y


def _encode(part: _Part, schema: Schema) -> np.ndarray:
    X = np.empty((len(part.label), schema.n_features), dtype=np.float64)
    for start in range(0, len(part.label), ENCODE_BLOCK):
        features = part.features.iloc[start : start + ENCODE_BLOCK]
        # first_line=start: an error's line is the row's index in the part, which _locate maps to the file.
        X[start : start + len(features)] = _relocated(
            lambda features=features, start=start: schema.encode(
                features, source=None, first_line=start, column_offset=0
            ),
            part,
        )
    return X


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
            row = part.row_offset + err.line + 1
    return type(err)(err.reason, file=part.file, line=line, column=column, row=row)
