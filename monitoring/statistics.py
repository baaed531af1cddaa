"""statistics.json: a dataset profile built from streamed column batches, and the baseline read back.

Layout is Model Monitor's (see the reference notes): ``{"version": 0.0, "dataset": {"item_count": N},
"features": [{"name", "inferred_type", "numerical_statistics" | "string_statistics"}]}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError
from core.jsonfile import read_json
from core.schema import Schema
from monitoring.sketches import DEFAULT_K, CategoricalSketch, NumericSketch, from_state

NUMERIC_TYPES = ("Integral", "Fractional")


def column_name(name: str) -> str:
    """A normalised spelling (lowercase, ``_`` as the only special character), used only to match a column
    spelled otherwise than the baseline (a JSON record's keys, a model-quality attribute); names are kept as
    written everywhere else."""
    return re.sub(r"[^a-z0-9_]", "_", str(name).strip().lower())


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    numeric: bool


def specs_from_schema(schema: Schema) -> list[FeatureSpec]:
    return [FeatureSpec(f.name, not f.is_categorical) for f in schema.features]


class Profile:
    """Mergeable summary of a dataset: one sketch per expected feature plus counts of unexpected columns."""

    def __init__(self, specs: Sequence[FeatureSpec], k: int = DEFAULT_K):
        self.specs = list(specs)
        self.k = k
        self.sketches: dict[str, NumericSketch | CategoricalSketch] = {
            s.name: NumericSketch(k) if s.numeric else CategoricalSketch() for s in self.specs
        }
        self.item_count = 0
        self.absent: dict[str, int] = {s.name: 0 for s in self.specs}  # records without the column at all
        self.extra: dict[str, int] = {}  # unexpected column -> records carrying it

    def update(self, columns: Mapping[str, Any], n_rows: int, *, absent: Mapping[str, int] | None = None) -> None:
        """Add ``n_rows`` records. ``columns`` maps names to arrays of length ``n_rows``; a feature missing from
        ``columns`` is absent from every record; ``absent`` counts records lacking a column that others have."""
        if n_rows <= 0:
            return
        self.item_count += n_rows
        for name, sketch in self.sketches.items():
            values = columns.get(name)
            if values is None:
                self.absent[name] += n_rows
                sketch.num_missing += n_rows
            else:
                sketch.update(values)
                if absent and absent.get(name):
                    self.absent[name] += absent[name]
        for name in columns:
            if name not in self.sketches:
                self.extra[name] = self.extra.get(name, 0) + n_rows - (absent or {}).get(name, 0)

    def merge(self, other: Profile) -> None:
        self.item_count += other.item_count
        for name, sketch in self.sketches.items():
            sketch.merge(other.sketches[name])  # type: ignore[arg-type]
            self.absent[name] += other.absent[name]
        for name, n in other.extra.items():
            self.extra[name] = self.extra.get(name, 0) + n

    def statistics(self) -> dict[str, Any]:
        features = []
        for spec in self.specs:
            sk = self.sketches[spec.name]
            block = "numerical_statistics" if isinstance(sk, NumericSketch) else "string_statistics"
            features.append({"name": spec.name, "inferred_type": sk.inferred_type, block: sk.statistics()})
        return {"version": 0.0, "dataset": {"item_count": self.item_count}, "features": features}

    def to_state(self) -> dict[str, Any]:
        return {
            "version": 1,
            "k": self.k,
            "specs": [[s.name, s.numeric] for s in self.specs],
            "item_count": self.item_count,
            "absent": self.absent,
            "extra": self.extra,
            "sketches": {name: sk.to_state() for name, sk in self.sketches.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Profile:
        p = cls([FeatureSpec(n, bool(num)) for n, num in state["specs"]], int(state["k"]))
        p.item_count = int(state["item_count"])
        p.absent = {k: int(v) for k, v in state["absent"].items()}
        p.extra = {k: int(v) for k, v in state["extra"].items()}
        p.sketches = {name: from_state(s) for name, s in state["sketches"].items()}
        return p


# -- the baseline, read back ----------------------------------------------------------------------------------
@dataclass
class BaselineFeature:
    name: str
    inferred_type: str
    num_present: int
    num_missing: int
    items: np.ndarray = field(default_factory=lambda: np.empty(0))  # numeric: retained values
    weights: np.ndarray = field(default_factory=lambda: np.empty(0))
    counts: dict[str, float] = field(default_factory=dict)  # string: value -> count
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def numeric(self) -> bool:
        return self.inferred_type in NUMERIC_TYPES


def load_statistics(path: str | Path) -> dict[str, Any]:
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("features"), list):
        raise DataError("expected a statistics.json object with a 'features' list", file=str(path))
    return doc


def baseline_features(doc: Mapping[str, Any], *, source: str = "statistics.json") -> dict[str, BaselineFeature]:
    out: dict[str, BaselineFeature] = {}
    for i, f in enumerate(doc.get("features", [])):
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise DataError(f"features[{i}]: expected an object with a 'name'", file=source)
        name, itype = f["name"], f.get("inferred_type", "Unknown")
        block = f.get("numerical_statistics") or f.get("string_statistics") or {}
        common = block.get("common", {})
        bf = BaselineFeature(name, itype, int(common.get("num_present", 0)), int(common.get("num_missing", 0)))
        bf.stats = block
        dist = block.get("distribution", {})
        if "numerical_statistics" in f:
            bf.inferred_type = itype if itype in NUMERIC_TYPES else "Fractional"
            bf.items, bf.weights = _kll_items(dist.get("kll", {}))
        elif "string_statistics" in f:
            bf.inferred_type = "String"
            for b in dist.get("categorical", {}).get("buckets", []):
                bf.counts[str(b["value"])] = bf.counts.get(str(b["value"]), 0.0) + float(b["count"])
        out[name] = bf
    return out


def _kll_items(kll: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Weighted values from a KLL block: ``sketch.data`` level i holds items of weight 2**i (Deequ and
    DataSketches alike); without sketch data, fall back to bucket midpoints weighted by their counts."""
    data = (kll.get("sketch") or {}).get("data")
    if data and any(len(level) for level in data):
        items = [float(v) for level in data for v in level]
        weights = [float(2**i) for i, level in enumerate(data) for _ in level]
        return np.asarray(items), np.asarray(weights)
    buckets = kll.get("buckets") or []
    mids = [(float(b["lower_bound"]) + float(b["upper_bound"])) / 2 for b in buckets if float(b["count"]) > 0]
    counts = [float(b["count"]) for b in buckets if float(b["count"]) > 0]
    return np.asarray(mids), np.asarray(counts)
