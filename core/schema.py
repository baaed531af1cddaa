"""The feature schema shared by preprocessing, training and serving (schema.json).

Layout, in column order (the label is not a feature; in headerless CSV it comes first)::

    {"version": 1, "target": "price",
     "features": [{"name": "mileage", "type": "numeric"},
                  {"name": "make", "type": "categorical", "levels": ["Buick", "Cadillac"]}]}

Every algorithm sees the same encoded matrix: float64, numeric columns as numbers, categorical columns as the
index of the level in ``levels`` (NaN when missing). XGBoost uses the codes natively; the linear model one-hot
encodes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported where used: serving single records never loads it
    import pandas as pd

from core import cells
from core.cells import MAX_MAGNITUDE, OUT_OF_RANGE  # noqa: F401 (defined with the cell grammar, imported from here)
from core.errors import DataError, SchemaError
from core.jsonfile import read_json

NUMERIC = "numeric"
CATEGORICAL = "categorical"
FILENAME = "schema.json"
VERSION = 1


@dataclass(frozen=True)
class Feature:
    name: str
    type: str = NUMERIC
    levels: tuple[str, ...] = ()

    @property
    def is_categorical(self) -> bool:
        return self.type == CATEGORICAL

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.is_categorical:
            d["levels"] = list(self.levels)
        return d


@dataclass(frozen=True)
class Schema:
    features: tuple[Feature, ...]
    target: str | None = None
    _codes: tuple[dict[str, int], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_codes", tuple({lv: i for i, lv in enumerate(f.levels)} for f in self.features))

    # -- shape -------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, f in enumerate(self.features) if f.is_categorical]

    def codes(self, index: int) -> Mapping[str, int]:
        """Level -> code for the categorical feature at ``index``."""
        return self._codes[index]

    # -- (de)serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "target": self.target, "features": [f.to_dict() for f in self.features]}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        return cls.from_dict(read_json(path, error=SchemaError), source=str(path))

    @classmethod
    def from_dict(cls, doc: Any, source: str = FILENAME) -> Schema:
        def bad(msg: str) -> SchemaError:
            return SchemaError(msg, file=source)

        if not isinstance(doc, dict):
            raise bad(f"expected a JSON object, received {type(doc).__name__}")
        if doc.get("version", VERSION) != VERSION:
            raise bad(f"field 'version': expected {VERSION}, received {doc.get('version')!r}")
        target = doc.get("target")
        if target is not None and not isinstance(target, str):
            raise bad(f"field 'target': expected a string or null, received {target!r}")
        raw = doc.get("features")
        if not isinstance(raw, list) or not raw:
            raise bad("field 'features': expected a non-empty list of {name, type[, levels]}")
        features, seen = [], set()
        for i, f in enumerate(raw):
            where = f"features[{i}]"
            if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
                raise bad(f"field '{where}.name': expected a non-empty string")
            name, ftype = f["name"], f.get("type", NUMERIC)
            if name in seen:
                raise bad(f"field '{where}.name': duplicate feature name {name!r}")
            if name == target:
                raise bad(f"field '{where}.name': the target {name!r} cannot also be a feature")
            seen.add(name)
            if ftype not in (NUMERIC, CATEGORICAL):
                raise bad(f"field '{where}.type': expected 'numeric' or 'categorical', received {ftype!r}")
            levels: tuple[str, ...] = ()
            if ftype == CATEGORICAL:
                lv = f.get("levels")
                if not isinstance(lv, list) or not lv or not all(isinstance(x, str) for x in lv):
                    raise bad(f"field '{where}.levels': expected a non-empty list of strings for {name!r}")
                if len(set(lv)) != len(lv):
                    raise bad(f"field '{where}.levels': duplicate level in {name!r}")
                odd = next((x for x in lv if cells.level(x) != x), None)
                if odd is not None:
                    raise bad(
                        f"field '{where}.levels': level {odd!r} of {name!r} can never match a CSV cell "
                        "(cells are trimmed of spaces and tabs; empty, NA, N/A, NaN, null and None are missing values)"
                    )
                levels = tuple(lv)
            features.append(Feature(name, ftype, levels))
        return cls(tuple(features), target)

    # -- inference from data --------------------------------------------------------------------------
    @classmethod
    def infer(cls, frame: pd.DataFrame, target: str | None = None) -> Schema:
        """Numeric columns stay numeric; any column holding a non-numeric value is categorical (sorted levels).
        Cells follow core.cells: missing tokens are no level, levels are trimmed."""
        import pandas as pd

        features = []
        for name in frame.columns:
            if name == target:
                continue
            col = frame[name]
            if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
                features.append(Feature(str(name), NUMERIC))
                continue
            values = cells.levels(col).dropna()
            if values.map(cells.looks_numeric).all():
                features.append(Feature(str(name), NUMERIC))
            else:
                features.append(Feature(str(name), CATEGORICAL, tuple(sorted(values.unique()))))
        return cls(tuple(features), target)

    # -- encoding -----------------------------------------------------------------------------------
    def encode(
        self,
        frame: pd.DataFrame,
        *,
        source: str | None = None,
        first_line: int = 1,
        column_offset: int = 1,
        unknown: str = "error",
    ) -> np.ndarray:
        """Encode a frame whose columns are the features in schema order into the float64 matrix.

        Empty cells become NaN (missing). A non-numeric value in a numeric column, or (with
        ``unknown="error"``) a level the schema does not know, raises DataError naming the line
        (``first_line`` is the line number of row 0) and the column (1-based, ``column_offset`` is the
        column number of feature 0: 2 in label-first CSV).
        """
        if frame.shape[1] != self.n_features:
            raise DataError(
                f"expected {self.n_features} feature columns ({', '.join(self.names)}), received {frame.shape[1]}",
                file=source,
            )
        out = np.empty((frame.shape[0], self.n_features), dtype=np.float64)
        for j, feat in enumerate(self.features):
            col = frame.iloc[:, j]
            column = f"{j + column_offset} ({feat.name})"
            if feat.is_categorical:
                out[:, j] = _encode_categorical(col, self._codes[j], feat, source, first_line, column, unknown)
            else:
                out[:, j] = to_float(col, source=source, first_line=first_line, column=column)
        return out

    def xgboost_feature_types(self) -> list[str]:
        return ["c" if f.is_categorical else "q" for f in self.features]


def to_float(col: pd.Series, *, source: str | None, first_line: int, column: str | int) -> np.ndarray:
    """A column as float64 by the cell grammar (core.cells): missing cells are NaN; anything else that is not a
    number in range is a DataError naming the cell (inf and magnitudes above MAX_MAGNITUDE included)."""
    try:
        return cells.numbers(col)
    except cells.CellError as e:
        raise DataError(e.reason, file=source, line=first_line + (e.index or 0), column=column) from None


def _encode_categorical(
    col: pd.Series,
    codes: Mapping[str, int],
    feat: Feature,
    source: str | None,
    first_line: int,
    column: str,
    unknown: str,
) -> np.ndarray:
    import pandas as pd

    # The cell grammar is applied to the distinct raw values only (a few levels, millions of rows), then every row
    # takes its value's code: the same result as trimming and matching each cell, several times faster.
    raw, uniques = pd.factorize(col, use_na_sentinel=True)
    levels = cells.levels(pd.Series(uniques))  # the column's own type: a parser's 4.0 reads as the level "4"
    table = levels.map(codes, na_action="ignore").astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    unknown_values = np.flatnonzero(np.isnan(table) & ~levels.isna().to_numpy(dtype=bool))
    if len(unknown_values) and unknown == "error":
        # factorize numbers values in order of first appearance: the first unknown value is the first unknown row.
        k = int(unknown_values[0])
        i = int(np.argmax(raw == k))
        raise DataError(
            f"unknown level {levels.iloc[k]!r} for categorical feature {feat.name!r}; "
            f"expected one of {list(feat.levels)}",
            file=source,
            line=first_line + i,
            column=column,
        )
    encoded = np.full(len(raw), np.nan)
    seen = raw >= 0
    encoded[seen] = table[raw[seen]]
    return encoded


def level_of(feature: Feature, code: float) -> str | None:
    """The level for a code (inverse of encoding); None for missing."""
    if code is None or (isinstance(code, float) and math.isnan(code)):
        return None
    return feature.levels[int(code)]


def check_names(schema: Schema, names: Sequence[str], *, source: str) -> None:
    """A header's feature columns must be the schema's, in order."""
    if list(names) != schema.names:
        raise SchemaError(f"columns {list(names)} do not match schema.json features {schema.names}", file=source)
