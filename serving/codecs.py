"""The one registry of request decoders (Content-Type) and response encoders (Accept) for /invocations.

Requests (the media type is parsed; parameters are checked, not compared as strings):

- ``text/csv``: no header, no label, one record per line, features in schema.json order, categorical values as
  strings. Parameters: ``charset`` (any codec Python knows; default utf-8), ``label_size`` (only 0: the
  server predicts, it does not take labels). Cells follow ``core.cells`` (RFC 4180 quoting, missing tokens, LF or
  CRLF, a leading byte-order mark dropped, a lone CR refused); trailing blank lines are ignored; a blank line
  between records is an error (it would shift every later answer).
- ``application/json``: ``{"instances": [record, ...]}``, ``[record, ...]``, or a single record object, where a
  record is ``[v1, v2, ...]``, ``{"features": [v1, ...]}`` (Linear Learner) or ``{"mileage": 8221, ...}`` (by
  feature name). A flat list of values is one record.
- ``application/jsonlines``: one record (any of the shapes above) per line.

Responses: exactly one prediction per input record, in order, with one exact Content-Type per format:
``text/csv`` (one number per line), ``application/json`` (``{"predictions": [{"score": x}, ...]}``),
``application/jsonlines`` (``{"score": x}`` per line). No trailing newline, so batch transform's
``AssembleWith=Line`` never sees an empty record.
"""

from __future__ import annotations

import codecs as _codecs
import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported where used: serving single records never loads it
    pass
import orjson
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header, parse_options_header

from core import cells
from serving.errors import BadRequest, NotAcceptable, UnsupportedMediaType
from serving.records import RecordParser, show

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"

# Bodies at least this large (and without quotes) go through the vectorised CSV parser first.
VECTORISED_CSV_BYTES = 16 * 1024
_NA_VALUES = cells.pandas_na_values()

Decode = Callable[[bytes], np.ndarray]


@dataclass(frozen=True)
class Encoder:
    content_type: str  # the exact Content-Type of the response (data capture keys on it)
    encode: Callable[[np.ndarray], bytes]


# -- text decoding ------------------------------------------------------------------------------------
def _charset(params: Mapping[str, str]) -> str:
    name = params.get("charset", "utf-8")
    try:
        info = _codecs.lookup(name)
        if not getattr(info, "_is_text_encoding", True):  # base64, zlib, rot13: codecs, not text encodings
            raise LookupError(name)
        codec = info.name
    except LookupError:
        raise UnsupportedMediaType(f"unsupported charset {show(name)}") from None
    return "utf-8-sig" if codec == "utf-8" else codec  # tolerate a byte-order mark


def _text(body: bytes, charset: str) -> str:
    try:
        return body.decode(charset)
    except UnicodeDecodeError as e:
        raise BadRequest(f"body is not valid {charset.removesuffix('-sig')}: byte {e.start} ({e.reason})") from None
    except (UnicodeError, ValueError) as e:  # odd codecs (punycode, idna) raise their own way
        raise BadRequest(f"body is not valid {charset}: {show(str(e), 100)[1:-1]}") from None


def _lines(text: str) -> list[str]:
    """Records of a line-oriented body: LF or CRLF line ends, trailing blank lines dropped."""
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise BadRequest("the body holds no records")
    return lines


# -- text/csv -----------------------------------------------------------------------------------------
def _csv_decoder(parser: RecordParser, params: Mapping[str, str]) -> Decode:
    label_size = params.get("label_size", "0")
    if label_size.strip() != "0":
        raise UnsupportedMediaType(
            f"text/csv with label_size={label_size[:20]} is not supported: send the features only (label_size=0)"
        )
    charset = _charset(params)
    utf8 = charset == "utf-8-sig"

    def decode(body: bytes) -> np.ndarray:
        if utf8 and len(body) >= VECTORISED_CSV_BYTES and b'"' not in body and parser.n > 1:
            fast = _vectorised_csv(body, parser)
            if fast is not None:
                return fast
        return _precise_csv(_text(body, charset), parser)

    return decode


def _precise_csv(text: str, parser: RecordParser) -> np.ndarray:
    """The reference parser: every accepted body gets exactly these values, every rejected one a precise message."""
    at = cells.lone_cr(text)
    if at is not None:
        raise BadRequest(f"line {text.count(chr(10), 0, at) + 1}: {cells.LONE_CR}")
    rows = []
    for i, line in enumerate(_lines(text), start=1):
        where = f"line {i}"
        line = line.removesuffix("\r")
        if not line.strip():
            raise BadRequest(f"{where}: empty record; expected {parser.n} comma-separated features")
        try:
            fields = cells.split_record(line)
        except cells.CellError as e:
            raise BadRequest(f"{where}, column {e.column}: malformed CSV: {e.reason}") from None
        rows.append(parser.row_from_cells(fields, where))
    return np.array(rows, dtype=np.float64)


def _vectorised_csv(body: bytes, parser: RecordParser) -> np.ndarray | None:
    """Large unquoted UTF-8 bodies: pandas' C parser plus vectorised checks. Returns None whenever the result
    could differ from _precise_csv; the caller then runs that, which names the problem (or accepts the body)."""
    import pandas as pd

    body = body.rstrip()
    # pandas would drop a byte-order mark, end a line at a lone CR and skip vertical tabs and form feeds around a
    # number: the cell grammar says otherwise, so such bodies take the reference path.
    if (
        body.startswith(b"\xef\xbb\xbf")
        or b"\x0b" in body
        or b"\x0c" in body
        or (b"\r" in body and body.count(b"\r") != body.count(b"\r\n"))
    ):
        return None
    buf = np.frombuffer(body, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    n_rows = len(newlines) + 1
    # Every line must hold exactly n-1 commas: pandas would pad a short line with NaN and skip blank ones.
    row_of_comma = np.searchsorted(newlines, np.flatnonzero(buf == 44))
    if not np.array_equal(np.bincount(row_of_comma, minlength=n_rows), np.full(n_rows, parser.n - 1)):
        return None
    dtypes = {j: (object if codes is not None else np.float64) for j, codes in enumerate(parser.codes)}
    try:
        frame = pd.read_csv(
            io.BytesIO(body),
            header=None,
            names=list(range(parser.n)),
            dtype=dtypes,
            keep_default_na=False,
            na_values=_NA_VALUES,
            skip_blank_lines=False,
            quoting=csv.QUOTE_NONE,
            engine="c",
            encoding="utf-8",
        )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    if len(frame) != n_rows:
        return None
    out = np.empty((n_rows, parser.n), dtype=np.float64)
    for j, codes in enumerate(parser.codes):
        column = frame[j]
        if codes is None:
            values = column.to_numpy(dtype=np.float64)
            with np.errstate(invalid="ignore"):
                if (np.abs(values) > cells.MAX_MAGNITUDE).any():  # inf, 1e400, 1e300: the reference path names it
                    return None
            np.add(values, 0.0, out=out[:, j])  # -0 -> 0.0, as core.cells reads it
        else:
            encoded = pd.Index(parser.schema.features[j].levels).get_indexer(column)
            if (
                (encoded < 0) & column.notna().to_numpy()
            ).any():  # unknown or untrimmed level: let the reference decide
                return None
            out[:, j] = np.where(encoded < 0, np.nan, encoded)
    return out


# -- application/json and application/jsonlines ---------------------------------------------------
def _reject_constant(name: str) -> float:
    raise BadRequest(f"body is not valid JSON: {name} is not a JSON number (send null for a missing value)")


def _loads(text: str, where: str) -> object:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise BadRequest(f"{where}is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer with more digits than Python converts
        raise BadRequest(f"{where}is not valid JSON: {' '.join(str(e).split())[:120]}") from None


def _is_scalar(v: object) -> bool:
    return not isinstance(v, list | dict)


def _json_decoder(parser: RecordParser, params: Mapping[str, str]) -> Decode:
    charset = _charset(params)

    def decode(body: bytes) -> np.ndarray:
        doc = _loads(_text(body, charset), "body ")
        if isinstance(doc, dict) and "instances" in doc and "instances" not in parser.index:
            records, label = doc["instances"], "instance"
            if len(doc) != 1 or not isinstance(records, list):
                raise BadRequest('body: expected {"instances": [record, ...]} with no other keys')
        elif isinstance(doc, list) and doc and all(_is_scalar(v) for v in doc):
            records, label = [doc], "record"  # a flat list of values is one record
        elif isinstance(doc, list):
            records, label = doc, "record"
        elif isinstance(doc, dict):
            records, label = [doc], "record"
        else:
            raise BadRequest(
                f'body: expected {{"instances": [...]}}, a list of records or one record, received {show(doc)}'
            )
        if not records:
            raise BadRequest("the body holds no records")
        row = parser.row_from_json
        return np.array([row(r, f"{label} {i}") for i, r in enumerate(records, start=1)], dtype=np.float64)

    return decode


def _jsonlines_decoder(parser: RecordParser, params: Mapping[str, str]) -> Decode:
    charset = _charset(params)

    def decode(body: bytes) -> np.ndarray:
        rows = []
        for i, line in enumerate(_lines(_text(body, charset)), start=1):
            where = f"line {i}"
            if not line.strip():
                raise BadRequest(f"{where}: empty record; expected one JSON record per line")
            rows.append(parser.row_from_json(_loads(line, f"{where} "), where))
        return np.array(rows, dtype=np.float64)

    return decode


# -- encoders ------------------------------------------------------------------------------------------
# orjson writes a float array as the shortest text that reads back to the same double (as repr does), in C: a
# 150,000-row batch's answer takes ~4 ms instead of ~65 ms. Predictions are finite (serving/model.py refuses
# the rest), so orjson never writes its null for NaN.
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def _numbers(predictions: np.ndarray) -> bytes:
    """The predictions as comma-separated numbers ("" for none)."""
    return orjson.dumps(np.ascontiguousarray(predictions, dtype=np.float64).ravel(), option=_NUMPY)[1:-1]


def _encode_csv(predictions: np.ndarray) -> bytes:
    return _numbers(predictions).replace(b",", b"\n")


def _encode_json(predictions: np.ndarray) -> bytes:
    numbers = _numbers(predictions)
    if not numbers:
        return b'{"predictions": []}'
    return b'{"predictions": [{"score": ' + numbers.replace(b",", b'}, {"score": ') + b"}]}"


def _encode_jsonlines(predictions: np.ndarray) -> bytes:
    numbers = _numbers(predictions)
    return b'{"score": ' + numbers.replace(b",", b'}\n{"score": ') + b"}" if numbers else b""


# -- the registry ----------------------------------------------------------------------------------------
DECODERS: dict[str, Callable[[RecordParser, Mapping[str, str]], Decode]] = {
    CSV: _csv_decoder,
    JSON: _json_decoder,
    JSONLINES: _jsonlines_decoder,
}
ENCODERS: dict[str, Encoder] = {
    CSV: Encoder(CSV, _encode_csv),
    JSON: Encoder(JSON, _encode_json),
    JSONLINES: Encoder(JSONLINES, _encode_jsonlines),
}


class Codecs:
    """Content-Type -> decoder and Accept -> encoder for one model's schema. Lookups are cached per header."""

    def __init__(self, parser: RecordParser, default_accept: str = CSV):
        if default_accept not in ENCODERS:
            raise ValueError(
                f"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT: received {default_accept!r}, expected one of {list(ENCODERS)}"
            )
        self.parser = parser
        self.default_accept = default_accept
        # The default first: `*/*` and ties between equal qualities resolve to it.
        self._offers = [default_accept, *(t for t in ENCODERS if t != default_accept)]
        self.decoder = lru_cache(maxsize=256)(self._decoder)
        self.encoder = lru_cache(maxsize=256)(self._encoder)

    def _decoder(self, content_type: str | None) -> Decode:
        media_type, params = parse_options_header(content_type or "")
        media_type = media_type.lower()
        if not media_type:
            raise UnsupportedMediaType(f"missing Content-Type; expected one of {', '.join(DECODERS)}")
        make = DECODERS.get(media_type)
        if make is None:
            raise UnsupportedMediaType(
                f"unsupported Content-Type {show(media_type)}; expected one of {', '.join(DECODERS)}"
            )
        return make(self.parser, {k.lower(): v for k, v in params.items()})

    def _encoder(self, accept: str | None) -> Encoder:
        if accept is None or not accept.strip():
            return ENCODERS[self.default_accept]
        parsed = parse_accept_header(accept, MIMEAccept)
        # Media-type parameters (other than q) do not select a format here; werkzeug would compare them.
        stripped = MIMEAccept([(value.split(";", 1)[0].strip().lower(), q) for value, q in parsed])
        best = stripped.best_match(self._offers)
        if best is None:
            raise NotAcceptable(f"unsupported Accept {show(accept)}; expected one of {', '.join(ENCODERS)}")
        return ENCODERS[best]
