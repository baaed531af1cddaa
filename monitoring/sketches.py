"""Mergeable per-feature summaries: memory is bounded by the sketch size, never by the number of records.

- NumericSketch: counts, moments (Chan's parallel update, so shards merge exactly), min/max, and an Apache
  DataSketches KLL sketch for the distribution.
- CategoricalSketch: exact value counts (bounded by the feature's cardinality, which a model's schema bounds).

Both serialise to plain JSON (the KLL as base64 of DataSketches' own binary format), so sharded runs can write
their state and ``monitoring.merge`` can combine them.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from typing import Any

import datasketches
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core import arrow_cells, cells

# Model Monitor's own baselines show k=2048 (Deequ's default sketch size). At that k DataSketches' KLL keeps
# every value up to 2048 values (exact) and its normalized rank error is 0.14 % (99 % confidence).
DEFAULT_K = 2048
NUM_BUCKETS = 10


def rank_error(k: int = DEFAULT_K) -> float:
    """DataSketches' documented single-rank normalized error for KLL at ``k`` (99 % confidence)."""
    return datasketches.kll_doubles_sketch.get_normalized_rank_error(k, False)


def looks_numeric(value: str) -> bool:
    return cells.is_number(value)


class NumericSketch:
    kind = "numeric"

    def __init__(self, k: int = DEFAULT_K):
        self.k = k
        self.kll = datasketches.kll_doubles_sketch(k)
        self.num_present = 0  # non-null values, including those of the wrong type (Deequ's completeness)
        self.num_missing = 0
        self.num_mismatch = 0  # present but not a number
        self.num_fractional = 0  # numbers with a fractional part (decides Integral vs Fractional)
        self.count = 0  # numbers in the sketch
        self.mean = 0.0
        self.m2 = 0.0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    # -- updates -------------------------------------------------------------------------------------------
    def update(self, values: Any) -> None:
        """Add a column: a numpy/pyarrow array or a list of raw values (str/number/None)."""
        numbers, mismatch = to_numbers(values)
        self.update_numbers(numbers, mismatch=mismatch)

    def update_numbers(self, x: np.ndarray, *, mismatch: int = 0) -> None:
        """``x``: float64; NaN is a missing value, or one of the ``mismatch`` values that were not numbers."""
        nan = np.isnan(x)
        n_nan = int(nan.sum())
        if n_nan:
            x = x[~nan]
        self.num_missing += n_nan - mismatch
        self.num_mismatch += mismatch
        self.num_present += mismatch + len(x)
        if not len(x):
            return
        if not x.flags.writeable:  # the binding rejects read-only arrays (zero-copy views of Arrow buffers)
            x = x.copy()
        self.kll.update(x)
        self.num_fractional += int(np.count_nonzero(x != np.floor(x)))
        n_b = len(x)
        mean_b = float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        self._combine(n_b, mean_b, m2_b, float(x.sum()), float(x.min()), float(x.max()))

    def _combine(self, n_b: int, mean_b: float, m2_b: float, sum_b: float, min_b: float, max_b: float) -> None:
        n_a = self.count
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * n_a * n_b / n
        self.count = n
        self.total += sum_b
        self.min = min(self.min, min_b)
        self.max = max(self.max, max_b)

    def merge(self, other: NumericSketch) -> None:
        self.kll.merge(other.kll)
        self.num_present += other.num_present
        self.num_missing += other.num_missing
        self.num_mismatch += other.num_mismatch
        self.num_fractional += other.num_fractional
        if other.count:
            self._combine(other.count, other.mean, other.m2, other.total, other.min, other.max)

    # -- views -----------------------------------------------------------------------------------------------
    @property
    def std_dev(self) -> float:
        # Deequ's StandardDeviation is the population one.
        return math.sqrt(self.m2 / self.count) if self.count else 0.0

    @property
    def inferred_type(self) -> str:
        if self.count == 0 and self.num_mismatch:
            return "String"
        return "Fractional" if self.num_fractional else "Integral"

    def weighted_items(self) -> tuple[np.ndarray, np.ndarray]:
        """The sketch's retained values and their weights (its CDF is exactly their weighted CDF)."""
        if self.kll.is_empty():
            return np.empty(0), np.empty(0)
        pairs = np.array(list(self.kll), dtype=np.float64)
        return pairs[:, 0], pairs[:, 1]

    def buckets(self, n: int = NUM_BUCKETS) -> list[dict[str, float]]:
        if self.count == 0:
            return []
        lo, hi = self.min, self.max
        if lo == hi:
            return [{"lower_bound": lo, "upper_bound": hi, "count": float(self.count)}]
        edges = np.linspace(lo, hi, n + 1)
        # Deequ's buckets are [low, high) with the last one closed: count values strictly below each inner edge
        cdf = [0.0, *self.kll.get_cdf(list(edges[1:-1]), False), 1.0]
        counts = np.diff(np.asarray(cdf)) * self.count
        return [
            {"lower_bound": float(edges[i]), "upper_bound": float(edges[i + 1]), "count": float(round(counts[i], 6))}
            for i in range(n)
        ]

    def sketch_levels(self) -> list[list[float]]:
        """Retained items grouped by level (weight 2**level), the layout of Model Monitor's ``sketch.data``."""
        items, weights = self.weighted_items()
        if not len(items):
            return [[]]
        levels = np.round(np.log2(weights)).astype(int)
        return [sorted(items[levels == lv].tolist()) for lv in range(int(levels.max()) + 1)]

    def statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "common": {"num_present": self.num_present, "num_missing": self.num_missing},
            "mean": self.mean if self.count else 0.0,
            "sum": self.total,
            "std_dev": self.std_dev,
            "min": self.min if self.count else 0.0,
            "max": self.max if self.count else 0.0,
            "distribution": {
                "kll": {
                    "buckets": self.buckets(),
                    # Model Monitor's own values (Deequ: c=0.64, k a double); readers use only k and the data,
                    # DataSketches' compaction ratio (2/3) is an implementation detail not recorded here.
                    "sketch": {"parameters": {"c": 0.64, "k": float(self.k)}, "data": self.sketch_levels()},
                }
            },
        }
        return stats

    # -- state --------------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "k": self.k,
            "kll": base64.b64encode(self.kll.serialize()).decode(),
            **{
                f: getattr(self, f)
                for f in ("num_present", "num_missing", "num_mismatch", "num_fractional", "count", "mean", "m2")
            },
            "total": self.total,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NumericSketch:
        s = cls(int(state["k"]))
        s.kll = datasketches.kll_doubles_sketch.deserialize(base64.b64decode(state["kll"]))
        for f in ("num_present", "num_missing", "num_mismatch", "num_fractional", "count"):
            setattr(s, f, int(state[f]))
        s.mean, s.m2, s.total = float(state["mean"]), float(state["m2"]), float(state["total"])
        s.min = math.inf if state["min"] is None else float(state["min"])
        s.max = -math.inf if state["max"] is None else float(state["max"])
        return s


class CategoricalSketch:
    kind = "categorical"

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.num_missing = 0
        self.num_mismatch = 0  # numbers where the baseline holds strings (counted per distinct value once)
        self._numeric_cache: dict[str, bool] = {}

    @property
    def num_present(self) -> int:
        return sum(self.counts.values())

    def update(self, values: Any) -> None:
        arr = _as_string_array(values)
        n = len(arr)
        if not n:
            return
        # missing by the cell grammar (empty, NA, null, ...), levels trimmed: as training read them
        levels = arrow_cells.arrow_levels(arr)
        present = levels.filter(pc.is_valid(levels))
        self.num_missing += n - len(present)
        if not len(present):
            return
        vc = pc.value_counts(present)
        for value, count in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True):
            self.counts[value] = self.counts.get(value, 0) + count
            is_num = self._numeric_cache.get(value)
            if is_num is None:
                is_num = self._numeric_cache[value] = looks_numeric(value)
            if is_num:
                self.num_mismatch += count

    def merge(self, other: CategoricalSketch) -> None:
        for value, count in other.counts.items():
            self.counts[value] = self.counts.get(value, 0) + count
        self.num_missing += other.num_missing
        self.num_mismatch += other.num_mismatch

    @property
    def inferred_type(self) -> str:
        if self.counts and self.num_mismatch == self.num_present:
            # every value is a number: Deequ would call the column numeric
            return "Fractional" if any("." in v or "e" in v.lower() for v in self.counts) else "Integral"
        return "String"

    def statistics(self) -> dict[str, Any]:
        buckets = [{"value": v, "count": c} for v, c in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        return {
            "common": {"num_present": self.num_present, "num_missing": self.num_missing},
            "distinct_count": float(len(self.counts)),
            "distribution": {"categorical": {"buckets": buckets}},
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "counts": self.counts,
            "num_missing": self.num_missing,
            "num_mismatch": self.num_mismatch,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CategoricalSketch:
        s = cls()
        s.counts = {str(k): int(v) for k, v in state["counts"].items()}
        s.num_missing, s.num_mismatch = int(state["num_missing"]), int(state["num_mismatch"])
        return s


def from_state(state: dict[str, Any]) -> NumericSketch | CategoricalSketch:
    return NumericSketch.from_state(state) if state["kind"] == "numeric" else CategoricalSketch.from_state(state)


# -- conversions -------------------------------------------------------------------------------------------
def _as_string_array(values: Any) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            return values
        if pa.types.is_floating(values.type):
            # 4.0 -> "4" so that numeric-looking levels read the same way whatever the parser inferred
            return pa.array([None if v is None else _num_to_str(v) for v in values.to_pylist()], pa.string())
        return pc.cast(values, pa.string())
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return pa.array([None if math.isnan(v) else _num_to_str(v) for v in values.tolist()], pa.string())
    return pa.array([None if v is None else (v if isinstance(v, str) else _num_to_str(v)) for v in values], pa.string())


def _num_to_str(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def to_numbers(values: Any) -> tuple[np.ndarray, int]:
    """(float64 with NaN for missing values and refused ones, number of present values that are not numbers), by
    the cell grammar (core.cells): NA, null, ... are missing; inf and out-of-range numbers are not numbers."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        values = pa.array(values.astype(np.float64, copy=False), from_pandas=True)
    if isinstance(values, pa.Array):
        t = values.type
        if pa.types.is_boolean(t):
            return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), 0
        if pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t):
            x, bad = arrow_cells.arrow_numbers(values)
            return x, int(bad.sum())
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            x, bad = arrow_cells.arrow_numbers(values)
            return x, int(bad.sum())
        values = values.to_pylist()
    return _numbers_from_objects(values)


def _numbers_from_objects(values: Iterable[Any]) -> tuple[np.ndarray, int]:
    out = []
    mismatch = 0
    for v in values:
        try:
            if v is None or isinstance(v, bool):
                out.append(math.nan if v is None else float(v))
            elif isinstance(v, (int, float)):
                out.append(cells.check_value(float(v)))
            else:
                out.append(cells.number(str(v)))
        except (cells.CellError, OverflowError):
            mismatch += 1
            out.append(math.nan)
    return np.asarray(out, dtype=np.float64), mismatch
