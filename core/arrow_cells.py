"""The cell grammar of core/cells.py over pyarrow arrays, for the readers that hold Arrow columns (preprocessing,
the monitor). A module of its own so that the algorithm images, which carry no pyarrow, never import it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.cells import MAX_MAGNITUDE, MISSING_TOKENS, NUMBER_PATTERN, WHITESPACE


def arrow_numbers(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """A pyarrow string (or numeric) array as (float64 values with NaN for missing and refused cells, mask of the
    refused cells: not a number, not finite or out of range)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_floating(t) or pa.types.is_integer(t):
        values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            bad = np.abs(values) > MAX_MAGNITUDE
        values = np.where(bad, np.nan, values) + 0.0
        return values, bad
    if pa.types.is_null(t):
        return np.full(len(arr), np.nan), np.zeros(len(arr), dtype=bool)
    if pa.types.is_large_string(t):
        arr = pc.cast(arr, pa.string())
    try:  # clean columns: Arrow's own parse, which agrees with the grammar where it yields a number that is not NaN
        values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = None
    if values is not None and np.isnan(values).sum() == arr.null_count:
        with np.errstate(invalid="ignore"):
            bad = np.abs(values) > MAX_MAGNITUDE
        return np.where(bad, np.nan, values) + 0.0, bad
    text = pc.utf8_trim(arr, characters=WHITESPACE)
    missing = _arrow_missing(text)
    form = pc.and_(pc.invert(missing), pc.fill_null(pc.match_substring_regex(text, f"^(?:{NUMBER_PATTERN})$"), False))
    values = pc.cast(pc.if_else(form, text, pa.scalar(None, pa.string())), pa.float64()).to_numpy(zero_copy_only=False)
    missing_np = missing.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        bad = ~missing_np & ~(np.abs(values) <= MAX_MAGNITUDE)  # not a number (NaN) or out of range
    values = np.where(bad, np.nan, values) + 0.0
    return values, bad


def arrow_levels(arr: Any) -> Any:
    """A pyarrow array of categorical cells as trimmed strings, null for missing cells."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    text = pc.utf8_trim(arr, characters=WHITESPACE)
    missing = _arrow_missing(text)
    return pc.if_else(missing, pa.scalar(None, text.type), text)


def _arrow_missing(text: Any) -> Any:
    return pc.or_kleene(pc.is_null(text), pc.is_in(pc.utf8_lower(text), value_set=pa.array(MISSING_TOKENS)))
