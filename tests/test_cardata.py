"""The bundled data: car_prices.csv is exactly what cardata.derive makes of the verbatim original."""

from __future__ import annotations

import pandas as pd
import pytest

import cardata


def test_regenerating_from_the_original_reproduces_car_prices_csv(tmp_path):
    out = cardata.regenerate(cardata.ORIGINAL_CSV, tmp_path / "car_prices.csv")
    assert out.read_bytes() == cardata.REAL_CSV.read_bytes()


def test_real_data_shape_and_levels():
    df = cardata.load()
    assert list(df.columns) == list(cardata.COLUMNS)
    assert len(df) == 804
    assert df.notna().all().all()
    assert sorted(df["make"].unique()) == list(cardata.MAKES)
    assert sorted(df["body_type"].unique()) == list(cardata.BODY_TYPES)
    assert df["price"].min() == pytest.approx(8638.93) and df["price"].max() == pytest.approx(70755.47)


def test_derive_rejects_rows_without_exactly_one_dummy():
    original = pd.read_csv(cardata.ORIGINAL_CSV).head(5)
    original.loc[3, "Saab"] = 1 - original.loc[3, "Saab"]
    with pytest.raises(ValueError, match=r"row 4: expected exactly one of \['Buick'"):
        cardata.derive(original)
