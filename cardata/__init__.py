"""The bundled used-car price data (see cardata/README.md for provenance) and how it derives from the original."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
REAL_CSV = HERE / "car_prices.csv"
ORIGINAL_CSV = HERE / "car_prices_original.csv"

TARGET = "price"
MAKES = ("Buick", "Cadillac", "Chevy", "Pontiac", "Saab", "Saturn")
BODY_TYPES = ("convertible", "coupe", "hatchback", "sedan", "wagon")
NUMERIC_COLUMNS = ("price", "mileage", "cylinder", "doors", "cruise", "sound", "leather")
COLUMNS = (*NUMERIC_COLUMNS, "make", "body_type")


def _restore(original: pd.DataFrame, dummies: tuple[str, ...], name: str) -> pd.Series:
    block = original[list(dummies)]
    ones = block.sum(axis=1)
    if not (block.isin([0, 1]).all().all() and (ones == 1).all()):
        bad = int(((ones != 1) | ~block.isin([0, 1]).all(axis=1)).to_numpy().argmax())
        raise ValueError(f"row {bad + 1}: expected exactly one of {list(dummies)} to be 1 (restoring {name!r})")
    return block.idxmax(axis=1).rename(name)


def derive(original: pd.DataFrame) -> pd.DataFrame:
    """car_prices.csv from car_prices_original.csv: snake_case names, ``make``/``body_type`` restored from dummies."""
    out = original[[c.capitalize() for c in NUMERIC_COLUMNS]].copy()
    out.columns = list(NUMERIC_COLUMNS)
    out["make"] = _restore(original, MAKES, "make")
    out["body_type"] = _restore(original, BODY_TYPES, "body_type")
    return out.reset_index(drop=True)


def load() -> pd.DataFrame:
    """The real data as a frame (make and body_type as strings)."""
    return pd.read_csv(REAL_CSV)


def write(frame: pd.DataFrame, path: str | Path) -> None:
    # The exact byte layout of car_prices.csv (LF line ends, no index) so regeneration is checkable.
    frame.to_csv(path, index=False, lineterminator="\n")


def regenerate(original: str | Path = ORIGINAL_CSV, output: str | Path = REAL_CSV) -> Path:
    """Rewrite car_prices.csv from the original: ``python -c 'import cardata; cardata.regenerate()'``."""
    write(derive(pd.read_csv(original)), output)
    return Path(output)
