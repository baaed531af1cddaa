"""Seeded synthetic used-car prices with the real data's schema, for speed and scale benchmarks only.

Accuracy is always reported on the real data; these rows only look like it. Everything is fitted from
cardata/car_prices.csv at run time (it takes milliseconds):

- configuration: the joint empirical frequencies of (make, body_type, cylinder, doors), so only combinations
  that exist in the real data appear (no 8-cylinder Saab, every coupe has 2 doors);
- cruise, sound, leather: Bernoulli with the real rate within that configuration (they depend on the trim);
- mileage: inverse-CDF sampling of the real mileages of that make (linear interpolation between quantiles);
- price: exp(OLS fit of log(price) on mileage, cylinder, cruise, sound, leather and make/body_type dummies, plus
  normal noise with the fitted residual standard deviation), rounded to cents. Doors are left out of the fit
  because body_type determines them in the real data.

Rows are generated and written in chunks (``--chunk-rows``), so memory stays flat whatever ``--rows`` is. Output
is a function of (seed, chunk size, drift, real data): same inputs, byte-identical file.

``--drift older-high-mileage`` simulates a shifted population for monitoring tests: mileage doubled plus 15,000
miles, and three times as many Chevrolets and Saturns. Prices follow the same fitted model, so they drop.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cardata import BODY_TYPES, COLUMNS, MAKES, REAL_CSV

CONFIG_COLUMNS = ("make", "body_type", "cylinder", "doors")
BINARY_COLUMNS = ("cruise", "sound", "leather")
# Features of the log-price model besides the intercept and the make/body_type dummies.
PRICE_NUMERIC = ("mileage", "cylinder", *BINARY_COLUMNS)
DEFAULT_CHUNK_ROWS = 100_000

ARROW_SCHEMA = pa.schema(
    [
        ("price", pa.float64()),
        *[(c, pa.int64()) for c in ("mileage", "cylinder", "doors", *BINARY_COLUMNS)],
        ("make", pa.string()),
        ("body_type", pa.string()),
    ]
)
assert tuple(ARROW_SCHEMA.names) == COLUMNS


@dataclass(frozen=True)
class Drift:
    name: str
    mileage_scale: float = 1.0
    mileage_shift: float = 0.0
    make_weights: tuple[tuple[str, float], ...] = ()


DRIFTS = {
    "older-high-mileage": Drift(
        "older-high-mileage", mileage_scale=2.0, mileage_shift=15_000.0, make_weights=(("Chevy", 3.0), ("Saturn", 3.0))
    ),
}


@dataclass(frozen=True)
class Model:
    """Everything fitted from the real data that generation needs."""

    configs: pd.DataFrame  # one row per (make, body_type, cylinder, doors) with columns prob, cruise, sound, leather
    mileage_quantiles: dict[str, np.ndarray]  # make -> sorted real mileages
    coef: np.ndarray  # log-price OLS coefficients, in design_columns() order
    residual_std: float


def design_columns() -> list[str]:
    return [
        "intercept",
        *PRICE_NUMERIC,
        *[f"make_{m}" for m in MAKES[1:]],
        *[f"body_type_{b}" for b in BODY_TYPES[1:]],
    ]


def design(frame: pd.DataFrame) -> np.ndarray:
    """The log-price model's design matrix (first level of each categorical is the baseline)."""
    cols = [np.ones(len(frame))]
    cols += [frame[c].to_numpy(dtype=np.float64) for c in PRICE_NUMERIC]
    make, body = frame["make"].to_numpy(), frame["body_type"].to_numpy()
    cols += [(make == m).astype(np.float64) for m in MAKES[1:]]
    cols += [(body == b).astype(np.float64) for b in BODY_TYPES[1:]]
    return np.column_stack(cols)


def fit_log_price(frame: pd.DataFrame) -> tuple[np.ndarray, float]:
    """OLS of log(price) on the design; returns (coefficients, residual standard deviation)."""
    X, y = design(frame), np.log(frame["price"].to_numpy(dtype=np.float64))
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    return coef, float(np.sqrt(resid @ resid / (len(y) - X.shape[1])))


def fit(real: pd.DataFrame) -> Model:
    groups = real.groupby(list(CONFIG_COLUMNS), sort=True)
    configs = groups[list(BINARY_COLUMNS)].mean().reset_index()
    configs["prob"] = groups.size().to_numpy() / len(real)
    # Codes index MAKES / BODY_TYPES; an unexpected level fails here rather than producing garbage.
    configs["make_code"] = [MAKES.index(m) for m in configs["make"]]
    configs["body_code"] = [BODY_TYPES.index(b) for b in configs["body_type"]]
    mileage = {m: np.sort(real.loc[real["make"] == m, "mileage"].to_numpy(dtype=np.float64)) for m in MAKES}
    coef, std = fit_log_price(real)
    return Model(configs, mileage, coef, std)


def _config_probs(model: Model, drift: Drift | None) -> np.ndarray:
    probs = model.configs["prob"].to_numpy(dtype=np.float64).copy()
    if drift:
        for make, weight in drift.make_weights:
            probs[(model.configs["make"] == make).to_numpy()] *= weight
    return probs / probs.sum()


def generate_chunk(model: Model, rows: int, rng: np.random.Generator, drift: Drift | None = None) -> pa.Table:
    configs = model.configs
    pick = rng.choice(len(configs), size=rows, p=_config_probs(model, drift))
    make_code = configs["make_code"].to_numpy(dtype=np.int32)[pick]
    body_code = configs["body_code"].to_numpy(dtype=np.int32)[pick]
    cols: dict[str, np.ndarray] = {
        "cylinder": configs["cylinder"].to_numpy(dtype=np.int64)[pick],
        "doors": configs["doors"].to_numpy(dtype=np.int64)[pick],
    }
    for c in BINARY_COLUMNS:
        cols[c] = (rng.random(rows) < configs[c].to_numpy(dtype=np.float64)[pick]).astype(np.int64)

    u = rng.random(rows)
    mileage = np.empty(rows, dtype=np.float64)
    for code, make in enumerate(MAKES):
        sel = make_code == code
        q = model.mileage_quantiles[make]
        mileage[sel] = np.interp(u[sel], np.linspace(0.0, 1.0, len(q)), q)
    if drift:
        mileage = mileage * drift.mileage_scale + drift.mileage_shift
    cols["mileage"] = np.rint(mileage).astype(np.int64)

    # Price from the fitted model, evaluated without building a frame (this is the hot loop).
    names = design_columns()
    log_price = np.full(rows, model.coef[0])
    for c in PRICE_NUMERIC:
        log_price += model.coef[names.index(c)] * cols[c]
    make_effect = np.concatenate([[0.0], model.coef[[names.index(f"make_{m}") for m in MAKES[1:]]]])
    body_effect = np.concatenate([[0.0], model.coef[[names.index(f"body_type_{b}") for b in BODY_TYPES[1:]]]])
    log_price += make_effect[make_code] + body_effect[body_code]
    log_price += rng.normal(0.0, model.residual_std, rows)
    cols["price"] = np.round(np.exp(log_price), 2)

    arrays = [pa.array(cols[c]) for c in ARROW_SCHEMA.names[:7]]
    arrays.append(pa.DictionaryArray.from_arrays(make_code, pa.array(MAKES)).cast(pa.string()))
    arrays.append(pa.DictionaryArray.from_arrays(body_code, pa.array(BODY_TYPES)).cast(pa.string()))
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def generate(
    model: Model, rows: int, seed: int, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, drift: Drift | None = None
) -> Iterator[pa.Table]:
    """Chunks of at most ``chunk_rows`` rows; chunk i draws from its own generator seeded by (seed, i)."""
    for i, start in enumerate(range(0, rows, chunk_rows)):
        rng = np.random.default_rng([seed, i])
        yield generate_chunk(model, min(chunk_rows, rows - start), rng, drift)


def write(chunks: Iterator[pa.Table], output: Path, fmt: str, header: bool = True) -> int:
    written = 0
    if fmt == "parquet":
        with pq.ParquetWriter(output, ARROW_SCHEMA) as writer:
            for table in chunks:
                writer.write_table(table)
                written += table.num_rows
        return written
    options = pacsv.WriteOptions(include_header=header, quoting_style="none", quoting_header="none")
    with pacsv.CSVWriter(output, ARROW_SCHEMA, write_options=options) as writer:
        for table in chunks:
            writer.write_table(table)
            written += table.num_rows
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cardata.synthetic", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, required=True, help="number of rows to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--no-header", action="store_true", help="CSV without the header line")
    p.add_argument("--drift", choices=sorted(DRIFTS), help="shift the distributions (for monitoring tests)")
    p.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows generated per chunk")
    p.add_argument("--real", type=Path, default=REAL_CSV, help="the real data to fit from")
    args = p.parse_args(argv)
    if args.rows < 1:
        p.error(f"--rows: expected a positive integer, received {args.rows}")
    if args.chunk_rows < 1:
        p.error(f"--chunk-rows: expected a positive integer, received {args.chunk_rows}")
    if args.seed < 0:
        p.error(f"--seed: expected a non-negative integer, received {args.seed}")
    if args.no_header and args.format != "csv":
        p.error("--no-header applies to --format csv only")

    start = time.perf_counter()
    model = fit(pd.read_csv(args.real))
    chunks = generate(model, args.rows, args.seed, chunk_rows=args.chunk_rows, drift=DRIFTS.get(args.drift or ""))
    n = write(chunks, args.output, args.format, header=not args.no_header)
    seconds = time.perf_counter() - start
    print(f"wrote {n} rows to {args.output} ({args.format}) in {seconds:.2f} s ({n / seconds:,.0f} rows/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
