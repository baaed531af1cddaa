"""The synthetic generator: deterministic, same schema as the real data, statistically close to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import cardata
from cardata import synthetic

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cardata.synthetic", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return cardata.load()


@pytest.fixture(scope="module")
def model(real) -> synthetic.Model:
    return synthetic.fit(real)


def sample(model, rows=200_000, seed=7, drift=None) -> pd.DataFrame:
    return pa.concat_tables(synthetic.generate(model, rows, seed, drift=drift)).to_pandas()


@pytest.fixture(scope="module")
def synth(model) -> pd.DataFrame:
    return sample(model)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    # An odd chunk size so that several chunks, including a partial last one, are exercised.
    for name, seed in (("a.csv", "3"), ("b.csv", "3"), ("c.csv", "4")):
        r = run("--rows", "20001", "--seed", seed, "--chunk-rows", "7000", "--output", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
        assert "wrote 20001 rows" in r.stdout
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.csv", "b.csv", "c.csv"))
    assert a == b
    assert a != c
    assert a.count(b"\n") == 20002  # header + rows


def test_csv_header_schema_and_levels_match_real(tmp_path, real):
    out = tmp_path / "s.csv"
    assert run("--rows", "50000", "--seed", "1", "--output", str(out)).returncode == 0
    assert out.read_text().splitlines()[0] == ",".join(cardata.COLUMNS)
    df = pd.read_csv(out)
    assert list(df.columns) == list(real.columns)
    for col in real.columns:
        assert df[col].dtype.kind == real[col].dtype.kind, col
    for col in ("make", "body_type", "cylinder", "doors", "cruise", "sound", "leather"):
        assert sorted(df[col].unique()) == sorted(real[col].unique()), col
    assert df["price"].notna().all() and (df["price"] > 0).all()
    assert np.allclose(df["price"], df["price"].round(2))


def test_no_header_and_parquet_hold_the_same_rows(tmp_path):
    csv, bare, parquet = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.parquet"
    assert run("--rows", "1000", "--seed", "9", "--output", str(csv)).returncode == 0
    assert run("--rows", "1000", "--seed", "9", "--output", str(bare), "--no-header").returncode == 0
    assert run("--rows", "1000", "--seed", "9", "--output", str(parquet), "--format", "parquet").returncode == 0
    assert csv.read_text().split("\n", 1)[1] == bare.read_text()
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), pd.read_csv(csv), check_dtype=False)


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--rows", "0"], "--rows"),
        (["--rows", "10", "--chunk-rows", "0"], "--chunk-rows"),
        (["--rows", "10", "--drift", "newer"], "--drift"),
        (["--rows", "10", "--format", "parquet", "--no-header"], "--no-header"),
    ],
)
def test_bad_arguments_fail_naming_the_argument(tmp_path, args, culprit):
    r = run(*args, "--output", str(tmp_path / "x"))
    assert r.returncode == 2
    assert culprit in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x").exists()


def test_only_real_configurations_appear(synth, real):
    key = list(synthetic.CONFIG_COLUMNS)
    assert set(map(tuple, synth[key].drop_duplicates().to_numpy())) <= set(map(tuple, real[key].to_numpy()))


def test_marginals_close_to_real(synth, real):
    # 200,000 rows: the sampling error of a share is below 0.0011, so 0.01 is loose but still catches a wrong fit.
    for col in ("make", "body_type", "cylinder", "doors", "cruise", "sound", "leather"):
        want = real[col].value_counts(normalize=True)
        got = synth[col].value_counts(normalize=True).reindex(want.index)
        assert (got - want).abs().max() < 0.01, col
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert synth["mileage"].quantile(q) == pytest.approx(real["mileage"].quantile(q), rel=0.05), q
    assert synth["mileage"].between(real["mileage"].min(), real["mileage"].max()).all()
    # Price: log-normal noise on a fitted mean, so compare the centre and spread loosely.
    assert synth["price"].mean() == pytest.approx(real["price"].mean(), rel=0.05)
    assert synth["price"].median() == pytest.approx(real["price"].median(), rel=0.05)
    assert synth["price"].std() == pytest.approx(real["price"].std(), rel=0.10)


def test_price_relationship_recovered(synth, real):
    real_coef, real_std = synthetic.fit_log_price(real)
    syn_coef, syn_std = synthetic.fit_log_price(synth)
    names = synthetic.design_columns()
    assert np.array_equal(np.sign(syn_coef), np.sign(real_coef)), dict(zip(names, syn_coef, strict=True))
    assert syn_coef[names.index("mileage")] == pytest.approx(real_coef[names.index("mileage")], rel=0.05)
    assert syn_std == pytest.approx(real_std, rel=0.05)
    # Mileage lowers the price within a configuration, as in the real data.
    chevy_sedans = synth[(synth["make"] == "Chevy") & (synth["body_type"] == "sedan") & (synth["cylinder"] == 4)]
    low = chevy_sedans["mileage"] < chevy_sedans["mileage"].quantile(0.25)
    high = chevy_sedans["mileage"] > chevy_sedans["mileage"].quantile(0.75)
    assert chevy_sedans.loc[low, "price"].median() > chevy_sedans.loc[high, "price"].median()


def test_drift_shifts_mileage_makes_and_prices(model, synth):
    drifted = sample(model, drift=synthetic.DRIFTS["older-high-mileage"])
    assert drifted["mileage"].median() > 1.8 * synth["mileage"].median()
    assert drifted["mileage"].min() >= 15_000
    for make in ("Chevy", "Saturn"):
        assert (drifted["make"] == make).mean() > 1.3 * (synth["make"] == make).mean(), make
    assert drifted["price"].median() < 0.9 * synth["price"].median()
    assert list(drifted.columns) == list(synth.columns)


def test_drift_option_on_the_command_line(tmp_path):
    plain, drifted = tmp_path / "p.csv", tmp_path / "d.csv"
    assert run("--rows", "5000", "--seed", "2", "--output", str(plain)).returncode == 0
    r = run("--rows", "5000", "--seed", "2", "--output", str(drifted), "--drift", "older-high-mileage")
    assert r.returncode == 0, r.stderr
    assert pd.read_csv(drifted)["mileage"].mean() > 1.8 * pd.read_csv(plain)["mileage"].mean()
