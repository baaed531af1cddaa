"""One inference record -> one row of the schema-encoded float64 matrix, with precise one-line errors.

Every cell, CSV or a JSON string, follows the cell grammar of training (``core.cells``, the README's "One meaning
for every CSV cell"): missing values are an empty cell, ``NA``, ``N/A``, ``NaN``, ``null`` or ``None`` (any case)
and a JSON ``null``; they become NaN, which both algorithms handle (XGBoost natively, the linear model by its
imputation). A number is ASCII decimal or exponent notation, trimmed of spaces and tabs, of magnitude at most
``core.cells.MAX_MAGNITUDE``; ``inf``, ``1e308``, ``٢٤٩٦٠`` and ``1_000`` are a 400. JSON numbers follow the same
range policy.

Categorical values are strings matched exactly (after trimming) against the schema's levels. An unknown level is
a 400 naming the feature, the value and the allowed levels; with ``SERVING_UNKNOWN_CATEGORY=missing`` it is
treated as a missing value instead (like XGBoost does for categories it never saw in training).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from core import cells
from core.schema import Schema
from serving.errors import BadRequest

NAN = math.nan
UNKNOWN_POLICIES = ("error", "missing")
_MAX_SHOWN_LEVELS = 20


show = cells.shown  # a value for an error message, cut short


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
        try:
            return cells.number(text)
        except cells.CellError as e:
            raise BadRequest(f"{where}: {e.reason}") from None

    def level(self, text: str, j: int, where: str) -> float:
        s = cells.level(text)
        if s is None:
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
        if math.isnan(number):
            raise BadRequest(f"{where}: expected a finite number, received {show(value)}")
        try:
            return cells.check_value(number, show(value))
        except cells.CellError as e:
            raise BadRequest(f"{where}: {e.reason}") from None

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
