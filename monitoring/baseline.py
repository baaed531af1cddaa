"""``python -m monitoring.baseline``: statistics.json + constraints.json from the training data, the built-in
analyzer's baselining job contract (env ``dataset_source``, ``dataset_format``, ``output_path``; each also a
flag). With ``--model-quality``: regression metrics + ``regression_constraints`` from predictions and labels.

Which columns are features: schema.json (``--schema``/``schema_path``, else beside the data) names them and the
label; headerless CSV is label-first as the built-in algorithms expect (a file with exactly the feature columns
has no label). With a header and no schema, every column but ``--target`` is a feature.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigurationError, DataError
from core.schema import FILENAME as SCHEMA_FILE
from core.schema import Schema
from monitoring import analyze, constraints, jobenv, quality, tables
from monitoring.sketches import DEFAULT_K, looks_numeric, to_numbers
from monitoring.statistics import FeatureSpec, Profile, column_name, specs_from_schema

SETTINGS = (
    "dataset_source",
    "dataset_format",
    "output_path",
    "schema_path",
    "target",
    "kll_k",
    "inference_attribute",
    "ground_truth_attribute",
    "slack_sigmas",
)


def parser() -> argparse.ArgumentParser:
    p = jobenv.parser("python -m monitoring.baseline", __doc__.split("\n")[0], SETTINGS)
    p.add_argument("--model-quality", action="store_true", help="baseline regression metrics instead of data")
    return p


def _schema(args: Any, source: Path) -> Schema | None:
    explicit = jobenv.setting(args, "schema_path")
    if explicit:
        return Schema.load(explicit)
    beside = (source if source.is_dir() else source.parent) / SCHEMA_FILE
    return Schema.load(beside) if beside.exists() else None


def _header(args: Any, first_file: Path, schema: Schema | None) -> bool:
    given = jobenv.csv_header(jobenv.dataset_format(args))
    if given is not None:
        return given
    if first_file.suffix.lower() in (".parquet", ".pq"):
        return True
    with open(first_file, newline="", encoding="utf-8-sig") as f:  # a byte-order mark is not data (core.cells)
        row = next(csv.reader([f.readline()]), [])
    cells = [c.strip() for c in row if c.strip()]
    if not cells or any(looks_numeric(c) for c in cells):
        return False
    if schema is None:
        return True
    return set(schema.names) <= set(cells)


def data_baseline(args: Any) -> int:
    source = Path(_required(args, "dataset_source"))
    output = Path(_required(args, "output_path"))
    k = jobenv.int_setting(args, "kll_k", DEFAULT_K, minimum=8)
    files = tables.data_files(source)
    schema = _schema(args, source)
    header = _header(args, files[0], schema)
    target = jobenv.setting(args, "target") or (schema.target if schema else None)
    profile: Profile | None = None
    for path in files:
        names = None
        if schema is not None and not header:
            n_cols = _count_columns(path)
            names = schema.names if n_cols == schema.n_features else [target or "_label", *schema.names]
        for rb in tables.read_blocks(path, header=header, names=names):
            columns = {n: rb.column(i) for i, n in enumerate(rb.schema.names) if n != target}
            if profile is None:
                profile = Profile(_specs(schema, columns, rb.schema.names, target), k)
            profile.update(columns, rb.num_rows)
    if profile is None or profile.item_count == 0:
        raise DataError("the baseline dataset holds no rows", file=str(source))
    analyze.write_json(output / "statistics.json", profile.statistics())
    analyze.write_json(output / "constraints.json", constraints.suggest(profile))
    print(f"baseline of {profile.item_count} rows, {len(profile.specs)} features written to {output}")
    return 0


def _specs(schema: Schema | None, columns: dict[str, Any], names: list[str], target: str | None) -> list[FeatureSpec]:
    if schema is not None:
        return specs_from_schema(schema)
    # no schema: a column is numeric when every value of the first block is a number
    return [FeatureSpec(n, to_numbers(columns[n])[1] == 0) for n in names if n != target]


def _count_columns(path: Path) -> int:
    if path.suffix.lower() in (".parquet", ".pq"):
        return -1
    with open(path, newline="", encoding="utf-8-sig") as f:  # a byte-order mark is not data (core.cells)
        return len(next(csv.reader([f.readline()]), []))


def _required(args: Any, name: str) -> str:
    value = jobenv.setting(args, name)
    if value is None:
        raise ConfigurationError(f"{name} is not set (environment variable or --{name.replace('_', '-')})")
    return str(value)


def model_quality_baseline(args: Any) -> int:
    """Predictions plus labels: a table with a header (``--inference-attribute``, default ``prediction``;
    ``--ground-truth-attribute``, default the schema's target or ``label``) or headerless (0-based column
    indices; default label first, prediction last - the joined batch output of label-first data)."""
    source = Path(_required(args, "dataset_source"))
    output = Path(_required(args, "output_path"))
    files = tables.data_files(source)
    schema = _schema(args, source)
    header = _header(args, files[0], None)
    pred_attr = jobenv.setting(args, "inference_attribute", "prediction" if header else "-1")
    default_truth = (schema.target if schema else None) or jobenv.setting(args, "target") or "label"
    truth_attr = jobenv.setting(args, "ground_truth_attribute", default_truth if header else "0")
    acc = quality.QualityAccumulator(seed=0)
    for path in files:
        for rb in tables.read_blocks(path, header=header, names=None):
            names = rb.schema.names
            y = _attribute(rb, names, truth_attr, "ground_truth_attribute", path)
            p = _attribute(rb, names, pred_attr, "inference_attribute", path)
            acc.update(y, p)
    if acc.n == 0:
        raise DataError("no row has both a prediction and a label", file=str(source))
    stats = quality.statistics(acc)
    slack = float(jobenv.setting(args, "slack_sigmas", 0.0))
    analyze.write_json(output / "statistics.json", stats)
    analyze.write_json(output / "constraints.json", quality.suggest_constraints(stats["regression_metrics"], slack))
    print(f"model quality baseline of {acc.n} predictions written to {output}")
    return 0


def _attribute(rb: Any, names: list[str], attr: str, setting: str, path: Path) -> np.ndarray:
    # the name as written, else the built-in analyzer's normalised spelling of it
    key = attr if attr in names else next((n for n in names if column_name(n) == column_name(attr)), None)
    if key is not None:
        col = rb.column(names.index(key))
    else:
        try:
            idx = int(attr)
            col = rb.column(idx if idx >= 0 else len(names) + idx)
        except (ValueError, IndexError):
            raise ConfigurationError(f"{setting} {attr!r}: no such column in {path} (columns: {names})") from None
    values, mismatch = to_numbers(col)
    if mismatch:
        raise DataError(f"{setting} {attr!r} holds {mismatch} values that are not numbers", file=str(path))
    return values


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return model_quality_baseline(args) if args.model_quality else data_baseline(args)


if __name__ == "__main__":
    sys.exit(jobenv.run_job(main))
