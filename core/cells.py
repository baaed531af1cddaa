"""The CSV cell grammar: what one cell of a CSV record means, the same in training, preprocessing, serving, batch
transform and monitoring (the README's "One meaning for every CSV cell" has the table).

- Record: RFC 4180 fields separated by ``,``. A field that starts with ``"`` is quoted: it ends with a ``"``
  followed by ``,`` or the end of the record, and ``""`` inside it is one ``"``. A ``"`` anywhere else is an error,
  and so is a line break (CR or LF) inside a field, quoted or not: SageMaker splits CSV on line ends.
- Lines end with LF or CRLF. A lone CR is an error (pandas would read a CR-only file as one row). A UTF-8
  byte-order mark at the very start of a file or body is dropped; anywhere else it is a character.
- Every cell is trimmed of spaces and tabs (outside and inside the quotes alike: quotes only protect ``,``
  and ``"``; they never change what a cell means).
- Missing: an empty cell, or ``NA``, ``N/A``, ``NaN``, ``null``, ``None`` in any letter case. In numeric and
  categorical columns alike (a category cannot be called ``NA``), and in labels (where missing is refused).
- Number: ASCII digits with an optional sign, fraction and exponent (``12``, ``-0.5``, ``+.5``, ``5.``,
  ``1e5``, ``2.5E-3``); ``-0`` is 0.0. Finite and of magnitude at most ``MAX_MAGNITUDE`` (float32's largest:
  XGBoost works in float32): ``inf``, ``-Infinity`` and ``1e400`` are refused, as are ``1_000``, ``0x10``,
  ``1,5`` and non-ASCII digits (``٢٤``).
- Categorical: the trimmed text is the level, compared exactly (case-sensitive; ``"4"`` and ``"4.0"`` are two
  levels).

Scalar functions raise ``CellError`` (a one-line reason, no location: each stage adds the file/line/column or the
request position and its own status code). The vectorised ones take pandas/numpy columns; the same grammar over
pyarrow arrays is core/arrow_cells.py (apart, so that the images without pyarrow never import it).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported where used: serving single records never loads it
    import pandas as pd

# The largest magnitude a feature or label may have, in training and serving alike: XGBoost works in float32, so
# anything larger becomes inf inside it, and the linear model's squares overflow well before float64's limit.
MAX_MAGNITUDE = float(np.finfo(np.float32).max)
OUT_OF_RANGE = f"expected a number of magnitude at most {MAX_MAGNITUDE:.7g}"

WHITESPACE = " \t"
MISSING_TOKENS = ("", "na", "n/a", "nan", "null", "none")  # after trimming, compared in lower case
NUMBER_PATTERN = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
BOM = "\ufeff"
_NUMBER = re.compile(NUMBER_PATTERN)
_INFINITE = re.compile(r"[+-]?(?:inf|infinity)", re.IGNORECASE)
LOOKS_NUMERIC_PATTERN = rf"^(?:{NUMBER_PATTERN}|(?i:[+-]?(?:inf|infinity)))$"  # looks_numeric, for pyarrow (RE2)
_MISSING = frozenset(MISSING_TOKENS)
# One RFC 4180 field: quoted (doubled quotes inside, no line break) or plain (no quote, comma or line break).
_FIELD = re.compile(r'"(?:[^"\r\n]|"")*"|[^",\r\n]*')
_RECORD = re.compile(rf"(?:{_FIELD.pattern})(?:,(?:{_FIELD.pattern}))*")
_UNCLOSED = re.compile(r'"(?:[^"]|"")*')
_SHOWN = 40


class CellError(ValueError):
    """A cell (or a record's syntax) that the grammar refuses. ``reason`` is one line without a location;
    ``index`` is the row of a vectorised call, ``column`` the 1-based field of ``split_record``."""

    def __init__(self, reason: str, *, index: int | None = None, column: int | None = None):
        super().__init__(reason)
        self.reason, self.index, self.column = reason, index, column


def shown(value: Any, limit: int = _SHOWN) -> str:
    """A value for an error message: repr, cut short so a 6 MB cell cannot become a 6 MB message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[: limit - 4] + ("...'" if isinstance(value, str) else "...")


# -- one cell ---------------------------------------------------------------------------------------------------------
def trim(text: str) -> str:
    return text.strip(WHITESPACE)


def is_missing(text: str | None) -> bool:
    return text is None or trim(text).lower() in _MISSING


def is_number(text: str) -> bool:
    """Whether the (trimmed) text has the form of a number; its range is not checked."""
    return _NUMBER.fullmatch(trim(text)) is not None


def looks_numeric(text: str) -> bool:
    """A number or an infinity by its form: what makes a column numeric when inferring types (an ``inf`` in it is
    then refused by name, not taken for a category)."""
    s = trim(text)
    return _NUMBER.fullmatch(s) is not None or _INFINITE.fullmatch(s) is not None


def number_reason(text: str) -> str:
    """Why ``text`` (not missing) is not an acceptable number: the one message every stage shows."""
    s = trim(text)
    if _NUMBER.fullmatch(s) is None:
        if _INFINITE.fullmatch(s):
            return f"expected a finite number, received {shown(text)} (send an empty value for a missing one)"
        return f"expected a number, received {shown(text)}"
    return f"{OUT_OF_RANGE}, received {shown(text)}"


def number(text: str) -> float:
    """The value of a numeric cell: NaN when missing; CellError when not a number in range."""
    s = trim(text)
    if s.lower() in _MISSING:
        return math.nan
    if _NUMBER.fullmatch(s) is None:
        raise CellError(number_reason(text))
    value = float(s)
    if not abs(value) <= MAX_MAGNITUDE:  # 1e400 is inf
        raise CellError(number_reason(text))
    return value + 0.0  # -0 -> 0.0


def level(text: str) -> str | None:
    """The level of a categorical cell (trimmed), None when missing."""
    s = trim(text)
    return None if s.lower() in _MISSING else s


def check_value(value: float, received: str | None = None) -> float:
    """A number that came as a number (JSON, parquet, a parser's float): the same range policy; NaN stays missing."""
    if math.isnan(value):
        return value
    if not abs(value) <= MAX_MAGNITUDE:
        what = OUT_OF_RANGE if math.isfinite(value) else "expected a finite number"
        raise CellError(f"{what}, received {received if received is not None else shown(value)}")
    return value + 0.0


# -- records and bodies -----------------------------------------------------------------------------------------------
def split_record(line: str) -> list[str]:
    """The fields of one CSV record (no line terminator), unquoted, untrimmed; CellError (with ``column``) when the
    record is not RFC 4180 or holds a line break."""
    if '"' not in line:
        at = min((i for i in (line.find("\r"), line.find("\n")) if i != -1), default=-1)
        if at != -1:
            reason = "a cell cannot hold a line break (CR or LF); records end at LF or CRLF"
            raise CellError(reason, column=line.count(",", 0, at) + 1)
        return line.split(",")
    if _RECORD.fullmatch(line) is None:
        raise _syntax_error(line)
    cells = []
    for m in _FIELD.finditer(line):
        # finditer yields an empty match after each field; only matches at a field start count
        if m.start() == 0 or line[m.start() - 1] == ",":
            text = m.group()
            cells.append(text[1:-1].replace('""', '"') if text.startswith('"') else text)
    return cells


def _syntax_error(line: str) -> CellError:
    pos, column = 0, 1
    while True:
        m = _FIELD.match(line, pos)
        end = m.end() if m else pos
        if end == len(line):
            break
        if line[end] == ",":
            pos, column = end + 1, column + 1
            continue
        break
    if "\r" in line[pos:] or "\n" in line[pos:] or _UNCLOSED.fullmatch(line, pos):
        reason = "a quoted cell is not closed on its line: a cell cannot hold a line break (CR or LF)"
    elif line[pos : pos + 1] == '"':
        reason = 'a quoted cell must end with a quote followed by a comma or the end of the record ("" for a quote)'
    else:
        reason = 'a quote inside an unquoted cell; quote the whole cell and double the quotes in it ("")'
    return CellError(reason, column=column)


def strip_bom(data: bytes) -> bytes:
    return data.removeprefix(b"\xef\xbb\xbf")


def lone_cr(data: bytes | str) -> int | None:
    """The offset of the first CR not followed by LF, or None."""
    cr = b"\r" if isinstance(data, bytes) else "\r"
    lf = b"\n" if isinstance(data, bytes) else "\n"
    at = data.find(cr)  # type: ignore[arg-type]
    while at != -1:
        if data[at + 1 : at + 2] != lf:
            return at
        at = data.find(cr, at + 1)  # type: ignore[arg-type]
    return None


LONE_CR = "line ends with a lone CR (carriage return); use LF or CRLF line endings"


def pandas_na_values() -> list[str]:
    """The missing tokens in every letter case, as pandas' ``na_values`` (it compares them exactly, untrimmed):
    its C parser then reads them as NaN, and a column with no other text stays float."""
    out: set[str] = set()
    for token in MISSING_TOKENS:
        out.update("".join(c) for c in itertools.product(*({ch.lower(), ch.upper()} for ch in token)))
    return sorted(out)


# -- columns (pandas / numpy) ----------------------------------------------------------------------------------------
def is_float_column(col: pd.Series) -> bool:
    """Whether a parser read the column as numbers (booleans are not)."""
    import pandas as pd

    return pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)


def numbers(cells: pd.Series | np.ndarray | Sequence[Any]) -> np.ndarray:
    """A column as float64, NaN for missing cells; CellError (with ``index``) for the first refused cell."""
    import pandas as pd

    col = cells if isinstance(cells, pd.Series) else pd.Series(cells, dtype=object)
    if is_float_column(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return _checked(values)
    text = col.astype("string").str.strip(WHITESPACE)
    missing = (text.isna() | text.str.lower().isin(MISSING_TOKENS)).to_numpy(dtype=bool)
    form = text.str.fullmatch(NUMBER_PATTERN).fillna(False).to_numpy(dtype=bool) & ~missing
    bad = ~missing & ~form
    values = np.full(len(col), np.nan)
    if form.any():
        values[form] = text[form].to_numpy(dtype=object).astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad |= np.abs(values) > MAX_MAGNITUDE
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CellError(number_reason(str(col.iloc[i])), index=i)
    return values + 0.0


def _checked(values: np.ndarray) -> np.ndarray:
    """Numbers a parser already read: the range policy, with the row of the first refused one."""
    with np.errstate(invalid="ignore"):
        bad = np.abs(values) > MAX_MAGNITUDE  # NaN (missing) compares False
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        try:
            check_value(float(values[i]))
        except CellError as e:
            raise CellError(e.reason, index=i) from None
    return values + 0.0


def out_of_range(col: pd.Series) -> bool:
    """Whether a column a parser read as numbers holds a value the range policy refuses (inf, above MAX_MAGNITUDE)."""
    if not is_float_column(col):
        return False
    with np.errstate(invalid="ignore"):
        return bool((np.abs(col.to_numpy(dtype=np.float64, na_value=np.nan)) > MAX_MAGNITUDE).any())


def missing_mask(cells: pd.Series | np.ndarray | Sequence[Any]) -> np.ndarray:
    import pandas as pd

    col = cells if isinstance(cells, pd.Series) else pd.Series(cells, dtype=object)
    if is_float_column(col):
        mask: np.ndarray = col.isna().to_numpy(dtype=bool)  # pandas is untyped: Any
        return mask
    text = col.astype("string").str.strip(WHITESPACE)
    mask = (text.isna() | text.str.lower().isin(MISSING_TOKENS)).to_numpy(dtype=bool)
    return mask


def levels(cells: pd.Series | np.ndarray | Sequence[Any]) -> pd.Series:
    """A categorical column as trimmed strings, <NA> for missing cells (numbers read by a parser: 4.0 -> "4")."""
    import pandas as pd

    col = cells if isinstance(cells, pd.Series) else pd.Series(cells, dtype=object)
    if is_float_column(col):
        text = col.map(lambda v: None if pd.isna(v) else (str(int(v)) if float(v).is_integer() else repr(float(v))))
        return text.astype("string")
    text = col.astype("string").str.strip(WHITESPACE)
    return text.mask(text.isna() | text.str.lower().isin(MISSING_TOKENS), pd.NA)
