"""One inference record -> one row of the schema-encoded float64 matrix, with precise one-line errors.

The rules, shared by every content type (documented in the README's serving section):

- Missing values: an empty CSV cell (or whitespace only), a JSON ``null``. They become NaN, which both
  algorithms handle (XGBoost natively, the linear model by its imputation).
- Numbers: ASCII decimal or exponent notation, surrounding whitespace ignored, magnitude at most
  ``core.schema.MAX_MAGNITUDE`` (float32's largest, as in training). ``nan``, ``inf``, larger values
  (``1e308``), non-ASCII digits (``٢٤٩٦٠``, which training refuses too) and ``1_000`` are rejected (400): a
  missing value is written as an empty cell / null.
- Categorical values are strings matched exactly (after trimming whitespace) against the schema's levels. An
  unknown level is a 400 naming the feature, the value and the allowed levels; with
  ``SERVING_UNKNOWN_CATEGORY=missing`` it is treated as a missing value instead (like XGBoost does for
  categories it never saw in training).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from core.schema import MAX_MAGNITUDE, OUT_OF_RANGE, Schema
from serving.errors import BadRequest

NAN = math.nan
UNKNOWN_POLICIES = ("error", "missing")
_MAX_SHOWN_LEVELS = 20


def show(value: Any, limit: int = 40) -> str:
    """A value for an error message: repr, cut short so a 6 MB cell cannot become a 6 MB message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[: limit - 4] + ("...'" if isinstance(value, str) else "...")


class RecordParser:
    """Cells and JSON values -> floats for one schema. Built once per worker; the hot path is plain Python."""

    def __init__(self, schema: Schema, unknown: str = "error"):
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown-category policy {unknown!r}; expected one of {UNKNOWN_POLICIES}")
        self.schema = schema
        self.unknown = unknown
        self.n = schema.n_features
        self.names = schema.names
        self.index = {name: j for j, name in enumerate(self.names)}
        # None for numeric features, the level -> code mapping for categorical ones.
        self.codes: list[Mapping[str, int] | None] = [
            schema.codes(j) if f.is_categorical else None for j, f in enumerate(schema.features)
        ]

    # -- one cell -------------------------------------------------------------------------------------
    def number(self, text: str, where: str) -> float:
        s = text.strip()
        if not s:
            return NAN
        try:
            # float() accepts "1_000" and any Unicode digits; training (pandas) refuses both.
            if "_" in s or not s.isascii():
                raise ValueError
            value = float(s)
        except ValueError:
            raise BadRequest(f"{where}: expected a number, received {show(text)}") from None
        if not math.isfinite(value):
            raise BadRequest(
                f"{where}: expected a finite number, received {show(text)} (send an empty value for a missing one)"
            )
        if abs(value) > MAX_MAGNITUDE:
            raise BadRequest(f"{where}: {OUT_OF_RANGE}, received {show(text)}")
        return value

    def level(self, text: str, j: int, where: str) -> float:
        s = text.strip()
        if not s:
            return NAN
        code = self.codes[j].get(s)  # type: ignore[union-attr]
        if code is not None:
            return float(code)
        if self.unknown == "missing":
            return NAN
        levels = self.schema.features[j].levels
        shown = list(levels[:_MAX_SHOWN_LEVELS])
        more = f" and {len(levels) - _MAX_SHOWN_LEVELS} more" if len(levels) > _MAX_SHOWN_LEVELS else ""
        raise BadRequest(
            f"{where}: unknown level {show(s)} for categorical feature {self.names[j]!r}; expected one of {shown}{more}"
        )

    def cell(self, text: str, j: int, where: str) -> float:
        return self.number(text, where) if self.codes[j] is None else self.level(text, j, where)

    def value(self, value: Any, j: int, where: str) -> float:
        """A JSON value: a number, a string (parsed like a CSV cell) or null."""
        if value is None:
            return NAN
        if isinstance(value, str):
            return self.cell(value, j, where)
        if self.codes[j] is not None:
            raise BadRequest(
                f"{where}: expected a string (a level of categorical feature {self.names[j]!r}) or null, "
                f"received {show(value)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"{where}: expected a number or null, received {show(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise BadRequest(f"{where}: expected a finite number, received {show(value)}")
        if abs(number) > MAX_MAGNITUDE:
            raise BadRequest(f"{where}: {OUT_OF_RANGE}, received {show(value)}")
        return number

    # -- one record -----------------------------------------------------------------------------------
    def check_count(self, received: int, where: str) -> None:
        if received != self.n:
            raise BadRequest(f"{where}: expected {self.n} features, received {received}")

    def row_from_cells(self, cells: Sequence[str], where: str) -> list[float]:
        """A CSV line's fields; ``where`` is e.g. "line 3"."""
        self.check_count(len(cells), where)
        cell = self.cell
        return [cell(c, j, f"{where}, column {j + 1} ({self.names[j]})") for j, c in enumerate(cells)]

    def row_from_json(self, record: Any, where: str) -> list[float]:
        """A JSON record: a list of values in schema order, {"features": [...]}, or an object by feature name."""
        if isinstance(record, list):
            return self._positional(record, where)
        if isinstance(record, dict):
            if "features" in record and "features" not in self.index:
                if len(record) != 1 or not isinstance(record["features"], list):
                    raise BadRequest(f'{where}: expected {{"features": [<{self.n} values>]}}')
                return self._positional(record["features"], where)
            return self._by_name(record, where)
        raise BadRequest(
            f'{where}: expected a list of {self.n} values, {{"features": [...]}} or an object by feature name, '
            f"received {type(record).__name__} {show(record)}"
        )

    def _positional(self, values: list, where: str) -> list[float]:
        self.check_count(len(values), where)
        value = self.value
        return [value(v, j, f"{where}, feature {j + 1} ({self.names[j]})") for j, v in enumerate(values)]

    def _by_name(self, record: dict, where: str) -> list[float]:
        row = [NAN] * self.n
        seen = 0
        for key, v in record.items():
            j = self.index.get(key)
            if j is None:
                if key == self.schema.target:  # a raw dataset row may carry its label: ignore it
                    continue
                raise BadRequest(f"{where}: unknown feature {show(key)}; expected the names {self.names}")
            row[j] = self.value(v, j, f"{where}, feature {key!r}")
            seen += 1
        if seen != self.n:
            missing = [n for n in self.names if n not in record]
            raise BadRequest(
                f"{where}: missing feature(s) {missing}; every feature is required (send null for a missing value)"
            )
        return row
